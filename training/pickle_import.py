"""Read NVlabs network pickles (stylegan2-ada-pytorch `network-snapshot-*.pkl`, and the StyleGAN2 networks of
stylegan3-repo pickles) without running anything they contain.

A .pkl from the internet is a program: the standard unpickler calls whatever globals it names, the modules
embed their Python source for `exec`, and every tensor storage is a nested `torch.save` stream that
`torch.storage._load_from_bytes` opens with `torch.load(weights_only=False)`. Here instead:

- the unpickler resolves globals through an allow-list (ALLOWED below); each allowed name maps to a small
  constructor written here that only builds data (a record, a numpy array, a torch tensor). Anything else stops
  the read with an ImportRefused naming the global, before any object of the file is called;
- the embedded module source is never looked at beyond its class name: modules become `ModuleRecord`s (class
  name + attribute dict) that `flatten_module` turns into a name -> tensor dict;
- each storage record is parsed here (`parse_legacy_storage`): the legacy, tar-less `torch.save` stream is
  three small pickles (magic number, protocol version 1001, system info), then a pickle of the object whose
  storages appear as persistent ids ('storage', type, key, location, numel[, view]), then a pickle of the
  sorted storage keys, then per key an 8-byte little-endian element count and the raw little-endian bytes.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.errors import TrainingError


class ImportRefused(TrainingError):
    """The file is not a network pickle this reader accepts (hostile, damaged or of another kind)."""


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # numpy has no bfloat16: read as int16 bits, then viewed as torch.bfloat16
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


# ------------------------------------------------------------------------------------ what the file may build


@dataclass
class ModuleRecord:
    """A module as torch_utils.persistence pickles it, without its code: class name and attribute dict."""

    class_name: str
    state: dict = field(repr=False)

    @property
    def children(self) -> dict:
        return dict(self.state.get("_modules") or {})

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})


class AttrDict(dict):
    """Stands in for dnnlib.util.EasyDict: a plain dict (its attribute access is not needed here)."""


@dataclass
class StorageRecord:
    key: str
    type_name: str
    numel: int
    array: np.ndarray | None = None  # filled once the raw bytes after the pickle are read

    def tensor(self) -> torch.Tensor:
        t = torch.from_numpy(self.array)
        return t.view(torch.bfloat16) if self.type_name == "BFloat16Storage" else t


@dataclass
class StorageView:  # legacy (torch < 1.x) views into a larger storage
    root: StorageRecord
    offset: int
    numel: int

    def tensor(self) -> torch.Tensor:
        return self.root.tensor()[self.offset : self.offset + self.numel]


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _DtypeSpec:
    """numpy.dtype(name, align, copy) plus its __setstate__ tuple; only plain numeric dtypes."""

    def __init__(self, name, align=False, copy=False):
        if not isinstance(name, str) or not re.fullmatch(r"[biufc]\d{1,2}|bool|float\d\d|int\d\d?", name):
            raise ImportRefused(f"numpy dtype {name!r} is not a plain numeric type")
        self.name, self.order = name, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def numpy(self) -> np.dtype:
        dt = np.dtype(self.name)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


class _NdarraySpec:
    """numpy.core.multiarray._reconstruct(ndarray, shape, b'b') followed by BUILD with the array's state."""

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ImportRefused("a numpy array with an unexpected state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, bytes | bytearray):
            raise ImportRefused("a numpy array of objects (only numeric arrays are read)")
        dt = dtype.numpy()
        count = int(np.prod(shape)) if len(shape) else 1
        if count * dt.itemsize != len(raw):
            raise ImportRefused(f"a numpy array of shape {tuple(shape)} with {len(raw)} bytes of data")
        self.array = np.frombuffer(raw, dt).reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct_persistent_obj(meta):
    if (
        not isinstance(meta, dict)
        or meta.get("type") != "class"
        or not isinstance(meta.get("class_name"), str)
    ):
        raise ImportRefused("a persistent object that is not a module record")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise ImportRefused(f"persistent {meta['class_name']} without an attribute dict")
    return ModuleRecord(meta["class_name"], state)  # meta["module_src"] is never read


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, bytes):
        raise ImportRefused("a numpy scalar that is not numeric")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise ImportRefused(f"a numpy {dt} scalar with {len(data)} bytes")
    return np.frombuffer(data, dt)[0].item()


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not _NdarraySpec:
        raise ImportRefused("numpy _reconstruct of something other than ndarray")
    return _NdarraySpec()


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    if not isinstance(storage, StorageRecord | StorageView):
        raise ImportRefused("a tensor whose storage is not a storage record")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ImportRefused(f"a tensor with an impossible layout (size {size}, stride {stride})")
    needed = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if needed > storage.numel:
        raise ImportRefused(
            f"a tensor of shape {list(size)} needs {needed} elements but its storage holds "
            f"{storage.numel}: the file is damaged"
        )
    return _Pending(storage, offset, size, stride)


