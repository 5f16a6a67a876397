"""Two CPU processes (gloo) make the same update as one process with the same total batch and per-pass batch."""

import dataclasses

import torch

from tests.training.archives import make_archive
from tests.training.tiny import QUICK, TINY_NET
from training.checkpoint import load_snapshot
from training.config import build_options
from training.loop import train
from training.networks import Discriminator, Generator


def test_two_processes_match_one_process_first_update(tmp_path):
    archive = make_archive(tmp_path, n=8, res=16)

    def first_update(gpus, out):
        # Minibatch-std groups are formed per forward pass (strided, as the reference): one process with
        # --batch-gpu 4 (two rounds of gradient accumulation) sees the same groups as two processes of 4.
        opts = build_options(
            archive,
            out,
            gpus=gpus,
            batch=8,
            batch_gpu=4,
            mbstd_group=4,
            kimg=0.008,
            tick_kimg=0.008,
            device="cpu",
            **TINY_NET,
            **QUICK,
        )
        # The path-length running mean is updated once per forward pass (as the reference does), so with
        # accumulation it is not the same sum as over two processes: leave that regulariser out here.
        opts = dataclasses.replace(opts, pl_weight=0.0)
        return load_snapshot(train(opts).snapshot)

    one = first_update(1, tmp_path / "one")
    two = first_update(2, tmp_path / "two")
    assert one.cur_nimg == two.cur_nimg == 8 and one.meta["extra"]["batch_idx"] == 1
    compared = 0
    for key, a in one.tensors.items():
        if key.startswith(("G/", "D/", "G_ema/")) and not key.endswith("w_avg"):
            # w_avg is a per-rank running mean that only feeds truncation, so it is left out. Summation order
            # differs between the two, so a gradient element within rounding of zero may flip the sign of
            # Adam's first step (which is +-lr whatever the gradient's size): allow that for a few elements,
            # never more than one step apart, and require the rest to agree far below one step.
            d = (a - two.tensors[key]).abs()
            assert d.max() <= 2 * 0.0025 + 1e-6 and (d > 1e-4).float().mean() < 0.01, key
            compared += 1
    assert compared > 50
    # ...and the update really moved the weights away from the shared initialisation.
    torch.manual_seed(0)
    Generator(**one.meta["G_kwargs"])
    D0 = Discriminator(**one.meta["D_kwargs"])
    moved = max((p - one.tensors[f"D/{k}"]).abs().max().item() for k, p in D0.state_dict().items())
    assert moved > 1e-3
