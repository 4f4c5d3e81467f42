"""Errors the user can fix: the CLI prints them as one line (exit code 2), without a traceback.

`UserError` is the one root; `ConfigError` is the configuration kind of it (also a ValueError, so
code that catches bad values keeps working).
Disk problems (a full disk, a folder this process may not write) are such errors too: `DISK_ERRNOS`
names them, `disk_fix` says what to do, `require_writable` checks a folder before expensive work.
"""

import errno
import os
import tempfile
from pathlib import Path

# OSError numbers of a full disk or a folder this process may not write.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


class UserError(Exception):
    """Bad input (a missing file, an empty corpus, an incompatible checkpoint, ...)."""


class ConfigError(UserError, ValueError):
    """A configuration problem, phrased as one line that says what to change."""


def disk_fix(exc: OSError) -> str:
    """What to do about a disk error: free space (a full disk) or choose a writable folder."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "free disk space" if full else "use a writable folder"


def require_writable(folder: Path, fix: str) -> None:
    """Refuse a folder this process cannot create files in, before any expensive work. A real
    probe: permission bits say nothing when running as root, a read-only mount or an immutable
    folder refuses root too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write in {folder} ({exc.strerror or exc}); {fix}") from exc
