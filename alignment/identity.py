"""Who is who: 128-D face descriptors and the faces grouped into people.

- Descriptors come from dlib's face recognition ResNet (`alignment.models.face_recognizer`). Two faces of the
  same person are usually closer than 0.6 (Euclidean); see docs/responsible-use.md for what that does and
  does not mean.
- `face_descriptor` takes a photo and the 68 landmarks analysis already found (no second detection).
- `crop_descriptor` takes an FFHQ-aligned crop (an archive image, a generated face): the face's place in such a
  crop is fixed, so the landmarks are predicted inside a fixed box (`CROP_FACE_BOX`) and no detector runs.
  Measured on the 68 faces of the shared test photos (256-px crops): median 0.055 from the photo's own
  descriptor, against 0.14 for a fixed landmark template and 0.06 for detecting the face again in the crop
  (which costs a detection and misses some small crops).
- People: `cluster_people` runs Chinese whispers (Biemann 2006) over the graph whose edges join faces closer
  than the threshold. It is incremental: faces already assigned keep their person (they are clamped), new
  faces join the people they are linked to or form new ones, and person ids are never reused. A reviewer's
  `merge_people` and `split_faces` therefore survive every later run.

Pure functions on arrays and dataclasses; nothing here knows the catalog.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from alignment.models import face_detector, face_recognizer, landmark_predictor

DESCRIPTOR_DIM = 128
SAME_PERSON = 0.6  # dlib's threshold: the same person below this distance (99.38% on LFW pairs)
# Where dlib's HOG detector puts the face box in an FFHQ-aligned crop, as fractions of the crop side
# (x0, y0, x1, y1): the mean over the 68 faces of the shared test photos (spread about 0.05).
CROP_FACE_BOX = (0.191, 0.285, 0.815, 0.909)

FaceId = Hashable


# --- descriptors --------------------------------------------------------------------------------------------


def _rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit RGB or grey image, got {a.dtype} {a.shape}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _rectangle(box):
    import dlib

    x0, y0, x1, y1 = (float(v) for v in box)
    return dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)


def _shape(landmarks68, box):
    import dlib

    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"expected 68 x 2 finite landmarks, got an array of shape {lm.shape}")
    if box is None:  # the landmarks' bounds: only the chip alignment uses the box, and it reads the points
        box = (*lm.min(axis=0), *(lm.max(axis=0) + 1))
    return dlib.full_object_detection(_rectangle(box), [dlib.point(round(x), round(y)) for x, y in lm])


def face_descriptor(
    rgb: np.ndarray,
    landmarks68,
    box=None,  # [x0, y0, x1, y1] (exclusive ends) as in alignment.detect.Detection; None: the landmarks' bounds
    *,
    jitters: int = 0,  # > 1: average this many randomly jittered copies (slower, slightly more stable)
) -> np.ndarray:
    """The 128-D descriptor (float32) of the face with these 68 landmarks in a photo."""
    return face_descriptors(rgb, [(landmarks68, box)], jitters=jitters)[0]


def face_descriptors(
    rgb: np.ndarray,
    faces: Iterable,  # (landmarks68, box) pairs, or objects with .landmarks and .box (a Detection)
    *,
    jitters: int = 0,
) -> np.ndarray:
    """Descriptors [N, 128] float32 of several faces of one photo, in one call to the network."""
    import dlib

    img = _rgb(rgb)
    shapes = dlib.full_object_detections()
    for f in faces:
        landmarks, box = (f.landmarks, f.box) if hasattr(f, "landmarks") else f
        shapes.append(_shape(landmarks, box))
    if len(shapes) == 0:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32)
    vectors = face_recognizer().compute_face_descriptor(img, shapes, int(jitters))
    return np.array([list(v) for v in vectors], dtype=np.float32)


def crop_descriptor(aligned: np.ndarray, *, jitters: int = 0) -> np.ndarray:
    """The 128-D descriptor (float32) of the face in an FFHQ-aligned square crop (any size; 128 px or more
    keeps it within about 0.1 of the photo's own descriptor, 64 px within about 0.2)."""
    img = _rgb(aligned)
    h, w = img.shape[:2]
    if h != w or h < 16:
        raise ValueError(f"expected a square aligned face crop of 16 px or more, got {w}x{h}")
    box = tuple(v * w for v in CROP_FACE_BOX)
    shape = landmark_predictor()(img, _rectangle(box))
    v = face_recognizer().compute_face_descriptor(img, shape, int(jitters))
    return np.array(list(v), dtype=np.float32)


def crop_face_score(aligned: np.ndarray, *, size: int = 192) -> float:
    """How face-like an aligned crop is: the best score of dlib's HOG frontal filters on it at `size` px (a face
    fills about half an FFHQ crop, so at 192 px it meets the detector's 80 px window). Real faces score above
    0 (0.1-2.6 on the shared photos' 64-px crops), an untrained generator's blobs -1 (nothing found). A
    descriptor of something that is not a face means nothing, so this is asked first."""
    img = _rgb(aligned)
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    grey = cv2.cvtColor(cv2.resize(img, (size, size), interpolation=interp), cv2.COLOR_RGB2GRAY)
    _, scores, _ = face_detector("hog").run(grey, 0, -1.0)
    return max((float(x) for x in scores), default=-1.0)


def crop_descriptors(crops: Iterable[np.ndarray], *, jitters: int = 0) -> np.ndarray:
    """Descriptors [N, 128] float32 of aligned crops."""
    out = [crop_descriptor(c, jitters=jitters) for c in crops]
    return np.stack(out) if out else np.zeros((0, DESCRIPTOR_DIM), np.float32)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] between two sets of descriptors."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, DESCRIPTOR_DIM)
    b = np.asarray(b, dtype=np.float64).reshape(-1, DESCRIPTOR_DIM)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def nearest(queries: np.ndarray, pool: np.ndarray, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the index of its nearest descriptor in `pool` and the distance (blockwise: memory
    stays about block x len(pool))."""
    queries = np.asarray(queries).reshape(-1, DESCRIPTOR_DIM)
    if len(pool) == 0:
        raise ValueError("nothing to compare with: the pool of descriptors is empty")
    idx = np.empty(len(queries), np.int64)
    dist = np.empty(len(queries), np.float64)
    for s in range(0, len(queries), block):
        d = distances(queries[s : s + block], pool)
        idx[s : s + block] = d.argmin(axis=1)
        dist[s : s + block] = d[np.arange(len(d)), idx[s : s + block]]
    return idx, dist


@dataclass(frozen=True)
class Match:
    face: FaceId
    distance: float


def faces_like(
    query: np.ndarray, descriptors: Mapping[FaceId, np.ndarray], *, threshold: float = SAME_PERSON
) -> list[Match]:
    """Every face closer to `query` than `threshold`, nearest first (removal by face: a lower threshold is
    stricter)."""
    ids = list(descriptors)
    if not ids:
        return []
    d = distances(np.asarray(query), np.stack([descriptors[i] for i in ids]))[0]
    order = np.argsort(d, kind="stable")
    return [Match(ids[i], float(d[i])) for i in order if d[i] < threshold]


# --- people ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class People:
    """Faces grouped into people. Person ids are positive ints, never reused (`next_id` is the next unused
    one, so a person merged away never comes back under another face)."""

    faces: dict = field(default_factory=dict)  # face id -> person id
    next_id: int = 1

    def members(self, person: int) -> list:
        return [f for f, p in self.faces.items() if p == person]

    def sizes(self) -> dict[int, int]:
        """Faces per person, largest first."""
        counts: dict[int, int] = {}
        for p in self.faces.values():
            counts[p] = counts.get(p, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def count(self) -> int:
        return len(set(self.faces.values()))

    def largest_share(self) -> float:
        """The largest person's share of all faces (0 when there are none)."""
        return max(self.sizes().values()) / len(self.faces) if self.faces else 0.0

    def to_dict(self) -> dict:
        return {"next_id": self.next_id, "faces": [[f, p] for f, p in self.faces.items()]}

    @classmethod
    def from_dict(cls, d: Mapping) -> People:
        faces = {(tuple(f) if isinstance(f, list) else f): int(p) for f, p in d["faces"]}
        return cls(faces=faces, next_id=int(d["next_id"]))


def people_from(assignments: Mapping[FaceId, int]) -> People:
    """People from stored face -> person assignments (the next id follows the largest one used)."""
    faces = {f: int(p) for f, p in assignments.items()}
    if any(p < 1 for p in faces.values()):
        raise ValueError("person ids must be positive")
    return People(faces=faces, next_id=max(faces.values(), default=0) + 1)


def _neighbours(
    vectors: np.ndarray, rows: np.ndarray, threshold: float, block: int = 1024
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of `rows`, the indices of the vectors closer than threshold (itself excluded) and their
    distances."""
    out = []
    for s in range(0, len(rows), block):
        r = rows[s : s + block]
        d = distances(vectors[r], vectors)
        d[np.arange(len(r)), r] = np.inf
        for row in d:
            nb = np.flatnonzero(row < threshold)
            out.append((nb, row[nb]))
    return out


def cluster_people(
    descriptors: Mapping[FaceId, np.ndarray],  # every face that has a descriptor, assigned or new
    people: People | None = None,  # the current grouping; its faces keep their person
    *,
    threshold: float = SAME_PERSON,  # faces closer than this are linked
    iterations: int = 100,  # Chinese whispers rounds at most (it usually settles in a few)
    seed: int = 0,  # order in which new faces are visited each round: the same input gives the same people
) -> People:
    """Group faces into people, keeping the people that exist.

    Faces in `people` keep their person. Each new face repeatedly takes the person (or the new group) that
    most of its linked faces have, ties going to the closer group; new groups left over become new people,
    numbered from `people.next_id` in the order of their first face. Faces of `people` without a descriptor
    keep their person but link nothing.
    """
    people = people or People()
    if not threshold > 0:
        raise ValueError(f"the threshold must be positive, got {threshold}")
    ids = list(descriptors)
    new = [i for i, f in enumerate(ids) if f not in people.faces]
    if not new:
        return People(dict(people.faces), people.next_id)
    vectors = np.stack([np.asarray(descriptors[f], dtype=np.float32).reshape(DESCRIPTOR_DIM) for f in ids])
    new_rows = np.array(new)
    links = dict(zip(new, _neighbours(vectors, new_rows, threshold)))
    # Labels: existing people keep their (positive) id; each new face starts as its own group (negative).
    label = np.array([people.faces.get(f, 0) for f in ids], dtype=np.int64)
    label[new_rows] = -(new_rows + 1)
    rng = np.random.RandomState(seed)
    for _ in range(iterations):
        changed = False
        for i in rng.permutation(new_rows):
            nb, d = links[i]
            if len(nb) == 0:
                continue
            # The group with the most links wins; ties go to the closer group, then the lower label.
            groups, which = np.unique(label[nb], return_inverse=True)
            votes = np.bincount(which)
            closest = np.full(len(groups), np.inf)
            np.minimum.at(closest, which, d)
            best = groups[np.lexsort((groups, closest, -votes))[0]]
            if best != label[i]:
                label[i], changed = best, True
        if not changed:
            break
    # Number the new groups in the order of their first face (face order of `descriptors`).
    faces = dict(people.faces)
    next_id = people.next_id
    fresh: dict[int, int] = {}
    for i in new:
        lab = int(label[i])
        if lab < 0:
            if lab not in fresh:
                fresh[lab], next_id = next_id, next_id + 1
            lab = fresh[lab]
        faces[ids[i]] = lab
    return People(faces, next_id)


def merge_people(people: People, source: int, target: int) -> People:
    """Every face of person `source` becomes person `target`'s (`source` is retired, never reused)."""
    present = set(people.faces.values())
    for p in (source, target):
        if p not in present:
            raise KeyError(f"no person {p}")
    if source == target:
        return people
    return People({f: (target if p == source else p) for f, p in people.faces.items()}, people.next_id)


def split_faces(people: People, faces: Iterable[FaceId]) -> tuple[People, int]:
    """Move these faces (all of one person) out into a new person; returns the new grouping and its id."""
    faces = list(dict.fromkeys(faces))
    if not faces:
        raise ValueError("no faces to split out")
    missing = [f for f in faces if f not in people.faces]
    if missing:
        raise KeyError(f"face {missing[0]!r} belongs to no person")
    owners = {people.faces[f] for f in faces}
    if len(owners) > 1:
        raise ValueError(
            f"the faces belong to {len(owners)} people ({sorted(owners)}); split one person at a time"
        )
    new = people.next_id
    moved = set(faces)
    return People({f: (new if f in moved else p) for f, p in people.faces.items()}, new + 1), new


def remove_faces(people: People, faces: Iterable[FaceId]) -> People:
    """The grouping without these faces (a takedown); people left with no face simply disappear."""
    gone = set(faces)
    return People({f: p for f, p in people.faces.items() if f not in gone}, people.next_id)


def suggest_merges(
    people: People, descriptors: Mapping[FaceId, np.ndarray], *, threshold: float = SAME_PERSON
) -> list[tuple[int, int, float]]:
    """Pairs of people (a, b, distance) whose closest faces are nearer than the threshold, closest first: for
    a reviewer to confirm, never applied on their own (a person split by hand stays split)."""
    ids = [f for f in descriptors if f in people.faces]
    if len(ids) < 2:
        return []
    vectors = np.stack([np.asarray(descriptors[f], dtype=np.float32).reshape(DESCRIPTOR_DIM) for f in ids])
    owner = np.array([people.faces[f] for f in ids])
    best: dict[tuple[int, int], float] = {}
    for i, (nb, dist) in enumerate(_neighbours(vectors, np.arange(len(ids)), threshold)):
        for j, d in zip(nb, dist):
            a, b = sorted((int(owner[i]), int(owner[j])))
            if a != b:
                best[(a, b)] = min(best.get((a, b), np.inf), float(d))
    return sorted(((a, b, d) for (a, b), d in best.items()), key=lambda t: (t[2], t[0], t[1]))
