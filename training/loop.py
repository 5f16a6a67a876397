"""The training loop: set-up, resume, the four training phases per minibatch (G main, G path-length reg,
D main, D R1 reg), EMA, the ADA controller, per-tick maintenance and snapshots.

`train(options, progress)` is the entry point for the CLI and flows; with `gpus > 1` it starts the other
ranks as processes (rank 0 runs in the caller's process, so the callback works), and under `torchrun` it
joins the process group torchrun set up. Gradients are averaged over ranks with one all-reduce per phase
and every random number that shapes an update is drawn for the global batch (see loss.SharedRandom), so
N processes make exactly the update one process makes with the same total batch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from training.augment import AugmentPipe, update_p
from training.checkpoint import (
    RunLock,
    Snapshot,
    latest_good_snapshot,
    latest_snapshot,
    load_snapshot,
    save_snapshot,
    snapshot_name,
)
from training.config import TrainingOptions, save_options
from training.dataset import GlobalBatchSampler, ImageArchive
from training.errors import TrainingError
from training.loss import SharedRandom, StyleGAN2Loss
from training.metrics import INCEPTION_MISSING, append_metric, compute_metrics
from training.networks import Discriminator, Generator, copy_matching
from training.report import TickStats, append_line, grid_shape, plot_curves, save_image_grid, stat_line

ProgressCallback = Callable[[dict, "Path | None"], None]

# Every statistic the loss can emit, in a fixed order so all ranks all-reduce the same vector.
LOSS_STATS = [
    "Loss/scores/fake",
    "Loss/signs/fake",
    "Loss/scores/real",
    "Loss/signs/real",
    "Loss/G/loss",
    "Loss/G/reg",
    "Loss/pl_penalty",
    "Loss/D/loss",
    "Loss/D/reg",
    "Loss/r1_penalty",
]


@dataclass
class TrainResult:
    run_dir: Path
    snapshot: Path | None  # stem of the last snapshot written
    stats: dict = field(default_factory=dict)  # the last tick's {name: mean}
    cur_nimg: int = 0
    augment_p: float = 0.0


# ----------------------------------------------------------------------------------------- entry point


def train(options: TrainingOptions, progress: ProgressCallback | None = None) -> TrainResult:
    """Run training as described by `options` (see training.config.build_options)."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world > 1:  # launched by torchrun: the process group comes from the environment
        rank = int(os.environ["RANK"])
        options = replace(options, gpus=env_world, batch_gpu=options.batch // env_world).validate()
        dist.init_process_group(_backend(options), init_method="env://", rank=rank, world_size=env_world)
        try:
            return training_loop(
                options, rank=rank, world_size=env_world, progress=progress if rank == 0 else None
            )
        finally:
            dist.destroy_process_group()
    if options.gpus == 1 or options.dry_run:
        return training_loop(options, rank=0, world_size=1, progress=progress)
    if _backend(options) == "nccl" and torch.cuda.device_count() < options.gpus:
        raise TrainingError(
            f"--gpus {options.gpus} but only {torch.cuda.device_count()} CUDA device(s) visible"
        )
    ctx = torch.multiprocessing.get_context("spawn")
    tmp = tempfile.mkdtemp(prefix="ghosts-ddp-")
    init = "file://" + os.path.join(tmp, "rendezvous")
    procs = [
        ctx.Process(target=_rank_main, args=(options, r, options.gpus, init)) for r in range(1, options.gpus)
    ]
    for p in procs:
        p.start()
    try:
        dist.init_process_group(_backend(options), init_method=init, rank=0, world_size=options.gpus)
        result = training_loop(options, rank=0, world_size=options.gpus, progress=progress)
        dist.destroy_process_group()
    finally:
        for p in procs:
            p.join()
    failed = [r for r, p in zip(range(1, options.gpus), procs) if p.exitcode != 0]
    if failed:
        raise TrainingError(f"training process(es) of rank {failed} failed; see the messages above")
    return result


def _rank_main(options: TrainingOptions, rank: int, world_size: int, init: str) -> None:
    dist.init_process_group(_backend(options), init_method=init, rank=rank, world_size=world_size)
    try:
        training_loop(options, rank=rank, world_size=world_size, progress=None)
    finally:
        dist.destroy_process_group()


def _backend(opts: TrainingOptions) -> str:
    return "nccl" if _device_type(opts) == "cuda" else "gloo"


def _device_type(opts: TrainingOptions) -> str:
    if opts.device:
        return torch.device(opts.device).type
    return "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------------- helpers


def next_run_dir(outdir: Path, dataset_name: str, cfg: str) -> Path:
    ids = (
        [int(m.group(1)) for d in outdir.glob("*") if (m := re.match(r"(\d{5})-", d.name))]
        if outdir.exists()
        else []
    )
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name) or "dataset"
    return outdir / f"{max(ids, default=-1) + 1:05d}-{safe}-{cfg}"


