"""Face detection and 68-point landmarks, fast enough for 10,000 photos.

- Detection runs on a grey copy resampled to about one megapixel: large photos are shrunk (the cost of dlib's
  HOG scan grows with the pixel count), small ones enlarged (its sliding window is 80 x 80 px, so the 37-52 px
  faces of a 500 x 375 photo need about 2x). The scale follows the photo's size, not a fixed upsample count.
- Landmarks are predicted on the full-resolution photo, and everything is reported in its pixel coordinates.
- The HOG detector misses faces rolled far in-plane: when the upright pass finds nothing, rotated copies are
  scanned too (by default +-30 degrees, which with the detector's own tolerance covers rolls to about 55
  degrees); landmarks for such a face are predicted on an upright full-resolution patch and rotated back.
  Those passes cost about as much as the upright one, and most photos without an upright face have no face at
  all: when nothing was found, they run only where they can find something, that is when the upright pass saw
  a weak candidate (a score of at least `retry_gate`, below the detection threshold) as large as the faces a
  rotated pass can see. A face rolled 50-65 degrees scores -0.2 to -0.7 there; a third of the photos without
  a face have such a candidate (benchmark photos), so the passes cost a third of what they did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from alignment.align import align_face, ffhq_quad
from alignment.models import face_detector, landmark_predictor


@dataclass
class Detection:
    box: np.ndarray  # [x0, y0, x1, y1] in source pixels (x1, y1 exclusive); upright bounds of the face box
    score: float  # the detector's confidence: HOG SVM margin, or the CNN's score
    landmarks: np.ndarray  # (68, 2) source pixel coordinates, iBUG 300-W order
    detector: str  # "hog" | "cnn"
    rotation: float = 0.0  # degrees the photo was turned for the pass that found it (0: upright)
    corners: np.ndarray = field(default=None, repr=False)  # (4, 2) the detector's box, rotated back


def detection_scale(
    width: int,
    height: int,
    *,
    pixels: float = 1.0e6,  # photos smaller than this are enlarged to about this size (capped below) ...
    large_pixels: float = 0.6e6,  # ... larger ones are shrunk to pixels**2 / their size, at least this
    max_upscale: float = 2.5,  # never enlarge more than this (a thumbnail's faces fill it anyway)
) -> float:
    """Factor from the photo to the image the detector scans.

    The scan costs about 70 ms per megapixel on one core. A small photo is enlarged to about a megapixel so
    that its small faces meet the 80 px window (the PASCAL photos' 37 px faces need about 2.3x). A larger
    photo is shrunk: the larger it is, the larger its faces in pixels, so it is scanned at less than a
    megapixel (an Instagram portrait of 1.46 MP at 0.68 MP, faces from about 120 px), never under
    `large_pixels`. The scale is continuous in the photo size."""
    area = max(width * height, 1)
    target = pixels if area <= pixels else max(large_pixels, pixels * pixels / area)
    return float(min(math.sqrt(target / area), max_upscale))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return img
    h, w = img.shape[:2]
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interp)


def _rotation(width: int, height: int, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine turning a width x height image by `angle` degrees (counter-clockwise on screen) about its
    centre onto a canvas just large enough to hold all of it; and that canvas's size."""
    m = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    cw, ch = math.ceil(height * s + width * c), math.ceil(height * c + width * s)
    m[0, 2] += (cw - width) / 2
    m[1, 2] += (ch - height) / 2
    return m, (cw, ch)


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


# dlib's HOG detector is five filters: frontal, turned left, turned right, and frontal faces rolled
# counter-clockwise (3) or clockwise (4) on screen. A face found by 3 or 4 is rolled by roughly this much.
SUBDETECTOR_ROLL = {3: -25.0, 4: 25.0}


def _scan(det, kind: str, img: np.ndarray, threshold: float) -> list[tuple[np.ndarray, float, float]]:
    """Boxes [x0, y0, x1, y1] (exclusive ends), scores and roll hints from one detector pass over `img`."""
    if kind == "hog":
        rects, scores, idx = det.run(img, 0, threshold)
        return [
            (
                np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64),
                float(sc),
                SUBDETECTOR_ROLL.get(int(i), 0.0),
            )
            for r, sc, i in zip(rects, scores, idx)
        ]
    found = det(img, 0)
    return [
        (
            np.array(
                [d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1], dtype=np.float64
            ),
            float(d.confidence),
            0.0,
        )
        for d in found
        if d.confidence >= threshold
    ]


