"""Host verdicts from the TcpExt counter deltas: memory pressure, pruning, accept queues, untraced drops."""

from __future__ import annotations

from typing import Mapping

from fleetdiag.diagnosis.verdict import Verdict

# Counters that move with backlog drops, shown beside TCPBacklogDrop (all always reported).
COMPANION_COUNTERS = (
    "PruneCalled",
    "RcvPruned",
    "TCPRcvCollapsed",
    "TCPRcvQDrop",
    "TCPZeroWindowDrop",
    "TCPBacklogCoalesce",
    "TCPMemoryPressures",
    "ListenOverflows",
    "ListenDrops",
)


def _pick(counters: Mapping[str, int], *names: str) -> dict[str, int]:
    return {name: int(counters.get(name, 0)) for name in names}


def memory_pressure(counters: Mapping[str, int]) -> Verdict | None:
    """TCP entered global memory pressure (tcp_mem) during the window."""
    seen = _pick(counters, "TCPMemoryPressures", "TCPMemoryPressuresChrono", "TCPAbortOnMemory")
    if not seen["TCPMemoryPressures"] and not seen["TCPMemoryPressuresChrono"]:
        return None
    return Verdict(
        code="tcp_memory_pressure",
        title="global TCP memory pressure",
        summary=(
            f"TCP entered memory pressure {seen['TCPMemoryPressures']} time(s) in the window "
            f"({seen['TCPMemoryPressuresChrono']} ms under pressure, {seen['TCPAbortOnMemory']} connections "
            "aborted for memory): every socket's buffers are squeezed and segments are dropped."
        ),
        next_step=(
            "compare 'TCP: mem' in /proc/net/sockstat with net.ipv4.tcp_mem (pages); find the sockets holding "
            "memory (ss -tm, large Recv-Q) or raise tcp_mem if the host has the RAM"
        ),
        evidence=seen,
    )


def receive_pruning(counters: Mapping[str, int]) -> Verdict | None:
    """Receive queues went over rcvbuf and the kernel collapsed or pruned them."""
    seen = _pick(counters, "PruneCalled", "RcvPruned", "TCPRcvCollapsed", "TCPRcvQDrop")
    if not seen["PruneCalled"] and not seen["RcvPruned"]:
        return None
    return Verdict(
        code="receive_queue_pruned",
        title="receive queues over rcvbuf",
        summary=(
            f"the kernel pruned receive queues {seen['PruneCalled']} time(s) (PruneCalled), collapsed "
            f"{seen['TCPRcvCollapsed']} segments, discarded {seen['RcvPruned']} (RcvPruned) and refused "
            f"{seen['TCPRcvQDrop']} for a full queue (TCPRcvQDrop)."
        ),
        next_step="applications here are not draining their sockets, or their rcvbuf is small; see the flows",
        evidence=seen,
    )


def listen_overflow(counters: Mapping[str, int]) -> Verdict | None:
    """Accept queues overflowed: connections dropped before the application saw them."""
    seen = _pick(counters, "ListenOverflows", "ListenDrops")
    if not seen["ListenOverflows"] and not seen["ListenDrops"]:
        return None
    return Verdict(
        code="listen_overflow",
        title="accept queue overflow",
        summary=(
            f"{seen['ListenOverflows']} SYN/ACKs found the accept queue full (ListenOverflows) and "
            f"{seen['ListenDrops']} connection attempts were dropped by listeners (ListenDrops)."
        ),
        next_step=(
            "the application does not accept() fast enough, or its listen() backlog is small "
            "(capped by net.core.somaxconn); ss -ltn shows Recv-Q against Send-Q per listener"
        ),
        evidence=seen,
    )


def counted_backlog_drops(counters: Mapping[str, int]) -> Verdict | None:
    """Backlog drops on a host without a tracer: the counter says how many, not which flows."""
    drops = int(counters.get("TCPBacklogDrop", 0))
    if not drops:
        return None
    return Verdict(
        code="backlog_drops_counted",
        title="backlog drops counted, flows unknown",
        summary=f"the kernel counted {drops} TCPBacklogDrop in the window; no probe traced them on this host.",
        next_step="run with a tracer on this host (fleetdiag check shows why none was usable) to see the flows",
        evidence={"TCPBacklogDrop": drops},
    )
