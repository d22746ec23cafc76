"""Probe backends, one module each, and the choice of one per host.

``PREFERENCE`` is the single, explicit order: best fidelity first, counters last.
bpftrace and bcc trace every drop reason where the kernel names them; systemtap sees
backlog drops only, but reaches kernels BPF cannot (RHEL 7); counters always work.
"""

from __future__ import annotations

from fleetdiag.errors import UsageError
from fleetdiag.model import HostFacts
from fleetdiag.tracers import bcc, bpftrace, counters, systemtap
from fleetdiag.tracers.base import ProbePlan, Tracer, Verdict

PREFERENCE: tuple[Tracer, ...] = (bpftrace, bcc, systemtap, counters)  # type: ignore[assignment]
BY_NAME: dict[str, Tracer] = {t.name: t for t in PREFERENCE}
CHOICES = ("auto", *BY_NAME)

__all__ = ["PREFERENCE", "BY_NAME", "CHOICES", "ProbePlan", "Tracer", "Verdict", "choose", "verdicts"]


# Tracers whose verdicts need the deep facts, skipped by first-fit detection.
_NEED_DEEP_FACTS = frozenset({bcc.name, systemtap.name})


def verdicts(facts: HostFacts) -> dict[str, Verdict]:
    """Every tracer's verdict on this host, in preference order."""
    found = {}
    for tracer in PREFERENCE:
        if facts.examined == "counters" and tracer is not counters:
            found[tracer.name] = Verdict(False, "not examined: --tracer counters (fleetdiag check examines every tracer)")
        elif facts.examined == "first-fit" and tracer.name in _NEED_DEEP_FACTS:
            found[tracer.name] = Verdict(False, "not examined: bpftrace fits (fleetdiag check examines every tracer)")
        else:
            found[tracer.name] = tracer.verdict(facts)
    return found


def choose(facts: HostFacts, wanted: str = "auto") -> tuple[Tracer | None, dict[str, Verdict]]:
    """The tracer to use (None if the wanted one cannot run), with every verdict as evidence."""
    if wanted != "auto" and wanted not in BY_NAME:
        raise UsageError(f"unknown tracer {wanted!r}", hint=f"choose one of {', '.join(CHOICES)}")
    found = verdicts(facts)
    if wanted == "auto":
        for tracer in PREFERENCE:
            if found[tracer.name].usable:
                return tracer, found
        return None, found
    return (BY_NAME[wanted] if found[wanted].usable else None), found
