"""Database and key files that only their owner can read, from their first byte.

A SQLite file holds encrypted TOTP secrets, recovery-code hashes and the audit log; a key file
holds the keys. Created the usual way they get the process's umask (often 0644: readable by
every local user) and a later ``chmod`` leaves a window. So they are created here with mode 0600
before anything is written to them; SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files
the mode of the database file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_MODE", "create_private_file", "write_private_file"]

PRIVATE_MODE = 0o600


def create_private_file(path: str | Path) -> bool:
    """Create ``path`` empty with mode 0600 (whatever the umask) if it does not exist.

    Returns ``True`` if it was created; an existing file is left as it is. Raises
    :class:`OSError` if it cannot be created (a missing directory, say).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return False
    try:
        # O_CREAT's mode passes through the umask, which may only remove bits: make sure.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    return True


def write_private_file(path: str | Path, text: str) -> None:
    """Create ``path`` with mode 0600 and write ``text`` to it; :class:`FileExistsError` if it
    exists already (a key file is never overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
