"""The data directory's lock: one salon process writes a data directory at a time.

``salon serve`` holds an exclusive ``flock`` on ``salon.lock`` for as long as it runs; the
offline commands (``salon account ...``) take the same lock, so that they never write the
database behind a running server's back (the server keeps accounts in memory and would
overwrite them). The lock goes with the process, even when it is killed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "salon.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory."""


def lock(data: Path) -> int:
    """Take the lock of ``data`` (which exists) and return its file descriptor; keep it
    open for as long as the directory is in use. Raises :class:`DataDirBusy`, or OSError
    when the lock file cannot be opened."""
    path = data / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirBusy(f"{data} is in use by another salon process{who}") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock(fd: int) -> None:
    os.close(fd)
