"""Training options, declared once and resolved once.

`TrainSettings` declares every option a user may set, each once: name, type, default, help and bounds (network
sizes from training.bounds, the snapshot loader's own limits). Everything else is derived from it:
- the click options of `ghosts train`, `python -m training`, `torchrun -m training`, `ghosts run train`,
  `ghosts run pipeline` and `ghosts serve` (training.command.training_options),
- the Prefect flows' `settings` parameter (Prefect reads its JSON schema; the UI shows it as a form),
- the run's stored options (training_options.json and each snapshot's "options"), which carry every
  settings field under its own name, resolved.
`build_options(archive, outdir, settings)` turns settings + a preset + the archive's header into the resolved
`TrainingOptions` the training loop trusts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curation.catalog.store import atomic_write_text
from training.bounds import NETWORK_BOUNDS
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
AUG_MODES = ("ada", "noaug", "fixed")
AUGPIPE_NAMES = ("blit", "geom", "color", "bg", "bgc")  # training.augment.AUGPIPES (a test keeps them equal)
CHANNEL_MAX_DEFAULT = 512  # --cmax when not given: the reference's value for every preset

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
EXACT_RESUME = ("latest", "latest-good")  # continue the newest run of --outdir exactly (training.loop)


# ------------------------------------------------------------------------------------------ the options


@dataclass(frozen=True)
class Flag:
    """How an option is shown on the command line, where that is not `--<name with dashes>` / click's
    metavar for its type."""

    name: str | None = None
    metavar: str | None = None


def _network(key: str, what: str, when_unset: str = "preset") -> Any:
    """A network-size option (None: `when_unset` decides), bounded as the snapshot loader bounds `key`."""
    lo, hi = NETWORK_BOUNDS[key]
    return Field(None, ge=lo, le=hi, description=f"{what} [{when_unset}].")


class TrainSettings(BaseModel):
    """The training options a user sets: on the command line, in a flow run (the Prefect UI shows them as a
    form), in a deployment. None means "the preset (--cfg) decides"; `ghosts train --help` lists them all."""

    model_config = ConfigDict(extra="forbid")

    # Length and bookkeeping.
    cfg: Literal[tuple(PRESETS)] = Field("auto", description="Base configuration (the reference's presets).")
    kimg: float = Field(
        25000,
        gt=0,
        description="Training length in thousands of real images shown to D; fractions are fine for smoke "
        "runs (0.2).",
    )
    tick_kimg: Annotated[float, Flag("--tick")] = Field(4, gt=0, description="kimg per progress tick.")
    snap: int = Field(50, ge=0, description="Ticks between snapshots (0: only the last one).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed.")
    # Data.
    mirror: bool = Field(False, description="Add x-flipped copies of the images.")
    cond: bool = Field(False, description="Condition on the labels in dataset.json.")
    # Networks and optimisation.
    batch: int | None = Field(None, ge=1, description="Total batch size [preset].")
    batch_gpu: int | None = Field(
        None,
        ge=1,
        description="Images per forward pass on each GPU; smaller than batch / gpus accumulates gradients "
        "over several passes (less memory, same batch) [batch / gpus].",
    )
    mbstd_group: int | None = _network("mbstd_group_size", "Minibatch-std group size")
    gamma: float | None = Field(None, ge=0, description="R1 weight [preset].")
    glr: float | None = Field(None, gt=0, description="G learning rate [preset].")
    dlr: float | None = Field(None, gt=0, description="D learning rate [preset].")
    cbase: int | None = _network("channel_base", "Channel base: feature maps at resolution r = cbase / r")
    cmax: int | None = _network("channel_max", "Channel maximum", str(CHANNEL_MAX_DEFAULT))
    map_layers: Annotated[int | None, Flag("--map")] = _network("mapping_layers", "Mapping network depth")
    z_dim: int = Field(
        512, ge=NETWORK_BOUNDS["z_dim"][0], le=NETWORK_BOUNDS["z_dim"][1], description="Latent (z) size."
    )
    w_dim: int = Field(
        512,
        ge=NETWORK_BOUNDS["w_dim"][0],
        le=NETWORK_BOUNDS["w_dim"][1],
        description="Intermediate latent (w) size.",
    )
    # Augmentation.
    aug: Literal[AUG_MODES] = Field(
        "ada", description="ada: adaptive p; fixed: constant --p; noaug: no augmentation."
    )
    p: float | None = Field(
        None, ge=0, le=1, description="Augmentation probability for --aug fixed (initial p for ada) [0]."
    )
    target: float = Field(0.6, ge=0, le=1, description="ADA target for r_t = E[sign(D(real))].")
    augpipe: Literal[AUGPIPE_NAMES] = Field("bgc", description="Augmentation pipeline.")
    ada_kimg: float | None = Field(
        None, gt=0, description="kimg for p to move 0->1 [500; 100 when transfer learning]."
    )
    # Resume / transfer.
    resume: Annotated[str | None, Flag(metavar="FILE|RUN|latest|NAME")] = Field(
        None,
        description="'latest' continues the newest run in the output folder exactly ('latest-good': the newest "
        "snapshot that loads); a snapshot, an NVlabs .pkl, a run folder (its newest snapshot), or "
        f"{'|'.join(NAMED_SOURCES)} (files in GHOSTS_MODELS) starts a new run from its weights (transfer "
        "learning: tensors whose name and shape match).",
    )
    freezed: int = Field(
        0,
        ge=0,
        description="Freeze-D: keep the first N D layers fixed (4 in the top block, 3 in each next one).",
    )
    # Metrics.
    metrics: Annotated[list[Literal[METRIC_NAMES]], Flag(metavar="LIST")] = Field(
        ["swd"], description="Metrics at each snapshot: a comma list of swd, fid, kid, or none."
    )
    metric_images: int | None = Field(
        None, ge=1, description="Images per metric evaluation [swd 8192, fid/kid 50000]."
    )
    inception: Annotated[str | None, Flag(metavar="FILE")] = Field(
        None, description="Inception TorchScript file for FID/KID [env GHOSTS_INCEPTION]."
    )
    # Devices.
    gpus: int = Field(1, ge=1, le=1024, description="Processes (GPUs) to train on.")
    workers: int = Field(3, ge=0, le=256, description="Data-loader worker processes per GPU.")
    device: Annotated[str | None, Flag(metavar="cpu|cuda")] = Field(
        None, description="Force a device (cpu, cuda) [cuda when present]."
    )
    bf16: bool = Field(True, description="bf16 autocast for the top resolutions on CUDA (off: float32).")
    tf32: Annotated[bool, Flag("--allow-tf32")] = Field(
        False, description="Allow TF32 on CUDA (faster, less exact; off as in the reference)."
    )
    channels_last: bool = Field(False, description="Use the channels-last memory format.")
    compile: bool = Field(
        False,
        description="torch.compile G and D for the main training phases (the regularisers stay eager); "
        "needs a C++ compiler on CPU; the first minibatches compile for minutes.",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, v: Any) -> Any:
        """A comma list as typed on the command line ("swd,fid", "none") or a list."""
        if v is None:
            return []
        names = (
            parse_metrics(v)
            if isinstance(v, str)
            else [m.strip().lower() if isinstance(m, str) else m for m in v]
        )
        bad = [m for m in names if m not in METRIC_NAMES]
        if bad:
            raise ValueError(f"unknown metric {bad[0]!r}; choose from {', '.join(METRIC_NAMES)} or none")
        return names

    @field_validator("resume", "inception", "device", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        return None if isinstance(v, str) and not v.strip() else v

    @classmethod
    def flag(cls, name: str) -> str:
        """The command-line spelling of field `name` (--tick for tick_kimg, --map for map_layers...)."""
        for m in cls.model_fields[name].metadata:
            if isinstance(m, Flag) and m.name:
                return m.name
        return "--" + name.replace("_", "-")


def make_settings(base: TrainSettings | None = None, **values: Any) -> TrainSettings:
    """`base` (default: the defaults) with `values` over it, validated; a bad value is a TrainingError naming
    its command-line flag and the allowed range."""
    merged = {**(base.model_dump() if base is not None else {}), **values}
    try:
        return TrainSettings(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            raise TrainingError(f"unknown training option {name!r}") from None
        flag = TrainSettings.flag(name) if name in TrainSettings.model_fields else name
        shown = merged.get(name, err.get("input"))
        msg = err["msg"].removeprefix("Value error, ")
        raise TrainingError(f"{flag} {shown!r}: {msg}") from None


def models_dir() -> Path:
    return Path(os.environ.get("GHOSTS_MODELS") or Path.home() / ".cache" / "ghosts" / "models").expanduser()


def resolve_resume(resume: str | None) -> str | None:
    """What --resume names, as the training loop takes it: 'latest'/'latest-good' unchanged; a named source ->
    its file in models_dir(), which must exist; a run folder -> its newest snapshot; a file unchanged (the
    snapshot loader checks it). Anything else is refused with the accepted forms."""
    if resume is None or resume in EXACT_RESUME:
        return resume
    if resume in NAMED_SOURCES:
        url = NAMED_SOURCES[resume]
        path = models_dir() / url.rsplit("/", 1)[1]
        if not path.is_file():
            raise TrainingError(
                f"--resume {resume}: {path} is missing. ghosts downloads nothing; download it "
                f"yourself from\n  {url}\nand put it at\n  {path}\n(or set GHOSTS_MODELS to the "
                f"folder that holds it)"
            )
        return str(path)
    path = Path(resume).expanduser()
    if path.is_dir():
        # Imported here for start-up cost: checkpoint imports torch, which `ghosts --help` must not load.
        from training.checkpoint import list_snapshots

        snaps = list_snapshots(path)
        if not snaps:
            raise TrainingError(f"--resume {resume}: the folder holds no complete snapshot")
        return str(snaps[-1])
    if not (path.is_file() or path.with_name(path.name + ".json").is_file()):  # a file, or a snapshot's stem
        raise TrainingError(
            f"--resume {resume}: no such snapshot, .pkl or run folder; --resume takes a file, a run "
            f"folder, {' or '.join(EXACT_RESUME)}, or one of {', '.join(NAMED_SOURCES)}"
        )
    return str(path)


# ------------------------------------------------------------------------------------ resolved options

# Resolved options named after a network constructor argument: bounded by training.bounds, as the loader does.
NETWORK_FIELDS = {
    "z_dim": "z_dim",
    "w_dim": "w_dim",
    "c_dim": "c_dim",
    "map_layers": "mapping_layers",
    "cbase": "channel_base",
    "cmax": "channel_max",
    "num_reduced_res": "num_reduced_res",
    "mbstd_group": "mbstd_group_size",
}


@dataclass(kw_only=True)
class TrainingOptions:
    """One run's options, resolved: every TrainSettings field under its own name (preset values filled in),
    plus what the archive says and the fixed internals. Its JSON is training_options.json and each snapshot's
    "options"; the defaults of the user's options live in TrainSettings only."""

    # What to train on and where to write.
    data: Path
    outdir: Path
    dataset_name: str
    dataset_sha256: str
    resolution: int
    channels: int
    num_images: int  # images in the archive (before mirroring)
    c_dim: int
    # The user's options (TrainSettings), resolved.
    cfg: str
    kimg: float  # total training length in thousands of real images shown to D
    tick_kimg: float
    snap: int
    seed: int
    mirror: bool
    cond: bool
    batch: int
    batch_gpu: int  # samples per forward pass; batch / gpus / batch_gpu rounds of gradient accumulation
    mbstd_group: int
    gamma: float
    glr: float
    dlr: float
    cbase: int
    cmax: int
    map_layers: int
    z_dim: int
    w_dim: int
    aug: str
    p: float  # initial (ada) or constant (fixed) augmentation probability
    target: float
    augpipe: str
    ada_kimg: float
    resume: str | None  # "latest", "latest-good", or a snapshot / NVlabs .pkl path (named sources resolved)
    freezed: int  # Freeze-D: the first N D layers (fromrgb, conv0, conv1, skip per block, top down)
    metrics: list[str]
    metric_images: int | None  # None = the standard counts (50k fakes for FID/KID)
    inception: Path | None
    gpus: int
    workers: int
    device: str | None  # None = cuda when present, else cpu
    bf16: bool
    tf32: bool
    channels_last: bool
    compile: bool  # torch.compile the main phases' forwards (training.loss.StyleGAN2Loss)
    # Derived from the preset, not set directly.
    ema_kimg: float
    ema_rampup: float | None  # fraction of images seen; None = off
    # Fixed internals (the reference's train.py values).
    conv_clamp: float = 256  # activations clamped to +-conv_clamp
    num_reduced_res: int = 4  # top resolutions run in bf16 on CUDA
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    g_reg_interval: int = 4  # lazy path-length regularisation
    d_reg_interval: int = 16  # lazy R1
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    ada_interval: int = 4  # minibatches between p updates
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
        """Stored options back; an option added since the file was written takes its TrainSettings default
        (batch_gpu: the whole per-GPU batch, as before it existed)."""
        if not isinstance(d, dict):
            raise TrainingError("stored training options must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        for name, info in TrainSettings.model_fields.items():
            if name not in d and info.default is not None:
                d[name] = info.default
        if "batch_gpu" not in d and isinstance(d.get("batch"), int):
            d["batch_gpu"] = d["batch"] // max(1, int(d.get("gpus", 1)))
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in d]
        if missing:
            raise TrainingError(f"stored training options lack {', '.join(missing)}")
        for k in ("data", "outdir", "inception"):
            if d.get(k) is not None:
                d[k] = Path(d[k])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def validate(self) -> TrainingOptions:
        """Refuse what cannot train: sizes outside training.bounds (also for options read back from a file),
        batches that do not split, impossible augmentation settings."""
        for name, key in NETWORK_FIELDS.items():
            value, (lo, hi) = getattr(self, name), NETWORK_BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                flag = TrainSettings.flag(name) if name in TrainSettings.model_fields else name
                raise TrainingError(f"{flag} {value!r}: it must be a whole number from {lo} to {hi}")
        if self.cbase < self.resolution:
            raise TrainingError(
                f"--cbase {self.cbase} gives no feature maps at {self.resolution} px "
                f"(cbase / resolution); use at least {self.resolution}"
            )
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
    settings: TrainSettings | None = None,
    *,
    dry_run: bool = False,
    **overrides: Any,
) -> TrainingOptions:
    """Settings (plus keyword overrides by field name) + their preset -> validated options for the archive
    `data`. Reads the archive header (not the images) for its size."""
    s = make_settings(settings, **overrides)
    # Imported here for start-up cost: the archive reader imports torch, which `ghosts --help` must not load.
    from training.dataset import file_sha256, inspect_archive

    info = inspect_archive(Path(data))
    res = info.resolution
    spec = PRESETS[s.cfg]
    if s.cfg == "auto":
        mb = max(min(s.gpus * min(4096 // res, 32), 64), s.gpus)
        spec = dataclasses.replace(
            spec,
            mb=mb,
            mbstd=min(mb // s.gpus, 4),
            fmaps=1 if res >= 512 else 0.5,
            lrate=0.002 if res >= 1024 else 0.0025,
            gamma=0.0002 * res**2 / mb,
            ema=mb * 10 / 32,
        )
    total = s.batch if s.batch is not None else spec.mb
    if total % s.gpus:
        raise TrainingError(f"--batch {total} must be a positive multiple of --gpus {s.gpus}")
    per_gpu = s.batch_gpu if s.batch_gpu is not None else total // s.gpus
    resume = resolve_resume(s.resume)
    transfer = resume is not None and resume not in EXACT_RESUME
    if s.cond and info.labels is None:
        raise TrainingError(f"{data}: --cond needs labels in dataset.json, but it has none")
    resolved = {
        **s.model_dump(),
        "batch": total,
        "batch_gpu": per_gpu,
        "mbstd_group": s.mbstd_group if s.mbstd_group is not None else min(spec.mbstd, per_gpu),
        # as the reference: auto derives R1 gamma and the EMA half-life from its own batch (spec.mb); a --batch
        # override changes the batch only
        "gamma": s.gamma if s.gamma is not None else spec.gamma,
        "glr": s.glr if s.glr is not None else spec.lrate,
        "dlr": s.dlr if s.dlr is not None else spec.lrate,
        "cbase": s.cbase if s.cbase is not None else int(spec.fmaps * 32768),
        "cmax": s.cmax if s.cmax is not None else CHANNEL_MAX_DEFAULT,
        "map_layers": s.map_layers if s.map_layers is not None else spec.map,
        "p": s.p if s.p is not None else 0.0,
        # p adapts 5x faster when starting from trained weights (the reference's choice)
        "ada_kimg": s.ada_kimg if s.ada_kimg is not None else (100 if transfer else 500),
        "resume": resume,
        "inception": resolve_inception(s.inception),
    }
    opts = TrainingOptions(
        data=Path(data).resolve(),
        outdir=Path(outdir),
        dataset_name=info.name,
        dataset_sha256=file_sha256(info.path),
        resolution=res,
        channels=info.channels,
        num_images=len(info.members),
        c_dim=int(info.labels.max()) + 1 if s.cond and info.labels is not None else 0,
        ema_kimg=spec.ema,
        ema_rampup=None if transfer else spec.ramp,  # the reference turns the ramp-up off when resuming
        dry_run=dry_run,
        **resolved,
    )
    return opts.validate()


def save_options(opts: TrainingOptions, path: Path) -> None:
    atomic_write_text(path, json.dumps(opts.to_json(), indent=2) + "\n")
