// Small shared pieces of the page: the toast, the counter and round state, marking faces.
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

let toastTimer = null;
export function toast(msg, kind = "info") {
  const el = $("#toast");
  el.textContent = msg;
  el.className = "toast " + kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 2500);
}

export function setCounts(c) {
  if (!c) return;
  for (const k of ["accepted", "target", "rejected", "skipped", "undecided"]) {
    const el = $("#count-" + k);
    if (el && c[k] !== undefined) el.textContent = c[k];
  }
  const done = $("#btn-done");
  if (done) done.dataset.accepted = c.accepted;
  const spread = $("#spread");
  if (spread && c.top_owners) {
    spread.textContent = [...c.top_owners.map(([o, n]) => `@${o} ${n}`), ...c.top_tags.map(([t, n]) => `#${t} ${n}`)].join(" · ");
  }
  setRound(c);
  document.dispatchEvent(new CustomEvent("ghosts:counts", { detail: c }));  // people.js: the caps follow
}

// The round's state, always on screen: open (its number), or closed (by whom, with how many), and that the
// next decision opens the next round.
export function setRound(c) {
  const el = $("#round");
  if (!el || c.round_id === undefined) return;
  el.dataset.state = c.round_open ? "open" : "closed";
  el.textContent = c.round_open
    ? `round ${c.round_id} open`
    : `round ${c.round_id} closed by ${c.round_closed_by || "?"} with ${c.round_accepted} accepted · your next decision opens round ${c.round_id + 1}`;
}

const STARS = ["", "★", "★★", "★★★", "★★★★", "★★★★★"];
export function markFace(faceId, decision, rating) {
  for (const el of $$(`[data-face-id="${faceId}"]`)) {
    if (el.tagName === "BUTTON") continue;
    el.dataset.decision = decision;
    el.dataset.saved = "1";
    if (rating !== undefined) {
      el.dataset.rating = rating || "";
      const st = $(".stars", el);
      if (st) st.textContent = STARS[rating || 0];
    }
    const state = el.classList.contains("tile") || el.classList.contains("face-card") ? $(".state", el) : null;
    if (state) state.textContent = decision;
  }
}
