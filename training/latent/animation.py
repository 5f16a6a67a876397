"""Frames -> an animated GIF (Pillow) or an H.264 MP4 (the ffmpeg binary that imageio-ffmpeg ships).

Both are written to a temp file beside the target and renamed into place, so an interrupted encode never
leaves a broken video under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from curation.catalog.store import TMP_PREFIX
from training.errors import TrainingError

FORMATS = (".gif", ".mp4")


def _even(frame: np.ndarray) -> np.ndarray:
    # yuv420p (what players accept) halves the colour resolution, so H.264 needs even sides; pad by edge copy.
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_gif(frames: list[np.ndarray], path: str, fps: float, loop: bool) -> None:
    pics = [Image.fromarray(f) for f in frames]
    extra = {"loop": 0} if loop else {}
    # GIF stores delays in 1/100 s; Pillow takes milliseconds and rounds.
    pics[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=pics[1:],
        duration=max(20, round(1000 / fps)),
        disposal=1,
        optimize=False,
        **extra,
    )


def _write_mp4(frames: list[np.ndarray], path: str, fps: float, quality: int) -> None:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a dependency of the project
        raise TrainingError("MP4 needs the imageio-ffmpeg package; write a .gif instead") from None
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise TrainingError(f"no ffmpeg encoder available ({e}); write a .gif instead") from None
    first = _even(frames[0])
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        path,
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=quality,
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    writer.send(None)  # start the encoder
    try:
        for f in frames:
            writer.send(np.ascontiguousarray(_even(f)))
    finally:
        writer.close()


def write_animation(
    frames: list[np.ndarray],
    path: Path | str,
    *,
    fps: float = 30.0,
    loop: bool = True,  # GIF: repeat forever (an MP4 player decides for itself)
    quality: int = 8,
) -> Path:  # MP4: imageio-ffmpeg's 0-10 quality scale
    """Write HxWx3 uint8 frames as .gif or .mp4 (chosen by the suffix); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise TrainingError(f"cannot write {path.name}: animations are .gif or .mp4")
    if not frames:
        raise TrainingError("no frames to write")
    if any(f.shape != frames[0].shape for f in frames):
        raise TrainingError("animation frames must all have the same size")
    if fps <= 0:
        raise TrainingError(f"fps must be positive, not {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the suffix: ffmpeg picks the container from it.
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.stem + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".gif":
            _write_gif(frames, tmp, fps, loop)
        else:
            _write_mp4(frames, tmp, fps, quality)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, TrainingError):
            raise TrainingError(f"could not write {path}: {e}") from e
        raise
    return path
