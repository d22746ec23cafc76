"""Time inside the window, for real: drops started seconds into a window land in the right intervals.

The lab's hosts share this machine's clock, so the test's own epoch time says which of a host's
intervals came before the generator started.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.e2e.test_collect import wait_for_windows
from tests.e2e.test_cron import cron
from tests.lab.backlog import start_backlog_traffic

pytestmark = pytest.mark.lab

WINDOW_S = 14
DELAY_S = 4.0  # the generator starts this long after every probe watches
TRAFFIC_S = 5.0
ATTEMPTS = 4  # LAB.md: a backlog run rarely gives 0 drops (more often on a loaded machine)
CLOSED = 7003
# SYNs to a closed port on every address given, as close together as one process can send them.
SYNS = """
import socket, sys
for _ in range(3):
    for addr in sys.argv[1:]:
        with socket.socket() as s:
            s.settimeout(0.2)
            s.connect_ex((addr, %d))
""" % CLOSED


def _sweep(lab_fleet, hosts, tmp_path, tracer: str, probe_file: str, during) -> tuple[dict, float]:
    """One collect of HOSTS; DURING(lab) runs DELAY_S after every probe watches. (document, when DURING began)."""
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts)
    proc = cron("collect", "-i", str(inventory), "--duration", str(WINDOW_S), "--tracer", tracer,
                "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json", "--results-dir", str(tmp_path))
    wait_for_windows(len(hosts), {h.netns_inode for h in hosts}, proc, probe_file=probe_file)
    time.sleep(DELAY_S)
    began = time.time()
    during()
    out, err = proc.communicate(timeout=WINDOW_S + 60)
    assert proc.returncode == 0, err
    return json.loads(out), began


def _split(timeline: dict, series: list[int], began: float) -> tuple[list[int], list[int]]:
    """SERIES as (intervals that ended before BEGAN, intervals from the one holding BEGAN on)."""
    step, start = timeline["interval_s"], timeline["start"]
    before = [n for i, n in enumerate(series) if start + (i + 1) * step <= began]
    return before, series[len(before):]


def _backlog_sweep(lab_fleet, lab_roles, tmp_path, tracer, probe_file):
    receiver, sender, quiet = lab_roles.receiver, lab_roles.sender, lab_roles.quiet
    for _attempt in range(ATTEMPTS):
        traffic = []

        def during():
            traffic.append(start_backlog_traffic(lab_fleet, receiver, sender, seconds=TRAFFIC_S))

        doc, began = _sweep(lab_fleet, [receiver, sender, quiet], tmp_path, tracer, probe_file, during)
        if traffic[0].wait() > 0:
            hosts = {h["name"]: {**h, "flows": [f for f in doc["flows"] if f["host"] == h["name"]]} for h in doc["hosts"]}
            return hosts, began
    pytest.fail(f"no backlog drop in {ATTEMPTS} runs of the generator")


def test_bpftrace_timeline_starts_when_the_drops_do(lab_fleet, lab_roles, tmp_path):
    hosts, began = _backlog_sweep(lab_fleet, lab_roles, tmp_path, "bpftrace", "probe.bt")
    receiver = hosts[lab_roles.receiver.name]
    timeline = receiver["timeline"]
    assert timeline["interval_s"] == 1 and timeline["start"] == receiver["window_start"]
    for reason, total in receiver["drops"].items():
        assert sum(timeline["drops"][reason]) == total, reason
    assert len(timeline["drops"]["SOCKET_BACKLOG"]) == WINDOW_S
    before, after = _split(timeline, timeline["drops"]["SOCKET_BACKLOG"], began)
    assert len(before) >= DELAY_S - 1 and not any(before), timeline
    assert sum(after) > 0
    # The window script samples TcpExt each interval beside the probe: the counters have a timeline too.
    assert set(timeline["counters"]) == set(receiver["counters"])
    for name, series in timeline["counters"].items():
        assert len(series) == WINDOW_S and sum(series) == receiver["counters"][name], name
    counted = timeline["counters"]["TCPBacklogDrop"]
    counted_before, _ = _split(timeline, counted, began)
    assert not any(counted_before), counted
    # The generator stops seconds before the window ends: its drops were counted in intervals
    # sampled during the window, not all carried by the final read.
    assert sum(counted[:-1]) > 0, counted
    assert receiver["activity"]["dropping"] and receiver["activity"]["first_interval"] >= len(before)
    backlog_flows = [f for f in receiver["flows"] if f["reason"] == "SOCKET_BACKLOG"]
    assert backlog_flows
    for flow in backlog_flows:  # drops with a socket: each such flow has its own series
        assert sum(flow["timeline"]) == flow["drops"] and not any(flow["timeline"][:len(before)])
    quiet = hosts[lab_roles.quiet.name]
    assert not any(sum(s) for s in quiet["timeline"]["drops"].values())
    assert quiet["activity"]["dropping"] is False


def test_counters_timeline_starts_when_the_drops_do(lab_fleet, lab_roles, tmp_path):
    hosts, began = _backlog_sweep(lab_fleet, lab_roles, tmp_path, "counters", "probe.sh")
    receiver = hosts[lab_roles.receiver.name]
    timeline = receiver["timeline"]
    assert receiver["fidelity"] == "sampled"
    series = timeline["counters"]["TCPBacklogDrop"]
    assert len(series) == WINDOW_S
    for name, values in timeline["counters"].items():
        assert sum(values) == receiver["counters"][name], name
    before, after = _split(timeline, series, began)
    assert len(before) >= DELAY_S - 1 and not any(before), timeline
    assert sum(after) == receiver["counters"]["TCPBacklogDrop"] > 0


def test_two_hosts_dropping_in_the_same_second_are_one_fleet_event(lab_fleet, tmp_path):
    targets = [lab_fleet.host("h01"), lab_fleet.host("h02")]
    quiet, client = lab_fleet.host("h03"), lab_fleet.host("h04")

    def during():
        lab_fleet.exec(client, [sys.executable, "-c", SYNS, *(h.address for h in targets)], check=True, timeout=30)

    doc, began = _sweep(lab_fleet, [*targets, quiet, client], tmp_path, "bpftrace", "probe.bt", during)
    events = [v for v in doc["fleet_events"] if v["code"] == "fleet_event"]
    assert len(events) == 1, doc["fleet_events"]
    (event,) = events
    assert event["evidence"]["reason"] == "NO_SOCKET"
    named = event["evidence"]["hosts"].split(", ")
    assert sorted(named) == sorted(h.name for h in targets)
    assert quiet.name not in event["summary"] and client.name not in event["summary"]
    assert abs(event["evidence"]["at_epoch"] - began) < 2.0
    assert event["next_step"]
    hosts = {h["name"]: h for h in doc["hosts"]}
    for target in targets:
        assert hosts[target.name]["activity"]["dropping"] and not hosts[target.name]["activity"]["ongoing_at_end"]
        # Each SYN came from a new source port, so no flow has a series of its own: the closed port has one.
        timeline = hosts[target.name]["timeline"]
        series = timeline["ports"]["NO_SOCKET"][str(CLOSED)]
        assert sum(series) == hosts[target.name]["drops"]["NO_SOCKET"] == sum(timeline["drops"]["NO_SOCKET"])
        before, after = _split(timeline, series, began)
        assert not any(before) and sum(after) > 0, series
