// People: the faces grouped by person. On /people, one card per person: move with the arrows, mark with x
// (or ctrl/⌘-click, or a tap), m twice merges the marked people into the one under the cursor, Enter shows
// the person's faces in the grid. On the grid filtered to one person (/?person=N), x splits the selected
// faces off into a new person; sorted by person, each tile is labelled with its person. Beside the counter,
// on every page: the accepted faces of the largest person and account against the caps, with a warning when
// one is above its cap.
import { enqueue, getJSON, navigate, post } from "./api.js";
import { chosenIds, clearSelection, gridEl, paint, state, tiles } from "./grid.js";
import { overlayOpen } from "./detail.js";
import { $, $$, toast } from "./ui.js";

const body = document.body;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// ---- the caps beside the counter ------------------------------------------------------------------------
const capsEl = $("#caps");

function capPart(label, top, cap, over, name) {
  const el = document.createElement("span");
  const [who, n] = top[0] || [null, 0];
  el.className = "cap";
  el.textContent = `${label}: most ${n}${who === null ? "" : ` (${name(who)})`}${cap ? ` / max ${cap}` : " (no cap)"}`
    + (over.length ? ` ⚠ ${over.length} over` : "");
  el.dataset.over = over.length ? "1" : "";
  return el;
}

export function showCaps(c) {
  if (!capsEl || !c) return;
  const over = c.over_person.length + c.over_owner.length;
  capsEl.replaceChildren(
    capPart("per person", c.top_persons, c.max_per_person, c.over_person, (p) => `person ${p}`),
    document.createTextNode(" · "),
    capPart("per account", c.top_owners, c.max_per_owner, c.over_owner, (o) => `@${o}`),
  );
  capsEl.dataset.over = over ? "1" : "";
  capsEl.title = over
    ? [...c.over_person.map(([p, n]) => `person ${p}: ${n} accepted, cap ${c.max_per_person}`),
       ...c.over_owner.map(([o, n]) => `@${o}: ${n} accepted, cap ${c.max_per_owner}`)].join("\n")
    : "accepted faces of the person and the account with the most, against the caps (ghosts people --max-per-person N --max-per-owner N)";
}

let capsTimer = null;
async function refreshCaps() {
  try { showCaps(await getJSON("/api/people/caps")); } catch (e) { /* the next change tries again */ }
}
document.addEventListener("ghosts:counts", () => { clearTimeout(capsTimer); capsTimer = setTimeout(refreshCaps, 150); });
if (capsEl) refreshCaps();

// ---- the people view ----------------------------------------------------------------------------------------
const peopleEl = $("#people");
const cards = peopleEl ? $$(".person", peopleEl) : [];
const ps = { cursor: 0, marked: new Set(), armed: false };
const info = $("#people-info");
const live = () => cards.filter((c) => c.isConnected);
const personOf = (card) => Number(card.dataset.personId);

function paintPeople() {
  const list = live();
  ps.cursor = Math.max(0, Math.min(list.length - 1, ps.cursor));
  list.forEach((c, i) => {
    c.classList.toggle("cursor", i === ps.cursor);
    c.classList.toggle("selected", ps.marked.has(personOf(c)));
  });
  if (info && !ps.armed) {
    info.textContent = ps.marked.size
      ? `${plural(ps.marked.size, "person")} marked · m merges them into the person under the cursor · Esc clears`
      : "";
  }
}

