"""What every probe backend provides: a verdict on a host, a plan to run, a parser of its output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping, Protocol

from fleetdiag.model import HostFacts, ProbeReport, Window, frozen_map

_PLACEHOLDER = re.compile(r"@@[A-Z_]+@@")


@dataclass(frozen=True)
class Verdict:
    """Whether a tracer can run on a host, and why (not)."""

    usable: bool
    reason: str


@dataclass(frozen=True)
class ProbePlan:
    """Everything the host needs to watch one window.

    ``files`` are written into a private temp dir on the host; ``command`` runs
    there, prints ``@@attached`` on stdout once it is watching, and ends by itself
    when the window is over.
    """

    tracer: str
    probe: str
    files: Mapping[str, str] = field(default_factory=frozen_map)
    command: str = ""
    env: Mapping[str, str] = field(default_factory=frozen_map)


class Tracer(Protocol):
    """One probe backend (one module each: bpftrace, counters, ...)."""

    name: str

    def verdict(self, facts: HostFacts) -> Verdict: ...

    def plan(self, facts: HostFacts, window: Window) -> ProbePlan: ...

    def parse(self, output: str, facts: HostFacts) -> ProbeReport: ...


def probe_text(filename: str) -> str:
    """The text of a probe script shipped in the package (``probes/`` in the source tree)."""
    return resources.files("fleetdiag.probes").joinpath(filename).read_text(encoding="utf-8")


def fill_template(template: str, values: Mapping[str, int]) -> str:
    """Replace ``@@NAME@@`` placeholders with integers, refusing anything left unfilled."""
    text = template
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"probe placeholder {name} takes an integer, not {value!r}")
        text = text.replace(f"@@{name}@@", str(value))
    left = _PLACEHOLDER.findall(text)
    if left:
        raise ValueError(f"probe template has unfilled placeholders: {', '.join(sorted(set(left)))}")
    return text
