"""Snapshots as safetensors (all tensors) + JSON (everything else): no pickle, so a checkpoint downloaded
from elsewhere cannot run code. A snapshot `network-snapshot-NNNNNN` is complete once its JSON exists: the
tensors are written first, the JSON last, each atomically.
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from curation.catalog.store import atomic_write_bytes, atomic_write_text
from training.errors import TrainingError
from training.networks import Discriminator, Generator
from training.pickle_import import convert_network_pickle

FORMAT = "ghosts-stylegan2-ada-snapshot"
FORMAT_VERSION = 2  # 2: networks compute the reference's StyleGAN2 (networks.py, arch_version 2)
# 1: the networks of ghosts before format version 2; their snapshots are built with arch_version 1 and render
#    exactly as they did.
SNAPSHOT_RE = re.compile(r"network-snapshot-(\d+)\.json$")


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


def save_snapshot(path: Path | str, *, G: Generator, G_ema: Generator | None = None,
                  D: Discriminator | None = None, opt_G: torch.optim.Optimizer | None = None,
                  opt_D: torch.optim.Optimizer | None = None, augment_p: float = 0.0, cur_nimg: int = 0,
                  options: dict | None = None, dataset_sha256: str | None = None,
                  extra_tensors: dict[str, torch.Tensor] | None = None, extra: dict | None = None) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json`; returns the stem. `G_ema` defaults to `G` (handy for
    tests that need a checkpoint of a freshly built generator)."""
    stem = snapshot_stem(path)
    G_ema = G if G_ema is None else G_ema
    tensors = {**_module_tensors("G", G), **_module_tensors("G_ema", G_ema)}
    meta: dict = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "G_kwargs": G.init_kwargs, "D_kwargs": D.init_kwargs if D is not None else None,
        "cur_nimg": int(cur_nimg), "kimg": cur_nimg / 1000, "augment_p": float(augment_p),
        "options": options, "dataset_sha256": dataset_sha256, "extra": extra or {},
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
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stem.with_suffix(".safetensors"), safetensors.torch.save(tensors))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return stem


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
        cuda = [self.tensors[f"rng/torch_cuda/{i}"] for i in range(torch.cuda.device_count())
                if f"rng/torch_cuda/{i}" in self.tensors]
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
        return Snapshot(stem=Path(path), meta=meta, tensors=tensors)
    stem = snapshot_stem(path)
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not js.exists() or not st.exists():
        raise TrainingError(f"snapshot not found or incomplete: expected {js.name} and {st.name} in {stem.parent}")
    try:
        meta = json.loads(js.read_text())
        tensors = safetensors.torch.load_file(str(st))
    except (OSError, ValueError) as e:  # safetensors raises a ValueError subclass on a bad header
        raise TrainingError(f"cannot read snapshot {stem}: {e}") from e
    except Exception as e:
        raise TrainingError(f"cannot read snapshot {stem}: {e}") from e
    if meta.get("format") != FORMAT:
        raise TrainingError(f"{js} is not a ghosts training snapshot")
    return Snapshot(stem=stem, meta=_upgrade_meta(meta, js), tensors=tensors)


def _upgrade_meta(meta: dict, where: Path) -> dict:
    """Meta of any known format version, as this version reads it (networks keep the maths they were
    trained with: a version-1 snapshot builds arch_version 1 networks)."""
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise TrainingError(f"{where} has snapshot format version {version}; this ghosts reads up to "
                            f"{FORMAT_VERSION}: update ghosts")
    if version < 2:
        for key in ("G_kwargs", "D_kwargs"):
            if meta.get(key):
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
            found.append((int(m.group(1)), js.stat().st_mtime, js.with_suffix("")))
    return [p for *_, p in sorted(found)]


def latest_snapshot(outdir: Path) -> Path | None:
    """The newest complete snapshot in the newest run folder of `outdir` that has one."""
    runs = sorted((d for d in Path(outdir).glob("[0-9][0-9][0-9][0-9][0-9]-*") if d.is_dir()), reverse=True)
    for run in runs:
        snaps = list_snapshots(run)
        if snaps:
            return snaps[-1]
    return None


def write_snapshot(snap: Snapshot, path: Path | str) -> Path:
    """Write a loaded snapshot (e.g. one read from a .pkl) as `<stem>.safetensors` + `<stem>.json`."""
    stem = snapshot_stem(path)
    meta = {**snap.meta, "format": FORMAT, "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in snap.tensors.items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), safetensors.torch.save(tensors))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return stem
