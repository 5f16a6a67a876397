"""StyleGAN2 loss: non-saturating logistic loss, lazy R1 on (augmented) reals, lazy path-length
regularisation, style mixing.

Each `accumulate_*` call runs one training phase's forward + backward and returns per-sample statistics.
Randomness that shapes the gradients (latents, mixing cut-offs, noise images) comes from a `SharedRandom`:
every rank draws the numbers for the whole global batch and keeps its own rows, so N processes compute the
same update as one process with the same total batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from training.augment import AugmentPipe
from training.networks import Discriminator, Generator


class SharedRandom:
    """A generator seeded identically on every rank; draws are made for the global batch and sliced."""

    def __init__(self, seed: int, *, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

        self._round: int | None = None  # gradient-accumulation round, while one runs
        self._rounds, self._cache, self._k = 1, [], 0

    def set_round(self, index: int | None, rounds: int = 1) -> None:
        """Enter accumulation round `index` of `rounds` (None: leave). Inside rounds every draw is made once,
        at round 0, for all rounds of all ranks, and sliced: R rounds on one process draw exactly what R
        processes would (the k-th draw of every round has the same shape, as the rounds run the same code)."""
        self._round, self._rounds, self._k = index, rounds, 0
        if index == 0:
            self._cache = []

    def _draw(self, fn, n: int, shape: tuple) -> torch.Tensor:
        if self._round is None:
            x = fn(n * self.world_size, *shape, generator=self.generator, device=self.device)
            return x[self.rank * n : (self.rank + 1) * n]
        if self._round == 0:
            x = fn(n * self.world_size * self._rounds, *shape, generator=self.generator, device=self.device)
            self._cache.append(x)
        else:
            x = self._cache[self._k]
        self._k += 1
        slot = self.rank * self._rounds + self._round
        return x[slot * n : (slot + 1) * n]

    def randn(self, n: int, *shape: int) -> torch.Tensor:
        return self._draw(torch.randn, n, shape)

    def rand(self, n: int, *shape: int) -> torch.Tensor:
        return self._draw(torch.rand, n, shape)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.cpu())


def all_reduce_mean(x: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        x = x.clone()
        dist.all_reduce(x)
        x = x / world_size
    return x


class StyleGAN2Loss:
    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        augment_pipe: AugmentPipe | None,
        random: SharedRandom,
        *,
        r1_gamma: float = 10.0,  # R1 weight gamma; the penalty is scaled by gamma / 2
        style_mixing_prob: float = 0.9,  # share of fakes made from two latents
        pl_weight: float = 2.0,  # path-length regulariser weight
        pl_batch_shrink: int = 2,  # path length runs on the first n // pl_batch_shrink samples of a batch
        pl_decay: float = 0.01,  # decay of the running mean path length
        world_size: int = 1,
        compile: bool = False,  # torch.compile G's mapping and synthesis and D for the main phases
    ):
        self.G, self.D, self.augment_pipe, self.random = G, D, augment_pipe, random
        self.r1_gamma, self.style_mixing_prob = r1_gamma, style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.world_size = world_size
        self.pl_mean = torch.zeros([], device=random.device)
        # torch.compile's autograd cannot differentiate twice, and both regularisers need that (R1: the
        # gradient of |dD/dx|^2; path length: of |J_w^T y|^2), so only the main phases run compiled forwards.
        # The compiled wrappers share the modules' parameters and buffers: nothing is copied.
        self.compiled = None
        if compile:
            self.compiled = {
                "mapping": torch.compile(G.mapping),
                "synthesis": torch.compile(G.synthesis),
                "D": torch.compile(D),
            }

    # ------------------------------------------------------------------------------ forward helpers
    def _net(self, name: str, compiled: bool):
        if compiled and self.compiled is not None:
            return self.compiled[name]
        return {"mapping": self.G.mapping, "synthesis": self.G.synthesis, "D": self.D}[name]

    def run_G(
        self, z: torch.Tensor, c: torch.Tensor | None, compiled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        G, n = self.G, z.shape[0]
        mapping = self._net("mapping", compiled)
        ws = mapping(z, c, update_emas=True)
        if self.style_mixing_prob > 0:
            # As the reference: one cut-off per forward pass; layers from it on take their w from a second
            # latent (with probability style_mixing_prob, else no mixing).
            mix = self.random.rand(1) < self.style_mixing_prob
            cutoff = torch.floor(self.random.rand(1) * (G.num_ws - 1)).long() + 1  # uniform in 1..num_ws-1
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, G.num_ws)).expand(n)
            z2 = self.random.randn(n, G.z_dim)
            ws2 = mapping(z2, c, update_emas=False)
            layer = torch.arange(G.num_ws, device=ws.device).reshape(1, -1, 1)
            ws = torch.where(layer >= cutoff.reshape(n, 1, 1), ws2, ws)
        noise = [
            self.random.randn(n, 1, layer.resolution, layer.resolution)
            for layer in G.synthesis.noise_layers()
        ]
        return self._net("synthesis", compiled)(ws, noise_inputs=noise), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None, compiled: bool = False) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self._net("D", compiled)(img, c)

    # ---------------------------------------------------------------------------------- the phases
    def accumulate_G_main(self, z, c, gain: float = 1.0) -> dict[str, torch.Tensor]:
        img, _ = self.run_G(z, c, compiled=True)
        logits = self.run_D(img, c, compiled=True)
        loss = F.softplus(-logits)  # non-saturating: -log sigmoid(D(G(z)))
        (loss.mean() * gain).backward()
        return {
            "Loss/scores/fake": logits.detach(),
            "Loss/signs/fake": logits.detach().sign(),
            "Loss/G/loss": loss.detach(),
        }

    def accumulate_G_reg(self, z, c, gain: float = 1.0) -> dict[str, torch.Tensor]:
        """Path-length regularisation: keep |J_w^T y| constant for random image-space directions y."""
        # As the reference: the first n // pl_batch_shrink latents of the phase's batch (at least one).
        keep = max(1, z.shape[0] // self.pl_batch_shrink)
        z = z[:keep]
        c = None if c is None else c[:keep]
        img, ws = self.run_G(z, c)
        h, w = img.shape[2:]
        pl_noise = self.random.randn(img.shape[0], *img.shape[1:]) / math.sqrt(h * w)
        (grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
        pl_lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        batch_mean = all_reduce_mean(pl_lengths.detach().mean(), self.world_size)
        self.pl_mean = self.pl_mean.lerp(batch_mean, self.pl_decay)
        pl_penalty = (pl_lengths - self.pl_mean).square()
        loss = pl_penalty * self.pl_weight
        # The img term keeps every synthesis parameter in the graph (zero contribution).
        ((img[:, 0, 0, 0] * 0 + loss).mean() * gain).backward()
        return {"Loss/pl_penalty": pl_penalty.detach(), "Loss/G/reg": loss.detach()}

    def accumulate_D_main(self, real_img, real_c, z, c, gain: float = 1.0) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake_img, _ = self.run_G(z, c, compiled=True)
        fake_logits = self.run_D(fake_img, c, compiled=True)
        real_logits = self.run_D(real_img, real_c, compiled=True)
        loss_fake = F.softplus(fake_logits)  # -log(1 - sigmoid(D(fake)))
        loss_real = F.softplus(-real_logits)  # -log sigmoid(D(real))
        ((loss_fake.mean() + loss_real.mean()) * gain).backward()
        return {
            "Loss/scores/fake": fake_logits.detach(),
            "Loss/signs/fake": fake_logits.detach().sign(),
            "Loss/scores/real": real_logits.detach(),
            "Loss/signs/real": real_logits.detach().sign(),
            "Loss/D/loss": (loss_fake + loss_real).detach(),
        }

    def accumulate_D_reg(self, real_img, real_c, gain: float = 1.0) -> dict[str, torch.Tensor]:
        """R1: penalise the squared gradient norm of D at (augmented) reals. Needs a second derivative
        through the augmentation, which ops.grid_sample_bilinear provides."""
        real = real_img.detach().requires_grad_(True)
        logits = self.run_D(real, real_c)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        r1_penalty = grads.square().sum(dim=[1, 2, 3])
        loss = r1_penalty * (self.r1_gamma / 2)
        ((logits[:, 0] * 0 + loss).mean() * gain).backward()
        # The reference's r_t also counts these reals (its ADA collector reads every Loss/signs/real report).
        return {
            "Loss/r1_penalty": r1_penalty.detach(),
            "Loss/D/reg": loss.detach(),
            "Loss/signs/real": logits.detach().sign(),
        }
