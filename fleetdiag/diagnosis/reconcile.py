"""Traced drops against the kernel's own counters over the same window: what the probe missed.

A BPF program can be skipped by the kernel (recursion on the same CPU during a burst),
and counters are read a moment before and after the probe's window, so the two can
differ. Every difference is reported, never smoothed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdiag.backlog_limit import kernel_version
from fleetdiag.diagnosis.verdict import Verdict, percent
from fleetdiag.model import HostResult, Status

# Drop reasons counted one for one by a TcpExt counter (dropreason-core.h names the MIB).
EXACT_PAIRS = (
    ("SOCKET_BACKLOG", "TCPBacklogDrop"),
    ("TCP_ZEROWINDOW", "TCPZeroWindowDrop"),
)


@dataclass(frozen=True)
class Pair:
    """Traced reasons (summed) against TcpExt counters (summed) that count the same drops.

    ``exact``: one for one. Otherwise the counters count a subset of the traced drops (the
    kernel drops some with the reason without counting them), so only a shortfall is news.
    Sources per kernel: docs/probes.md, "Reasons reconciled against counters".
    """

    reasons: tuple[str, ...]
    counters: tuple[str, ...]
    exact: bool = True
    since: tuple[int, int] = (0, 0)  # the first kernel where the mapping holds

    @property
    def reason(self) -> str:
        return "+".join(self.reasons)

    @property
    def counter(self) -> str:
        return "+".join(self.counters)


# tcp_data_queue() drops PROTO_MEM where it counts TCPRcvQDrop, tcp_data_queue_ofo() where it
# counts TCPOFODrop (reasons there since 5.19); TCPRcvQDrop also counts a TCP_REPAIR queue
# restore that fails (tcp_send_rcvq, no drop reason), so the counters may exceed the drops.
# tcp_validate_incoming() counts BeyondWindow (6.17+) for the INVALID_SEQUENCE and
# INVALID_END_SEQUENCE drops of tcp_sequence() that are not RSTs; an RST beyond the window is
# dropped with the reason uncounted, and newer kernels count TCP_OVERWINDOW there too.
PAIRS = (
    *(Pair((reason,), (counter,)) for reason, counter in EXACT_PAIRS),
    Pair(("PROTO_MEM",), ("TCPRcvQDrop", "TCPOFODrop"), exact=True, since=(5, 19)),
    Pair(("TCP_INVALID_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_OVERWINDOW"), ("BeyondWindow",),
         exact=False, since=(6, 17)),
)  # fmt: skip
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
    recursion_misses: int | None = None  # the probe's programs' own count of skipped runs (None: not read)
    exact: bool = True  # False: the counter counts a subset of the traced drops (see Pair)
    perf_tracepoint: bool = False  # the probe ran perf tracepoint programs, which the kernel can skip uncounted

    @property
    def within_misses(self) -> bool | None:
        """Whether the shortfall is no more than the runs the kernel skipped (None when misses are unknown)."""
        if self.recursion_misses is None:
            return None
        return self.missed <= self.recursion_misses

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
            "recursion_misses": self.recursion_misses,
            "within_misses": self.within_misses,
            "exact": self.exact,
        }


def is_traced(host: HostResult) -> bool:
    """Whether a probe counted drops on this host (not just counters or samples)."""
    fidelity = getattr(host, "fidelity", None)
    if fidelity is not None:
        return str(getattr(fidelity, "value", fidelity)) == "traced"
    return host.status is Status.OK and bool(host.probe) and not str(host.probe).startswith("counters")


# BPF_PROG_TYPE_TRACEPOINT: run from the tracepoint's perf handler (see missed_verdicts).
PERF_TRACEPOINT_PROG_TYPE = 5


def runs_perf_tracepoints(host: HostResult) -> bool:
    """Whether the host's probe ran programs attached through a tracepoint's perf handler."""
    stats = getattr(host, "probe_stats", None)
    return stats is not None and any(p.prog_type == PERF_TRACEPOINT_PROG_TYPE for p in stats.programs)


def host_misses(host: HostResult) -> int | None:
    """The recursion misses the host's probe programs counted, or None when they were not read."""
    stats = getattr(host, "probe_stats", None)
    return None if stats is None else stats.recursion_misses


def _pair_fits(host: HostResult, pair: Pair) -> bool:
    if not all(counter in host.counters for counter in pair.counters):
        return False
    version = kernel_version(host.kernel)
    return pair.since == (0, 0) or (version is not None and version >= pair.since)


