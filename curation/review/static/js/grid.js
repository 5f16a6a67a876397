// The face grid: cursor, selection (click, ctrl/cmd-click, shift-click, all on the page, all matching the
// filter), decisions and ratings (one request each, typed-ahead ones batched), undo, paging.
import { enqueue, navigate, post, getJSON, stats } from "./api.js";
import { $, $$, markFace, setCounts, toast } from "./ui.js";

export const gridEl = $("#grid");
export const tiles = gridEl ? $$(".tile", gridEl) : [];
export const state = { cursor: 0, anchor: null, selected: new Set(), matching: null };
export const isFaces = () => Boolean(gridEl && gridEl.dataset.kind === "faces");

export function paint() {
  tiles.forEach((t, i) => {
    t.classList.toggle("cursor", i === state.cursor);
    t.classList.toggle("selected", state.matching !== null || state.selected.has(i));
  });
  const info = $("#selection-info");
  if (info) {
    const n = state.matching ? state.matching.length : state.selected.size;
    info.textContent = n ? `${n} selected${state.matching ? " (all matching the filter)" : ""} · Esc clears` : "";
  }
}

export function columns() {
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

export function clearSelection() {
  state.selected.clear();
  state.matching = null;
  state.anchor = null;
}

export function setCursor(i, extend) {
  i = Math.max(0, Math.min(tiles.length - 1, i));
  if (extend) {
    if (state.anchor === null) state.anchor = state.cursor;
    state.selected.clear();
    state.matching = null;
    for (let k = Math.min(state.anchor, i); k <= Math.max(state.anchor, i); k++) state.selected.add(k);
  } else {
    clearSelection();
  }
  state.cursor = i;
  paint();
  if (tiles[i]) tiles[i].scrollIntoView({ block: "nearest" });
}

export function pageLink(rel) {
  const a = $(`.pager a[rel="${rel}"]`);
  return a ? a.getAttribute("href") : null;
}

export function move(delta, extend) {
  if (!tiles.length) return;
  const i = state.cursor + delta;
  if (!extend && i >= tiles.length) {
    const next = pageLink("next");
    if (next) { navigate(next); return; }
  }
  if (!extend && i < 0) {
    const prev = pageLink("prev");
    if (prev) { navigate(prev + "#last"); return; }
  }
  setCursor(i, extend);
}

export function selectPage() {
  state.matching = null;
  tiles.forEach((_, i) => state.selected.add(i));
  paint();
}

export async function selectMatching() {
  if (!gridEl || !gridEl.dataset.snap) return;
  try {
    const out = await getJSON(`/api/snapshots/${gridEl.dataset.snap}`);
    state.matching = out.ids;
    paint();
    toast(`${out.ids.length} faces selected: every face this filter listed`);
  } catch (e) {
    toast(`cannot select them all: ${e.message}`, "error");
  }
}

// The faces a key acts on: everything matching, the selection, or the tile under the cursor.
export function chosenIds() {
  if (state.matching) return state.matching.slice();
  const idx = state.selected.size ? Array.from(state.selected).sort((a, b) => a - b) : [state.cursor];
  return idx.map((i) => tiles[i]).filter((t) => t && t.dataset.faceId).map((t) => Number(t.dataset.faceId));
}

// Decisions typed while an earlier one is still on its way wait in one outbox and go together in the
// next request (each stays its own undo step), so a fast typist is never further behind than one request.
let outbox = null;
export function decide(faceIds, decision, started, reason, rating) {
  faceIds = faceIds.map(Number).filter((x) => x > 0);
  if (!faceIds.length) return Promise.resolve();
  for (const id of faceIds) {
    for (const el of $$(`.tile[data-face-id="${id}"]`)) { el.classList.add("pending"); el.dataset.saved = "0"; }
  }
  const item = { face_ids: faceIds, decision: decision || null, started, reason: reason || null };
  if (rating !== undefined) item.rating = rating;
  if (outbox) { outbox.push(item); return outbox.done; }
  const items = [item];
  outbox = items;
  items.done = enqueue(() => send(items));
  return items.done;
}

const wire = ({ face_ids, decision, reason, rating }) =>
  (rating === undefined ? { face_ids, decision, reason } : { face_ids, decision, reason, rating });

async function send(items) {
  if (outbox === items) outbox = null;  // from now on new decisions start the next request
  const ids = items.flatMap((it) => it.face_ids);
  try {
    const res = items.length === 1
      ? await post("/api/decisions", wire(items[0]))
      : await post("/api/decisions/many", { items: items.map(wire) });
    const out = await res.json();
    for (const c of out.changes) markFace(c.face_id, c.decision, c.rating);
    setCounts(out.counts);
    const now = performance.now();
    for (const it of items) stats.saves.push(now - it.started);
    if (out.kept.length) toast(`${out.kept.length} face(s) no longer exist (deleted elsewhere)`, "error");
  } catch (e) {
    stats.errors += 1;
    toast(`NOT saved: ${e.message}`, "error");
  } finally {
    for (const id of ids) for (const el of $$(`.tile[data-face-id="${id}"]`)) el.classList.remove("pending");
  }
}

export function undo(onDone) {
  return enqueue(async () => {
    try {
      const out = await (await post("/api/undo")).json();
      for (const c of out.changes) markFace(c.face_id, c.decision, c.rating);
      setCounts(out.counts);
      const n = out.changes.length;
      toast(n ? `undone: ${n} decision${n === 1 ? "" : "s"}` : "undone (faces since decided by someone else kept)");
      if (onDone && n) onDone(out.changes[0].face_id);
    } catch (e) {
      toast(e.status === 409 ? e.message : `undo failed: ${e.message}`, e.status === 409 ? "info" : "error");
    }
  });
}

// A key on the grid: decide (or rate) the chosen faces; a single face moves the cursor on, and the last
// tile of a page moves on to the next page once saved.
export function decideHere(decision, e, reason, rating) {
  const ids = chosenIds();
  if (!ids.length) return;
  const bulk = state.matching !== null || state.selected.size > 0;
  const p = decide(ids, decision, e.timeStamp || performance.now(), reason, rating);
  // The cursor moves in a microtask queued after the one that sends the decision: the request leaves
  // before the layout that moving the cursor forces (scrollIntoView), not after it.
  const at = state.cursor;
  queueMicrotask(() => {
    if (bulk) {
      setCursor(state.cursor, false);  // a bulk decision clears the selection
    } else if (decision && at < tiles.length - 1) {
      setCursor(at + 1, false);
    } else if (decision) {
      const next = pageLink("next");
      if (next) navigate(next);
    }
  });
  return p;
}

export function rateHere(n, e) {
  const t = tiles[state.cursor];
  const same = !state.selected.size && !state.matching && t && Number(t.dataset.rating || 0) === n;
  return decideHere(null, e, null, same ? 0 : n);  // the same stars again clear them
}

if (gridEl) {
  gridEl.addEventListener("click", (e) => {
    const t = e.target.closest(".tile");
    if (!t) return;
    const i = tiles.indexOf(t);
    if (e.shiftKey) {
      setCursor(i, true);
    } else if (e.ctrlKey || e.metaKey) {
      // The face under the cursor is part of the selection ctrl/cmd-click starts (as in Lightroom).
      state.matching = null;
      if (!state.selected.size && i !== state.cursor) state.selected.add(state.cursor);
      if (state.selected.has(i)) state.selected.delete(i); else state.selected.add(i);
      state.cursor = i;
      state.anchor = i;
      paint();
    } else {
      setCursor(i, false);
    }
  });
  if (location.hash === "#last") state.cursor = tiles.length - 1;
  paint();
}

for (const [sel, fn] of [["#btn-select-page", selectPage], ["#btn-select-all", selectMatching]]) {
  const b = $(sel);
  if (b) b.addEventListener("click", (e) => { fn(); e.currentTarget.blur(); });
}
