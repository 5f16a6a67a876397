"""Baselines the benchmarks compare ghosts with, written from the documented behaviour of the tools users would
otherwise pick (no code copied from them)."""
