"""The `train` command, shared by `ghosts train`, `python -m training` and `torchrun -m training`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from training.config import AUG_MODES, PRESETS


@click.command(
    name="train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Dataset archive (.zip) written by `ghosts freeze`.",
)
@click.option(
    "--outdir",
    default=Path("runs"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Parent folder of the run folders NNNNN-<dataset>-<cfg>.",
)
@click.option(
    "--kimg",
    type=float,
    default=None,
    help="Training length in thousands of real images [25000]; fractions are fine for smoke runs (0.2).",
)
@click.option("--snap", type=int, default=50, show_default=True, help="Ticks between snapshots.")
@click.option("--tick", "tick_kimg", type=float, default=4, show_default=True, help="kimg per progress tick.")
@click.option("--mirror", is_flag=True, help="Add x-flipped copies of the images.")
@click.option("--cond", is_flag=True, help="Condition on the labels in dataset.json.")
@click.option(
    "--cfg", type=click.Choice(list(PRESETS)), default="auto", show_default=True, help="Base configuration."
)
@click.option("--batch", type=int, default=None, help="Override the total batch size.")
@click.option(
    "--batch-gpu",
    type=int,
    default=None,
    help="Images per forward pass on each GPU; smaller than "
    "batch / gpus accumulates gradients over several passes (less memory, same batch).",
)
@click.option("--gamma", type=float, default=None, help="Override the R1 weight.")
@click.option("--glr", type=float, default=None, help="Override the G learning rate.")
@click.option("--dlr", type=float, default=None, help="Override the D learning rate.")
@click.option("--cbase", type=int, default=None, help="Override channel_base (feature maps = cbase / res).")
@click.option("--cmax", type=int, default=None, help="Override the channel maximum.")
@click.option("--map", "map_layers", type=int, default=None, help="Override the mapping network depth.")
@click.option("--mbstd-group", type=int, default=None, help="Override the minibatch-std group size.")
@click.option(
    "--aug",
    type=click.Choice(AUG_MODES),
    default="ada",
    show_default=True,
    help="ada: adaptive p; fixed: constant --p; noaug: no augmentation.",
)
@click.option(
    "--p", type=float, default=None, help="Augmentation probability for --aug fixed (initial p for ada)."
)
@click.option("--target", type=float, default=0.6, show_default=True, help="ADA target for r_t.")
@click.option(
    "--augpipe",
    type=click.Choice(["blit", "geom", "color", "bg", "bgc"]),
    default="bgc",
    show_default=True,
    help="Augmentation pipeline.",
)
@click.option(
    "--ada-kimg", type=float, default=None, help="kimg for p to move 0->1 [500; 100 when fine-tuning]."
)
@click.option(
    "--resume",
    default=None,
    help="'latest' continues the newest run in --outdir exactly; a snapshot "
    "or NVlabs .pkl, or ffhq256|ffhq512|ffhq1024|celebahq256|lsundog256 (files in GHOSTS_MODELS), "
    "starts a new run from its weights (transfer learning: tensors whose name and shape match).",
)
@click.option(
    "--freezed",
    type=int,
    default=0,
    show_default=True,
    help="Freeze-D: keep the first N D layers fixed (4 in the top block, 3 in each next one).",
)
@click.option("--gpus", type=int, default=1, show_default=True, help="Processes (GPUs) to train on.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--metrics", default="swd", show_default=True, help="Comma list of swd,fid,kid, or none.")
@click.option(
    "--metric-images", type=int, default=None, help="Images per metric evaluation [swd 8192, fid 50000]."
)
@click.option(
    "--inception",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Inception TorchScript file for FID/KID (env GHOSTS_INCEPTION).",
)
@click.option("--workers", type=int, default=3, show_default=True, help="Data-loader worker processes.")
@click.option("--device", default=None, help="Force a device (cpu, cuda); default: cuda when present.")
@click.option(
    "--no-bf16",
    "bf16",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Keep the top resolutions in float32 on CUDA.",
)
@click.option(
    "--allow-tf32",
    "tf32",
    is_flag=True,
    help="Allow TF32 on CUDA (faster, less exact; off as in the reference).",
)
@click.option("--channels-last", is_flag=True, help="Use channels-last memory format.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def train(**kw) -> None:
    """Train StyleGAN2-ADA on a frozen dataset archive."""
    from training.config import build_options
    from training.loop import train as run_training

    data, outdir = kw.pop("data"), kw.pop("outdir")
    opts = build_options(data, outdir, **kw)
    if opts.dry_run or int(os.environ.get("RANK", "0")) != 0:  # one record per run: rank 0's
        result = run_training(opts)
    else:  # in the catalog of the archive's workspace, so `ghosts status` and takedown list it
        from curation.catalog.runs import recorded_run

        with recorded_run(
            Path(data),
            Path(outdir),
            kw.get("cfg") or "auto",
            float(kw.get("kimg") or 0),
            {"command": "ghosts train"},
            started_by="ghosts train / torchrun -m training",
        ) as done:
            result = run_training(opts)
            if done is not None:
                done(str(result.run_dir), str(result.snapshot) if result.snapshot is not None else None)
    if not opts.dry_run and result.snapshot is not None:
        click.echo(f"run folder {result.run_dir}; last snapshot {result.snapshot.name}")


@click.command(name="import-network", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the snapshot <name>.safetensors + <name>.json.",
)
def import_network(pkl: Path, out: Path) -> None:
    """Convert an NVlabs StyleGAN2(-ADA) network pickle into a ghosts snapshot, reading it safely (nothing in
    the file is run). Every --network and `ghosts train --resume` also take the .pkl directly."""
    from training.checkpoint import load_snapshot, write_snapshot

    snap = load_snapshot(pkl)
    stem = write_snapshot(snap, out / pkl.stem)
    g = snap.meta["G_kwargs"]
    click.echo(
        f"wrote {stem}.safetensors and {stem.name}.json: {g['img_resolution']} px, "
        f"{'G, G_ema and D' if snap.meta['D_kwargs'] else 'G and G_ema'}, augment p "
        f"{snap.augment_p:.4f}, sha256 {snap.meta['source']['sha256'][:12]}..."
    )
