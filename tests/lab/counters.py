"""Parse the kernel's per-namespace TCP counters."""

from __future__ import annotations


def parse_tcpext(netstat_text: str) -> dict[str, int]:
    """TcpExt counters from /proc/net/netstat, names without prefix: {'TCPBacklogDrop': 3, ...}."""
    # The file holds pairs of lines per group: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
    rows = [line.split() for line in netstat_text.splitlines() if line.startswith("TcpExt:")]
    if len(rows) != 2:
        raise ValueError(f"expected 2 TcpExt lines in /proc/net/netstat, found {len(rows)}")
    names, values = rows[0][1:], rows[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}
