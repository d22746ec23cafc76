"""--follow: drops streamed from a host while its window runs, one summary per interval.

In follow mode the window script prints, once a second, ``@@live probe LINE`` for each
new line the probe wrote (capped), then ``@@live tcpext TIME NAME=VALUE...`` with the
namespace's drop counters. Tracers that follow print their running totals in a form
their own ``parse`` reads (bpftrace prints ``@total``), so no tracer needs a second
parser. These lines come before the first section marker, so the final result ignores them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from fleetdiag.model import HostFacts, frozen_map
from fleetdiag.tracers.base import Tracer

LIVE_PREFIX = "@@live "


@dataclass(frozen=True)
class LiveDrops:
    """What one host dropped during one interval of its window."""

    host: str
    at: float | None  # host clock (epoch seconds) at the end of the interval
    reasons: Mapping[str, int] = field(default_factory=frozen_map)  # traced drops by reason
    counters: Mapping[str, int] = field(default_factory=frozen_map)  # TcpExt drop counters that moved


LiveCallback = Callable[[LiveDrops], None]


class LiveDecoder:
    """Turns one host's ``@@live`` lines into LiveDrops, one per interval with anything in it."""

    def __init__(self, host: str, tracer: Tracer, facts: HostFacts, emit: LiveCallback) -> None:
        self.host = host
        self.tracer = tracer
        self.facts = facts
        self.emit = emit
        self._totals: dict[str, int] = {}
        self._counters: dict[str, int] | None = None
        self._pending: dict[str, int] = {}

    def feed(self, line: str) -> None:
        """One line of the host's stdout (anything but ``@@live`` lines is ignored)."""
        if not line.startswith(LIVE_PREFIX):
            return
        kind, _, payload = line[len(LIVE_PREFIX):].rstrip("\n").partition(" ")
        if kind == "probe":
            self._probe_line(payload)
        elif kind == "tcpext":
            self._interval_end(payload)

    def _probe_line(self, payload: str) -> None:
        try:
            totals = self.tracer.parse(payload, self.facts).drops
        except Exception:  # a line cut by the cap, or one the tracer does not follow with
            return
        for reason, total in totals.items():
            grown = int(total) - self._totals.get(reason, 0)
            if grown > 0:
                self._pending[reason] = self._pending.get(reason, 0) + grown
                self._totals[reason] = int(total)

    def _interval_end(self, payload: str) -> None:
        stamp, *pairs = payload.split()
        counters = {}
        for pair in pairs:
            name, _, value = pair.partition("=")
            if value.lstrip("-").isdigit():
                counters[name] = int(value)
        previous, self._counters = self._counters, counters
        if previous is None:
            return  # the first line is the baseline read as the window opens
        moved = {name: n - previous[name] for name, n in counters.items() if name in previous and n > previous[name]}
        reasons, self._pending = self._pending, {}
        if reasons or moved:
            self.emit(LiveDrops(self.host, _float(stamp), frozen_map(reasons), frozen_map(moved)))


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def describe(drops: LiveDrops) -> str:
    """One line for people: ``08:00:03 h01 +5 SOCKET_BACKLOG, +100 TCP_OLD_DATA | TcpExt TCPBacklogDrop +5``."""
    parts = [f"+{n} {reason}" for reason, n in sorted(drops.reasons.items(), key=lambda i: (-i[1], i[0]))]
    stamp = time.strftime("%H:%M:%S ", time.localtime(drops.at)) if drops.at is not None else ""
    text = f"{stamp}{drops.host} " + (", ".join(parts) or "no traced drops")
    if drops.counters:
        text += " | TcpExt " + ", ".join(f"{name} +{n}" for name, n in sorted(drops.counters.items()))
    return text
