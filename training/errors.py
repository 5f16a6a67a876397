"""Training's user-facing errors: GhostsError subclasses, so the CLI prints the message and exits 1."""

from curation.catalog.errors import GhostsError


class TrainingError(GhostsError):
    """Something the user can fix: a bad archive, an impossible option combination, a bad checkpoint."""
