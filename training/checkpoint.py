"""Snapshots as safetensors (all tensors) + JSON (everything else): no pickle, so a checkpoint downloaded
from elsewhere cannot run code. A snapshot `network-snapshot-NNNNNN` is complete once its JSON exists: the
tensors are written first, the JSON last, each atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import safetensors.torch
import torch

from curation.catalog.store import TMP_PREFIX, atomic_write_bytes, atomic_write_text
from training.bounds import NETWORK_BOUNDS
from training.errors import TrainingError
from training.networks import Discriminator, Generator
from training.pickle_import import convert_network_pickle

FORMAT = "ghosts-stylegan2-ada-snapshot"
FORMAT_VERSION = 3  # 3: the JSON names the sha256 of its .safetensors ("weights_sha256"), checked on load
# 2: networks compute the reference's StyleGAN2 (networks.py, arch_version 2)
# 1: the networks of ghosts before format version 2; their snapshots are built with arch_version 1 and render
#    exactly as they did.
SNAPSHOT_RE = re.compile(r"network-snapshot-(\d+)(?:-(\d{3}))?\.json$")
LOCK_NAME = ".ghosts-train.lock"

# Every size a snapshot gives the network constructors is checked against these before anything is built.
_INT_BOUNDS = NETWORK_BOUNDS
_FLOAT_KEYS = {"conv_clamp", "mapping_lr_multiplier", "w_avg_beta"}
_NULLABLE = {"conv_clamp", "cmap_dim"}


def snapshot_name(cur_nimg: int) -> str:
    """A snapshot's stem name, unique per image count: `network-snapshot-KKKKKK` on a whole kimg (the
    reference's names), `network-snapshot-KKKKKK-III` between two (III: the images past KKKKKK kimg)."""
    kimg, rest = divmod(int(cur_nimg), 1000)
    return f"network-snapshot-{kimg:06d}" + (f"-{rest:03d}" if rest else "")


def check_network_kwargs(kwargs, what: str, where) -> dict:
    """`kwargs` as the constructors may take them, or a TrainingError naming the bad field."""
    if not isinstance(kwargs, dict):
        raise TrainingError(f"{where}: {what} must be an object, got {type(kwargs).__name__}")
    for key, value in kwargs.items():
        if key in _INT_BOUNDS:
            if value is None and key in _NULLABLE:
                continue
            lo, hi = _INT_BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise TrainingError(
                    f"{where}: {what}.{key} is {value!r}; it must be a whole number from {lo} to {hi}"
                )
            if key == "img_resolution" and value & (value - 1):
                raise TrainingError(f"{where}: {what}.img_resolution is {value}; it must be a power of two")
        elif key in _FLOAT_KEYS:
            if value is None and key in _NULLABLE:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not -1e9 < value < 1e9:
                raise TrainingError(f"{where}: {what}.{key} is {value!r}; it must be a number")
        else:
            raise TrainingError(f"{where}: {what} has an unknown field {key!r}")
    if "img_resolution" not in kwargs:
        raise TrainingError(f"{where}: {what} lacks img_resolution")
    return kwargs


def _check_meta(meta, where) -> dict:
    if not isinstance(meta, dict):
        raise TrainingError(f"{where}: not a snapshot JSON object")
    check_network_kwargs(meta.get("G_kwargs"), "G_kwargs", where)
    if meta.get("D_kwargs") is not None:
        check_network_kwargs(meta["D_kwargs"], "D_kwargs", where)
    nimg = meta.get("cur_nimg", 0)
    if isinstance(nimg, bool) or not isinstance(nimg, int) or nimg < 0:
        raise TrainingError(f"{where}: cur_nimg is {nimg!r}; it must be a whole number >= 0")
    p = meta.get("augment_p", 0.0)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise TrainingError(f"{where}: augment_p is {p!r}; it must be a number from 0 to 1")
    if not isinstance(meta.get("extra", {}), dict):
        raise TrainingError(f"{where}: extra must be an object")
    return meta


