"""Two sweeps side by side: which flows and hosts started dropping, and which drop more than before.

Drops are compared as rates (per minute of window), so a 60 s sweep and a 10 s sweep
compare fairly; with equal windows that is the plain count. A flow is its host, both
endpoints and the reason; a host's line is one reason (or drop counter, untraced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdiag.diagnosis import drops_by_kind
from fleetdiag.model import Status, Sweep

NEW, WORSE, BETTER, GONE = "new", "worse", "better", "gone"
_ORDER = {NEW: 0, WORSE: 1, BETTER: 2, GONE: 3}


@dataclass(frozen=True)
class Change:
    """One host reason or one flow whose drops differ between sweep A (before) and B (after)."""

    kind: str  # new, worse, better, gone
    host: str
    reason: str
    before: int
    after: int
    before_per_min: float
    after_per_min: float
    flow: tuple[str, int, str, int] | None = None  # laddr, lport, raddr, rport; None for a host line

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        doc: dict[str, Any] = {
            "kind": self.kind,
            "host": self.host,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "before_per_min": self.before_per_min,
            "after_per_min": self.after_per_min,
        }
        if self.flow is not None:
            doc.update(zip(("laddr", "lport", "raddr", "rport"), self.flow))
        return doc


@dataclass(frozen=True)
class SweepDiff:
    """What changed from A to B: host lines, flow lines, and hosts whose status changed."""

    hosts: tuple[Change, ...]
    flows: tuple[Change, ...]
    status_changes: tuple[tuple[str, str, str], ...]  # host, status in A, status in B

    def of_kind(self, *kinds: str) -> tuple[tuple[Change, ...], tuple[Change, ...]]:
        """(host lines, flow lines) of the given kinds."""
        return (
            tuple(c for c in self.hosts if c.kind in kinds),
            tuple(c for c in self.flows if c.kind in kinds),
        )


def _per_min(count: int, duration_s: float) -> float:
    return round(count * 60.0 / duration_s, 2) if duration_s else float(count)


def _changes(
    before: dict[tuple[Any, ...], int], after: dict[tuple[Any, ...], int], a_s: float, b_s: float, is_flow: bool
) -> list[Change]:
    found = []
    for key in before.keys() | after.keys():
        old, new = before.get(key, 0), after.get(key, 0)
        old_rate, new_rate = _per_min(old, a_s), _per_min(new, b_s)
        if old == 0 and new > 0:
            kind = NEW
        elif new == 0 and old > 0:
            kind = GONE
        elif new_rate > old_rate:
            kind = WORSE
        elif new_rate < old_rate:
            kind = BETTER
        else:
            continue
        host, reason, *flow = key
        found.append(Change(kind, host, reason, old, new, old_rate, new_rate, tuple(flow) if is_flow else None))  # type: ignore[arg-type]
    found.sort(key=lambda c: (_ORDER[c.kind], -(c.after_per_min - c.before_per_min), c.host, c.reason, c.flow or ()))
    return found


def _host_drops(sweep: Sweep) -> dict[tuple[Any, ...], int]:
    return {(h.name, kind): n for h in sweep.hosts for kind, n in drops_by_kind(h).items()}


def _flow_drops(sweep: Sweep) -> dict[tuple[Any, ...], int]:
    drops: dict[tuple[Any, ...], int] = {}
    for host in sweep.hosts:
        if host.status is Status.OK:
            for f in host.flows:
                key = (host.name, f.reason, f.laddr, f.lport, f.raddr, f.rport)
                drops[key] = drops.get(key, 0) + f.drops
    return drops


def compare_sweeps(a: Sweep, b: Sweep) -> SweepDiff:
    """How B differs from A (A is the earlier one by convention)."""
    # Hosts not collected in both sweeps cannot be compared: their lines would all look new or gone.
    both = {h.name for h in a.hosts if h.status is Status.OK} & {h.name for h in b.hosts if h.status is Status.OK}

    def only(drops: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
        return {key: n for key, n in drops.items() if key[0] in both}

    status_a = {h.name: h.status.value for h in a.hosts}
    status_b = {h.name: h.status.value for h in b.hosts}
    status_changes = tuple(
        (name, status_a.get(name, "absent"), status_b.get(name, "absent"))
        for name in sorted(status_a.keys() | status_b.keys())
        if status_a.get(name, "absent") != status_b.get(name, "absent")
    )
    return SweepDiff(
        hosts=tuple(_changes(only(_host_drops(a)), only(_host_drops(b)), a.duration_s, b.duration_s, False)),
        flows=tuple(_changes(only(_flow_drops(a)), only(_flow_drops(b)), a.duration_s, b.duration_s, True)),
        status_changes=status_changes,
    )