function peopleColumns(list) {
  if (list.length < 2) return 1;
  const top = list[0].offsetTop;
  let n = 0;
  while (n < list.length && list[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

function moveTo(i) {
  const list = live();
  ps.cursor = Math.max(0, Math.min(list.length - 1, i));
  disarm();
  paintPeople();
  if (list[ps.cursor]) list[ps.cursor].scrollIntoView({ block: "nearest" });
}

function toggleMark(card) {
  const id = personOf(card);
  if (ps.marked.has(id)) ps.marked.delete(id); else ps.marked.add(id);
  disarm();
  paintPeople();
}

function disarm() {
  ps.armed = false;
  const b = $("#btn-merge");
  if (b) b.classList.remove("armed");
}

function setCard(card, p) {
  card.dataset.faces = p.faces;
  card.dataset.accepted = p.accepted;
  card.dataset.over = p.over_cap ? "1" : "";
  $(".n-faces", card).textContent = plural(p.faces, "face");
  $(".n-accepted", card).textContent = `${p.accepted} accepted`;
}

// m (or the button) once arms, twice merges: a merge moves faces between people at once.
function merge() {
  const list = live();
  const target = list[ps.cursor];
  if (!target) return;
  const sources = [...ps.marked].filter((p) => p !== personOf(target));
  if (!sources.length) { toast("mark the people to merge (x), move the cursor onto the one they are, then press m"); return; }
  if (!ps.armed) {
    ps.armed = true;
    const b = $("#btn-merge");
    if (b) b.classList.add("armed");
    if (info) info.textContent = `press m again to merge ${sources.map((p) => `person ${p}`).join(", ")} into person ${personOf(target)} · Esc cancels`;
    return;
  }
  disarm();
  return enqueue(async () => {
    try {
      const out = await (await post("/api/people/merge", { target: personOf(target), sources })).json();
      for (const c of live()) if (out.merged.includes(personOf(c))) c.remove();
      setCard(target, out.person);
      ps.marked.clear();
      ps.cursor = live().indexOf(target);
      const total = $("#people-total");
      if (total) total.textContent = plural(live().length, "person").replace("persons", "people");
      paintPeople();
      toast(`merged ${out.merged.map((p) => `person ${p}`).join(", ")} into person ${out.target}: ${plural(out.person.faces, "face")}, ${out.person.accepted} accepted`);
    } catch (e) {
      toast(`not merged: ${e.message}`, "error");
    }
  });
}

if (peopleEl) {
  peopleEl.addEventListener("click", (e) => {
    const card = e.target.closest(".person");
    if (!card || e.target.closest("a")) return;
    const i = live().indexOf(card);
    if (e.ctrlKey || e.metaKey || e.shiftKey || (e.pointerType || lastPointer) === "touch") toggleMark(card);
    moveTo(i);
  });
  paintPeople();
}
let lastPointer = "mouse";  // click events carry no pointerType in every browser: remember the last one
document.addEventListener("pointerdown", (e) => { lastPointer = e.pointerType; }, { passive: true });
// The caps, set from the people view (the same workspace settings as `ghosts people --max-per-person N`).
const capsForm = $("#caps-form");
if (capsForm) {
  capsForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const caps = {};
    for (const k of ["max_per_person", "max_per_owner"]) {
      const v = capsForm.elements[k].value.trim();
      caps[k] = v === "" ? null : Number(v);
    }
    enqueue(async () => {
      try {
        const out = await (await post("/api/people/caps", caps)).json();
        showCaps(out);
        const over = new Set(out.over_person.map(([p]) => p));
        for (const c of live()) c.dataset.over = over.has(personOf(c)) ? "1" : "";
        toast("caps set: the counter and the people view follow them");
      } catch (err) {
        toast(`caps not set: ${err.message}`, "error");
      }
    });
  });
}
const mergeBtn = $("#btn-merge");
if (mergeBtn) mergeBtn.addEventListener("click", (e) => { e.currentTarget.blur(); merge(); });

const MOVES = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1],
                h: [-1, 0], l: [1, 0], k: [0, -1], j: [0, 1] };

