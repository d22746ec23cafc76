"""Exit codes, decided in one place (httpie's ExitStatus)."""

from __future__ import annotations

import enum

from fleetdiag.model import Status, Sweep


class ExitStatus(enum.IntEnum):
    """What fleetdiag's exit code means; documented in the README."""

    OK = 0  # every host collected
    ERROR = 1  # fleetdiag itself failed unexpectedly
    USAGE = 2  # bad options or inventory; no host was contacted
    PARTIAL = 3  # some hosts failed or were unreachable; the others' results were printed
    NOTHING = 4  # no host collected
    INTERRUPTED = 130  # SIGINT/SIGTERM


def sweep_exit_status(sweep: Sweep) -> ExitStatus:
    """0 if every host is ok, 4 if none is, 3 otherwise."""
    ok = sum(1 for host in sweep.hosts if host.status is Status.OK)
    if ok == len(sweep.hosts):
        return ExitStatus.OK
    return ExitStatus.NOTHING if ok == 0 else ExitStatus.PARTIAL
