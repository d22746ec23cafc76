"""Verdicts on the sweep as a whole: several hosts that started dropping the same reason together.

Pure functions over the Sweep. A host's clock is read through ``start_of`` (default: the host's
own window start), so corrected clocks (clock-offset estimates) drop in without changing this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from fleetdiag.diagnosis.reconcile import COUNTED_DROPS, is_traced
from fleetdiag.diagnosis.verdict import Verdict
from fleetdiag.model import HostResult, Status, Sweep

# Hosts that must start together before it is a fleet event rather than one host's trouble.
MIN_HOSTS = 2
StartOf = Callable[[HostResult], "float | None"]


def host_start(host: HostResult) -> float | None:
    """When the host's window (its timeline's interval 0) started, on its own clock."""
    timeline = host.timeline
    if timeline is not None and timeline.start is not None:
        return timeline.start
    return host.window_start


def drop_series(host: HostResult) -> dict[str, tuple[int, ...]]:
    """The host's drops per interval by kind: traced reasons, or the drop counters on an untraced host."""
    timeline = host.timeline
    if timeline is None:
        return {}
    if is_traced(host):
        return dict(timeline.drops)
    return {name: series for name, series in timeline.counters.items() if name in COUNTED_DROPS}


def total_series(host: HostResult) -> tuple[int, ...]:
    """Every kind of the host's drops added up, per interval (empty without a timeline)."""
    series = list(drop_series(host).values())
    length = host.timeline.length if host.timeline is not None else 0
    return tuple(sum(s[i] for s in series if i < len(s)) for i in range(length))


def activity(host: HostResult) -> dict[str, object] | None:
    """When the host's drops started (interval, epoch seconds) and whether they still went on at the end."""
    if host.timeline is None:
        return None
    series = total_series(host)
    first = next((i for i, n in enumerate(series) if n), None)
    start = host_start(host)
    return {
        "dropping": first is not None,
        "first_interval": first,
        "first_at": None if first is None or start is None else round(start + first * host.timeline.interval_s, 3),
        "ongoing_at_end": bool(series and series[-1]),
    }


@dataclass(frozen=True)
class Onset:
    """A host's first interval with drops of one reason, in epoch seconds (the interval's start)."""

    host: str
    reason: str
    at: float
    interval_s: int
    first_drops: int  # drops in that first interval


def onsets(sweep: Sweep, start_of: StartOf = host_start) -> list[Onset]:
    """Every (host, reason) that started dropping inside the window (not already at its first interval).

    A host dropping from interval 0 on was dropping before the window opened: when it started is unknown.
    """
    found = []
    for host in sweep.hosts:
        timeline, start = host.timeline, start_of(host)
        if host.status is not Status.OK or timeline is None or start is None:
            continue
        for reason, series in drop_series(host).items():
            first = next((i for i, n in enumerate(series) if n), None)
            if first:  # None: never; 0: already dropping when the window opened
                found.append(Onset(host.name, reason, start + first * timeline.interval_s, timeline.interval_s, series[first]))
    return found


def fleet_events(sweep: Sweep, start_of: StartOf = host_start) -> tuple[Verdict, ...]:
    """A ``fleet_event`` for each reason that two or more hosts started dropping in the same interval."""
    by_reason: dict[str, list[Onset]] = {}
    for onset in onsets(sweep, start_of):
        by_reason.setdefault(onset.reason, []).append(onset)
    events = []
    for reason, found in sorted(by_reason.items()):
        found.sort(key=lambda o: (o.at, o.host))
        group: list[Onset] = []
        for onset in found:
            # Together: within one interval of the group's first host (windows start at fractions of a second).
            if group and onset.at - group[0].at >= max(o.interval_s for o in group):
                events += _event(reason, group)
                group = []
            group.append(onset)
        events += _event(reason, group)
    return tuple(sorted(events, key=lambda v: (str(v.evidence["at"]), str(v.evidence["reason"]))))


def _event(reason: str, group: list[Onset]) -> list[Verdict]:
    if len(group) < MIN_HOSTS:
        return []
    hosts = [o.host for o in group]
    at = _utc(group[0].at)
    step = max(o.interval_s for o in group)
    named = ", ".join(hosts)
    return [
        Verdict(
            code="fleet_event",
            title="hosts started dropping together",
            summary=(
                f"{len(hosts)} hosts started dropping {reason} in the same {step} s at {at}: {named} "
                f"({sum(o.first_drops for o in group)} drops in that interval); one cause reached them all at once."
            ),
            next_step=(
                f"look for what these hosts share that changed at {at}: a network event (link, switch, route or "
                "firewall change), a deploy or configuration push to their group, or a common peer or load "
                "balancer; compare with change logs and the peers' own sweeps for that second"
            ),
            evidence={"reason": reason, "at": at, "at_epoch": round(group[0].at, 3), "interval_s": step,
                      "hosts": named, "host_count": len(hosts)},  # fmt: skip
        )
    ]


def _utc(epoch: float) -> str:
    """Epoch seconds as ``2026-11-26T08:00:03Z`` (to the second: intervals are at least 1 s)."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat().replace("+00:00", "Z")
