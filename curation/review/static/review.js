// ghosts review: keyboard-first grid, detail overlay, manual crop. Plain JavaScript, no build step.
// Nothing is held only here: every decision is POSTed at once (in order, one at a time) and the page shows
// what the server answered. window.ghostsReview exposes a few figures for tests and the benchmark.
(() => {
  "use strict";

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const body = document.body;
  let CSRF = body.dataset.csrf;
  const stats = { saves: [], pending: 0, errors: 0 };  // saves: keypress-to-saved milliseconds
  window.ghostsReview = stats;

  // ---- server calls, strictly in order -------------------------------------------------------------
  let chain = Promise.resolve();
  function enqueue(job) {
    stats.pending += 1;
    const run = chain.then(job).finally(() => { stats.pending -= 1; });
    chain = run.catch(() => {});
    return run;
  }

  // Leave the page only once every decision typed so far is saved.
  function navigate(url) {
    chain.then(() => { if (url === null) location.reload(); else location.href = url; });
  }

  async function post(url, data, retried = false) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "accept": "application/json", "x-csrf-token": CSRF },
      body: JSON.stringify(data === undefined ? {} : data),
    });
    if (res.status === 403 && !retried) {
      // The server restarted (new CSRF secret) since this page loaded: fetch a fresh token, try once more.
      let fresh = null;
      try { fresh = (await getJSON("/api/csrf")).csrf; } catch (e) { /* report the 403 below */ }
      if (fresh && fresh !== CSRF) { CSRF = fresh; return post(url, data, true); }
    }
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try {
        const j = await res.json();
        msg = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
      } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return res;
  }

  async function getJSON(url) {
    const res = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }

  window.addEventListener("beforeunload", (e) => {
    if (stats.pending > 0) { e.preventDefault(); e.returnValue = ""; }  // a decision is still on its way
  });

  // ---- small UI pieces ----------------------------------------------------------------------------------
  let toastTimer = null;
  function toast(msg, kind = "info") {
    const el = $("#toast");
    el.textContent = msg;
    el.className = "toast " + kind;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 2500);
  }

  function setCounts(c) {
    if (!c) return;
    for (const k of ["accepted", "target", "rejected", "skipped", "undecided"]) {
      const el = $("#count-" + k);
      if (el && c[k] !== undefined) el.textContent = c[k];
    }
    $("#btn-done").dataset.accepted = c.accepted;
  }

  function markFace(faceId, decision) {
    for (const el of $$(`[data-face-id="${faceId}"]`)) {
      if (el.tagName === "BUTTON") continue;
      el.dataset.decision = decision;
      el.dataset.saved = "1";
      const st = el.classList.contains("tile") || el.classList.contains("face-card") ? $(".state", el) : null;
      if (st) st.textContent = decision;
    }
  }

  // ---- the grid ---------------------------------------------------------------------------------------------
  const grid = $("#grid");
  const tiles = grid ? $$(".tile", grid) : [];
  let cursor = 0;
  let anchor = null;
  const selected = new Set();

  function paint() {
    tiles.forEach((t, i) => {
      t.classList.toggle("cursor", i === cursor);
      t.classList.toggle("selected", selected.has(i));
    });
  }

  function columns() {
    if (tiles.length < 2) return 1;
    const top = tiles[0].offsetTop;
    let n = 0;
    while (n < tiles.length && tiles[n].offsetTop === top) n += 1;
    return Math.max(1, n);
  }

  function setCursor(i, extend) {
    i = Math.max(0, Math.min(tiles.length - 1, i));
    if (extend) {
      if (anchor === null) anchor = cursor;
      selected.clear();
      for (let k = Math.min(anchor, i); k <= Math.max(anchor, i); k++) selected.add(k);
    } else {
      anchor = null;
      selected.clear();
    }
    cursor = i;
    paint();
    if (tiles[i]) tiles[i].scrollIntoView({ block: "nearest" });
  }

  function pageLink(rel) {
    const a = $(`.pager a[rel="${rel}"]`);
    return a ? a.getAttribute("href") : null;
  }

  function move(delta, extend) {
    if (!tiles.length) return;
    const i = cursor + delta;
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

  function chosen() {
    const idx = selected.size ? Array.from(selected).sort((a, b) => a - b) : [cursor];
    return idx.map((i) => tiles[i]).filter((t) => t && t.dataset.faceId);
  }

  // Decisions typed while an earlier one is still on its way wait in one outbox and go together in the
  // next request (each stays its own undo step), so a fast typist is never further behind than one request.
  let outbox = null;
  function decide(faceIds, decision, started, reason) {
    faceIds = faceIds.map(Number).filter((x) => x > 0);
    if (!faceIds.length) return Promise.resolve();
    for (const id of faceIds) {
      for (const el of $$(`.tile[data-face-id="${id}"]`)) { el.classList.add("pending"); el.dataset.saved = "0"; }
    }
    const item = { face_ids: faceIds, decision, started, reason: reason || null };
    if (outbox) { outbox.push(item); return outbox.done; }
    const items = [item];
    outbox = items;
    items.done = enqueue(() => send(items));
    return items.done;
  }

  async function send(items) {
    if (outbox === items) outbox = null;  // from now on new decisions start the next request
    const ids = items.flatMap((it) => it.face_ids);
    try {
      const res = items.length === 1
        ? await post("/api/decisions", { face_ids: items[0].face_ids, decision: items[0].decision, reason: items[0].reason })
        : await post("/api/decisions/many", { items: items.map(({ face_ids, decision, reason }) => ({ face_ids, decision, reason })) });
      const out = await res.json();
      for (const c of out.changes) markFace(c.face_id, c.decision);
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

  function undo() {
    return enqueue(async () => {
      try {
        const out = await (await post("/api/undo")).json();
        for (const c of out.changes) markFace(c.face_id, c.decision);
        setCounts(out.counts);
        const n = out.changes.length;
        toast(n ? `undone: ${n} decision${n === 1 ? "" : "s"}` : "undone (faces since decided by someone else kept)");
        const first = out.changes.length ? tiles.findIndex((t) => t.dataset.faceId === String(out.changes[0].face_id)) : -1;
        if (first >= 0 && !overlayOpen()) setCursor(first, false);
      } catch (e) {
        toast(e.status === 409 ? "nothing to undo" : `undo failed: ${e.message}`, e.status === 409 ? "info" : "error");
      }
    });
  }

  function decideHere(decision, e, reason) {
    const ts = chosen();
    if (!ts.length) return;
    const p = decide(ts.map((t) => t.dataset.faceId), decision, e.timeStamp || performance.now(), reason);
    if (ts.length === 1 && !selected.size) {
      if (cursor < tiles.length - 1) setCursor(cursor + 1, false);
    } else {
      setCursor(cursor, false);  // a bulk decision clears the selection
    }
    return p;
  }

  if (grid) {
    grid.addEventListener("click", (e) => {
      const t = e.target.closest(".tile");
      if (!t) return;
      const i = tiles.indexOf(t);
      if (e.shiftKey) {
        setCursor(i, true);
      } else if (e.ctrlKey || e.metaKey) {
        if (selected.has(i)) selected.delete(i); else selected.add(i);
        cursor = i;
        paint();
      } else {
        setCursor(i, false);
      }
    });
    grid.addEventListener("dblclick", (e) => {
      const t = e.target.closest(".tile");
      if (t) { setCursor(tiles.indexOf(t), false); openDetail(); }
    });
    if (location.hash === "#last") cursor = tiles.length - 1;
    paint();
  }

  // ---- "Selection done" and help ------------------------------------------------------------------------
  const doneBtn = $("#btn-done");
  let doneTimer = null;
  doneBtn.addEventListener("click", () => {
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
        toast(out.message);
        doneBtn.dataset.state = "done";
      } catch (e) {
        toast(`Selection not closed: ${e.message}`, "error");
      }
    });
  });

  const help = $("#help");
  $("#btn-help").addEventListener("click", (e) => { help.hidden = false; e.currentTarget.blur(); });
  doneBtn.addEventListener("click", () => doneBtn.blur());  // keys go back to the grid at once

  // ---- the detail overlay -------------------------------------------------------------------------------------
  const overlay = $("#overlay");
  const overlayBody = $("#overlay-body");
  let facesChanged = false;  // a manual face was added or a detection deleted: the grid reloads on close
  const overlayOpen = () => !overlay.hidden;

  let loads = 0;  // only the newest of several quick panel loads may fill the view
  async function loadPanel(imageId, faceId, into) {
    const seq = ++loads;
    const url = `/images/${imageId}/panel` + (faceId ? `?face=${faceId}` : "");
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) { toast(`cannot open photo ${imageId}: HTTP ${res.status}`, "error"); return false; }
    const html = await res.text();
    if (seq !== loads) return false;
    into.innerHTML = html;  // server-rendered, autoescaped
    fitPhoto($(".panel", into));
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

  // The face the overlay's keys act on: set before its panel loads, so quick keys never hit the previous one.
  let overlayFace = null;
  async function openDetail() {
    const t = tiles[cursor];
    if (!t) return;
    overlayFace = t.dataset.faceId || null;
    overlay.hidden = false;
    await loadPanel(t.dataset.imageId, t.dataset.faceId, overlayBody);
  }

  function closeOverlay() {
    overlay.hidden = true;
    overlayFace = null;
    overlayBody.innerHTML = "";
    manual.reset();
    if (facesChanged) navigate(null);
  }

  overlay.addEventListener("click", (e) => { if (e.target === overlay) closeOverlay(); });
  for (const el of [overlay, help]) {
    el.addEventListener("click", (e) => {
      if (e.target.closest('[data-action="close"]')) { if (el === overlay) closeOverlay(); else el.hidden = true; }
    });
  }

  function currentPanel() {
    return overlayOpen() ? $(".panel", overlayBody) : $(".detail-page .panel");
  }

  async function refreshPanel() {
    const panel = currentPanel();
    if (!panel) return;
    if (overlayOpen()) await loadPanel(panel.dataset.imageId, panel.dataset.focus, overlayBody);
    else navigate(null);
  }

  // ---- manual crop: four clicks -> FFHQ quad -> aligned preview -> save ---------------------------------------
  const STEPS = [
    ["eye_left", "click the centre of the eye on the LEFT of the picture"],
    ["eye_right", "click the centre of the eye on the RIGHT of the picture"],
    ["mouth_left", "click the mouth corner on the LEFT of the picture"],
    ["mouth_right", "click the mouth corner on the RIGHT of the picture"],
  ];
  const manual = {
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
      $(".manual-hint", panel).textContent = `1/4: ${STEPS[0][1]}`;
    },
  };

  const SVGNS = "http://www.w3.org/2000/svg";
  async function manualClick(e, panel) {
    const svg = $("svg.marks", panel);
    const box = svg.getBoundingClientRect();
    const w = Number(panel.dataset.width), h = Number(panel.dataset.height);
    const x = ((e.clientX - box.left) / box.width) * w;
    const y = ((e.clientY - box.top) / box.height) * h;
    const [key] = STEPS[manual.step];
    manual.points[key] = [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
    const g = $(".clicks", panel);
    const c = document.createElementNS(SVGNS, "circle");
    c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", Number(g.dataset.r) * 2);
    g.appendChild(c);
    manual.step += 1;
    const hint = $(".manual-hint", panel);
    if (manual.step < STEPS.length) {
      hint.textContent = `${manual.step + 1}/4: ${STEPS[manual.step][1]}`;
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
      hint.textContent = "this is the aligned crop: save it, or cancel and click again";
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
        facesChanged = true;
        toast(`face ${out.face_id} added (cropped by hand)`);
        manual.reset();
        panel.dataset.focus = out.face_id;
        if (overlayOpen()) overlayFace = String(out.face_id);
        await refreshPanel();
      } catch (err) {
        toast(`face not saved: ${err.message}`, "error");
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
      await enqueue(async () => {
        try {
          const c = await (await post(`/api/faces/${btn.dataset.faceId}/delete`)).json();
          setCounts(c);
          facesChanged = true;
          toast(`face ${btn.dataset.faceId} deleted`);
          await refreshPanel();
        } catch (err) {
          toast(`not deleted: ${err.message}`, "error");
        }
      });
    } else if (action === "manual-start") {
      manual.start();
    } else if (action === "manual-cancel") {
      manual.reset();
    } else if (action === "manual-save") {
      manualSave(panel);
    } else if (action === "open-image" && overlayOpen()) {
      e.preventDefault();
      manual.reset();
      overlayFace = null;  // another photo: no face of it is in focus until one is clicked
      await loadPanel(btn.dataset.imageId, null, overlayBody);
    }
  });

  // ---- keys ----------------------------------------------------------------------------------------------------
  const MOVES = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1],
                  h: [-1, 0], l: [1, 0], k: [0, -1], j: [0, 1] };
  const DECISION_KEYS = { a: "accepted", r: "rejected", s: "skipped", 0: "undecided" };

  // Shift+R: reject with a reason tag, picked with a digit.
  const reasons = $("#reasons");
  let onReason = null;
  function askReason(then) {
    onReason = then;
    reasons.hidden = false;
  }
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

  async function detailDecide(focus, decision, e, reason) {
    decide([focus], decision, e.timeStamp || performance.now(), reason);
    const onGrid = tiles[cursor] && tiles[cursor].dataset.faceId === String(focus);
    if (overlayOpen() && onGrid && cursor < tiles.length - 1) {
      setCursor(cursor + 1, false);
      await openDetail();
    }
  }

  async function detailKey(e) {
    const panel = currentPanel();
    const focus = overlayOpen() ? overlayFace : panel && panel.dataset.focus;
    const key = e.key;
    if (key === "R" && focus) {
      askReason((reason) => detailDecide(focus, "rejected", e, reason));
      return true;
    }
    let decision = DECISION_KEYS[key.toLowerCase()] || null;
    if (key === "ArrowRight") decision = "accepted";
    if (key === "ArrowLeft") decision = "rejected";
    if (decision && focus) {
      await detailDecide(focus, decision, e);
      return true;
    }
    if (overlayOpen() && (key === "ArrowDown" || key === "j" || key === "ArrowUp" || key === "k")) {
      const d = key === "ArrowDown" || key === "j" ? 1 : -1;
      const i = cursor + d;
      if (i >= 0 && i < tiles.length) { setCursor(i, false); await openDetail(); }
      return true;
    }
    if (key === "m") { manual.start(); return true; }
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
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key;
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
    if (overlayOpen() || body.dataset.view === "detail") {
      if (await detailKey(e)) e.preventDefault();
      return;
    }
    const mv = MOVES[key] || MOVES[key.toLowerCase()];
    if (mv) {
      e.preventDefault();
      move(mv[0] + mv[1] * columns(), e.shiftKey);
      return;
    }
    if (key === "R" && grid && grid.dataset.kind === "faces") {
      e.preventDefault();
      askReason((reason) => decideHere("rejected", e, reason));
      return;
    }
    const decision = DECISION_KEYS[key.toLowerCase()];
    if (decision && grid && grid.dataset.kind === "faces") { e.preventDefault(); decideHere(decision, e); return; }
    if (key === "u") { e.preventDefault(); undo(); return; }
    if (key === " " || key === "Enter") { e.preventDefault(); openDetail(); return; }
    if (key === "Escape") { setCursor(cursor, false); return; }
    if (key === "n" || key === "PageDown") { const u = pageLink("next"); if (u) { e.preventDefault(); navigate(u); } return; }
    if (key === "p" || key === "PageUp") { const u = pageLink("prev"); if (u) { e.preventDefault(); navigate(u); } }
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
})();
