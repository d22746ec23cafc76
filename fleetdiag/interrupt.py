"""SIGINT and SIGTERM as a request to stop a sweep gracefully; a second signal means "now".

The first signal asks every host to end its window early and report what it saw
(partial results); the second gives up on hosts still reporting. Either way every
probe also ends by itself on its host (``probes/run_window.sh``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class StopRequest:
    """Set from a signal handler, read by the sweep: whether to stop, and how urgently."""

    requested: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # e.g. "SIGINT"

    def stop(self, reason: str) -> None:
        """First call: stop gracefully; any later call: stop now."""
        if self.requested.is_set():
            self.abort.set()
            return
        self.reason = reason
        self.requested.set()


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """Turn these signals into a StopRequest while the block runs; the old handlers come back after."""
    request = StopRequest()

    def handle(signum: int, _frame: FrameType | None) -> None:
        request.stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
