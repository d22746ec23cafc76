"""The plain-text report the bcc, systemtap and counters probes print at the end of a window.

Those probes are fleetdiag's own scripts, so they all print the same few line shapes,
one record per line, space-separated, ``-`` for a value the probe could not see::

    total <reason> <count>
    flow <netns> <laddr> <lport> <raddr> <rport> <reason> <drops> <rcvbuf> <sndbuf> <userlocks> <backlog_max> <rmem_max> <queue_max>
    overflow <count>
    window <netns> <laddr> <lport> <raddr> <rport> <reason> <rcv_wnd> <window_clamp> <rcv_ssthresh> <scaling_ratio> <skb_len_max> <skb_len_sum> <skb_truesize_max> <skb_truesize_sum>

A ``window`` line adds the receive window and the dropped skbs' sizes to the ``flow`` line
with the same key (backlog drops of the tiers that see the socket).
    timed                                    (the probe counts per interval; then, sparse:)
    timeline <reason> <interval> <drops>
    flowtl <netns> <laddr> <lport> <raddr> <rport> <reason> <interval> <drops>
    porttl <reason> <lport> <interval> <drops>  (drops without a socket, per local port)

A netns of ``-`` means the host's own namespace (the probe ran inside it), ``0`` unknown.
A reason is either the host's drop-reason number (mapped through its own table) or a
name. Lines that do not parse are skipped: a probe's stray output never breaks a host.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from fleetdiag.model import FlowDrop, HostFacts, ProbeReport, frozen_map

_FLOW_FIELDS = 14
_WINDOW_FIELDS = 15
WINDOW_NAMES = (
    "rcv_wnd", "window_clamp", "rcv_ssthresh", "scaling_ratio",
    "skb_len_max", "skb_len_sum", "skb_truesize_max", "skb_truesize_sum",
)  # fmt: skip


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def reason_name(reason: str, table: Mapping[int, str], aliases: Mapping[int, str] | None = None) -> str:
    """A reason as printed -> its name: host table first, then the backend's own numbers, then REASON_<n>.

    >>> reason_name("29", {29: "SOCKET_BACKLOG"}), reason_name("SOCKET_BACKLOG", {}), reason_name("7", {})
    ('SOCKET_BACKLOG', 'SOCKET_BACKLOG', 'REASON_7')
    """
    number = _int(reason)
    if number is None:
        return reason
    if number in table:
        return table[number]
    return (aliases or {}).get(number, f"REASON_{number}")


def _flow(words: list[str], facts: HostFacts, aliases: Mapping[int, str] | None) -> FlowDrop | None:
    if len(words) != _FLOW_FIELDS:
        return None
    (_, ns, laddr, lport, raddr, rport, reason, drops, rcvbuf, sndbuf, userlocks, backlog, rmem, queue) = words
    numbers = [_int(v) for v in (lport, rport, drops)]
    if any(n is None for n in numbers):
        return None
    lport_n, rport_n, drops_n = (int(n) for n in numbers)  # type: ignore[arg-type]
    return FlowDrop(
        laddr=laddr,
        lport=lport_n,
        raddr=raddr,
        rport=rport_n,
        netns=facts.netns if ns == "-" else (_int(ns) or None),  # "-": the host's own; 0: unknown
        reason=reason_name(reason, facts.drop_reasons, aliases),
        drops=drops_n,
        rcvbuf=_int(rcvbuf),
        sndbuf=_int(sndbuf),
        userlocks=_int(userlocks),
        backlog_len_max=_int(backlog),
        rmem_alloc_max=_int(rmem),
        queue_max=_int(queue),
    )


def _window(words: list[str]) -> tuple[tuple[str, ...], dict[str, int | None]] | None:
    """(flow key as printed, window fields) of a ``window`` line; a negative value is unknown."""
    if len(words) != _WINDOW_FIELDS:
        return None
    values = [_int(v) for v in words[7:]]
    return tuple(words[1:7]), {n: (v if v is not None and v >= 0 else None) for n, v in zip(WINDOW_NAMES, values)}


def parse_records(output: str, facts: HostFacts, aliases: Mapping[int, str] | None = None) -> ProbeReport:
    """Totals per reason and per-flow drops from a probe's record lines."""
    totals: dict[str, int] = {}
    flows: list[FlowDrop] = []
    keys: list[tuple[str, ...]] = []
    windows: dict[tuple[str, ...], dict[str, int | None]] = {}
    overflow = 0
    intervals: dict[str, dict[int, int]] = {}
    flow_intervals: dict[tuple[object, ...], dict[int, int]] = {}
    port_intervals: dict[tuple[str, int], dict[int, int]] = {}
    timed = False
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "timed":
            timed = True
        elif words[0] == "timeline" and len(words) == 4 and all(_int(w) is not None for w in words[2:]):
            series = intervals.setdefault(reason_name(words[1], facts.drop_reasons, aliases), {})
            series[int(words[2])] = series.get(int(words[2]), 0) + int(words[3])
        elif words[0] == "flowtl" and len(words) == 9 and all(_int(w) is not None for w in (words[3], words[5], *words[7:])):
            ns = facts.netns if words[1] == "-" else (_int(words[1]) or None)
            key = (ns or 0, words[2], int(words[3]), words[4], int(words[5]),
                   reason_name(words[6], facts.drop_reasons, aliases))  # fmt: skip
            series = flow_intervals.setdefault(key, {})
            series[int(words[7])] = series.get(int(words[7]), 0) + int(words[8])
        elif words[0] == "porttl" and len(words) == 5 and all(_int(w) is not None for w in words[2:]):
            series = port_intervals.setdefault((reason_name(words[1], facts.drop_reasons, aliases), int(words[2])), {})
            series[int(words[3])] = series.get(int(words[3]), 0) + int(words[4])
        if words[0] == "total" and len(words) == 3 and _int(words[2]) is not None:
            name = reason_name(words[1], facts.drop_reasons, aliases)
            totals[name] = totals.get(name, 0) + int(words[2])
        elif words[0] == "flow":
            flow = _flow(words, facts, aliases)
            if flow is not None and flow.drops > 0:
                flows.append(flow)
                keys.append(tuple(words[1:7]))
        elif words[0] == "window":
            window = _window(words)
            if window is not None:
                windows[window[0]] = window[1]
        elif words[0] == "overflow" and len(words) == 2:
            overflow += _int(words[1]) or 0
    flows = [replace(f, **windows[k]) if k in windows else f for f, k in zip(flows, keys)]
    flows.sort(key=lambda f: (-f.drops, f.reason, f.laddr, f.lport, f.raddr, f.rport))
    return ProbeReport(
        drops=frozen_map(dict(sorted(totals.items()))),
        flows=tuple(flows),
        flows_truncated=overflow > 0 or sum(f.drops for f in flows) < sum(totals.values()),
        intervals=frozen_map({r: frozen_map(s) for r, s in intervals.items()}),
        flow_intervals=frozen_map({k: frozen_map(s) for k, s in flow_intervals.items()}),
        port_intervals=frozen_map({k: frozen_map(s) for k, s in port_intervals.items()}),
        timed=timed,
    )
