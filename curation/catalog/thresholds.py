"""Where a face's quality measure becomes a flag: the numbers the analysis writes flags with and the review,
`ghosts status` and auto-accept recompute them with. Plain numbers, no catalog access (alignment.quality,
a pure library, re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass

# Where a measure becomes a flag; the review page's filters use the same numbers.
BLUR_FLAG = 30.0  # flag faces blurrier than this (variance of the Laplacian on the preview)
PADDING_FLAG = 0.1  # flag faces with more than this fraction of the crop made up
YAW_FLAG = 40.0  # flag faces turned further than this (degrees)
# The dataset side the size measures refer to when nobody chose one: 512, what most StyleGAN2-ADA datasets
# of a few thousand faces train at (256 for quick runs, 1024 only with large, sharp sources). A face whose
# crop square is smaller than this is enlarged when frozen, and flagged `upscaled`.
DEFAULT_TARGET_SIZE = 512
TARGET_SIZE_SETTING = "target_size"  # the workspace setting that holds the chosen side


@dataclass
class Thresholds:
    """Where a quality measure becomes a flag (the analysis's own thresholds, so filters and hints agree)."""

    padding: float = PADDING_FLAG  # fraction of the crop filled by reflection padding
    blur: float = BLUR_FLAG  # variance of the Laplacian on the preview; lower is softer
    pose: float = YAW_FLAG  # degrees of |yaw| (roll is undone by alignment, so it is no flaw)
    target_size: int = DEFAULT_TARGET_SIZE  # the dataset side: smaller crops are `upscaled`


DEFAULT_THRESHOLDS = Thresholds()