function peopleKey(e) {
  const list = live();
  const key = e.key;
  const mv = MOVES[key] || MOVES[key.toLowerCase()];  // shift + l arrives as "L"
  if (mv) {
    const from = ps.cursor;
    moveTo(from + mv[0] + mv[1] * peopleColumns(list));
    if (e.shiftKey && list[from]) { ps.marked.add(personOf(list[from])); ps.marked.add(personOf(list[ps.cursor])); paintPeople(); }
    return true;
  }
  if (key === "x" && list[ps.cursor]) { toggleMark(list[ps.cursor]); return true; }
  if (key === "m") { merge(); return true; }
  if ((key === "Enter" || key === " ") && list[ps.cursor]) { navigate(`/?person=${personOf(list[ps.cursor])}`); return true; }
  if (key === "g") { navigate("/"); return true; }
  if (key === "Escape") { ps.marked.clear(); disarm(); paintPeople(); return true; }
  return false;
}

// ---- the grid filtered to one person: its counts, and split the selected faces off -------------------------
const bar = $("#person-bar");
const barPerson = bar ? Number(bar.dataset.person) : null;

function showBar(p) {
  if (!bar) return;
  $(".bar-faces", bar).textContent = plural(p.faces, "face");
  $(".bar-accepted", bar).textContent = `${p.accepted} accepted`;
  bar.dataset.over = p.over_cap ? "1" : "";
}

async function refreshBar() {
  try { showBar(await getJSON(`/api/people/${barPerson}`)); } catch (e) {
    if (e.status === 404) $(".bar-faces", bar).textContent = "no faces left (merged or split away)";
  }
}

function split() {
  if (!barPerson) { toast("split works on one person's faces: open them from the people view (g) or filter by person"); return; }
  const ids = chosenIds();
  if (!ids.length) return;
  return enqueue(async () => {
    try {
      const out = await (await post("/api/people/split", { face_ids: ids })).json();
      for (const id of ids) {
        for (const el of $$(`.tile[data-face-id="${id}"]`)) {
          el.classList.add("moved");
          el.dataset.person = out.person.id;
          el.title = `moved to person ${out.person.id} · ${el.title}`;
        }
      }
      showBar(out.from);
      if (state.selected.size || state.matching) { clearSelection(); paint(); }
      toast(`moved ${plural(out.moved, "face")} off person ${out.from.id} into the new person ${out.person.id} (merging them back on the people view undoes it)`);
    } catch (e) {
      toast(`not split: ${e.message}`, "error");
    }
  });
}

if (bar) {
  refreshBar();
  const b = $("#btn-split", bar);
  if (b) b.addEventListener("click", (e) => { e.currentTarget.blur(); split(); });
  document.addEventListener("ghosts:counts", () => refreshBar());
}

// ---- the grid sorted by person: each tile says whose face it is, and each person's first face is marked ---------
async function labelPeople() {
  const ids = tiles.map((t) => t.dataset.faceId).filter(Boolean);
  if (!ids.length) return;
  try {
    const who = new Map(await getJSON(`/api/people/of?ids=${ids.join(",")}`));
    let last;
    for (const t of tiles) {
      const p = who.get(Number(t.dataset.faceId));
      t.dataset.person = p === null || p === undefined ? "" : p;
      const meta = $(".meta", t);
      if (meta && !$(".hint-person", meta)) {
        const label = document.createElement("span");
        label.className = "hint hint-person";
        label.textContent = t.dataset.person ? `person ${t.dataset.person}` : "no person yet";
        meta.append(label);
      }
      t.classList.toggle("person-start", t.dataset.person !== last);
      last = t.dataset.person;
    }
  } catch (e) { /* labels are a help, the grid works without them */ }
}
if (gridEl && new URLSearchParams(location.search).get("sort") === "person") labelPeople();

function gridKey(e) {
  if (!gridEl || overlayOpen()) return false;
  if (e.key === "x") { split(); return true; }
  if (e.key === "g") { navigate("/people"); return true; }
  return false;
}

// ---- keys: the people view's own; on the grid, x and g (keys.js leaves both alone) -----------------------
document.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (!$("#help").hidden || !$("#reasons").hidden) return;
  const handled = body.dataset.view === "people" ? peopleKey(e) : body.dataset.view === "faces" && gridKey(e);
  if (handled) e.preventDefault();
});

