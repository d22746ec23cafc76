"""Verdicts and reconciliation, from recorded probe output and from the origin case's numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleetdiag.collector import window_result
from fleetdiag.diagnosis import (
    REASON_TABLE,
    drops_seen,
    flow_verdicts,
    host_verdicts,
    reconcile,
)
from fleetdiag.facts import parse_facts
from fleetdiag.model import FlowDrop, HostResult, HostSpec, Status, frozen_map
from fleetdiag.tracers import bpftrace
from fleetdiag.transport.base import CommandResult
from tests.unit.conftest import fixture_text

SPEC = HostSpec(name="h01", address="10.213.0.2")


@pytest.fixture
def lab_backlog() -> HostResult:
    """A lab host recorded during real backlog drops (rcvbuf set to 4096 by hand, 21 TCPBacklogDrop)."""
    facts = parse_facts(fixture_text("detection/lab-6.18-netns/stdout.txt"))
    stdout = fixture_text("window/bpftrace-socket-backlog.stdout.txt")
    return window_result(SPEC, facts, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0))


def codes(verdicts) -> list[str]:
    return [v.code for v in verdicts]


def backlog_flow(host: HostResult) -> FlowDrop:
    (flow,) = [f for f in host.flows if f.reason == "SOCKET_BACKLOG"]
    return flow


def test_recorded_lab_backlog_drops_are_explained(lab_backlog):
    flow = backlog_flow(lab_backlog)
    verdicts = {v.code: v for v in flow_verdicts(lab_backlog, flow)}
    # The recording's numbers: rcvbuf 8192 (locked), sndbuf 69120, queue 593928, rmem 527936.
    over = verdicts["over_backlog_limit"]
    assert over.evidence["backlog_limit"] == 2 * 8192 + 69120 // 2 + 65536
    assert over.evidence["formula"] == "2*rcvbuf + sndbuf/2 + 64K"
    assert over.evidence["queue_max"] == flow.queue_max > over.evidence["backlog_limit"]
    assert verdicts["rcvbuf_set_small"].evidence["rcvbuf_locked"] is True
    full = verdicts["receive_queue_full"]
    assert full.evidence["rmem_alloc_max"] == flow.rmem_alloc_max and full.evidence["rcvbuf"] == 8192
    assert "lowered" in full.summary  # 515K queued under an 8K rcvbuf: rcvbuf shrank under it
    assert "autotuned_rcvbuf_large" not in verdicts  # the buffer was set by hand
    assert all(v.next_step and v.evidence for v in verdicts.values())


def test_recorded_lab_backlog_reconciles_with_the_counter(lab_backlog):
    (backlog, zero_window, *others) = reconcile(lab_backlog)
    assert all(item.missed == 0 for item in others)  # PROTO_MEM and the sequence checks reconcile too
    assert (backlog.reason, backlog.counter) == ("SOCKET_BACKLOG", "TCPBacklogDrop")
    assert backlog.traced == backlog.counted == 21 and backlog.coverage_pct == 100.0 and backlog.missed == 0
    assert zero_window.counted == 0 and zero_window.coverage_pct is None
    host = codes(host_verdicts(lab_backlog))
    assert "untraced_drops" not in host
    assert "receive_queue_pruned" in host  # PruneCalled 28, RcvPruned 25 in the recording
    # Every traced reason is explained by name on the host.
    explained = [v.evidence["reason"] for v in host_verdicts(lab_backlog) if v.code == "drop_reason"]
    assert sorted(explained) == sorted(lab_backlog.drops)


def test_missed_events_are_flagged_never_hidden(lab_backlog):
    counters = dict(lab_backlog.counters, TCPBacklogDrop=32)  # the kernel counted 11 more than were traced
    host = replace(lab_backlog, counters=frozen_map(counters))
    (missed,) = [v for v in host_verdicts(host) if v.code == "untraced_drops"]
    assert missed.evidence["missed"] == 11 and missed.evidence["coverage_pct"] == pytest.approx(65.6)
    assert "recursion_misses" in missed.next_step
    # With --port the counter is namespace-wide and the probe is not: no miss is claimed.
    assert "untraced_drops" not in codes(host_verdicts(host, port=5201))
    assert reconcile(host, port=5201)[0].port == 5201


def test_origin_case_autotuned_64m_buffer():
    """The numbers the project started from (a RHEL 7 3.10 host, systemtap at tcp_v4_rcv:1746)."""
    flow = FlowDrop("172.16.16.25", 8888, "172.16.16.20", 57348, None, "SOCKET_BACKLOG", 5,
                    rcvbuf=67108864, sndbuf=46080, backlog_len_max=5503744, rmem_alloc_max=65022720,
                    queue_max=67308800, userlocks=0)
    host = HostResult("origin", "172.16.16.25", Status.OK, kernel="3.10.0-1160.el7.x86_64", probe="stap:statement",
                      drops=frozen_map({"SOCKET_BACKLOG": 5}), flows=(flow,))
    verdicts = {v.code: v for v in flow_verdicts(host, flow)}
    assert verdicts["over_backlog_limit"].evidence["backlog_limit"] == 67108864 + 46080  # 3.10: rcvbuf + sndbuf
    autotuned = verdicts["autotuned_rcvbuf_large"]
    assert autotuned.evidence == {"rcvbuf": 67108864, "userlocks": 0, "rcvbuf_locked": False, "kernel": host.kernel}
    assert "SO_RCVBUF" in autotuned.next_step and "8 MB" in autotuned.next_step
    assert "receive_queue_full" in verdicts  # 62 MB queued of 64 MB
    # The same socket with SO_RCVBUF set by hand (SOCK_RCVBUF_LOCK) is not "autotuned".
    locked = replace(flow, userlocks=2)
    assert "autotuned_rcvbuf_large" not in codes(flow_verdicts(host, locked))


def test_backlog_overflow_while_owned():
    """Backlog near the limit with an almost empty receive queue: the socket was owned for long."""
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 4000, 1, "SOCKET_BACKLOG", 3, rcvbuf=1 << 20, sndbuf=87040,
                    backlog_len_max=2_000_000, rmem_alloc_max=40_000, queue_max=2_040_000, userlocks=0)
    host = HostResult("h", "a", Status.OK, kernel="6.1.0-13-amd64", flows=(flow,))
    verdict = {v.code: v for v in flow_verdicts(host, flow)}["backlog_overflow_while_owned"]
    limit = (1 << 20) + 87040 // 2 + 65536  # 6.1: rcvbuf + sndbuf/2 + 64K
    assert verdict.evidence == {"backlog_len_max": 2_000_000, "rmem_alloc_max": 40_000, "rcvbuf": 1 << 20, "backlog_limit": limit}
    assert "receive_queue_full" not in codes(flow_verdicts(host, flow))


def test_drop_under_the_computed_limit_is_said_not_hidden():
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 4000, 1, "SOCKET_BACKLOG", 1, rcvbuf=1 << 20, sndbuf=87040,
                    backlog_len_max=10_000, rmem_alloc_max=10_000, queue_max=20_000, userlocks=0)
    host = HostResult("h", "a", Status.OK, kernel="6.1.0", flows=(flow,))
    # The window arithmetic (diagnosis/window.py) says what it lacks: this flow has no skb sizes.
    assert codes(flow_verdicts(host, flow)) == ["under_backlog_limit", "window_not_computed"]


def test_global_tcp_memory_pressure_from_counters():
    counters = frozen_map({"TCPMemoryPressures": 3, "TCPMemoryPressuresChrono": 1200, "TCPAbortOnMemory": 1})
    host = HostResult("h", "a", Status.OK, kernel="5.15.0", probe="bpftrace:kfree_skb", counters=counters)
    (verdict,) = [v for v in host_verdicts(host) if v.code == "tcp_memory_pressure"]
    assert verdict.evidence == {"TCPMemoryPressures": 3, "TCPMemoryPressuresChrono": 1200, "TCPAbortOnMemory": 1}
    assert "tcp_mem" in verdict.next_step
    quiet = replace(host, counters=frozen_map({"TCPMemoryPressures": 0}))
    assert host_verdicts(quiet) == ()  # no evidence, no verdict


def test_other_reasons_are_explained_by_name():
    drops = frozen_map({"NO_SOCKET": 6, "NETFILTER_DROP": 2, "SOCKET_FILTER": 1, "REASON_999": 4})
    host = HostResult("h", "a", Status.OK, probe="bpftrace:kfree_skb", drops=drops)
    by_reason = {v.evidence["reason"]: v for v in host_verdicts(host) if v.code == "drop_reason"}
    assert set(by_reason) == set(drops)
    assert "listen" in by_reason["NO_SOCKET"].next_step
    assert "nft" in by_reason["NETFILTER_DROP"].next_step
    assert by_reason["REASON_999"].evidence["explained"] is False
    assert "dropreason-core.h" in by_reason["REASON_999"].next_step
    flow = FlowDrop("10.0.0.1", 9, "10.0.0.2", 4000, 1, "NO_SOCKET", 6)
    (verdict,) = flow_verdicts(host, flow)
    assert verdict.code == "drop_reason" and verdict.evidence["drops"] == 6


def test_reason_table_covers_every_tcp_reason_this_kernel_names(facts_6_18):
    tcp = [name for name in facts_6_18.drop_reasons.values() if name.startswith(("TCP_", "SOCKET_", "NO_SOCKET"))]
    assert tcp and [name for name in tcp if name not in REASON_TABLE and not name.startswith("TCP_AO")] == []


def test_counters_tier_counts_drops_without_claiming_a_trace():
    counters = frozen_map({"TCPBacklogDrop": 7, "TCPRcvQDrop": 2, "ListenDrops": 1})
    host = HostResult("h", "a", Status.OK, probe="counters", counters=counters)
    assert reconcile(host) == ()
    assert drops_seen(host) == 10
    assert "backlog_drops_counted" in codes(host_verdicts(host))
    assert host_verdicts(HostResult("h", "a", Status.UNREACHABLE, error="down")) == ()
