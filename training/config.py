"""Typed training options and the StyleGAN2-ADA configuration presets.

`build_options(...)` is the one place where a preset plus the user's overrides turn into a validated
`TrainingOptions`; the CLI and the Prefect flow both call it, and the training loop trusts what it gets.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from training.errors import TrainingError


@dataclass(frozen=True)
class Preset:
    mb: int | None  # total batch; None = derived from resolution ("auto")
    mbstd: int | None  # minibatch-std group size
    fmaps: float | None  # channel_base = fmaps * 32768
    lrate: float | None  # Adam learning rate for G and D
    gamma: float | None  # R1 weight
    ema: float | None  # G_ema half-life in kimg
    ramp: float | None  # EMA ramp-up as a fraction of images seen; None = off
    map: int  # mapping network depth


# The configurations of the ADA paper's train.py (paperNNN reproduce the paper's runs on 8 GPUs).
PRESETS: dict[str, Preset] = {
    "auto": Preset(mb=None, mbstd=None, fmaps=None, lrate=None, gamma=None, ema=None, ramp=0.05, map=2),
    "stylegan2": Preset(mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": Preset(mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8),
    "paper512": Preset(mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": Preset(mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
}
METRIC_NAMES = ("swd", "fid", "kid")

# `--resume NAME`: the reference's transfer-learning sources. ghosts never downloads them: the file must be in
# the models folder (GHOSTS_MODELS, default ~/.cache/ghosts/models) under the file name of its address.
_NVLABS = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
NAMED_SOURCES: dict[str, str] = {
    "ffhq256": _NVLABS + "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": _NVLABS + "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": _NVLABS + "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": _NVLABS + "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": _NVLABS + "lsundog-res256-paper256-kimg100000-noaug.pkl",
}


def models_dir() -> Path:
    return Path(os.environ.get("GHOSTS_MODELS") or Path.home() / ".cache" / "ghosts" / "models").expanduser()


def resolve_resume(resume: str | None) -> str | None:
    """'latest' and paths unchanged; a NAMED_SOURCES name -> its file in models_dir(), which must exist."""
    if resume is None or resume == "latest" or resume not in NAMED_SOURCES:
        return resume
    url = NAMED_SOURCES[resume]
    path = models_dir() / url.rsplit("/", 1)[1]
    if not path.is_file():
        raise TrainingError(
            f"--resume {resume}: {path} is missing. ghosts downloads nothing; download it "
            f"yourself from\n  {url}\nand put it at\n  {path}\n(or set GHOSTS_MODELS to the "
            f"folder that holds it)"
        )
    return str(path)


AUG_MODES = ("ada", "noaug", "fixed")


@dataclass
class TrainingOptions:
    # What to train on and where to write.
    data: Path
    outdir: Path
    dataset_name: str
    dataset_sha256: str
    resolution: int
    channels: int
    num_images: int  # images in the archive (before mirroring)
    cfg: str = "auto"
    mirror: bool = False
    cond: bool = False
    c_dim: int = 0
    # Length and bookkeeping.
    kimg: float = 25000  # total training length in thousands of real images shown to D
    tick_kimg: float = 4  # progress/stat interval
    snap: int = 50  # ticks between snapshots (networks, fakes grid, metrics)
    seed: int = 0
    gpus: int = 1
    workers: int = 3  # data-loader worker processes per GPU
    # Networks.
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 2
    cbase: int = 16384
    cmax: int = 512
    conv_clamp: float = 256  # activations clamped to +-conv_clamp (the reference's train.py value)
    num_reduced_res: int = 4  # top resolutions run in bf16 on CUDA
    # Optimisation.
    batch: int = 32
    batch_gpu: int = 32  # samples per forward pass; batch / gpus / batch_gpu rounds of gradient accumulation
    mbstd_group: int = 4
    glr: float = 0.0025
    dlr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    gamma: float = 10.0
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    g_reg_interval: int = 4  # lazy path-length regularisation
    d_reg_interval: int = 16  # lazy R1
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    # Augmentation.
    aug: str = "ada"
    p: float = 0.0  # initial (ada) or constant (fixed) augmentation probability
    target: float = 0.6  # ADA target for r_t = E[sign(D(real))]
    augpipe: str = "bgc"
    ada_interval: int = 4  # minibatches between p updates
    ada_kimg: float = 500  # kimg for p to go 0 -> 1 at most
    # Resume / transfer.
    resume: str | None = (
        None  # "latest", or a snapshot / NVlabs .pkl path (a named source resolved to its file)
    )
    freezed: int = 0  # Freeze-D: the first N D layers (fromrgb, conv0, conv1, skip per block, top down)
    # Metrics.
    metrics: list[str] = field(default_factory=lambda: ["swd"])
    metric_images: int | None = None  # None = the standard counts (50k fakes for FID/KID)
    inception: Path | None = None
    # Devices.
    device: str | None = None  # None = cuda when present, else cpu
    bf16: bool = True  # bf16 autocast for the top resolutions on CUDA
    tf32: bool = False  # TF32 matmuls/convolutions on CUDA; off by default, as the reference
    channels_last: bool = False
    dry_run: bool = False

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainingOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        for k in ("data", "outdir", "inception"):
            if d.get(k) is not None:
                d[k] = Path(d[k])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def validate(self) -> TrainingOptions:
        if self.gpus < 1:
            raise TrainingError("--gpus must be at least 1")
        if self.batch < 1 or self.batch % self.gpus:
            raise TrainingError(f"--batch {self.batch} must be a positive multiple of --gpus {self.gpus}")
        if self.batch_gpu < 1 or (self.batch // self.gpus) % self.batch_gpu:
            raise TrainingError(
                f"--batch-gpu {self.batch_gpu} must divide the per-GPU batch "
                f"{self.batch // self.gpus} (--batch {self.batch} over {self.gpus} GPU(s))"
            )
        if self.batch_gpu % self.mbstd_group:
            raise TrainingError(
                f"the minibatch-std group size {self.mbstd_group} must divide the per-GPU batch "
                f"{self.batch_gpu} (--batch {self.batch} over {self.gpus} GPU(s)); "
                f"pick a batch that is a multiple of {self.mbstd_group * self.gpus}"
            )
        if self.kimg <= 0:
            raise TrainingError("--kimg must be positive")
        if self.aug not in AUG_MODES:
            raise TrainingError(f"--aug must be one of {', '.join(AUG_MODES)}")
        if not 0 <= self.p <= 1:
            raise TrainingError("--p must be in [0, 1]")
        if self.aug == "fixed" and self.p == 0:
            raise TrainingError("--aug fixed needs --p greater than 0")
        bad = [m for m in self.metrics if m not in METRIC_NAMES]
        if bad:
            raise TrainingError(f"unknown metric {bad[0]!r}; choose from {', '.join(METRIC_NAMES)} or none")
        if self.cbase < 4 or self.cmax < 1:
            raise TrainingError("--cbase and --cmax must be positive")
        if self.freezed < 0:
            raise TrainingError("--freezed must be >= 0")
        return self


def resolve_inception(path: Path | str | None) -> Path | None:
    """--inception, else GHOSTS_INCEPTION, else None (FID/KID then skipped)."""
    raw = path or os.environ.get("GHOSTS_INCEPTION")
    return Path(raw).expanduser() if raw else None


def parse_metrics(text: str | None) -> list[str]:
    if text is None or text.strip().lower() in ("", "none"):
        return []
    return [m.strip().lower() for m in text.split(",") if m.strip()]


def build_options(
    data: Path | str,
    outdir: Path | str,
    *,
    cfg: str = "auto",
    gpus: int = 1,
    kimg: float | None = None,
    batch: int | None = None,
    gamma: float | None = None,
    glr: float | None = None,
    dlr: float | None = None,
    cbase: int | None = None,
    cmax: int | None = None,
    map_layers: int | None = None,
    mbstd_group: int | None = None,
    aug: str = "ada",
    p: float | None = None,
    target: float = 0.6,
    augpipe: str = "bgc",
    ada_kimg: float | None = None,
    mirror: bool = False,
    cond: bool = False,
    resume: str | None = None,
    freezed: int = 0,
    seed: int = 0,
    snap: int = 50,
    tick_kimg: float = 4,
    metrics: list[str] | str | None = ("swd",),
    metric_images: int | None = None,
    inception: Path | str | None = None,
    workers: int = 3,
    device: str | None = None,
    bf16: bool = True,
    tf32: bool = False,
    channels_last: bool = False,
    z_dim: int = 512,
    w_dim: int = 512,
    batch_gpu: int | None = None,
    dry_run: bool = False,
) -> TrainingOptions:
    """A preset + overrides -> validated options. Reads the archive header (not the images) for its size."""
    if cfg not in PRESETS:
        raise TrainingError(f"unknown --cfg {cfg!r}; choose one of {', '.join(PRESETS)}")
    from training.dataset import file_sha256, inspect_archive  # imports torch: only when options are built

    info = inspect_archive(Path(data))
    res = info.resolution
    spec = PRESETS[cfg]
    if cfg == "auto":
        mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
        spec = dataclasses.replace(
            spec,
            mb=mb,
            mbstd=min(mb // gpus, 4),
            fmaps=1 if res >= 512 else 0.5,
            lrate=0.002 if res >= 1024 else 0.0025,
            gamma=0.0002 * res**2 / mb,
            ema=mb * 10 / 32,
        )
    total = batch if batch is not None else spec.mb
    if gpus < 1 or total < 1 or total % gpus:
        raise TrainingError(f"--batch {total} must be a positive multiple of --gpus {gpus}")
    per_gpu = batch_gpu if batch_gpu is not None else total // gpus
    group = mbstd_group if mbstd_group is not None else min(spec.mbstd, per_gpu)
    if isinstance(metrics, str):
        metrics = parse_metrics(metrics)
    resume = resolve_resume(resume)
    transfer = resume is not None and resume not in ("latest", "latest-good")
    opts = TrainingOptions(
        data=Path(data).resolve(),
        outdir=Path(outdir),
        dataset_name=info.name,
        dataset_sha256=file_sha256(info.path),
        resolution=res,
        channels=info.channels,
        num_images=len(info.members),
        cfg=cfg,
        mirror=mirror,
        cond=cond,
        c_dim=int(info.labels.max()) + 1 if cond and info.labels is not None else 0,
        kimg=kimg if kimg is not None else 25000,
        tick_kimg=tick_kimg,
        snap=snap,
        seed=seed,
        gpus=gpus,
        workers=workers,
        z_dim=z_dim,
        w_dim=w_dim,
        map_layers=map_layers if map_layers is not None else spec.map,
        cbase=cbase if cbase is not None else int(spec.fmaps * 32768),
        cmax=cmax if cmax is not None else 512,
        batch=total,
        batch_gpu=per_gpu,
        mbstd_group=group,
        glr=glr if glr is not None else spec.lrate,
        dlr=dlr if dlr is not None else spec.lrate,
        # as the reference: auto derives R1 gamma and the EMA half-life from its own batch (spec.mb); a --batch
        # override changes the batch only
        gamma=gamma if gamma is not None else spec.gamma,
        ema_kimg=spec.ema,
        ema_rampup=None if transfer else spec.ramp,  # the reference turns the ramp-up off when resuming
        aug=aug,
        p=p if p is not None else 0.0,
        target=target,
        augpipe=augpipe,
        # p adapts 5x faster when starting from trained weights (the reference's choice)
        ada_kimg=ada_kimg if ada_kimg is not None else (100 if transfer else 500),
        resume=resume,
        freezed=freezed,
        metrics=list(metrics or []),
        metric_images=metric_images,
        inception=resolve_inception(inception),
        device=device,
        bf16=bf16,
        tf32=tf32,
        channels_last=channels_last,
        dry_run=dry_run,
    )
    if cond and info.labels is None:
        raise TrainingError(f"{data}: --cond needs labels in dataset.json, but it has none")
    return opts.validate()


def save_options(opts: TrainingOptions, path: Path) -> None:
    from curation.catalog.store import atomic_write_text

    atomic_write_text(path, json.dumps(opts.to_json(), indent=2) + "\n")
