"""StyleGAN2-ADA in plain PyTorch: networks, augmentation, loss, loop, dataset reader, checkpoints, metrics."""
