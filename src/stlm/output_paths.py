"""Where commands write their results: checked before the expensive work, and never lost after it.

`writable_folder` proves a folder takes files before a command spends minutes computing what goes
there (it creates the folder, checks `os.access`, then writes and removes a probe file: the only
test that also holds for root, for whom permission bits do not stop writes). `rescue` keeps a
result whose final write failed (disk full, folder removed or made read-only meanwhile) in the
temporary folder and says where it is, so computed numbers are never thrown away.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stlm.errors import UserError, require_writable


def writable_folder(folder: str | Path, what: str, fix: str) -> Path:
    """`folder`, created if missing; a UserError naming `what` goes there and saying `fix` when it
    cannot take a new file."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"cannot write {what} to {folder}: {blocker} is a file, not a folder; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise UserError(f"cannot write {what} to {folder} ({exc.strerror or exc}); {fix}") from None
    require_writable(folder, f"cannot write {what} there; {fix}")
    return folder


def rescue(name: str, data: bytes) -> Path | None:
    """Save `data` as a new file named after `name` in the temporary folder; None if even that fails."""
    try:
        fd, path = tempfile.mkstemp(prefix="stlm-", suffix=f"-{name}")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(path)
    except OSError:
        return None
