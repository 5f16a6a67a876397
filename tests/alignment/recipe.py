"""The plain FFHQ alignment recipe, written out step by step from its published formulas: the test oracle.

Slow on purpose (the padding blur runs over the whole padded image, the quad is resampled at 4x the output
size and then Lanczos-filtered down); `alignment.align.align_face` must give the same pixels, much faster.
It computes the quad itself from the landmarks so that it shares no code with the implementation under test.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from PIL import Image


def recipe_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ quad (corners top-left, bottom-left, bottom-right, top-right) and its side, from 68 points."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    def rot90(v):
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def recipe_align(rgb: np.ndarray, quad: np.ndarray, size: int = 1024, supersample: int = 4) -> np.ndarray:
    """Align with the plain recipe: shrink, crop, pad + blur + fade, quad transform at 4x, Lanczos down."""
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    transform_size = size * supersample

    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (round(img.size[0] / shrink), round(img.size[1] / shrink))
        img = img.resize(rsize, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(round(qsize * 0.1), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = (
        max(-lo[0] + border, 0),
        max(-lo[1] + border, 0),
        max(hi[0] - img.size[0] + border, 0),
        max(hi[1] - img.size[1] + border, 0),
    )
    if max(pad) > border - 4:
        pad = np.maximum(pad, round(qsize * 0.3))
        a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = a.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(
            1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
            1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
        )
        sigma = qsize * 0.02
        a += (scipy.ndimage.gaussian_filter(a, [sigma, sigma, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
        quad += pad[:2]

    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return np.asarray(img)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(255.0**2 / err))
