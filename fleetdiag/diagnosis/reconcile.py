"""Traced drops against the kernel's own counters over the same window: what the probe missed.

A BPF program can be skipped by the kernel (recursion on the same CPU during a burst),
and counters are read a moment before and after the probe's window, so the two can
differ. Every difference is reported, never smoothed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdiag.diagnosis.verdict import Verdict, percent
from fleetdiag.model import HostResult, Status

# Drop reasons counted one for one by a TcpExt counter (dropreason-core.h names the MIB).
EXACT_PAIRS = (
    ("SOCKET_BACKLOG", "TCPBacklogDrop"),
    ("TCP_ZEROWINDOW", "TCPZeroWindowDrop"),
)
# What a host without a tracer counts as drops: the TcpExt drop counters.
COUNTED_DROPS = ("TCPBacklogDrop", "TCPRcvQDrop", "TCPZeroWindowDrop", "ListenDrops", "PFMemallocDrop")


@dataclass(frozen=True)
class Reconciliation:
    """One traced reason against the counter that counts the same drops."""

    reason: str
    counter: str
    traced: int
    counted: int
    port: int | None = None  # tracing was limited to this port; the counter is namespace-wide

    @property
    def missed(self) -> int:
        """Drops the kernel counted and the probe did not see."""
        return max(self.counted - self.traced, 0)

    @property
    def coverage_pct(self) -> float | None:
        """Share of counted drops that were traced (None when nothing was counted)."""
        return percent(min(self.traced, self.counted), self.counted) if self.counted else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "reason": self.reason,
            "counter": self.counter,
            "traced": self.traced,
            "counted": self.counted,
            "missed": self.missed,
            "coverage_pct": self.coverage_pct,
            "port": self.port,
        }


def is_traced(host: HostResult) -> bool:
    """Whether a probe counted drops on this host (not just counters or samples)."""
    fidelity = getattr(host, "fidelity", None)
    if fidelity is not None:
        return str(getattr(fidelity, "value", fidelity)) == "traced"
    return host.status is Status.OK and bool(host.probe) and not str(host.probe).startswith("counters")


def reconcile(host: HostResult, port: int | None = None) -> tuple[Reconciliation, ...]:
    """Each exact pair whose counter the host reported (nothing for untraced or failed hosts)."""
    if host.status is not Status.OK or not is_traced(host):
        return ()
    return tuple(
        Reconciliation(reason, counter, int(host.drops.get(reason, 0)), int(host.counters[counter]), port)
        for reason, counter in EXACT_PAIRS
        if counter in host.counters
    )


def drops_by_kind(host: HostResult) -> dict[str, int]:
    """The host's drops in the window by reason, or by TcpExt drop counter when nothing traced them."""
    if host.status is not Status.OK:
        return {}
    if is_traced(host):
        return {reason: int(n) for reason, n in host.drops.items() if n}
    return {name: int(host.counters[name]) for name in COUNTED_DROPS if host.counters.get(name)}


def drops_seen(host: HostResult) -> int:
    """The host's drops in the window: traced drops of every reason, or the drop counters when untraced."""
    return sum(drops_by_kind(host).values())


def missed_verdicts(found: tuple[Reconciliation, ...]) -> list[Verdict]:
    """One verdict per pair where the kernel counted drops the probe did not see."""
    verdicts = []
    for item in found:
        if not item.missed or item.port is not None:
            continue  # with --port, drops on other ports are counted but rightly untraced
        verdicts.append(
            Verdict(
                code="untraced_drops",
                title=f"{item.missed} {item.reason} drops not traced",
                summary=(
                    f"the kernel counted {item.counted} {item.counter} in the window, the probe traced "
                    f"{item.traced} {item.reason} ({item.coverage_pct:g}% coverage): {item.missed} missed."
                ),
                next_step=(
                    "trust the counter for totals; bpftool prog show lists recursion_misses (the probe is skipped "
                    "on a CPU where it is already running during a burst); drops just outside the probe's window "
                    "also count here"
                ),
                evidence=item.as_dict(),
            )
        )
    return verdicts
