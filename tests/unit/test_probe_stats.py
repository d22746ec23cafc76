"""Probe programs' stats from the window script, misses bounding shortfalls, and the folded flow table."""

from __future__ import annotations

import json
from dataclasses import replace

from fleetdiag.diagnosis import host_verdicts, reconcile, unchecked_reasons
from fleetdiag.document import load_sweep, sweep_document
from fleetdiag.model import FlowDrop, HostResult, Status, Sweep, frozen_map
from fleetdiag.render import table
from fleetdiag.tracers.prog_stats import parse_probe_stats

SECTION = """prog 41 5 0 0 7
prog 42 5 0 0 3
prog 41 5 0 0 7
prog 43 7 0 0 0
bpf_stats 0
@@live probe noise
"""


def test_programs_are_read_once_each_and_misses_summed():
    stats = parse_probe_stats(SECTION, events=120)
    assert [p.prog_id for p in stats.programs] == [41, 42, 43]
    assert stats.recursion_misses == 10 and stats.events == 120
    assert stats.run_cnt is None  # bpf_stats off: the kernel did not count runs, so none are claimed
    on = parse_probe_stats("prog 9 5 1000 250000 0\nbpf_stats 1\n", events=5)
    assert (on.run_cnt, on.run_time_ns, on.bpf_stats_enabled) == (1000, 250000, True)
    assert parse_probe_stats(None, 0) is None and parse_probe_stats("bpf_stats 0\n", 0) is None


def test_a_bpf_links_line_never_stands_in_for_its_program():
    """bpftrace 0.17's kretfunc on 6.1 holds a link fd (fdinfo: link_type, prog_id, no counts) below the
    program's own fd: read first, it made the program type-less with its misses taken as 0."""
    stats = parse_probe_stats("prog 167 5 - - 0\nprog 168 - - - -\nprog 168 26 - - 4\nbpf_stats 0\n", events=9)
    assert [(p.prog_id, p.prog_type, p.recursion_misses) for p in stats.programs] == [(167, 5, 0), (168, 26, 4)]
    assert stats.recursion_misses == 4


def _host(misses: int, **drops: int) -> HostResult:
    counters = {"TCPBacklogDrop": 100, "TCPZeroWindowDrop": 0, "TCPRcvQDrop": 40, "TCPOFODrop": 10, "BeyondWindow": 5}
    return HostResult(
        "h01", "10.0.0.2", Status.OK, kernel="6.18.4", probe="bpftrace:kfree_skb",
        drops=frozen_map(drops), counters=frozen_map(counters),
        probe_stats=parse_probe_stats(f"prog 1 5 0 0 {misses}\nbpf_stats 0\n", sum(drops.values())),
    )  # fmt: skip


def test_shortfall_within_misses_is_said_and_unchecked_reasons_are_incomplete():
    host = _host(12, SOCKET_BACKLOG=95, PROTO_MEM=45, TCP_INVALID_SEQUENCE=5, NO_SOCKET=2000)
    recs = {r.reason: r for r in reconcile(host)}
    assert (recs["PROTO_MEM"].counted, recs["PROTO_MEM"].missed, recs["PROTO_MEM"].within_misses) == (50, 5, True)
    assert recs["SOCKET_BACKLOG"].within_misses and not recs["TCP_INVALID_SEQUENCE+TCP_INVALID_END_SEQUENCE+TCP_OVERWINDOW"].exact
    verdicts = host_verdicts(host)
    untraced = [v for v in verdicts if v.code == "untraced_drops"]
    assert len(untraced) == 2 and all("within the 12 runs the kernel skipped" in v.summary for v in untraced)
    (misses,) = [v for v in verdicts if v.code == "recursion_misses"]
    assert misses.evidence["incomplete_reasons"] == ["NO_SOCKET"] == unchecked_reasons(host)
    over = _host(2, SOCKET_BACKLOG=95)
    (verdict,) = [v for v in host_verdicts(over) if v.code == "untraced_drops" and "SOCKET_BACKLOG" in v.title]
    assert "more than the 2 runs" in verdict.summary


def test_a_shortfall_beyond_the_misses_names_the_perf_path_only_for_perf_tracepoint_programs():
    """A tracepoint (type 5) program is run from the tracepoint's perf handler, which can drop an event
    uncounted; a raw tracepoint (type 17) program is not, so its shortfall keeps the window-edge wording."""
    perf = _host(2, SOCKET_BACKLOG=95)
    (verdict,) = [v for v in host_verdicts(perf) if v.code == "untraced_drops" and "SOCKET_BACKLOG" in v.title]
    assert "perf tracepoint path" in verdict.summary and "raw tracepoint" in verdict.next_step
    raw = replace(perf, probe_stats=parse_probe_stats("prog 1 17 0 0 2\nbpf_stats 0\n", 95))
    (verdict,) = [v for v in host_verdicts(raw) if v.code == "untraced_drops" and "SOCKET_BACKLOG" in v.title]
    assert "perf" not in verdict.summary and "outside the probe's window" in verdict.summary


def test_pairs_hold_only_from_their_kernel():
    old = replace(_host(0, PROTO_MEM=50), kernel="5.15.0")
    assert [r.reason for r in reconcile(old)] == ["SOCKET_BACKLOG", "TCP_ZEROWINDOW"]
    assert not [v for v in host_verdicts(_host(0, PROTO_MEM=50)) if v.code == "recursion_misses"]


def test_storm_table_folds_the_tail_and_json_keeps_every_flow():
    flows = [FlowDrop("10.0.0.2", 5201, "10.0.0.3", 40000, 1, "SOCKET_BACKLOG", 50 - i) for i in range(5)]
    flows += [FlowDrop("10.0.0.2", 9998, "10.0.0.3", 30000 + i, 1, "NO_SOCKET", 1) for i in range(2431)]
    host = replace(_host(0, SOCKET_BACKLOG=240, NO_SOCKET=2431), flows=tuple(flows), flows_truncated=False)
    sweep = Sweep(started_at=__import__("datetime").datetime(2026, 12, 2), duration_s=10, hosts=(host,))
    lines = table.render(sweep).splitlines()
    assert len(lines) < 100
    folded = [line for line in lines if line.startswith("h01: +")]
    assert folded == ["h01: +2,416 flows, 2,416 drops: NO_SOCKET to port 9998 from 10.0.0.3"]
    doc = json.loads(json.dumps(sweep_document(sweep)))
    assert len(doc["flows"]) == 2436 and doc["hosts"][0]["flows_truncated"] is False
    assert doc["hosts"][0]["probe_stats"]["programs"] == 1
    again = load_sweep(doc).hosts[0]
    assert again.probe_stats == host.probe_stats


def test_a_kernel_that_does_not_count_misses_claims_none():
    # Before 5.12 a BPF program's fdinfo has no recursion_misses line: the runner prints "-".
    assert parse_probe_stats("prog 5 26 - - -\nprog 6 26 - - -\nbpf_stats 0\n", events=3) is None
    assert parse_probe_stats("prog 5 26 - - 0\nbpf_stats 0\n", events=3).recursion_misses == 0
