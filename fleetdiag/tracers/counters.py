"""The no-tracer backend: TcpExt counters over the window, plus sampled per-socket drop counters.

Lower fidelity by design, and labelled so (``Fidelity.SAMPLED``): the TcpExt deltas are
exact, but flows come from ``ss -tanm`` samples of each socket's own drop counter
(``skmem d``, any reason), reported under the reason ``SK_DROPS`` and never as traced
drops. Without ``ss`` only the counters remain (``Fidelity.COUNTERS``).
"""

from __future__ import annotations

from typing import Mapping

from fleetdiag.model import (
    Fidelity,
    HostFacts,
    ProbeReport,
    Verdict,
    Window,
    frozen_map,
)
from fleetdiag.timeline import interval_for
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
    step = interval_for(window.duration_s)  # the timeline's interval: TcpExt is read at the end of each
    every = max(1, round(sample_interval_s(window) / step))
    script = fill_template(
        probe_text("counters_ss.sh"),
        {"DURATION": int(window.duration_s), "INTERVAL": every * step, "PORT": int(window.port or 0),
         "TL_INTERVAL": step, "SS_EVERY": every},  # fmt: skip
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
    samples = counter_samples(output)
    if "@@attached" in output and "@@window_end" in output:
        interval = _interval_from(output)
        return ProbeReport(report.drops, report.flows, False, (SAMPLE_NOTE.format(s=interval),),
                           counter_samples=samples, timed=True)  # fmt: skip
    return ProbeReport(report.drops, report.flows, False, counter_samples=samples, timed=bool(samples))


def counter_samples(output: str) -> tuple[tuple[int, Mapping[str, int]], ...]:
    """``tcpext INDEX NAME=VALUE...`` lines: the counters that moved by the end of interval INDEX."""
    samples = []
    for line in output.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "tcpext" or not words[1].isdigit():
            continue
        values = {}
        for word in words[2:]:
            name, _, value = word.partition("=")
            if value.lstrip("-").isdigit():
                values[name] = int(value)
        samples.append((int(words[1]), frozen_map(values)))
    return tuple(samples)


def _interval_from(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("interval "):
            return line.split()[1]
    return "1"