def snapshot_stem(path: Path | str) -> Path:
    """Accept the .safetensors file, the .json file, or the common stem (a .pkl is kept as it is)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}/{idx}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def save_snapshot(
    path: Path | str,
    *,
    G: Generator,
    G_ema: Generator | None = None,
    D: Discriminator | None = None,
    opt_G: torch.optim.Optimizer | None = None,
    opt_D: torch.optim.Optimizer | None = None,
    augment_p: float = 0.0,
    cur_nimg: int = 0,
    options: dict | None = None,
    dataset_sha256: str | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json`; returns the stem. `G_ema` defaults to `G` (handy for
    tests that need a checkpoint of a freshly built generator)."""
    stem = snapshot_stem(path)
    G_ema = G if G_ema is None else G_ema
    tensors = {**_module_tensors("G", G), **_module_tensors("G_ema", G_ema)}
    meta: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "G_kwargs": G.init_kwargs,
        "D_kwargs": D.init_kwargs if D is not None else None,
        "cur_nimg": int(cur_nimg),
        "kimg": cur_nimg / 1000,
        "augment_p": float(augment_p),
        "options": options,
        "dataset_sha256": dataset_sha256,
        "extra": extra or {},
        "rng": {"python": _jsonable(random.getstate()), "numpy": _jsonable(np.random.get_state())},
    }
    if D is not None:
        tensors.update(_module_tensors("D", D))
    for name, opt in (("opt_G", opt_G), ("opt_D", opt_D)):
        if opt is not None:
            t, m = _optimizer_tensors(name, opt)
            tensors.update(t)
            meta[name] = m
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/torch_cuda/{i}"] = s
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra/{k}"] = v.detach().cpu().contiguous()
    _write_pair(stem, tensors, meta)
    return stem


def _write_pair(stem: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Weights first (temp + rename), then the JSON naming their sha256 (temp + rename): a kill between the
    two leaves weights without a JSON (not a snapshot), and weights that do not match a JSON are refused."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    blob = safetensors.torch.save(tensors)
    meta = {**meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), blob)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")


