// The detail view (overlay over the grid, or its own page): photo with boxes, faces and their measures,
// the manual crop (four clicks, named by geometry on the server, preview before saving), delete / restore.
import { enqueue, getText, navigate, post } from "./api.js";
import { decide, gridEl, setCursor, state, tiles } from "./grid.js";
import { $, setCounts, toast } from "./ui.js";

export const overlay = $("#overlay");
const overlayBody = $("#overlay-body");
export const view = { face: null, changed: false };  // the overlay's face; faces added/deleted: reload on close
export const overlayOpen = () => !overlay.hidden;

let loads = 0;  // only the newest of several quick panel loads may fill the view
export async function loadPanel(imageId, faceId) {
  const seq = ++loads;
  let html;
  try {
    html = await getText(`/images/${imageId}/panel` + (faceId ? `?face=${faceId}` : ""));
  } catch (e) {
    toast(`cannot open photo ${imageId}: ${e.message}`, "error");
    return false;
  }
  if (seq !== loads) return false;
  overlayBody.innerHTML = html;  // server-rendered, autoescaped
  fitPhoto($(".panel", overlayBody));
  return true;
}

// Show the photo as large as the view allows, small photos included (the marks scale with it).
function fitPhoto(panel) {
  const wrap = panel && $(".photo-wrap", panel);
  if (!wrap) return;
  const ratio = Number(panel.dataset.width) / Math.max(1, Number(panel.dataset.height));
  wrap.style.width = `min(100%, calc(78vh * ${ratio.toFixed(4)}))`;
}
fitPhoto($(".detail-page .panel"));

export async function openDetail() {
  const t = tiles[state.cursor];
  if (!t) return;
  view.face = t.dataset.faceId || null;  // set before the panel loads, so quick keys never hit the previous one
  overlay.hidden = false;
  await loadPanel(t.dataset.imageId, t.dataset.faceId);
}

export function closeOverlay() {
  overlay.hidden = true;
  view.face = null;
  overlayBody.innerHTML = "";
  manual.reset();
  if (view.changed) navigate(null);
}

export function currentPanel() {
  return overlayOpen() ? $(".panel", overlayBody) : $(".detail-page .panel");
}

export async function refreshPanel() {
  const panel = currentPanel();
  if (!panel) return;
  if (overlayOpen()) await loadPanel(panel.dataset.imageId, panel.dataset.focus);
  else navigate(null);
}

// Decide the face in view, then go to the next face of the grid (the overlay follows the cursor).
export async function detailDecide(focus, decision, e, reason, rating) {
  decide([focus], decision, e.timeStamp || performance.now(), reason, rating);
  if (!decision) return;
  const onGrid = tiles[state.cursor] && tiles[state.cursor].dataset.faceId === String(focus);
  if (overlayOpen() && onGrid && state.cursor < tiles.length - 1) {
    setCursor(state.cursor + 1, false);
    await openDetail();
  }
}

export async function step(d) {
  const i = state.cursor + d;
  if (i >= 0 && i < tiles.length) { setCursor(i, false); await openDetail(); }
}

overlay.addEventListener("click", (e) => {
  if (e.target === overlay || e.target.closest('[data-action="close"]')) closeOverlay();
});

// ---- manual crop: four clicks -> FFHQ quad -> aligned preview -> save ---------------------------------------
const STEPS = [
  "click the centre of one eye",
  "click the centre of the other eye",
  "click one mouth corner",
  "click the other mouth corner",
];
const NAMES = ["eye_left", "eye_right", "mouth_left", "mouth_right"];
export const manual = {
  active: false, points: {}, step: 0, previewUrl: null,
  reset() {
    this.active = false; this.points = {}; this.step = 0;
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    const panel = currentPanel();
    if (!panel) return;
    $(".photo-wrap", panel)?.classList.remove("picking");
    const g = $(".clicks", panel);
    if (g) g.replaceChildren();
    const hint = $(".manual-hint", panel);
    if (hint) hint.textContent = "";
    for (const sel of [".manual-preview", '[data-action="manual-save"]', '[data-action="manual-cancel"]']) {
      const el = $(sel, panel);
      if (el) el.hidden = true;
    }
  },
  start() {
    const panel = currentPanel();
    if (!panel || !$(".photo-wrap", panel)) return;
    this.reset();
    this.active = true;
    $(".photo-wrap", panel).classList.add("picking");
    $('[data-action="manual-cancel"]', panel).hidden = false;
    $(".manual-hint", panel).textContent = `1/4: ${STEPS[0]} (any order: they are named by where they lie)`;
  },
};