@dataclass
class _Pending:
    """A tensor whose storage bytes are known only after the whole pickle is read (always the case for the
    outer stream, whose storages are complete records, but kept uniform)."""

    storage: StorageRecord | StorageView
    offset: int
    size: tuple
    stride: tuple

    def resolve(self) -> torch.Tensor:
        flat = self.storage.tensor()
        return torch.as_strided(flat, self.size, self.stride, self.offset).clone()


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _Pending):
        raise ImportRefused("a parameter that is not a tensor")
    return data


def _codecs_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ImportRefused("_codecs.encode used for something other than protocol-2 bytes")
    return text.encode("latin1")


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


def _load_from_bytes(data):
    if not isinstance(data, bytes):
        raise ImportRefused("a storage record that is not bytes")
    return parse_legacy_storage(data)


# Globals a network pickle may name, and what this reader builds for each. NOTHING else is ever resolved.
ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Size"): _torch_size,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): _NdarraySpec,
    ("numpy", "dtype"): _DtypeSpec,
    ("dnnlib.util", "EasyDict"): AttrDict,
    ("dnnlib", "EasyDict"): AttrDict,
    ("_codecs", "encode"): _codecs_encode,
}

# Formats recognised by their top-level globals, refused with a precise message.
KNOWN_OTHER_FORMATS = {
    (
        "dnnlib.tflib.network",
        "Network",
    ): "a TensorFlow-era StyleGAN/StyleGAN2 pickle (dnnlib.tflib.network.Network)",
    ("torch._utils", "_rebuild_tensor"): "an old torch (< 1.0) pickle",
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals only through `table`; storage persistent ids only where `persistent` is given."""

    def __init__(self, stream, table: dict, persistent=None):
        super().__init__(stream)
        self._table, self._persistent = table, persistent

    def find_class(self, module, name):
        fn = self._table.get((module, name))
        if fn is None:
            what = KNOWN_OTHER_FORMATS.get((module, name))
            if what:
                raise ImportRefused(
                    f"this is {what}; ghosts reads PyTorch pickles of stylegan2-ada-pytorch and "
                    f"the StyleGAN2 networks of the stylegan3 repository"
                )
            raise ImportRefused(
                f"refused global {module}.{name}: not one a network pickle uses "
                f"(nothing from the file was run)"
            )
        return fn

    def persistent_load(self, pid):
        if self._persistent is None:
            raise ImportRefused("an unexpected persistent id in a network pickle")
        return self._persistent(pid)


def _load_one(stream, table, persistent=None, what="pickle"):
    try:
        return _RestrictedUnpickler(stream, table, persistent).load()
    except ImportRefused:
        raise
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as e:
        raise ImportRefused(f"damaged or not a network pickle ({what}: {type(e).__name__}: {e})") from e


def parse_legacy_storage(data: bytes) -> StorageRecord | StorageView:
    """The storage inside one `torch.storage._load_from_bytes` record, read without torch.load."""
    f = io.BytesIO(data)
    if _load_one(f, {}, what="storage magic") != LEGACY_MAGIC:
        raise ImportRefused("a storage record without the torch legacy magic number")
    if _load_one(f, {}, what="storage protocol") != LEGACY_PROTOCOL:
        raise ImportRefused("a storage record of an unknown torch legacy protocol")
    info = _load_one(f, {}, what="storage system info")
    if not isinstance(info, dict) or info.get("little_endian") is False:
        raise ImportRefused("a storage record written on a big-endian machine")
    records: dict[str, StorageRecord] = {}

    def persistent(pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ImportRefused(f"an unexpected persistent id in a storage record: {pid!r:.80}")
        _, stype, key, _location, numel, *rest = pid
        if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise ImportRefused("a storage record of an unknown type")
        rec = records.setdefault(str(key), StorageRecord(str(key), stype.name, numel))
        view = rest[0] if rest else None
        if view is not None:  # (view_key, offset, view_size)
            _vkey, offset, size = view
            if offset < 0 or offset + size > rec.numel:
                raise ImportRefused("a storage view outside its storage")
            return StorageView(rec, int(offset), int(size))
        return rec

    table = {
        ("torch", name): _StorageType(name) for name in STORAGE_DTYPES
    }  # GLOBAL pushes the object itself
    result = _load_one(f, table, persistent, what="storage pickle")
    keys = _load_one(f, {}, what="storage keys")
    if not isinstance(keys, list) or set(map(str, keys)) != set(records):
        raise ImportRefused("a storage record whose key list does not match its storages")
    for key in keys:
        rec = records[str(key)]
        head = f.read(8)
        if len(head) != 8:
            raise ImportRefused(f"truncated storage record {key}")
        numel = int.from_bytes(head, "little", signed=True)
        if numel != rec.numel:
            raise ImportRefused(
                f"storage {key} says {rec.numel} elements in its pickle and {numel} in its data"
            )
        np_dtype = np.int16 if rec.type_name == "BFloat16Storage" else STORAGE_DTYPES[rec.type_name]
        nbytes = numel * np.dtype(np_dtype).itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ImportRefused(f"truncated storage {key}: {len(raw)} of {nbytes} bytes")
        rec.array = np.frombuffer(raw, np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    if not isinstance(result, StorageRecord | StorageView):
        raise ImportRefused("a storage record that holds something other than a storage")
    return result


# ------------------------------------------------------------------------------------------------- reading


def read_network_pickle(path: Path | str) -> dict:
    """The top-level dict of a network pickle, modules as ModuleRecord, tensors as torch tensors."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImportRefused(f"cannot read {path}: {e.strerror or e}") from e
    if not data.startswith(b"\x80") or len(data) < 3:
        raise ImportRefused(f"{path.name} is not a pickle file")
    try:
        top = _load_one(io.BytesIO(data), ALLOWED, what=path.name)
    except ImportRefused as e:
        raise ImportRefused(f"{path.name}: {e}") from None
    if not isinstance(top, dict):
        raise ImportRefused(f"{path.name}: the pickle holds a {type(top).__name__}, not a dict of networks")
    return _resolve(top)


def _resolve(obj, depth=0):
    """Replace pending tensors by tensors and numpy specs by arrays, everywhere in the tree."""
    if depth > 200:
        raise ImportRefused("nesting too deep for a network pickle")
    if isinstance(obj, _Pending):
        return obj.resolve()
    if isinstance(obj, _NdarraySpec):
        return obj.array
    if isinstance(obj, ModuleRecord):
        obj.state = _resolve(obj.state, depth + 1)
        return obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], depth + 1)
        return obj
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    return obj


