"""Connecting to many hosts in a way one controller can sustain: few handshakes at once, bounded retries.

An SSH handshake costs the controller a few milliseconds of CPU; a thousand started at once
queue behind each other until their own timeouts fire, and the hosts are then reported as
unreachable (or, by paramiko, as failed authentications) although nothing was wrong with them.
So only ``limit`` handshakes run at a time (the others wait their turn before their timers
start), and one that timed out is tried again, a bounded number of times, after a backoff.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from fleetdiag.errors import UnreachableError
from fleetdiag.model import HostSpec
from fleetdiag.transport import SshOptions, Transport, open_transport

# Handshakes in flight at once: enough to keep 2 cores busy through the network's round trips.
DEFAULT_HANDSHAKES = 24
RETRIES = 2
BACKOFF_S = 0.5
# Sentences (fleetdiag.transport.ssh) that say the handshake ran out of time, not that it was refused.
_TIMED_OUT = ("did not finish within", "no connection within", "never spoke SSH", "timed out")


def timed_out(error: UnreachableError) -> bool:
    """Whether a connect failed by running out of time (worth another try), not by a refusal."""
    return any(phrase in error.message for phrase in _TIMED_OUT)


class ConnectRamp:
    """Opens transports, at most ``limit`` handshakes at a time, retrying ones that timed out."""

    def __init__(
        self,
        ssh: SshOptions,
        limit: int = DEFAULT_HANDSHAKES,
        retries: int = RETRIES,
        opener: Callable[[HostSpec, SshOptions], Transport] = open_transport,
    ) -> None:
        self.ssh, self.retries, self.opener = ssh, retries, opener
        self._slots = threading.BoundedSemaphore(max(1, limit))

    def open(self, spec: HostSpec, should_stop: Callable[[], bool] = lambda: False) -> Transport:
        """A connected transport; raises the last UnreachableError when every try failed."""
        attempt = 0
        while True:
            with self._slots:
                try:
                    return self.opener(spec, self.ssh)
                except UnreachableError as exc:
                    if attempt >= self.retries or not timed_out(exc) or should_stop():
                        if attempt:
                            exc.message = f"{exc.message} ({attempt + 1} tries)"
                        raise
            attempt += 1
            time.sleep(BACKOFF_S * 2 ** (attempt - 1) * (1 + random.random()))