def _broadcast_object(obj, rank: int, world_size: int):
    if world_size == 1:
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _sync_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average gradients over ranks (one flat all-reduce) and clear non-finite values."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    if world_size > 1:
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= world_size
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.reshape(p.shape))
    for p in params:
        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)


def _set_trainable(module: torch.nn.Module, on: bool, frozen: list[torch.nn.Module] = ()) -> None:
    module.requires_grad_(on)
    for m in frozen:
        m.requires_grad_(False)


def network_kwargs(opts: TrainingOptions) -> tuple[dict, dict]:
    """The constructor arguments of G and of D that `opts` gives."""
    common = {
        "img_resolution": opts.resolution,
        "img_channels": opts.channels,
        "channel_base": opts.cbase,
        "channel_max": opts.cmax,
        "num_reduced_res": opts.num_reduced_res,
        "conv_clamp": opts.conv_clamp,
        "c_dim": opts.c_dim,
    }
    g = {"z_dim": opts.z_dim, "w_dim": opts.w_dim, "mapping_layers": opts.map_layers, **common}
    # the reference's D label mapping is 8 layers whatever --map says
    d = {"mbstd_group_size": opts.mbstd_group, "mapping_layers": 8, **common}
    return g, d


def new_networks(opts: TrainingOptions) -> tuple[Generator, Discriminator]:
    """A new G and D of the shape `opts` gives, on the CPU, initialised from torch's global generator (G first)."""
    g, d = network_kwargs(opts)
    return Generator(**g), Discriminator(**d)


def _lazy_adam(params, lr: float, betas: tuple[float, float], eps: float, reg_interval: int):
    # Lazy regularisation: the reg phase runs every k minibatches with its gradient scaled by k, so the
    # optimiser sees k+1 steps per k minibatches; lr and betas are adjusted to keep the effective rates.
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


def new_loss_and_optimizers(
    G: Generator,
    D: Discriminator,
    augment_pipe: AugmentPipe | None,
    shared: SharedRandom,
    opts: TrainingOptions,
    *,
    world_size: int = 1,
    compile: bool | None = None,
) -> tuple[StyleGAN2Loss, torch.optim.Adam, torch.optim.Adam]:
    """The loss and the two lazily regularised Adam optimisers, as every training run (and the training
    benchmark) sets them up from the options; `compile` overrides `opts.compile`."""
    loss = StyleGAN2Loss(
        G,
        D,
        augment_pipe,
        shared,
        r1_gamma=opts.gamma,
        style_mixing_prob=opts.style_mixing_prob,
        pl_weight=opts.pl_weight,
        world_size=world_size,
        compile=opts.compile if compile is None else compile,  # G's mapping and synthesis and D, wrapped
    )
    opt_G = _lazy_adam(G.parameters(), opts.glr, opts.betas, opts.eps, opts.g_reg_interval)
    opt_D = _lazy_adam(D.parameters(), opts.dlr, opts.betas, opts.eps, opts.d_reg_interval)
    return loss, opt_G, opt_D


