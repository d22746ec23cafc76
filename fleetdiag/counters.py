"""Kernel SNMP counters (``/proc/net/netstat``): parsing and deltas over a window."""

from __future__ import annotations

from typing import Mapping

# Reported even when they did not move, so "0 backlog drops" is said, not implied.
ALWAYS_REPORTED = (
    "TCPBacklogDrop",
    "TCPRcvQDrop",
    "TCPOFODrop",  # with TCPRcvQDrop, PROTO_MEM's counter (diagnosis/reconcile.py)
    "BeyondWindow",  # 6.17+: the sequence checks' counter
    "TCPZeroWindowDrop",
    "PruneCalled",
    "RcvPruned",
    "TCPRcvCollapsed",
    "TCPBacklogCoalesce",
    "TCPMemoryPressures",
    "ListenOverflows",
    "ListenDrops",
)


def parse_netstat(text: str, group: str = "TcpExt") -> dict[str, int]:
    """Parse one group of /proc/net/netstat (header line, then value line) into {name: value}.

    >>> parse_netstat("TcpExt: A B\\nTcpExt: 1 2\\n")
    {'A': 1, 'B': 2}
    """
    prefix = group + ":"
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith(prefix)]
    if len(rows) < 2:
        return {}
    names, values = rows[0], rows[1]
    return {name: int(value) for name, value in zip(names, values) if value.lstrip("-").isdigit()}


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """What moved over the window, plus the always-reported counters (0 when still)."""
    delta = {
        name: after[name] - before[name]
        for name in after
        if name in before and after[name] != before[name]
    }
    for name in ALWAYS_REPORTED:
        if name in after and name in before:
            delta.setdefault(name, 0)
    return dict(sorted(delta.items()))