const SVGNS = "http://www.w3.org/2000/svg";
async function manualClick(e, panel) {
  const svg = $("svg.marks", panel);
  const box = svg.getBoundingClientRect();
  const w = Number(panel.dataset.width), h = Number(panel.dataset.height);
  const x = ((e.clientX - box.left) / box.width) * w;
  const y = ((e.clientY - box.top) / box.height) * h;
  manual.points[NAMES[manual.step]] = [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  const g = $(".clicks", panel);
  const c = document.createElementNS(SVGNS, "circle");
  c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", Number(g.dataset.r) * 2);
  g.appendChild(c);
  manual.step += 1;
  const hint = $(".manual-hint", panel);
  if (manual.step < STEPS.length) {
    hint.textContent = `${manual.step + 1}/4: ${STEPS[manual.step]}`;
    return;
  }
  $(".photo-wrap", panel).classList.remove("picking");
  hint.textContent = "aligning…";
  try {
    const res = await post(`/api/images/${panel.dataset.imageId}/manual/preview`, manual.points);
    const quad = JSON.parse(res.headers.get("x-ghosts-quad") || "null");
    if (quad) {
      const poly = document.createElementNS(SVGNS, "polygon");
      poly.setAttribute("points", quad.map((p) => p.join(",")).join(" "));
      g.appendChild(poly);
    }
    manual.previewUrl = URL.createObjectURL(await res.blob());
    const img = $(".manual-preview", panel);
    img.src = manual.previewUrl;
    img.hidden = false;
    $('[data-action="manual-save"]', panel).hidden = false;
    hint.textContent = (res.headers.get("x-ghosts-reordered") === "1"
      ? "points named by where they lie (eyes above the mouth, left and right as on screen). " : "")
      + "This is the aligned crop: save it, or cancel and click again";
  } catch (err) {
    hint.textContent = "";
    toast(`cannot crop there: ${err.message}`, "error");
    manual.reset();
  }
}

async function manualSave(panel) {
  await enqueue(async () => {
    try {
      const out = await (await post(`/api/images/${panel.dataset.imageId}/manual`, manual.points)).json();
      setCounts(out.counts);
      view.changed = true;
      toast(`face ${out.face_id} added (cropped by hand)`);
      manual.reset();
      panel.dataset.focus = out.face_id;
      if (overlayOpen()) view.face = String(out.face_id);
      await refreshPanel();
    } catch (err) {
      toast(`face not saved: ${err.message}`, "error");
    }
  });
}

function setDeleted(btn, url, verb) {
  return enqueue(async () => {
    try {
      setCounts(await (await post(url)).json());
      view.changed = true;
      toast(`face ${btn.dataset.faceId} ${verb}`);
      await refreshPanel();
    } catch (err) {
      toast(`not ${verb}: ${err.message}`, "error");
    }
  });
}

// Clicks inside a detail panel (overlay or full page).
document.addEventListener("click", async (e) => {
  const panel = e.target.closest(".panel");
  if (!panel) return;
  if (manual.active && e.target.closest("svg.marks") && manual.step < STEPS.length) {
    e.preventDefault();
    manualClick(e, panel);
    return;
  }
  const btn = e.target.closest("[data-action]");
  if (!btn) return;
  const action = btn.dataset.action;
  if (action === "decide") {
    await decide([btn.dataset.faceId], btn.dataset.decision, e.timeStamp || performance.now());
  } else if (action === "delete") {
    if (!btn.classList.contains("armed")) {
      btn.classList.add("armed");
      btn.textContent = "really delete?";
      return;
    }
    await setDeleted(btn, `/api/faces/${btn.dataset.faceId}/delete`, "deleted");
  } else if (action === "restore") {
    await setDeleted(btn, `/api/faces/${btn.dataset.faceId}/restore`, "restored");
  } else if (action === "manual-start") {
    manual.start();
  } else if (action === "manual-cancel") {
    manual.reset();
  } else if (action === "manual-save") {
    manualSave(panel);
  } else if (action === "open-image" && overlayOpen()) {
    e.preventDefault();
    manual.reset();
    view.face = null;  // another photo: no face of it is in focus until one is clicked
    await loadPanel(btn.dataset.imageId, null);
  }
});

if (gridEl) {
  gridEl.addEventListener("dblclick", (e) => {
    const t = e.target.closest(".tile");
    if (t) { setCursor(tiles.indexOf(t), false); openDetail(); }
  });
}
