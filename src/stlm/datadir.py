"""The local data folder: real evaluation sets and corpora as files (layout: docs/data.md).

It is, in order: `--data-dir DIR`, `$STLM_DATA_DIR`, or the user cache folder
(`$XDG_CACHE_HOME/stlm/data`, by default `~/.cache/stlm/data`) when that exists. Without one,
evaluation reads the Hugging Face hub; what has no hub fallback fails with `missing_data`.
"""

from __future__ import annotations

import os
from pathlib import Path

from stlm.errors import UserError

DATA_DIR_ENV = "STLM_DATA_DIR"
LAYOUT_DOC = "docs/data.md"


def user_data_dir() -> Path:
    """The default folder: `$XDG_CACHE_HOME/stlm/data`, else `~/.cache/stlm/data`."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "stlm" / "data"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """`--data-dir`, else $STLM_DATA_DIR, else the user cache folder if it exists, else None. A
    folder named explicitly (flag or variable) must exist."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV)
    if not chosen:
        default = user_data_dir()
        return default if default.is_dir() else None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise UserError(f"data directory {path} does not exist (from "
                        f"{'--data-dir' if explicit else '$' + DATA_DIR_ENV})")
    return path


def ways_to_provide() -> str:
    return (f"pass --data-dir DIR, set ${DATA_DIR_ENV}=DIR, or place the files in {user_data_dir()} "
            f"(layout: {LAYOUT_DOC})")


def missing_data(what: str) -> UserError:
    """The error for local data that is not there, naming the three ways to provide it."""
    return UserError(f"{what} not found; {ways_to_provide()}")
