"""User-facing errors. The CLI prints the message of a GhostsError and exits 1; library code never exits."""


class GhostsError(Exception):
    """An error whose message tells the user what went wrong and what to do about it."""
