"""The no-tracer backend: TcpExt counters over the window, plus sampled per-socket drop counters.

Lower fidelity by design, and labelled so (``Fidelity.SAMPLED``): the TcpExt deltas are
exact, but flows come from ``ss -tanm`` samples of each socket's own drop counter
(``skmem d``, any reason), reported under the reason ``SK_DROPS`` and never as traced
drops. Without ``ss`` only the counters remain (``Fidelity.COUNTERS``).
"""

from __future__ import annotations

from fleetdiag.model import (
    Fidelity,
    HostFacts,
    ProbeReport,
    Verdict,
    Window,
    frozen_map,
)
from fleetdiag.tracers.base import ProbePlan, fill_template, probe_text
from fleetdiag.tracers.records import parse_records

name = "counters"
PROBE_NAME = "counters"
SS_PROBE_NAME = "counters+ss"
# Sample often enough to catch short flows, rarely enough that ss stays cheap on big hosts.
SAMPLES_PER_WINDOW = 120
SAMPLE_NOTE = (
    "flows are sampled: SK_DROPS is each socket's own drop counter (ss skmem d, any reason) read every {s} s, "
    "and backlog/rmem are the largest sampled values, not values at a drop"
)


def verdict(facts: HostFacts) -> Verdict:
    """Always usable: /proc/net/netstat needs no privilege; ss adds per-socket samples where present."""
    if "ss" in facts.tools:
        return Verdict(True, "TcpExt counters and ss socket samples (sampled, not traced)", SS_PROBE_NAME)
    return Verdict(True, "TcpExt counters only (no ss for per-socket samples)", PROBE_NAME)


def sample_interval_s(window: Window) -> int:
    """Seconds between ss samples: 1 s, stretched for long windows."""
    return max(1, int(window.duration_s) // SAMPLES_PER_WINDOW)


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """Sample sockets with ss through the window, or just wait it out when ss is missing."""
    if "ss" not in facts.tools:
        return ProbePlan(
            tracer=name,
            probe=PROBE_NAME,
            command=f"sh -c 'echo @@attached; exec sleep {int(window.duration_s)}'",
            fidelity=Fidelity.COUNTERS,
        )
    script = fill_template(
        probe_text("counters_ss.sh"),
        {"DURATION": int(window.duration_s), "INTERVAL": sample_interval_s(window), "PORT": int(window.port or 0)},
    )
    return ProbePlan(
        tracer=name,
        probe=SS_PROBE_NAME,
        files=frozen_map({"probe.sh": script}),
        command="sh probe.sh",
        fidelity=Fidelity.SAMPLED,
    )


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """The sockets whose drop counter moved; the counters section carries the exact findings."""
    report = parse_records(output, facts)
    if "@@attached" in output and "@@window_end" in output:
        interval = _interval_from(output)
        return ProbeReport(report.drops, report.flows, False, (SAMPLE_NOTE.format(s=interval),))
    return ProbeReport(report.drops, report.flows, False)


def _interval_from(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("interval "):
            return line.split()[1]
    return "1"
