"""One sweep at a time per results directory: an advisory flock that dies with its process."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from fleetdiag.errors import FleetdiagError

LOCK_NAME = "lock"


class SweepLocked(FleetdiagError):
    """Another sweep holds the results directory's lock."""


class SweepLock:
    """``with SweepLock(results_dir):`` holds the lock or raises SweepLocked at once (no waiting).

    flock is released by the kernel when the holder exits, however it exits, so a
    crashed sweep never leaves a stale lock; the file only records who holds it.
    """

    def __init__(self, results_dir: Path) -> None:
        self.path = results_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise SweepLocked naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise SweepLocked(
                f"another sweep is running on {self.path.parent} ({holder})",
                hint="wait for it to finish, or give this one its own --results-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next sweep in (safe to call twice)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
