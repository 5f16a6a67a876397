// Culling views: the 100% loupe (aligned crop at the dataset side and the photo region at its own pixels),
// compare 2-4 faces side by side, and "keep the best of the near-duplicate group".
import { enqueue, post, signed } from "./api.js";
import { chosenIds, state, tiles } from "./grid.js";
import { overlay, overlayOpen, view } from "./detail.js";
import { $, markFace, setCounts, toast } from "./ui.js";

const body = $("#overlay-body");

function figure(src, caption) {
  const f = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  img.className = "actual";  // shown at its own pixel size: 100%
  const c = document.createElement("figcaption");
  c.textContent = caption;
  f.append(img, c);
  return f;
}

function show(kind, figures) {
  const wrap = document.createElement("div");
  wrap.className = `views ${kind}`;
  wrap.dataset.view = kind;
  wrap.append(...figures);
  body.replaceChildren(wrap);
  view.face = null;
  overlay.hidden = false;
}

const cursorFace = () => (tiles[state.cursor] ? tiles[state.cursor].dataset.faceId : null);

export async function loupe() {
  const id = (overlayOpen() && view.face) || cursorFace();
  if (!id) return;
  const size = Number(document.body.dataset.targetSize || 512);
  show("loupe", [
    figure(await signed(`/faces/${id}/loupe?part=aligned&size=${size}`), `face ${id} aligned at ${size} px (100%)`),
    figure(await signed(`/faces/${id}/loupe?part=region`), `face ${id}: the photo's own pixels (100%)`),
  ]);
}

export async function compare() {
  const ids = chosenIds().slice(0, 4);
  if (ids.length < 2) { toast("select 2 to 4 faces (ctrl/⌘-click or shift-click), then press c"); return; }
  const figs = [];
  for (const id of ids) figs.push(figure(await signed(`/faces/${id}/preview`), `face ${id}`));
  show("compare", figs);
}

export function keepBest() {
  const id = (overlayOpen() && view.face) || cursorFace();
  if (!id) return;
  return enqueue(async () => {
    try {
      const out = await (await post(`/api/faces/${id}/keep-best`)).json();
      for (const c of out.changes) markFace(c.face_id, c.decision, c.rating);
      setCounts(out.counts);
      toast(`kept the best of ${out.changes.length} near duplicates, rejected the rest (u undoes)`);
    } catch (e) {
      toast(`not done: ${e.message}`, "error");
    }
  });
}
