"""Time inside the window: the interval length, and a host's per-interval counts made whole.

Probes count drops in the kernel by (reason, interval index since the window's start); the
counters tier reads the TcpExt counters at the end of each interval. This module turns those
sparse counts into dense series whose sums equal the window's totals, and says honestly
when they cannot (a full interval map).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

from fleetdiag.model import FlowDrop, ProbeReport, Timeline, frozen_map

# A window never holds more than this many intervals: long windows get coarser ones.
MAX_INTERVALS = 600
# Flows that get their own per-interval list, per host (the ones with the most drops).
FLOW_TIMELINES_MAX = 20
INCOMPLETE_NOTE = (
    "the timeline places {placed} of {total} traced drops: the in-kernel interval map was full, "
    "so the other {missing} have no interval (totals per reason stay exact)"
)


def interval_for(duration_s: float) -> int:
    """Seconds per interval: 1 s, coarser for long windows so a window holds at most 600.

    >>> interval_for(60), interval_for(600), interval_for(601), interval_for(3600)
    (1, 1, 2, 6)
    """
    return max(1, math.ceil(duration_s / MAX_INTERVALS))


def interval_count(duration_s: float, interval_s: int | None = None) -> int:
    """How many intervals a window of DURATION_S holds (the last one may be shorter).

    >>> interval_count(10), interval_count(601)
    (10, 301)
    """
    step = interval_s or interval_for(duration_s)
    return max(1, math.ceil(duration_s / step))


def dense(sparse: Mapping[int, int], length: int) -> tuple[int, ...]:
    """{index: count} -> one count per interval; indices past the end fall into the last one.

    A probe's timer ends the window, but a drop counted just before it stops is stamped a
    few ms later, in an index one past the end: it belongs to the window, so to its last interval.

    >>> dense({0: 2, 3: 1, 9: 4}, 4)
    (2, 0, 0, 5)
    """
    series = [0] * length
    for index, count in sparse.items():
        series[min(max(int(index), 0), length - 1)] += int(count)
    return tuple(series)


def counter_series(
    before: Mapping[str, int],
    samples: Sequence[tuple[int, Mapping[str, int]]],
    after: Mapping[str, int],
    names: Sequence[str],
    length: int,
) -> dict[str, tuple[int, ...]]:
    """Each counter's delta per interval, from the reads at the window's open and close.

    A sample is the counters read at the end of interval INDEX; the last interval always ends
    at the final read (``after``), so the deltas telescope to ``after - before`` exactly. An
    interval whose sample is missing (a skipped tick) reads 0 and the next sample carries it.

    >>> counter_series({"A": 1}, [(0, {"A": 3}), (2, {"A": 4})], {"A": 9}, ["A"], 4)
    {'A': (2, 0, 1, 5)}
    """
    ends: dict[int, Mapping[str, int]] = {i: values for i, values in samples if 0 <= i < length - 1}
    series: dict[str, tuple[int, ...]] = {}
    for name in names:
        if name not in before or name not in after:
            continue
        previous = before[name]
        values = []
        for index in range(length):
            now = after[name] if index == length - 1 else ends.get(index, {}).get(name)
            if now is None:
                values.append(0)
                continue
            values.append(now - previous)
            previous = now
        series[name] = tuple(values)
    return series


def host_timeline(
    report: ProbeReport,
    duration_s: float,
    start: float | None,
    counters_before: Mapping[str, int],
    counters_after: Mapping[str, int],
    counter_names: Sequence[str],
) -> tuple[Timeline | None, tuple[FlowDrop, ...], tuple[str, ...]]:
    """(the host's timeline, its flows with the top ones' series, notes) from one probe's report.

    None when the probe counted nothing per interval (a probe without a timeline).
    """
    step = interval_for(duration_s)
    length = interval_count(duration_s, step)
    if not report.timed:
        return None, report.flows, ()
    notes: list[str] = []
    drops = {reason: dense(report.intervals.get(reason, {}), length) for reason in report.drops}
    placed, total = sum(sum(s) for s in drops.values()), sum(int(v) for v in report.drops.values())
    if placed != total:
        notes.append(INCOMPLETE_NOTE.format(placed=placed, total=total, missing=total - placed))
    counters: dict[str, tuple[int, ...]] = {}
    if report.counter_samples:
        counters = counter_series(counters_before, report.counter_samples, counters_after, counter_names, length)
    ports: dict[str, dict[int, tuple[int, ...]]] = {}
    for (reason, port), sparse in sorted(report.port_intervals.items()):
        ports.setdefault(reason, {})[port] = dense(sparse, length)
    timeline = Timeline(step, start, frozen_map(drops), frozen_map(counters), length,
                        frozen_map({r: frozen_map(p) for r, p in ports.items()}))  # fmt: skip
    return timeline, _flow_timelines(report, length, ports), tuple(notes)


def flow_key(flow: FlowDrop) -> tuple[Any, ...]:
    """How a probe names a flow in its per-interval map."""
    return (flow.netns or 0, flow.laddr, flow.lport, flow.raddr, flow.rport, flow.reason)


def _flow_timelines(
    report: ProbeReport, length: int, ports: Mapping[str, Mapping[int, tuple[int, ...]]] | None = None
) -> tuple[FlowDrop, ...]:
    """The flows, the busiest FLOW_TIMELINES_MAX with their series (only where it is whole).

    A flow without a socket has no series of its own; it takes its (reason, local port) bucket's
    when it is that bucket's only flow and the bucket holds exactly its drops.
    """
    if not report.flow_intervals and not ports:
        return report.flows
    sharing: dict[tuple[str, int], int] = {}
    for flow in report.flows:
        sharing[(flow.reason, flow.lport)] = sharing.get((flow.reason, flow.lport), 0) + 1
    ranked = sorted(report.flows, key=lambda f: (-f.drops, f.reason, f.laddr, f.lport, f.raddr, f.rport))
    chosen = {id(f) for f in ranked[:FLOW_TIMELINES_MAX]}
    flows = []
    for flow in report.flows:
        sparse = report.flow_intervals.get(flow_key(flow))
        bucket = (ports or {}).get(flow.reason, {}).get(flow.lport)
        if id(flow) in chosen and sparse is not None:
            series = dense(sparse, length)
            if sum(series) == flow.drops:  # a flow whose intervals did not all fit has none
                flow = replace(flow, timeline=series)
        elif (id(flow) in chosen and bucket is not None and not report.flows_truncated
              and sharing[(flow.reason, flow.lport)] == 1 and sum(bucket) == flow.drops):  # fmt: skip
            flow = replace(flow, timeline=bucket)
        flows.append(flow)
    return tuple(flows)
