"""Errors the user can fix: the CLI prints them as one line (exit code 2), without a traceback."""


class UserError(Exception):
    """Bad input (a missing file, an empty corpus, an incompatible checkpoint, ...)."""
