// Keys (keyboard first) and touch: the grid, the detail view, the reject-reason picker and the help.
import { navigate } from "./api.js";
import {
  clearSelection, columns, decideHere, gridEl, isFaces, move, pageLink, paint, rateHere, selectMatching,
  selectPage, setCursor, state, tiles, undo,
} from "./grid.js";
import { closeOverlay, currentPanel, detailDecide, manual, openDetail, overlayOpen, refreshPanel, step, view } from "./detail.js";
import { $ } from "./ui.js";
import { compare, keepBest, loupe } from "./views.js";

const body = document.body;
const help = $("#help");
const reasons = $("#reasons");
const MOVES = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1],
                h: [-1, 0], l: [1, 0], k: [0, -1], j: [0, 1] };
const DECISION_KEYS = { a: "accepted", r: "rejected", s: "skipped", 0: "undecided" };

// Shift+R: reject with a reason tag, picked with a digit.
let onReason = null;
function askReason(then) { onReason = then; reasons.hidden = false; }
function chooseReason(reason) {
  const then = onReason;
  onReason = null;
  reasons.hidden = true;
  if (then && reason) then(reason);
}
reasons.addEventListener("click", (e) => {
  const b = e.target.closest("[data-reason]");
  if (b) chooseReason(b.dataset.reason);
  else if (e.target === reasons || e.target.closest('[data-action="close"]')) chooseReason(null);
});
help.addEventListener("click", (e) => { if (e.target === help || e.target.closest('[data-action="close"]')) help.hidden = true; });
$("#btn-help").addEventListener("click", (e) => { help.hidden = false; e.currentTarget.blur(); });

function focusFace() {
  const panel = currentPanel();
  return overlayOpen() ? view.face : panel && panel.dataset.focus;
}

async function detailKey(e) {
  const focus = focusFace();
  const key = e.key;
  if (key === "R" && focus) {
    askReason((reason) => detailDecide(focus, "rejected", e, reason));
    return true;
  }
  if (/^[1-5]$/.test(key) && focus) { await detailDecide(focus, null, e, null, Number(key)); return true; }
  let decision = DECISION_KEYS[key.toLowerCase()] || null;
  if (key === "ArrowRight") decision = "accepted";
  if (key === "ArrowLeft") decision = "rejected";
  if (decision && focus) { await detailDecide(focus, decision, e); return true; }
  if (overlayOpen() && (key === "ArrowDown" || key === "j")) { await step(1); return true; }
  if (overlayOpen() && (key === "ArrowUp" || key === "k")) { await step(-1); return true; }
  if (key === "m") { manual.start(); return true; }
  if (key === "z") { await loupe(); return true; }
  if (key === "d") { await keepBest(); await refreshPanel(); return true; }
  if (key === "u") { await undo(); await refreshPanel(); return true; }
  if (key === "Escape" || (key === " " && overlayOpen())) {
    if (manual.active) { manual.reset(); return true; }
    if (overlayOpen()) closeOverlay();
    return true;
  }
  return false;
}

document.addEventListener("keydown", async (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea")) return;
  const key = e.key;
  if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === "a" && isFaces() && !overlayOpen()) {
    e.preventDefault();
    if (e.shiftKey) selectMatching(); else selectPage();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (!reasons.hidden) {
    e.preventDefault();
    if (key === "Escape") chooseReason(null);
    const b = /^[1-9]$/.test(key) ? $(`#reasons [data-key="${key}"]`) : null;
    if (b) chooseReason(b.dataset.reason);
    return;
  }
  if (!help.hidden) {
    if (key === "Escape" || key === "?") { help.hidden = true; e.preventDefault(); }
    return;
  }
  if (key === "?") { help.hidden = false; e.preventDefault(); return; }
  if (body.dataset.view === "people") return;  // people.js has the people view's keys
  if (overlayOpen() || body.dataset.view === "detail") {
    if (await detailKey(e)) e.preventDefault();
    return;
  }
  const mv = MOVES[key] || MOVES[key.toLowerCase()];
  if (mv) { e.preventDefault(); move(mv[0] + mv[1] * columns(), e.shiftKey); return; }
  if (key === "R" && isFaces()) {
    e.preventDefault();
    askReason((reason) => decideHere("rejected", e, reason));
    return;
  }
  if (/^[1-5]$/.test(key) && isFaces()) { e.preventDefault(); rateHere(Number(key), e); return; }
  const decision = DECISION_KEYS[key.toLowerCase()];
  if (decision && isFaces()) { e.preventDefault(); decideHere(decision, e); return; }
  if (key === "u") {
    e.preventDefault();
    undo((faceId) => {
      const i = tiles.findIndex((t) => t.dataset.faceId === String(faceId));
      if (i >= 0 && !overlayOpen()) setCursor(i, false);
    });
    return;
  }
  if (key === " " || key === "Enter") { e.preventDefault(); openDetail(); return; }
  if (key === "z" && isFaces()) { e.preventDefault(); loupe(); return; }
  if (key === "c" && isFaces()) { e.preventDefault(); compare(); return; }
  if (key === "d" && isFaces()) { e.preventDefault(); keepBest(); return; }
  if (key === "Escape") { clearSelection(); paint(); return; }
  if (key === "n" || key === "PageDown") { const u = pageLink("next"); if (u) { e.preventDefault(); navigate(u); } return; }
  if (key === "p" || key === "PageUp") { const u = pageLink("prev"); if (u) { e.preventDefault(); navigate(u); } }
});

// ---- touch: swipe right accepts, swipe left rejects (a tile on the grid, the face in the detail view) ------
const SWIPE_PX = 60;
let touch = null;
document.addEventListener("pointerdown", (e) => {
  if (e.pointerType !== "touch") return;
  touch = { x: e.clientX, y: e.clientY, tile: e.target.closest && e.target.closest(".tile"), t: e.timeStamp };
}, { passive: true });
document.addEventListener("pointerup", (e) => {
  if (e.pointerType !== "touch" || !touch) return;
  const dx = e.clientX - touch.x, dy = e.clientY - touch.y;
  const start = touch;
  touch = null;
  if (Math.abs(dx) < SWIPE_PX || Math.abs(dy) > Math.abs(dx) / 2) return;
  const decision = dx > 0 ? "accepted" : "rejected";
  if (overlayOpen() || body.dataset.view === "detail") {
    const focus = focusFace();
    if (focus && !manual.active) detailDecide(focus, decision, e);
  } else if (start.tile && gridEl && isFaces()) {
    setCursor(tiles.indexOf(start.tile), false);
    decideHere(decision, e);
  }
});
