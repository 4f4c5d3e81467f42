"""Errors the user can fix: the CLI prints them as one line (exit code 2), without a traceback.

`UserError` is the one root; `ConfigError` is the configuration kind of it (also a ValueError, so
code that catches bad values keeps working).
"""


class UserError(Exception):
    """Bad input (a missing file, an empty corpus, an incompatible checkpoint, ...)."""


class ConfigError(UserError, ValueError):
    """A configuration problem, phrased as one line that says what to change."""
