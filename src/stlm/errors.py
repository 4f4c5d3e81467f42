"""Errors the user can fix: the CLI prints them as one line (exit code 2), without a traceback."""

import errno

# OSError numbers of a full disk or a folder this process may not write: reported as one line
# saying what to free or change, never as a traceback.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


class UserError(Exception):
    """Bad input (a missing file, an empty corpus, an incompatible checkpoint, ...)."""
