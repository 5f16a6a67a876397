"""Training settings small enough for the flow tests on the CPU: tiny networks, a few dozen images, one tick
per snapshot. The flows' plumbing is under test, not the GAN."""

TINY = {
    "kimg": 0.016,
    "cbase": 256,
    "cmax": 32,
    "z_dim": 32,
    "w_dim": 32,
    "map_layers": 1,
    "batch": 8,
    "metrics": "none",
    "workers": 0,
    "snap": 1,
    "tick_kimg": 0.008,
    "mirror": False,
    "device": "cpu",
}
