"""`ghosts train`: the training room's command (defined in training.command so torchrun can run it too)."""
from training.command import train

COMMANDS = [train]