def reconcile(host: HostResult, port: int | None = None) -> tuple[Reconciliation, ...]:
    """Each pair whose counters the host reported, on a kernel where it holds (nothing for untraced or failed hosts)."""
    if host.status is not Status.OK or not is_traced(host):
        return ()
    misses = host_misses(host)
    perf = runs_perf_tracepoints(host)
    return tuple(
        Reconciliation(
            pair.reason,
            pair.counter,
            sum(int(host.drops.get(reason, 0)) for reason in pair.reasons),
            sum(int(host.counters[counter]) for counter in pair.counters),
            port,
            misses,
            pair.exact,
            perf,
        )
        for pair in PAIRS
        if _pair_fits(host, pair)
    )


def unchecked_reasons(host: HostResult, port: int | None = None) -> list[str]:
    """Traced reasons with no counter reconciled against them: incomplete by up to the misses, when any."""
    checked = {reason for item in reconcile(host, port) for reason in item.reason.split("+")}
    return sorted(reason for reason, n in host.drops.items() if n and reason not in checked)


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
        if item.within_misses:
            why = (
                f"within the {item.recursion_misses} runs the kernel skipped the probe's programs "
                "(their recursion_misses, read at the window's end): the shortfall is the kernel's, accounted for"
            )
            step = (
                "trust the counter for totals; the kernel skips a tracepoint program while another BPF tracing "
                "program runs on that CPU (docs/probes.md, recursion guards)"
            )
        elif item.recursion_misses is not None:
            over = f"more than the {item.recursion_misses} runs the kernel skipped the probe's programs: "
            if item.perf_tracepoint:
                # perf_trace_buf_alloc() takes a per-CPU, per-context recursion slot before any program
                # runs; when it is taken, the event is dropped and no program counts a miss. Measured on
                # the lab (docs/probes.md): 5 of about 235,000 storm backlog drops, each seen by tracefs.
                why = over + (
                    "the kernel's perf tracepoint path also drops an event before any program runs, counting "
                    "no miss, when that CPU's perf recursion slot is taken (rare: about 1 in 50,000 drops under "
                    "a storm on fleetdiag's lab); or the rest fell just outside the probe's window"
                )
                step = (
                    "trust the counter for totals; a raw tracepoint attach has no such path (bpftrace 0.21+ or "
                    "bcc: docs/probes.md, recursion guards)"
                )
            else:
                why = over + "the rest fell just outside the probe's window, or the kernel counted drops without this reason"
                step = "trust the counter for totals; compare the window's times with the traffic's"
        else:
            why = "the probe's recursion misses were not read"
            step = (
                "trust the counter for totals; bpftool prog show lists recursion_misses (the probe is skipped "
                "on a CPU where a BPF program already runs during a burst); drops just outside the probe's window "
                "also count here"
            )
        verdicts.append(
            Verdict(
                code="untraced_drops",
                title=f"{item.missed} {item.reason} drops not traced",
                summary=(
                    f"the kernel counted {item.counted} {item.counter} in the window, the probe traced "
                    f"{item.traced} {item.reason} ({item.coverage_pct:g}% coverage): {item.missed} missed, {why}."
                ),
                next_step=step,
                evidence=item.as_dict(),
            )
        )
    return verdicts


def misses_verdict(host: HostResult, port: int | None = None) -> Verdict | None:
    """When the kernel skipped the probe's programs: every total may be short, by the misses at most."""
    stats = getattr(host, "probe_stats", None)
    misses = host_misses(host)
    if stats is None or not misses or host.status is not Status.OK:
        return None
    unchecked = unchecked_reasons(host, port)
    tail = ""
    if unchecked:
        one = len(unchecked) == 1
        tail = (f"; {', '.join(unchecked)} {'has' if one else 'have'} no counter to check against, so "
                f"{'it is' if one else 'they are'} incomplete by up to that many")  # fmt: skip
    return Verdict(
        code="recursion_misses",
        title=f"probe skipped {misses} times",
        summary=(
            f"the kernel skipped the probe's programs {misses} times in the window (recursion_misses of its "
            f"{len(stats.programs)} programs, read before they unloaded): the drops traced per reason "
            f"are exact up to those {misses} runs, whose reasons are unknown{tail}."
        ),
        next_step=(
            "trust the TcpExt counters for the reconciled reasons; misses come from other BPF tracing programs on "
            "the same CPUs (bpftool prog show), see docs/probes.md on each tier's recursion guard"
        ),
        evidence={"recursion_misses": misses, "incomplete_reasons": unchecked},
    )
