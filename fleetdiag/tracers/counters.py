"""The no-tracer backend: only the namespace's TcpExt counters over the window.

Lower fidelity by design: it says how many drops of each counter, never which flow.
"""

from __future__ import annotations

from fleetdiag.model import HostFacts, ProbeReport, Window
from fleetdiag.tracers.base import ProbePlan, Verdict

name = "counters"
PROBE_NAME = "counters"


def verdict(facts: HostFacts) -> Verdict:
    """Always usable: /proc/net/netstat needs no privilege."""
    return Verdict(True, "TcpExt counters only (no per-flow detail)")


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """Just wait out the window; the run script reads the counters around it."""
    return ProbePlan(tracer=name, probe=PROBE_NAME, command=f"sh -c 'echo @@attached; exec sleep {int(window.duration_s)}'")


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """Nothing traced: the counters section carries this tier's findings."""
    return ProbeReport()
