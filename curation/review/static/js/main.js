// ghosts review: keyboard-first grid, detail overlay, manual crop. Plain ES modules, no build step.
// Nothing is held only here: every decision is POSTed at once (in order, one at a time) and the page shows
// what the server answered. window.ghostsReview exposes a few figures for tests and the benchmark.
import { enqueue, getJSON, post, stats } from "./api.js";
import { tiles } from "./grid.js";
import "./detail.js";
import "./keys.js";
import "./people.js";
import "./views.js";
import { $, $$, markFace, setCounts, toast } from "./ui.js";

// ---- "Selection done": closes the round on record -------------------------------------------------------
const doneBtn = $("#btn-done");
let doneTimer = null;
doneBtn.addEventListener("click", () => {
  doneBtn.blur();  // keys go back to the grid at once
  if (!doneBtn.classList.contains("armed")) {
    doneBtn.classList.add("armed");
    doneBtn.textContent = `Close the round with ${doneBtn.dataset.accepted} accepted?`;
    clearTimeout(doneTimer);
    doneTimer = setTimeout(() => { doneBtn.classList.remove("armed"); doneBtn.textContent = "Selection done"; }, 5000);
    return;
  }
  clearTimeout(doneTimer);
  doneBtn.classList.remove("armed");
  doneBtn.textContent = "Selection done";
  enqueue(async () => {
    try {
      const out = await (await post("/api/rounds/complete")).json();
      toast(out.message, out.resumed === false ? "error" : "info");  // not resumed: why, and how to, stays longer
      setCounts(await getJSON("/api/counts"));
    } catch (e) {
      toast(`Selection not closed: ${e.message}`, "error");
    }
  });
});

// ---- two reviewers: follow the other's decisions on this page every few seconds ------------------------------
const POLL_MS = 15000;
async function poll() {
  if (document.hidden || stats.pending > 0) return;
  try {
    setCounts(await getJSON("/api/counts"));
    const ids = tiles.map((t) => t.dataset.faceId).filter(Boolean);
    if (!ids.length) return;
    const states = await getJSON(`/api/faces/state?ids=${ids.join(",")}`);
    if (stats.pending > 0) return;  // a newer local decision is on its way
    for (const s of states) {
      for (const el of $$(`.tile[data-face-id="${s.id}"]`)) {
        if (el.dataset.decision !== s.decision) markFace(s.id, s.decision);
        if (s.deleted) el.hidden = true;
      }
    }
  } catch (e) { /* offline for a moment: the next poll tries again */ }
}
setInterval(poll, POLL_MS);
