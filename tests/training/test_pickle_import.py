"""NVlabs network pickles: read safely (allow-list, own storage parser), rendered as the reference renders them."""

import collections
import io
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import load_snapshot, write_snapshot
from training.pickle_import import ImportRefused, read_network_pickle

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "nvlabs"
if not FIXTURE.exists():
    FIXTURE = Path("/work/shared/testdata/nvlabs")
PKL = FIXTURE / "network-snapshot-32px.pkl"
needs_fixture = pytest.mark.skipif(not PKL.exists(), reason="NVlabs fixture not present")


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURE / "expected.npz", allow_pickle=False)


@pytest.fixture(scope="module")
def pkl_snapshot():
    return load_snapshot(PKL)


def _check_against_reference(snap, expected):
    G = snap.build_generator("G_ema")
    D = snap.build_discriminator()
    z = torch.from_numpy(expected["z"])
    with torch.no_grad():
        assert torch.equal(G.mapping.w_avg, torch.from_numpy(expected["w_avg"]))
        for psi, key in ((1.0, "psi1"), (0.7, "psi07")):
            img = G(z, None, truncation_psi=psi, noise_mode="const")
            np.testing.assert_allclose(img.numpy(), expected[f"img_{key}"], atol=1e-4, rtol=0)
            logits = D(img, None)
            np.testing.assert_allclose(logits.numpy(), expected[f"logits_{key}"], atol=1e-4, rtol=0)
    assert snap.augment_p == pytest.approx(float(expected["augment_p"]))


@needs_fixture
def test_reference_pickle_renders_the_reference_images_and_logits(pkl_snapshot, expected):
    _check_against_reference(pkl_snapshot, expected)
    # G and G_ema are both there and differ, as in the file.
    g, g_ema = pkl_snapshot.state_dict("G"), pkl_snapshot.state_dict("G_ema")
    assert g.keys() == g_ema.keys() and any(not torch.equal(g[k], g_ema[k]) for k in g)


@needs_fixture
def test_converted_snapshot_renders_the_same(pkl_snapshot, expected, tmp_path):
    stem = write_snapshot(pkl_snapshot, tmp_path / "ffhq")
    snap = load_snapshot(stem)
    assert snap.meta["source"]["name"] == PKL.name and len(snap.meta["source"]["sha256"]) == 64
    _check_against_reference(snap, expected)


