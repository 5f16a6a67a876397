"""Bounds on every network size, in one place: the snapshot loader checks a JSON (or a converted pickle) against
them before anything is built, and the training options refuse the same values on the command line, in a flow
run and in a stored run's options, so a file or a typo cannot ask for 100 GB. Generous for any real StyleGAN2."""

# Keys are the network constructors' argument names (training.networks); (lowest, highest), both allowed.
NETWORK_BOUNDS: dict[str, tuple[int, int]] = {
    "z_dim": (1, 4096),
    "w_dim": (1, 4096),
    "c_dim": (0, 65536),
    "img_resolution": (4, 4096),
    "img_channels": (1, 4),
    "mapping_layers": (1, 32),
    "channel_base": (1, 1 << 17),
    "channel_max": (1, 1024),
    "num_reduced_res": (0, 16),
    "mbstd_group_size": (1, 256),
    "mbstd_num_channels": (1, 64),
    "cmap_dim": (1, 4096),
    "arch_version": (1, 2),
}