def _jsonable(obj):
    if isinstance(obj, tuple | list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"ndarray": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


@dataclass
class Snapshot:
    stem: Path
    meta: dict
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def cur_nimg(self) -> int:
        return int(self.meta["cur_nimg"])

    @property
    def augment_p(self) -> float:
        return float(self.meta["augment_p"])

    @property
    def resolution(self) -> int:
        return int(self.meta["G_kwargs"]["img_resolution"])

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + "/")}

    def build_generator(self, which: str = "G_ema", device="cpu") -> Generator:
        G = Generator(**self.meta["G_kwargs"])
        _load_state(G, self.state_dict(which), f"{self.stem}: {which}")
        return G.to(device)

    def build_discriminator(self, device="cpu") -> Discriminator:
        if not self.meta.get("D_kwargs"):
            raise TrainingError(f"{self.stem} holds no discriminator (a generator-only export?)")
        D = Discriminator(**self.meta["D_kwargs"])
        _load_state(D, self.state_dict("D"), f"{self.stem}: D")
        return D.to(device)

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        m = self.meta.get(name)
        if m is None:
            raise TrainingError(f"{self.stem} holds no {name} state; cannot resume exactly")
        state: dict = {}
        for k, v in self.state_dict(name).items():
            idx, key = k.split("/", 1)
            state.setdefault(int(idx), {})[key] = v
        for k, v in m["scalars"].items():
            idx, key = k.split("/", 1)
            state.setdefault(int(idx), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": m["param_groups"]})

    def restore_rng(self) -> None:
        py = self.meta["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npst = self.meta["rng"]["numpy"]
        np.random.set_state((npst[0], np.array(npst[1]["ndarray"], dtype=npst[1]["dtype"]), *npst[2:]))
        torch.set_rng_state(self.tensors["rng/torch_cpu"])
        cuda = [
            self.tensors[f"rng/torch_cuda/{i}"]
            for i in range(torch.cuda.device_count())
            if f"rng/torch_cuda/{i}" in self.tensors
        ]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def _load_state(module: torch.nn.Module, sd: dict, what: str) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise TrainingError(f"{what} does not match its recorded architecture: {e}") from e


def load_snapshot(path: Path | str) -> Snapshot:
    """A ghosts snapshot (any of its names), or an NVlabs network pickle read safely (training.pickle_import)."""
    if Path(path).suffix == ".pkl":
        meta, tensors = convert_network_pickle(path)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        return Snapshot(stem=Path(path), meta=_check_meta(meta, path), tensors=tensors)
    stem = snapshot_stem(path)
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not js.exists() or not st.exists():
        raise TrainingError(
            f"snapshot not found or incomplete: expected {js.name} and {st.name} in {stem.parent}"
        )
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise TrainingError(f"cannot read snapshot {js}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TrainingError(f"{js} is not a ghosts training snapshot")
    meta = _check_meta(_upgrade_meta(meta, js), js)
    try:
        blob = st.read_bytes()
    except OSError as e:
        raise TrainingError(f"cannot read snapshot {st}: {e}") from e
    want = meta.get("weights_sha256")
    if want is None and int(meta.get("format_version", 1)) >= 3:
        raise TrainingError(f"{js} names no weights_sha256: the snapshot is damaged")
    if want is not None and hashlib.sha256(blob).hexdigest() != want:
        raise TrainingError(
            f"snapshot {stem.name} is damaged: {st.name} does not match the sha256 its JSON records "
            f"(a write interrupted, or a file changed since)"
        )
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as e:  # safetensors raises its own error types on a bad header
        raise TrainingError(f"cannot read snapshot {st}: {e}") from e
    return Snapshot(stem=stem, meta=meta, tensors=tensors)


def _upgrade_meta(meta: dict, where: Path) -> dict:
    """Meta of any known format version, as this version reads it (networks keep the maths they were
    trained with: a version-1 snapshot builds arch_version 1 networks)."""
    version = meta.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TrainingError(f"{where}: format_version is {version!r}; it must be a whole number")
    if version > FORMAT_VERSION:
        raise TrainingError(
            f"{where} has snapshot format version {version}; this ghosts reads up to "
            f"{FORMAT_VERSION}: update ghosts"
        )
    if version < 2:
        for key in ("G_kwargs", "D_kwargs"):
            if isinstance(meta.get(key), dict):  # anything else is refused by _check_meta
                meta[key] = {**meta[key], "arch_version": meta[key].get("arch_version", 1)}
    return meta


def load_generator(path: Path | str, device="cpu") -> Generator:
    """The EMA generator of a snapshot, in eval mode, with gradients off."""
    G = load_snapshot(path).build_generator("G_ema", device=device)
    return G.eval().requires_grad_(False)


def list_snapshots(run_dir: Path) -> list[Path]:
    """Complete snapshots of a run folder, oldest first."""
    found = []
    for js in Path(run_dir).glob("network-snapshot-*.json"):
        m = SNAPSHOT_RE.search(js.name)
        if m and js.with_suffix(".safetensors").exists():
            found.append((int(m.group(1)), int(m.group(2) or 0), js.with_suffix("")))
    return [p for *_, p in sorted(found)]


def latest_snapshot(outdir: Path) -> Path | None:
    """The newest complete snapshot in the newest run folder of `outdir` that has one."""
    runs = sorted((d for d in Path(outdir).glob("[0-9][0-9][0-9][0-9][0-9]-*") if d.is_dir()), reverse=True)
    for run in runs:
        snaps = list_snapshots(run)
        if snaps:
            return snaps[-1]
    return None


def latest_good_snapshot(outdir: Path, log=print) -> Path | None:
    """The newest snapshot of the newest run folder that loads and matches its checksum; each damaged newer one is
    reported through `log` and skipped."""
    runs = sorted((d for d in Path(outdir).glob("[0-9][0-9][0-9][0-9][0-9]-*") if d.is_dir()), reverse=True)
    for run in runs:
        for stem in reversed(list_snapshots(run)):
            try:
                load_snapshot(stem)
            except TrainingError as e:
                log(f"skipping {stem.name}: {e}")
                continue
            return stem
    return None


class RunLock:
    """An exclusive lock on a run folder (flock on `LOCK_NAME`), held while one process writes the run: a second
    writer gets a TrainingError at once. The kernel drops the lock when the holder dies, whatever kills it; the
    file names the holder's pid and is removed when the lock is released, so a run that ended leaves none. A
    file left by a process that was killed is taken over, saying so (`log`, default stderr)."""

    def __init__(self, run_dir: Path, log=None):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self._log = log
        self.taken_over_from: int | None = None  # pid named by a lock file left by a killed process
        self.swept = 0  # temp files of a killed writer removed when the lock was taken

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TrainingError(
                    f"{self.path.parent} is being written by another training process"
                    f"{_holder(self.path)}; wait for it to finish or stop it first"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            # The holder released (and removed) the file between our open and our lock: lock the new one.
            os.close(fd)
        left = os.read(fd, 64).decode("ascii", "replace").strip()
        if left.isdigit() and int(left) != os.getpid():
            self.taken_over_from = int(left)
            message = f"{self.path.parent}: taking over the lock left by process {left}, " + (
                "which no longer holds it"
                if _alive(int(left))
                else "which is no longer running (killed while it trained?)"
            )
            if self._log is not None:
                self._log(message)
            else:
                print(message, file=sys.stderr)
        self._fd = fd
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: no lock, and no lock file left behind
            self.release()
            raise
        # Whoever writes this run holds the lock, so the temp files in it are a killed writer's: gone, any age.
        self.swept = sum(1 for tmp in self.path.parent.glob(TMP_PREFIX + "*") if _unlinked(tmp))
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Removed while still held, so no other process can lock this file once it is gone from the
            # folder (a process that opened it before is sent to the new one by the inode check above).
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                    os.unlink(self.path)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _unlinked(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _holder(path: Path) -> str:
    """' (pid N)' naming the process that holds a lock file, when it says."""
    try:
        pid = path.read_text("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def write_snapshot(snap: Snapshot, path: Path | str) -> Path:
    """Write a loaded snapshot (e.g. one read from a .pkl) as `<stem>.safetensors` + `<stem>.json`."""
    stem = snapshot_stem(path)
    meta = {
        **snap.meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    meta.pop("weights_sha256", None)
    _write_pair(stem, {k: v.contiguous() for k, v in snap.tensors.items()}, meta)
    return stem
