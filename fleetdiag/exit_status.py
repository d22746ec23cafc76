"""Exit codes, decided in one place (httpie's ExitStatus)."""

from __future__ import annotations

import enum
from typing import Sequence

from fleetdiag.diagnosis import drops_seen
from fleetdiag.model import Status, Sweep


class ExitStatus(enum.IntEnum):
    """What fleetdiag's exit code means; documented in the README and in ``collect --help``."""

    OK = 0  # every host collected
    ERROR = 1  # fleetdiag itself failed unexpectedly
    USAGE = 2  # bad options, inventory or results dir; no host was contacted
    PARTIAL = 3  # some hosts failed or were unreachable; the others' results were printed
    NOTHING = 4  # no host collected
    DROPS = 5  # --fail-on-drops N: the collected hosts dropped N or more segments in the window
    LOCKED = 6  # another sweep holds the results directory's lock; no host was contacted
    INTERRUPTED = 130  # SIGINT/SIGTERM


def sweep_exit_status(sweep: Sweep, fail_on_drops: int | None = None) -> ExitStatus:
    """The code for a finished sweep.

    Precedence: interrupted (130), then no host collected (4), then drops at or over
    ``fail_on_drops`` (5: the question the user asked), then some hosts failed (3), else 0.
    """
    if getattr(sweep, "interrupted", None):
        return ExitStatus.INTERRUPTED
    ok = sum(1 for host in sweep.hosts if host.status is Status.OK)
    if ok == 0 and sweep.hosts:
        return ExitStatus.NOTHING
    if fail_on_drops is not None and sum(drops_seen(h) for h in sweep.hosts) >= fail_on_drops:
        return ExitStatus.DROPS
    return ExitStatus.OK if ok == len(sweep.hosts) else ExitStatus.PARTIAL


def check_exit_status(statuses: Sequence[Status]) -> ExitStatus:
    """The code for ``fleetdiag check``: 0 every host ready to collect, 4 none, 3 otherwise."""
    ready = sum(1 for status in statuses if status is Status.OK)
    if ready == len(statuses):
        return ExitStatus.OK
    return ExitStatus.NOTHING if ready == 0 else ExitStatus.PARTIAL
