"""`ghosts train` and `ghosts import-network`: the training room's commands (defined in training.command so
torchrun can run them too)."""

from training.command import import_network, train

COMMANDS = [train, import_network]