def flatten_module(record: ModuleRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """state_dict-style names -> tensors (parameters and buffers, trainable or frozen alike)."""
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (record.state.get(group) or {}).items():
            if t is not None:
                if not torch.is_tensor(t):
                    raise ImportRefused(f"{record.class_name}.{name} is not a tensor")
                out[prefix + name] = t
    for name, child in record.children.items():
        if child is None:
            continue
        if not isinstance(child, ModuleRecord):
            raise ImportRefused(f"{record.class_name}.{name} is not a module record")
        out.update(flatten_module(child, f"{prefix}{name}."))
    return out


# ------------------------------------------------------------------------------ to ghosts names and options

REFERENCE_FILTER = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0  # the only resampling filter ghosts builds


def _kind_of(G: ModuleRecord) -> str:
    synthesis = G.children.get("synthesis")
    if not isinstance(synthesis, ModuleRecord):
        raise ImportRefused(f"a {G.class_name} without a synthesis network")
    names = {c.class_name for c in synthesis.children.values() if isinstance(c, ModuleRecord)}
    if "SynthesisBlock" in names:
        return "stylegan2"
    if "SynthesisInput" in names:
        return "stylegan3"
    raise ImportRefused(f"an unknown generator layout (synthesis children {sorted(names)})")


def _renamed(sd: dict[str, torch.Tensor], rename_block) -> dict[str, torch.Tensor]:
    """`sd` under ghosts' names: the resampling filters checked and dropped, the mapping network's fcN as
    layers.N, and every other name's parts passed to `rename_block`, which renames resolution blocks in place."""
    out = {}
    for name, t in sd.items():
        parts = name.split(".")
        if parts[-1] == "resample_filter":
            _check_filter(name, t)
            continue
        if parts[0] == "mapping" and re.fullmatch(r"fc\d+", parts[1]):
            parts[1:2] = ["layers", parts[1][2:]]
        else:
            rename_block(parts)
        out[".".join(parts)] = t
    return out


def _rename_generator(sd: dict[str, torch.Tensor], res: int) -> dict[str, torch.Tensor]:
    def rename_block(parts: list[str]) -> None:  # synthesis.b<R> -> synthesis.blocks.<log2 R - 2>
        if parts[0] == "synthesis" and re.fullmatch(r"b\d+", parts[1]):
            parts[1:2] = ["blocks", str(int(np.log2(int(parts[1][1:]))) - 2)]

    return _renamed(sd, rename_block)


def _rename_discriminator(sd: dict[str, torch.Tensor], res: int) -> dict[str, torch.Tensor]:
    top = int(np.log2(res))

    def rename_block(
        parts: list[str],
    ) -> None:  # b<R> -> blocks.<log2 res - log2 R>; b4 (the epilogue) keeps its name
        if re.fullmatch(r"b\d+", parts[0]) and parts[0] != "b4":
            parts[0:1] = ["blocks", str(top - int(np.log2(int(parts[0][1:]))))]

    return _renamed(sd, rename_block)


def _check_filter(name: str, t: torch.Tensor) -> None:
    if tuple(t.shape) != (4, 4) or not np.allclose(t.double().numpy(), REFERENCE_FILTER, atol=1e-6):
        raise ImportRefused(f"{name} is not the [1,3,3,1] filter; ghosts builds only that one")


def _expect(kwargs: dict, key: str, allowed, what: str) -> None:
    if kwargs.get(key, allowed[0]) not in allowed:
        raise ImportRefused(f"{what} {key}={kwargs[key]!r} is not supported (ghosts builds {allowed[0]!r})")


def _feature_maps(kw: dict) -> dict:
    """The feature-map options G's synthesis network and D spell alike (NVlabs' defaults where absent)."""
    return {
        "channel_base": int(kw.get("channel_base", 32768)),
        "channel_max": int(kw.get("channel_max", 512)),
        "num_reduced_res": int(kw.get("num_fp16_res", 0)),
        "conv_clamp": kw.get("conv_clamp"),
    }


def _network_kwargs(kw: dict, maps: dict, own: dict) -> dict:
    """ghosts' constructor arguments: those G and D share (labels and image from `kw`, feature maps from
    `maps`), then the network's `own`, built as format version 2."""
    return {
        "c_dim": int(kw["c_dim"]),
        "img_resolution": int(kw["img_resolution"]),
        "img_channels": int(kw["img_channels"]),
        **_feature_maps(maps),
        **own,
        "arch_version": 2,
    }


def generator_kwargs(G: ModuleRecord) -> dict:
    kw = G.init_kwargs
    # stylegan2-ada-pytorch nests the synthesis options in synthesis_kwargs; the stylegan3 repository passes
    # them to its StyleGAN2 Generator as keyword arguments of their own.
    m = dict(kw.get("mapping_kwargs") or {})
    s = {
        **{k: v for k, v in kw.items() if k not in ("mapping_kwargs", "synthesis_kwargs")},
        **dict(kw.get("synthesis_kwargs") or {}),
    }
    _expect(s, "architecture", ("skip",), "G")
    for key in ("embed_features", "layer_features"):
        _expect(m, key, (None, kw.get("w_dim", 512)), "G mapping")
    _expect(m, "activation", ("lrelu",), "G mapping")
    _expect(s, "channels_last", (False, True), "G")
    own = {
        "z_dim": int(kw["z_dim"]),
        "w_dim": int(kw["w_dim"]),
        "mapping_layers": int(m.get("num_layers", 8)),
        "mapping_lr_multiplier": float(m.get("lr_multiplier", 0.01)),
        "w_avg_beta": float(m.get("w_avg_beta", 0.995)),
    }
    return _network_kwargs(kw, s, own)


def discriminator_kwargs(D: ModuleRecord) -> dict:
    kw = D.init_kwargs
    m, e = dict(kw.get("mapping_kwargs") or {}), dict(kw.get("epilogue_kwargs") or {})
    _expect(kw, "architecture", ("resnet",), "D")
    own = {
        "mbstd_group_size": int(e.get("mbstd_group_size", 4)),
        "mbstd_num_channels": int(e.get("mbstd_num_channels", 1)),
        "mapping_layers": int(m.get("num_layers", 8)),
        "cmap_dim": kw.get("cmap_dim"),
    }
    return _network_kwargs(kw, kw, own)


def convert_network_pickle(path: Path | str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, tensors) of a ghosts snapshot for an NVlabs network pickle: G, G_ema, D (when present),
    augment p. Raises ImportRefused for anything it cannot represent exactly."""
    path = Path(path)
    top = read_network_pickle(path)
    for key in ("G", "G_ema"):
        if not isinstance(top.get(key), ModuleRecord):
            raise ImportRefused(f"{path.name} holds no {key} network (keys: {sorted(map(str, top))})")
    kind = _kind_of(top["G_ema"])
    if kind == "stylegan3":
        raise ImportRefused(
            f"{path.name} holds a StyleGAN3 (alias-free) generator; ghosts trains and renders "
            f"StyleGAN2 networks only: use a StyleGAN2 .pkl (stylegan2-ada-pytorch, or "
            f"stylegan3-repo files made with --cfg=stylegan2)"
        )
    g_kwargs = generator_kwargs(top["G_ema"])
    res = g_kwargs["img_resolution"]
    tensors = {}
    for key in ("G", "G_ema"):
        for name, t in _rename_generator(flatten_module(top[key]), res).items():
            tensors[f"{key}/{name}"] = t.float().contiguous() if t.is_floating_point() else t.contiguous()
    d_kwargs = None
    if isinstance(top.get("D"), ModuleRecord):
        d_kwargs = discriminator_kwargs(top["D"])
        for name, t in _rename_discriminator(flatten_module(top["D"]), res).items():
            tensors[f"D/{name}"] = t.float().contiguous()
    augment_p = 0.0
    pipe = top.get("augment_pipe")
    if isinstance(pipe, ModuleRecord):
        p = flatten_module(pipe).get("p")
        augment_p = float(p.reshape(-1)[0]) if p is not None and p.numel() else 0.0
    tsk = top.get("training_set_kwargs")
    meta = {
        "G_kwargs": g_kwargs,
        "D_kwargs": d_kwargs,
        "augment_p": augment_p,
        "cur_nimg": 0,
        "kimg": 0.0,
        "options": None,
        "dataset_sha256": None,
        "extra": {},
        "source": {
            "name": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "format": "stylegan2-ada-pytorch network pickle",
            "training_set": {
                k: v for k, v in dict(tsk).items() if isinstance(v, str | int | float | bool | type(None))
            }
            if isinstance(tsk, dict)
            else None,
        },
    }
    return meta, tensors