def _box_corners(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]], dtype=np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _predict(
    predictor, gray: np.ndarray, to_upright: np.ndarray | None, box_upright: np.ndarray, margin: float = 0.5
) -> np.ndarray:
    """68 landmarks (source coordinates) for a face whose box is `box_upright` in the frame given by the
    affine `to_upright` (source -> upright; None: the source itself)."""
    import dlib

    if to_upright is None:
        x0, y0, x1, y1 = box_upright
        rect = dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)
        shape = predictor(gray, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    # Turn only a patch around the face upright, at full resolution.
    x0, y0, x1, y1 = box_upright
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    ox, oy = math.floor(x0 - mx), math.floor(y0 - my)
    pw, ph = math.ceil(x1 + mx) - ox, math.ceil(y1 + my) - oy
    to_patch = to_upright.copy()
    to_patch[:, 2] -= (ox, oy)
    patch = cv2.warpAffine(gray, to_patch, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rect = dlib.rectangle(round(x0 - ox), round(y0 - oy), round(x1 - ox) - 1, round(y1 - oy) - 1)
    shape = predictor(patch, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    return _apply(_invert(to_patch), pts)


def detect_faces(
    rgb: np.ndarray,
    detector: str = "hog",
    *,
    pixels: float = 1.0e6,  # detection image size (see detection_scale)
    large_pixels: float = 0.6e6,  # smallest detection image of a large photo (see detection_scale)
    max_upscale: float = 2.5,  # largest enlargement of a small photo for detection
    retry_angles: tuple[float, ...] | None = None,  # rotated passes when the upright one finds nothing;
    # None: +-30 degrees for HOG; none for the CNN, which tolerates roll better and costs far more per pass
    rescan_window: float = 1.0,  # a face found narrower than the detection window (80 px) ...
    rescan_faces: int = 3,  # ... among at least this many faces: rescan at `pixels`
    retry_pixels: float = 0.35e6,  # size of each rotated pass's canvas (faces rolled past ~50 degrees are
    # rare and found here only when large)
    threshold: float = 0.0,  # detector score threshold (dlib's default for both detectors)
    retry_roll: float = 25.0,  # ... or when every face it found is rolled this much (the photo is turned)
    refine_roll: float = 8.0,  # landmarks of a face rolled more than this are predicted again, upright
    refine_steps: int = 2,  # at most this many upright re-predictions
    overlap: float = 0.3,  # boxes from different passes overlapping more than this (IoU) are one face
    verify_threshold: float | None = 0.0,  # a face from a rotated pass must score this once aligned upright
    retry_gate: float | None = -0.8,  # no face found: the rotated passes run only when the upright pass saw a
    # candidate scoring this much, at least `retry_gate_size` of the smallest face they can see (None: always)
    retry_gate_size: float = 0.8,
) -> list[Detection]:
    """Every face in an RGB (or grey) photo, with its box, score and 68 landmarks in photo coordinates,
    ordered left to right."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit RGB or grey image, got {img.dtype} {img.shape}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    gray = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    rgb_or_gray = img
    h, w = gray.shape
    det = face_detector(detector)
    predictor = landmark_predictor()
    scale = detection_scale(
        w, h, pixels=pixels, large_pixels=min(large_pixels, pixels), max_upscale=max_upscale
    )
    # HOG works on grey; the CNN was trained on colour.
    source = np.ascontiguousarray(img) if detector == "cnn" and img.ndim == 3 else gray
    small = _resize(source, scale)

    faces: list[Detection] = []

    def add(candidates: list[tuple[np.ndarray, float, float, float, np.ndarray | None]]) -> None:
        # Best first; a face found twice (overlapping boxes) keeps its best box.
        for box, score, hint, angle, to_upright in sorted(candidates, key=lambda c: -c[1]):
            corners = (
                _box_corners(box) if to_upright is None else _apply(_invert(to_upright), _box_corners(box))
            )
            bounds = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
            if any(_iou(bounds, f.box) > overlap for f in faces):
                continue
            centre, side = corners.mean(axis=0), float(box[2] - box[0])
            upright_box = np.concatenate([centre - side / 2, centre + side / 2])

            def upright(roll: float, centre=centre, upright_box=upright_box) -> np.ndarray:
                # Landmarks predicted on a copy turned by `roll` about the box centre, mapped back.
                turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, 1.0)
                return _predict(predictor, gray, turn, upright_box)

            # dlib's predictor starts from an upright mean face: on a rolled face it can settle on an upright
            # shape in the wrong place. A face the rolled filters found starts from their roll instead (in
            # photo terms: the pass's own turn undone), and any face still rolled is predicted again upright.
            landmarks = upright(hint + angle) if hint else _predict(predictor, gray, to_upright, box)
            for _ in range(refine_steps):
                roll = face_roll(landmarks)
                if abs(roll) <= refine_roll:
                    break
                landmarks = upright(roll)
            if angle and verify_threshold is not None and _verify(rgb_or_gray, landmarks) < verify_threshold:
                continue  # the rotated passes scan more windows, and find more things that are not faces
            faces.append(
                Detection(
                    box=bounds,
                    score=score,
                    landmarks=landmarks,
                    detector=detector,
                    rotation=angle,
                    corners=corners,
                )
            )

    if retry_angles is None:
        retry_angles = (30.0, -30.0) if detector == "hog" else ()
    # One scan gives the detections and, below the threshold, the weak candidates the retry gate looks at
    # (dlib keeps a box over a weaker one, so the detections are the same as with `threshold` alone).
    gated = retry_gate is not None and bool(retry_angles) and retry_gate < threshold
    scanned = _scan(det, detector, small, retry_gate if gated else threshold)
    upright_pass = [c for c in scanned if c[1] >= threshold]
    add([(box / scale, score, hint, 0.0, None) for box, score, hint in upright_pass])
    # A large photo is scanned below a megapixel. When it shows a crowd (several faces) reaching down to the
    # smallest size that scan can see, it probably holds smaller ones too (a group photo, a collage): it is
    # scanned again at a megapixel, and the faces only that finer scan sees are added (the others keep their
    # first detection). One or two faces, however small, are the photo's subjects: no rescan.
    fine = detection_scale(w, h, pixels=pixels, large_pixels=pixels, max_upscale=max_upscale)
    window = getattr(det, "detection_window_width", 80)
    if (
        fine > scale * 1.05
        and len(upright_pass) >= rescan_faces
        and any(box[2] - box[0] < window * rescan_window for box, _, _ in upright_pass)
    ):
        add(
            [
                (box / fine, score, hint, 0.0, None)
                for box, score, hint in _scan(det, detector, _resize(source, fine), threshold)
            ]
        )
    turned_photo = bool(faces) and min(abs(face_roll(f.landmarks)) for f in faces) >= retry_roll
    if turned_photo or (
        not faces
        and (
            not gated or _worth_retrying(scanned, small, retry_angles, retry_pixels, retry_gate_size, window)
        )
    ):
        retried = []
        for angle in retry_angles:
            # The turned canvas is larger than the photo (1.9x the area for a square at 30 degrees); it is
            # scanned at about `retry_pixels` so a photo without faces costs about 1.7x an upright pass.
            _, (cw, ch) = _rotation(small.shape[1], small.shape[0], angle)
            base = _resize(small, min(1.0, math.sqrt(retry_pixels / (cw * ch))))
            rot, (cw, ch) = _rotation(base.shape[1], base.shape[0], angle)
            turned = cv2.warpAffine(
                base, rot, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            sk = scale * base.shape[1] / small.shape[1]  # source -> base scale
            to_base = np.array([[sk, 0, 0.5 * sk - 0.5], [0, sk, 0.5 * sk - 0.5]])
            # source -> turned image, brought back to source scale: an upright frame at full resolution
            to_upright = _compose(rot, to_base) / sk
            retried += [
                (box / sk, score, hint, angle, to_upright)
                for box, score, hint in _scan(det, detector, turned, threshold)
            ]
        add(retried)
    faces.sort(key=lambda d: (d.box[0], d.box[1]))
    return faces


def _worth_retrying(
    candidates: list[tuple[np.ndarray, float, float]],
    small: np.ndarray,
    angles: tuple[float, ...],
    retry_pixels: float,
    size: float,
    window: float,
) -> bool:
    """Whether the upright pass saw a candidate (any score it was given) at least `size` times the smallest
    face a rotated pass over `small` can find: the detector's window on a canvas shrunk to `retry_pixels`."""
    shrink = 1.0
    for angle in angles:
        _, (cw, ch) = _rotation(small.shape[1], small.shape[0], angle)
        shrink = min(shrink, math.sqrt(retry_pixels / (cw * ch)))
    smallest = window / shrink  # in `small` pixels
    return any(box[2] - box[0] >= size * smallest for box, _, _ in candidates)


def _verify(img: np.ndarray, landmarks: np.ndarray, size: int = 192) -> float:
    """Score of the HOG detector's frontal filters on the face aligned upright (a face fills about half of an
    FFHQ crop, so at 192 px it meets the 80 px window): real faces score well above 0, a dog's face below."""
    aligned = align_face(img, ffhq_quad(landmarks), size)
    gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    _, scores, _ = face_detector("hog").run(gray, 0, -1.0)
    return max((float(x) for x in scores), default=-1.0)


def face_roll(landmarks68: np.ndarray) -> float:
    """In-plane rotation of a face in degrees: the angle of the line from the left to the right eye centre
    (positive: clockwise on screen, the right eye lower)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    d = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)
    return float(math.degrees(math.atan2(d[1], d[0])))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    a = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return a[:2]
