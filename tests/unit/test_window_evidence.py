"""Issue 16's evidence at drop time: the window and skb sizes per flow, per tier, and the buffer facts."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest

from fleetdiag.document import load_sweep, sweep_document
from fleetdiag.facts import detection_script, parse_facts
from fleetdiag.facts.buffers import parse_tcp_buffers
from fleetdiag.model import HostFacts, Window
from fleetdiag.tracers import bpftrace
from fleetdiag.tracers.base import probe_text
from fleetdiag.tracers.records import parse_records
from tests.unit.test_bpftrace_tracer import tiers

KEY = "4026532100,10.1.0.2,5201,10.1.0.3,40000,29"


def test_bpftrace_parses_window_and_skb_sizes(facts_6_18):
    lines = [
        {"type": "map", "data": {"@drops": {KEY: 3}}},
        {"type": "map", "data": {"@total": {"29": 3}}},
        {"type": "map", "data": {"@sock": {KEY: [262144, 46080, 0]}}},
        {"type": "map", "data": {"@win": {KEY: [31744, 1048576, 64000, 176]}}},
        {"type": "map", "data": {"@skblen": {KEY: 1500}}},
        {"type": "map", "data": {"@skblensum": {KEY: 4500}}},
        {"type": "map", "data": {"@skbtrue": {KEY: 2304}}},
        {"type": "map", "data": {"@skbtruesum": {KEY: 6912}}},
    ]
    (flow,) = bpftrace.parse("\n".join(json.dumps(line) for line in lines), facts_6_18).flows
    assert (flow.rcv_wnd, flow.window_clamp, flow.rcv_ssthresh, flow.scaling_ratio) == (31744, 1048576, 64000, 176)
    assert (flow.skb_len_max, flow.skb_len_sum, flow.skb_truesize_max, flow.skb_truesize_sum) == (1500, 4500, 2304, 6912)


def test_bpftrace_before_6_6_reads_no_scaling_ratio(facts_6_18):
    old = dataclasses.replace(tiers(facts_6_18)["bpftrace:kfree_skb_headers+kretprobe"], kernel="6.1.0-57-cloud-amd64")
    text = bpftrace.plan(old, Window(5)).files["probe.bt"]
    assert "$tp->scaling_ratio" not in text and "rcv_ssthresh, (int64)-1)" in text
    new = bpftrace.plan(facts_6_18, Window(5)).files["probe.bt"]
    assert "$tp->scaling_ratio" in new
    line = json.dumps({"type": "map", "data": {"@win": {KEY: [100, 200, 300, -1]}, "@drops": {KEY: 1}}})
    (flow,) = bpftrace.parse(line, facts_6_18).flows
    assert flow.scaling_ratio is None and flow.rcv_wnd == 100


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed here")
def test_pre_6_6_script_compiles_with_real_bpftrace(facts_6_18, tmp_path):
    old = dataclasses.replace(tiers(facts_6_18)["bpftrace:kfree_skb_headers+kretprobe"], kernel="6.1.0-57-cloud-amd64")
    path = tmp_path / "probe.bt"
    path.write_text(bpftrace.plan(old, Window(5)).files["probe.bt"])
    done = subprocess.run(["bpftrace", "-d", str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line and "RLIMIT_MEMLOCK" not in line]
    assert done.returncode == 0 and not errors, done.stderr[-2000:]


def test_records_merge_window_lines_into_their_flow():
    facts = HostFacts(netns=7, drop_reasons={20: "SOCKET_BACKLOG"})
    out = "\n".join([
        "total SOCKET_BACKLOG 5",
        "flow - 10.0.0.1 80 10.0.0.2 5555 SOCKET_BACKLOG 5 1000 2000 0 10 20 30",
        "flow - 10.0.0.1 81 10.0.0.2 5555 SOCKET_BACKLOG 1 1000 2000 0 10 20 30",
        "window - 10.0.0.1 80 10.0.0.2 5555 SOCKET_BACKLOG 4096 8192 2048 -1 1448 7240 2304 11520",
        "window - 10.0.0.1 80 10.0.0.2 5555 SOCKET_BACKLOG short",
    ])  # fmt: skip
    first, second = parse_records(out, facts).flows
    assert (first.lport, first.rcv_wnd, first.window_clamp, first.rcv_ssthresh, first.scaling_ratio) == (80, 4096, 8192, 2048, None)
    assert (first.skb_len_sum, first.skb_truesize_sum) == (7240, 11520)
    assert second.rcv_wnd is None and second.skb_len_max is None


def test_stap_script_records_the_window():
    # Every stap tier calls fd_record_window after fd_record; compiled for real in the guest e2e tests.
    for fragment in ("stap_statement.stp", "stap_statement_v6.stp", "stap_return.stp"):
        assert "fd_record_window(" in probe_text(fragment)
    assert "@choose_defined(@cast(sk, \"tcp_sock\", \"kernel\")->scaling_ratio, -1)" in probe_text("stap_backlog.stp")


def test_tcp_buffers_fact():
    parsed = parse_tcp_buffers("/proc/sys/net/ipv4/tcp_rmem:4096\t131072\t33554432\n/proc/sys/net/core/rmem_max:212992\n"
                               "/proc/sys/net/ipv4/tcp_adv_win_scale:1\n/proc/sys/net/ipv4/tcp_moderate_rcvbuf:1\n"
                               "garbage\n/etc/passwd:1\n/proc/sys/net/core/rmem_max:x\n")  # fmt: skip
    assert dict(parsed) == {"tcp_rmem": (4096, 131072, 33554432), "rmem_max": (212992,),
                            "tcp_adv_win_scale": (1,), "tcp_moderate_rcvbuf": (1,)}  # fmt: skip
    assert "/proc/sys/net/ipv4/tcp_rmem" in detection_script()
    facts = parse_facts("@@fleetdiag tcp_buffers\n/proc/sys/net/ipv4/tcp_rmem:4096 87380 6291456\n")
    assert facts.tcp_buffers["tcp_rmem"] == (4096, 87380, 6291456)


def test_real_detection_reads_this_hosts_buffers():
    done = subprocess.run(["sh", "-c", detection_script()], capture_output=True, text=True, timeout=60)
    facts = parse_facts(done.stdout)
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        assert facts.tcp_buffers["tcp_rmem"] == tuple(int(v) for v in f.read().split())
    assert len(facts.tcp_buffers["tcp_adv_win_scale"]) == 1


def test_document_keeps_the_new_fields(sample_sweep_with_window):
    doc = sweep_document(sample_sweep_with_window)
    again = load_sweep(json.loads(json.dumps(doc)))
    assert sweep_document(again) == doc
    host = doc["hosts"][0]
    assert host["tcp_buffers"]["tcp_rmem"] == [4096, 131072, 6291456]
    flow = doc["flows"][0]
    assert flow["rcv_wnd"] == 3000000 and flow["skb_truesize_sum"] == 46080


@pytest.fixture
def sample_sweep_with_window():
    from datetime import datetime, timezone

    from fleetdiag.model import FlowDrop, HostResult, Status, Sweep, frozen_map

    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 20, rcvbuf=6291456, sndbuf=46080,
                    rmem_alloc_max=6000000, backlog_len_max=300000, queue_max=6300000, userlocks=0,
                    rcv_wnd=3000000, window_clamp=3145728, rcv_ssthresh=3000000,
                    skb_len_max=1500, skb_len_sum=30000, skb_truesize_max=2304, skb_truesize_sum=46080)  # fmt: skip
    host = HostResult("h1", "10.0.0.1", Status.OK, kernel="6.1.0-57-cloud-amd64", flows=(flow,),
                      drops=frozen_map({"SOCKET_BACKLOG": 20}),
                      tcp_buffers=frozen_map({"tcp_rmem": (4096, 131072, 6291456), "tcp_adv_win_scale": (1,)}))  # fmt: skip
    return Sweep(started_at=datetime(2026, 12, 2, tzinfo=timezone.utc), duration_s=5, hosts=(host,))