def test_import_cli_writes_a_snapshot_and_refuses_hostile_files(tmp_path):
    from click.testing import CliRunner

    from flows.cli import main as cli

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G": _Call(os.system, (f"touch {marker}",))}, protocol=4))
    r = CliRunner().invoke(cli, ["import-network", str(evil), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "posix.system" in r.output and not marker.exists()
    assert not (tmp_path / "out").exists()
    if PKL.exists():
        r = CliRunner().invoke(cli, ["import-network", str(PKL), "--out", str(tmp_path / "out")])
        assert r.exit_code == 0, r.output
        snap = load_snapshot(tmp_path / "out" / PKL.stem)
        assert snap.meta["G_kwargs"]["img_resolution"] == 32 and snap.meta["D_kwargs"] is not None


class _Call:
    """Pickles as a call of `fn(*args)` (what a hostile file does)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_reduce_calling_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"G": _Call(os.system, (f"touch {marker}",))}, protocol=2))
    with pytest.raises(ImportRefused, match=r"refused global posix\.system"):
        read_network_pickle(p)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    p = tmp_path / "eval.pkl"
    p.write_bytes(pickle.dumps([_Call(eval, ("1 + 1",))], protocol=4))
    with pytest.raises(ImportRefused, match=r"refused global builtins\.eval"):
        read_network_pickle(p)


@needs_fixture
def test_truncated_file_is_refused(tmp_path):
    p = tmp_path / "cut.pkl"
    p.write_bytes(PKL.read_bytes()[:400_000])
    with pytest.raises(ImportRefused, match="damaged or not a network pickle"):
        read_network_pickle(p)


def test_not_a_pickle_is_refused(tmp_path):
    p = tmp_path / "photo.pkl"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ImportRefused, match="not a pickle file"):
        read_network_pickle(p)


class _Storage:
    """Pickles as the reference's storages do: torch.storage._load_from_bytes(<legacy torch.save bytes>)."""

    def __init__(self, legacy: bytes):
        self.legacy = legacy

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.legacy,)


def _legacy_bytes(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()  # written by torch itself, as the reference's storages are (a TypedStorage)
    torch.save(
        torch.TypedStorage(t.tolist(), dtype=t.dtype, _internal=True),
        buf,
        _use_new_zipfile_serialization=False,
    )
    return buf.getvalue()


def _tensor_pickle(storage_values: torch.Tensor, size, monkeypatch) -> bytes:
    """A minimal network-pickle-like stream with one module whose tensor claims `size`."""
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # only its name is pickled
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)
    stride = tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
    tensor = _Call(
        torch._utils._rebuild_tensor_v2,
        (_Storage(_legacy_bytes(storage_values)), 0, tuple(size), stride, False, collections.OrderedDict()),
    )
    meta = {
        "type": "class",
        "version": 4,
        "module_src": "# blank",
        "class_name": "Thing",
        "state": {"_parameters": collections.OrderedDict(weight=tensor), "_buffers": {}, "_modules": {}},
    }
    return pickle.dumps({"G": _Call(_reconstruct_persistent_obj, (meta,))}, protocol=4)


def test_tensor_records_are_parsed_without_torch_load(tmp_path, monkeypatch):
    from training.pickle_import import flatten_module

    values = torch.arange(6, dtype=torch.float32) * 0.5
    p = tmp_path / "ok.pkl"
    p.write_bytes(_tensor_pickle(values, (2, 3), monkeypatch))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    top = read_network_pickle(p)
    assert torch.equal(flatten_module(top["G"])["weight"], values.reshape(2, 3))


def test_tensor_larger_than_its_storage_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "big.pkl"
    p.write_bytes(_tensor_pickle(torch.zeros(4), (3, 3), monkeypatch))
    with pytest.raises(ImportRefused, match=r"shape \[3, 3\] needs 9 elements but its storage holds 4"):
        read_network_pickle(p)


def _fake_global(monkeypatch, module: str, name: str):
    """A callable that pickles by reference as `module.name` (for building foreign-format fixtures)."""
    mod = types.ModuleType(module)

    def fn(*args):
        raise AssertionError("never called by the reader")

    fn.__module__, fn.__qualname__ = module, name
    setattr(mod, name, fn)
    parts = module.split(".")  # none of these packages exists here: register empty parents
    for i in range(1, len(parts)):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    monkeypatch.setitem(sys.modules, module, mod)
    return fn


def test_tensorflow_era_pickle_is_named(tmp_path, monkeypatch):
    net = _fake_global(monkeypatch, "dnnlib.tflib.network", "Network")
    p = tmp_path / "stylegan2-ffhq-config-f.pkl"
    p.write_bytes(pickle.dumps((_Call(net, ()), _Call(net, ()), _Call(net, ())), protocol=3))
    with pytest.raises(ImportRefused, match="TensorFlow-era StyleGAN/StyleGAN2 pickle"):
        read_network_pickle(p)


def test_stylegan3_generator_is_named(tmp_path, monkeypatch):
    from training.checkpoint import load_snapshot as load

    rec = _fake_global(monkeypatch, "torch_utils.persistence", "_reconstruct_persistent_obj")

    def module(cls, children=None):
        return _Call(
            rec,
            (
                {
                    "type": "class",
                    "version": 6,
                    "module_src": "",
                    "class_name": cls,
                    "state": {"_parameters": {}, "_buffers": {}, "_modules": children or {}},
                },
            ),
        )

    G = module(
        "Generator",
        {
            "synthesis": module(
                "SynthesisNetwork", {"input": module("SynthesisInput"), "L0_36_512": module("SynthesisLayer")}
            ),
            "mapping": module("MappingNetwork"),
        },
    )
    p = tmp_path / "stylegan3-t-ffhq-1024x1024.pkl"
    p.write_bytes(pickle.dumps({"G": G, "G_ema": G, "D": None}, protocol=4))
    with pytest.raises(ImportRefused, match=r"StyleGAN3 \(alias-free\) generator"):
        load(p)


def test_stylegan3_repository_stylegan2_options_are_read():
    from training.pickle_import import ModuleRecord, generator_kwargs

    common = {
        "z_dim": 512,
        "c_dim": 0,
        "w_dim": 512,
        "img_resolution": 256,
        "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8},
    }
    synthesis = {"channel_base": 16384, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256}
    # stylegan2-ada-pytorch nests the synthesis options; the stylegan3 repository passes them flat.
    ada = ModuleRecord("Generator", {"_init_kwargs": {**common, "synthesis_kwargs": synthesis}})
    sg3 = ModuleRecord(
        "Generator",
        {"_init_kwargs": {**common, **synthesis, "fused_modconv_default": "inference_only"}},
    )
    assert generator_kwargs(ada) == generator_kwargs(sg3)
    assert generator_kwargs(sg3)["channel_base"] == 16384 and generator_kwargs(sg3)["num_reduced_res"] == 4
