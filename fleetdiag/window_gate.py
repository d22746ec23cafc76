"""A gate that opens when every host of a batch is ready to watch, so all watch the same window.

Ansible's linear strategy runs one task on every host before the next; here the
"tasks" are connect+detect and then the window. Hosts that fail before the window
count as arrived; a deadline keeps one slow host from holding the others back.
"""

from __future__ import annotations

import threading
import time


class WindowGate:
    """Open once ``parties`` hosts have arrived, the deadline has passed, or ``release`` is called."""

    def __init__(self, parties: int, timeout_s: float) -> None:
        self.parties = parties
        self.deadline = time.monotonic() + timeout_s
        self._arrived: set[str] = set()
        self._released = False
        self._condition = threading.Condition()

    @property
    def is_open(self) -> bool:
        """Whether hosts may start their windows now."""
        with self._condition:
            return self._open_locked()

    def _open_locked(self) -> bool:
        return self._released or len(self._arrived) >= self.parties or time.monotonic() >= self.deadline

    def arrive(self, host: str) -> None:
        """``host`` is ready to watch, or will never be; counted once per host."""
        with self._condition:
            self._arrived.add(host)
            if self._open_locked():
                self._condition.notify_all()

    def wait(self, host: str) -> float:
        """Arrive, then block until the gate opens; returns the seconds spent waiting."""
        started = time.monotonic()
        with self._condition:
            self._arrived.add(host)
            if self._open_locked():
                self._condition.notify_all()
            while not self._open_locked():
                self._condition.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        return time.monotonic() - started

    def release(self) -> None:
        """Open now (the sweep is stopping)."""
        with self._condition:
            self._released = True
            self._condition.notify_all()
