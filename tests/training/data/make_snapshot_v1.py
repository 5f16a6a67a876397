# Run once, from the repository root, with the code of commit 20e2477 (format version 1); kept for the record.
# Writes a tiny snapshot with the networks as they were before format version 2, plus what they render.
import numpy as np
import torch

from training.checkpoint import save_snapshot
from training.networks import Discriminator, Generator

torch.manual_seed(7)
kw = {"img_resolution": 16, "channel_base": 128, "channel_max": 16}
G = Generator(z_dim=16, w_dim=16, mapping_layers=2, **kw)
D = Discriminator(mbstd_group_size=2, mapping_layers=2, **kw)
with torch.no_grad():
    for m in (G, D):
        for n, p in m.named_parameters():
            p.add_(torch.randn_like(p) * 0.2)
    G.mapping.w_avg.normal_()
stem = save_snapshot("tests/training/data/snapshot-v1", G=G, D=D, augment_p=0.125)
z = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    img1 = G(z, truncation_psi=1.0)
    img7 = G(z, truncation_psi=0.7)
    lg = D(img1)
np.savez(
    "tests/training/data/snapshot-v1-expected.npz",
    z=z.numpy(),
    img_psi1=img1.numpy(),
    img_psi07=img7.numpy(),
    logits=lg.numpy(),
)
print(img1.abs().max(), lg.ravel())