def ema_beta(opts: TrainingOptions, cur_nimg: int) -> float:
    """How much of G_ema stays at this step: the half-life ramps up with training at the start (ramp 0.05)."""
    ema_nimg = opts.ema_kimg * 1000
    if opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, (cur_nimg + opts.batch) * opts.ema_rampup)
    return 0.5 ** (opts.batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    """G_ema's weights move a (1 - beta) step towards G's; its buffers are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _resources(device: torch.device) -> dict[str, float]:
    out = {"Resources/cpu_mem_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        out["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return out


class RunLog:
    """Lines to log.txt (rank 0) and to the terminal without breaking the progress bar."""

    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, msg: str) -> None:
        if self.path is None:
            return
        tqdm.write(msg, file=sys.stdout)
        append_line(self.path, msg)


# ------------------------------------------------------------------------------------- the training loop


def training_loop(
    opts: TrainingOptions, *, rank: int = 0, world_size: int = 1, progress: ProgressCallback | None = None
) -> TrainResult:
    with contextlib.ExitStack() as held:  # the run folder's lock, released however the loop ends
        return _training_loop(opts, rank=rank, world_size=world_size, progress=progress, held=held)


def _training_loop(
    opts: TrainingOptions,
    *,
    rank: int,
    world_size: int,
    progress: ProgressCallback | None,
    held: contextlib.ExitStack,
) -> TrainResult:
    start_time = time.time()

    # --- Devices and seeds --------------------------------------------------------------------------
    dev_type = _device_type(opts)
    device = torch.device(dev_type, rank) if dev_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = opts.tf32
        torch.backends.cudnn.allow_tf32 = opts.tf32
        torch.backends.cudnn.benchmark = True
    elif world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))

    # --- Run folder: resume the newest run, or start a new one ----------------------------------------
    resume_snap: Snapshot | None = None
    exact = opts.resume in ("latest", "latest-good")
    if exact:
        if opts.resume == "latest-good":  # skip damaged newer snapshots, saying which
            stem = latest_good_snapshot(
                opts.outdir, log=lambda m: print(m, file=sys.stderr) if rank == 0 else None
            )
        else:
            stem = latest_snapshot(opts.outdir)
        if stem is None:
            raise TrainingError(
                f"--resume {opts.resume}: no complete snapshot in any run folder of {opts.outdir}"
            )
        try:
            resume_snap = load_snapshot(stem)
        except TrainingError as e:
            raise TrainingError(
                f"--resume latest: the newest snapshot is unusable: {e}. "
                f"Use --resume latest-good to continue from the newest good one"
            ) from e
        run_dir = stem.parent
        if rank == 0 and not opts.dry_run:
            held.enter_context(RunLock(run_dir))
        opts = _continue_options(run_dir, opts, resume_snap)
    else:
        if opts.resume:
            resume_snap = load_snapshot(opts.resume)
        run_dir = next_run_dir(opts.outdir, opts.dataset_name, opts.cfg)
        run_dir = _broadcast_object(run_dir, rank, world_size)
        if rank == 0 and not opts.dry_run:
            held.enter_context(RunLock(run_dir))
    if resume_snap is not None and resume_snap.resolution != opts.resolution:
        raise TrainingError(
            f"resolution mismatch: {resume_snap.stem.name} was trained at {resume_snap.resolution} px "
            f"but the archive {opts.data.name} holds {opts.resolution} px images"
        )
    if opts.dry_run:
        print(json.dumps(opts.to_json(), indent=2))
        print(f"dry run: would write to {run_dir}")
        return TrainResult(run_dir=run_dir, snapshot=None)
    log = RunLog(run_dir / "log.txt" if rank == 0 else None)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_options(opts, run_dir / "training_options.json")
        log(
            f"{'resuming' if exact else 'starting'} run {run_dir} on {device} x{world_size} "
            f"({opts.kimg:g} kimg, batch {opts.batch}, cfg {opts.cfg})"
        )

    # --- Data -----------------------------------------------------------------------------------------
    dataset = ImageArchive(opts.data, mirror=opts.mirror, use_labels=opts.cond)
    if dataset.resolution != opts.resolution or dataset.channels != opts.channels:
        raise TrainingError(
            f"{opts.data} holds {dataset.resolution} px, {dataset.channels}-channel images; "
            f"this run expects {opts.resolution} px, {opts.channels} channels"
        )

    # --- Networks (built from the same seed on every rank, then broadcast to be sure) ------------------
    torch.manual_seed(opts.seed)
    if exact:  # the same networks, maths (arch_version) included
        G = resume_snap.build_generator("G", device)
        D = resume_snap.build_discriminator(device)
        G_ema = resume_snap.build_generator("G_ema", device)
    else:
        G, D = (net.to(device) for net in new_networks(opts))
        G_ema = copy.deepcopy(G).eval()
        if resume_snap is not None:  # transfer learning: every tensor whose name and shape match
            counts = {
                name: copy_matching(net, _transfer_source(resume_snap, name))
                for name, net in (("G", G), ("D", D), ("G_ema", G_ema))
            }
            log(
                f"transfer learning from {resume_snap.stem.name}: "
                + "; ".join(f"{name} {c} tensors copied, {s} skipped" for name, (c, s) in counts.items())
            )
    G_ema.eval().requires_grad_(False)
    if D.b4.mbstd.group_size != opts.mbstd_group:
        D.b4.mbstd.group_size = opts.mbstd_group  # transfer learning with another batch layout
    reduced = opts.bf16 and device.type == "cuda"
    for net in (G.synthesis, G_ema.synthesis, D):
        net.reduced_precision = reduced
    if opts.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if world_size > 1:
        for t in [*G.state_dict().values(), *D.state_dict().values(), *G_ema.state_dict().values()]:
            dist.broadcast(t, src=0)
    frozen = D.layers_in_freeze_order()[: opts.freezed]

    # --- Augmentation, loss, optimisers ---------------------------------------------------------------
    augment_pipe = None
    if opts.aug != "noaug":
        augment_pipe = AugmentPipe.from_name(opts.augpipe).to(device).train()
        augment_pipe.p.fill_(opts.p)
    shared = SharedRandom(opts.seed, rank=rank, world_size=world_size, device=device)
    loss, opt_G, opt_D = new_loss_and_optimizers(G, D, augment_pipe, shared, opts, world_size=world_size)

    cur_nimg, batch_idx, cur_tick = 0, 0, 0
    ada_acc = torch.zeros(2, device=device)  # running [sum of sign(D(real)), count] between p updates
    if exact:
        resume_snap.load_optimizer("opt_G", opt_G)
        resume_snap.load_optimizer("opt_D", opt_D)
        cur_nimg = resume_snap.cur_nimg
        extra = resume_snap.meta["extra"]
        batch_idx, cur_tick = int(extra["batch_idx"]), int(extra["cur_tick"]) + 1
        if augment_pipe is not None:
            augment_pipe.p.fill_(resume_snap.augment_p)
        shared.set_state(resume_snap.tensors["extra/shared_random"])
        loss.pl_mean = resume_snap.tensors["extra/pl_mean"].to(device)
        ada_acc = resume_snap.tensors["extra/ada_acc"].to(device)
        if rank == 0:
            resume_snap.restore_rng()
        log(
            f"resumed {resume_snap.stem.name}: kimg {cur_nimg / 1000:g}, augment p {resume_snap.augment_p:.4f}"
        )
    if not (exact and rank == 0):
        torch.manual_seed(opts.seed * world_size + rank + 1)  # augmentation draws differ per rank

    sampler = GlobalBatchSampler(
        len(dataset),
        batch=opts.batch,
        rank=rank,
        world_size=world_size,
        seed=opts.seed,
        start_batch=batch_idx,
    )
    loader = iter(
        torch.utils.data.DataLoader(
            dataset,
            batch_size=opts.batch_gpu,
            sampler=sampler,
            num_workers=opts.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=opts.workers > 0,
            # spawn, not fork: the loop often runs inside a threaded host
            # (Prefect, a web server) and forking threads can deadlock
            multiprocessing_context="spawn" if opts.workers > 0 else None,
            # its own generator, so creating the loader does not
            # consume the global RNG (exact resume depends on it)
            generator=torch.Generator().manual_seed(opts.seed),
        )
    )
    labels = (
        torch.from_numpy(np.stack([dataset.label(i) for i in range(len(dataset.members))])).to(device)
        if opts.c_dim > 0
        else None
    )

    def sample_c(n: int) -> torch.Tensor | None:
        if labels is None:
            return None
        return labels[(shared.rand(n) * len(labels)).long().clamp_max(len(labels) - 1)]

    # --- Fixed latents for the progress grids, and the reals grid -------------------------------------
    cols, rows = grid_shape(opts.resolution, len(dataset))
    grid_gen = torch.Generator().manual_seed(opts.seed + 12345)
    grid_z = torch.randn(cols * rows, G.z_dim, generator=grid_gen).to(device)
    grid_c = None if labels is None else labels[torch.arange(cols * rows) % len(labels)]

    def save_fakes(path: Path) -> Path:
        chunks = []
        with torch.no_grad():
            for start in range(0, len(grid_z), opts.batch_gpu):
                c = None if grid_c is None else grid_c[start : start + opts.batch_gpu]
                chunks.append(G_ema(grid_z[start : start + opts.batch_gpu], c, noise_mode="const").cpu())
        return save_image_grid(torch.cat(chunks), path, cols)

    if rank == 0 and not exact:
        reals = np.stack([dataset[i][0] for i in range(min(cols * rows, len(dataset)))])
        save_image_grid(reals, run_dir / "reals.png", cols)
        save_fakes(run_dir / "fakes_init.png")

    metric_names = list(opts.metrics)
    if {"fid", "kid"} & set(metric_names) and opts.inception is None:
        log(INCEPTION_MISSING)
        metric_names = [m for m in metric_names if m not in ("fid", "kid")]

    # --- Train ---------------------------------------------------------------------------------------
    total_nimg = round(opts.kimg * 1000)
    tick_start_nimg, tick_start_time = cur_nimg, time.time()
    stats = TickStats(device)
    bar = tqdm(
        total=total_nimg,
        initial=cur_nimg,
        unit="kimg",
        unit_scale=0.001,
        disable=rank != 0,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}{postfix}]",
    )
    last_snapshot: Path | None = None
    last_stats: dict = {}
    n = opts.batch_gpu
    rounds = opts.batch // (opts.gpus * n)  # gradient accumulation: --batch-gpu smaller than batch / gpus

    def latents():
        """A phase's latents and labels, drawn for the whole global batch at once and cut into rounds, so
        --batch-gpu and the number of GPUs do not change what is drawn."""
        shared.set_round(None)
        z = shared.randn(n * rounds, G.z_dim)
        c = sample_c(n * rounds)
        for i in range(rounds):
            shared.set_round(i, rounds)  # draws inside the phase (noise, style mixing) as R processes would
            yield z[i * n : (i + 1) * n], None if c is None else c[i * n : (i + 1) * n]
        shared.set_round(None)

    done = cur_nimg >= total_nimg
    while not done:
        reals = []
        for _ in range(rounds):
            real_img, real_c = next(loader)
            reals.append(
                (
                    real_img.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1,
                    real_c.to(device) if opts.c_dim > 0 else None,
                )
            )

        # Each phase sums its rounds' gradients, each round weighted 1/rounds (the mean over the batch).
        # G main: make D call fakes real.
        _set_trainable(G, True)
        _set_trainable(D, False)
        opt_G.zero_grad(set_to_none=True)
        for z, c in latents():
            stats.add(loss.accumulate_G_main(z, c, gain=1 / rounds))
        _sync_grads(list(G.parameters()), world_size)
        opt_G.step()
        # G reg: path length, every g_reg_interval minibatches.
        if opts.pl_weight > 0 and batch_idx % opts.g_reg_interval == 0:
            opt_G.zero_grad(set_to_none=True)
            for z, c in latents():
                stats.add(loss.accumulate_G_reg(z, c, gain=opts.g_reg_interval / rounds))
            _sync_grads(list(G.parameters()), world_size)
            opt_G.step()
        _set_trainable(G, False)
        # D main: fakes fake, reals real.
        _set_trainable(D, True, frozen)
        opt_D.zero_grad(set_to_none=True)
        for (real_img, real_c), (z, c) in zip(reals, latents()):
            d_stats = loss.accumulate_D_main(real_img, real_c, z, c, gain=1 / rounds)
            stats.add(d_stats)
            ada_acc += torch.stack([d_stats["Loss/signs/real"].sum(), torch.tensor(float(n), device=device)])
        _sync_grads(list(D.parameters()), world_size)
        opt_D.step()
        # D reg: R1 on (augmented) reals, every d_reg_interval minibatches.
        if opts.gamma > 0 and batch_idx % opts.d_reg_interval == 0:
            opt_D.zero_grad(set_to_none=True)
            for real_img, real_c in reals:
                r_stats = loss.accumulate_D_reg(real_img, real_c, gain=opts.d_reg_interval / rounds)
                stats.add(r_stats)  # its reals' signs count in r_t and in the tick's mean, as the reference
                ada_acc += torch.stack(
                    [r_stats["Loss/signs/real"].sum(), torch.tensor(float(n), device=device)]
                )
            _sync_grads(list(D.parameters()), world_size)
            opt_D.step()
        _set_trainable(D, False)

        update_ema(G_ema, G, ema_beta(opts, cur_nimg))  # EMA of the generator weights

        cur_nimg += opts.batch
        batch_idx += 1
        bar.update(min(opts.batch, max(total_nimg - bar.n, 0)))  # the last batch may overshoot the target

        # ADA: nudge p towards r_t == target every ada_interval minibatches.
        if opts.aug == "ada" and batch_idx % opts.ada_interval == 0:
            acc = ada_acc.clone()
            if world_size > 1:
                dist.all_reduce(acc)
            rt = float(acc[0] / acc[1].clamp_min(1))
            new_p = update_p(
                float(augment_pipe.p),
                rt,
                batch=opts.batch,
                interval=opts.ada_interval,
                target=opts.target,
                ada_kimg=opts.ada_kimg,
            )
            augment_pipe.p.fill_(new_p)
            ada_acc.zero_()

        # --- Per-tick maintenance ---------------------------------------------------------------------
        done = cur_nimg >= total_nimg
        if not done and cur_tick > 0 and cur_nimg < tick_start_nimg + opts.tick_kimg * 1000:
            continue
        tick_end_time = time.time()
        tick_stats = stats.reduce(world_size, LOSS_STATS)
        p_now = float(augment_pipe.p) if augment_pipe is not None else 0.0
        sec_per_kimg = (tick_end_time - tick_start_time) / max(cur_nimg - tick_start_nimg, 1) * 1000
        scalars = {
            "Progress/tick": cur_tick,
            "Progress/kimg": cur_nimg / 1000,
            "Progress/augment": p_now,
            "Timing/total_sec": tick_end_time - start_time,
            "Timing/sec_per_tick": tick_end_time - tick_start_time,
            "Timing/sec_per_kimg": sec_per_kimg,
            **_resources(device),
        }
        for k, v in scalars.items():
            tick_stats[k] = {"num": 1, "mean": float(v), "std": 0.0}
        flat = {k: v["mean"] for k, v in tick_stats.items()}
        bar.set_postfix_str(
            f"{sec_per_kimg:.1f} s/kimg, p {p_now:.3f}, r_t {flat.get('Loss/signs/real', float('nan')):+.2f}",
            refresh=False,
        )

        fakes_path = None
        snapshot_now = done or (opts.snap > 0 and cur_tick > 0 and cur_tick % opts.snap == 0)
        if rank == 0:
            append_line(run_dir / "stats.jsonl", stat_line(tick_stats))
            log(
                f"tick {cur_tick:<4d} kimg {cur_nimg / 1000:<8.3f} sec/kimg {sec_per_kimg:<7.2f} "
                f"augment {p_now:.3f} r_t {flat.get('Loss/signs/real', float('nan')):+.3f} "
                f"G {flat.get('Loss/G/loss', float('nan')):.3f} D {flat.get('Loss/D/loss', float('nan')):.3f}"
            )
        if snapshot_now:
            snap_name = snapshot_name(
                cur_nimg
            )  # unique per image count: snapshots < 1 kimg apart never clash
            if rank == 0:
                # Named like the snapshot (fakes000040.png, fakes000000-032.png): unique per image count too.
                fakes_path = save_fakes(run_dir / f"fakes{snap_name.removeprefix('network-snapshot-')}.png")
                last_snapshot = save_snapshot(
                    run_dir / snap_name,
                    G=G,
                    G_ema=G_ema,
                    D=D,
                    opt_G=opt_G,
                    opt_D=opt_D,
                    augment_p=p_now,
                    cur_nimg=cur_nimg,
                    options=opts.to_json(),
                    dataset_sha256=opts.dataset_sha256,
                    extra_tensors={
                        "shared_random": shared.state(),
                        "pl_mean": loss.pl_mean.reshape([]),
                        "ada_acc": ada_acc,
                    },
                    extra={"batch_idx": batch_idx, "cur_tick": cur_tick, "run_dir": str(run_dir)},
                )
                for result in compute_metrics(
                    metric_names,
                    G_ema,
                    dataset,
                    device=device,
                    inception=opts.inception,
                    num_images=opts.metric_images,
                    batch=opts.batch_gpu,
                    log=log,
                ):
                    append_metric(run_dir, result, snapshot=last_snapshot.name, kimg=cur_nimg / 1000)
                    log(
                        f"metric {result.name}: "
                        + ", ".join(f"{k} {v:.4g}" for k, v in result.results.items())
                    )
            if world_size > 1:
                dist.barrier()
        if rank == 0:
            if snapshot_now:
                plot_curves(run_dir)  # matplotlib is slow; at snapshots is often enough
            if progress is not None:
                progress(flat, fakes_path)
        last_stats = flat
        cur_tick += 1
        tick_start_nimg, tick_start_time = cur_nimg, time.time()

    bar.close()
    del loader  # stops the worker processes
    dataset.close()
    if rank == 0:
        log(f"done: {cur_nimg / 1000:g} kimg in {time.time() - start_time:.1f} s")
    return TrainResult(
        run_dir=run_dir,
        snapshot=last_snapshot,
        stats=last_stats,
        cur_nimg=cur_nimg,
        augment_p=float(augment_pipe.p) if augment_pipe is not None else 0.0,
    )


def _transfer_source(snap: Snapshot, name: str) -> dict[str, torch.Tensor]:
    """A snapshot's tensors for transfer into arch_version-2 networks: version-1 up-sampling kernels were
    correlations, the reference's are convolutions, so they are flipped."""
    sd = snap.state_dict(name)
    kwargs = snap.meta.get("D_kwargs" if name == "D" else "G_kwargs") or {}
    if kwargs.get("arch_version", 2) == 1:
        sd = {
            k: v.flip([2, 3]) if re.fullmatch(r"synthesis\.blocks\.\d+\.conv0\.weight", k) else v
            for k, v in sd.items()
        }
    return sd


# The options a user may change when continuing a run; everything else comes from the run itself so the
# continuation is the same computation.
CONTINUE_OVERRIDES = (
    "kimg",
    "snap",
    "tick_kimg",
    "metrics",
    "metric_images",
    "inception",
    "workers",
    "device",
    "dry_run",
    "gpus",
    "data",
    "outdir",
)


def _continue_options(run_dir: Path, opts: TrainingOptions, snap: Snapshot) -> TrainingOptions:
    stored_path = run_dir / "training_options.json"
    if not stored_path.exists():
        raise TrainingError(f"{run_dir} has no training_options.json; cannot continue it exactly")
    stored = TrainingOptions.from_json(json.loads(stored_path.read_text()))
    if snap.meta.get("dataset_sha256") and snap.meta["dataset_sha256"] != opts.dataset_sha256:
        raise TrainingError(
            f"--resume latest: {run_dir.name} was trained on a different archive "
            f"(sha256 {snap.meta['dataset_sha256'][:12]}...) than {opts.data.name} "
            f"(sha256 {opts.dataset_sha256[:12]}...); use --resume PATH to fine-tune instead"
        )
    per_gpu = stored.batch // opts.gpus
    merged = replace(
        stored,
        **{k: getattr(opts, k) for k in CONTINUE_OVERRIDES},
        resume=opts.resume,
        batch_gpu=stored.batch_gpu if per_gpu % stored.batch_gpu == 0 else per_gpu,
    )
    return merged.validate()


__all__ = ["TrainResult", "train", "training_loop"]
