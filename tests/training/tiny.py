"""The smallest networks and quietest runs the training tests use (shared by test_loop, test_snapshot_faults
and test_ddp): a few seconds per run on one CPU core."""

from __future__ import annotations

TINY_NET = {
    "cbase": 128,
    "cmax": 16,
    "z_dim": 16,
    "w_dim": 16,
}  # a generator and discriminator of a few channels
QUICK = {"workers": 0, "metrics": "none"}  # no loader processes, no FID/KID
TINY = {**TINY_NET, **QUICK, "snap": 0}  # ... and no periodic snapshot
