"""A drop storm on the lab, traced by four real probes at once: every drop accounted for.

Several backlog-drop flows and 2,000 SYNs to a closed port into h01, 500 SYNs into an nftables
drop on h03, bounded in count and time. Each host reports its probe programs' own
recursion_misses (read before they unloaded); a counted reason's shortfall never exceeds them,
but for the rare event the kernel's perf tracepoint path drops before any program runs, which a
tracefs witness must then have seen (tests/lab/tracefs_witness.py); the table stays short.
"""

from __future__ import annotations

import json

import pytest

from fleetdiag.document import load_sweep
from fleetdiag.render import table
from tests.e2e.test_collect import fleetdiag, wait_for_windows
from tests.lab.requirements import find_program
from tests.lab.storm import CLOSED_PORT, StormPlan, add_nft_drop, remove_nft_drop, run_storm
from tests.lab.tracefs_witness import TracefsWitness

pytestmark = pytest.mark.lab

WINDOW_S = 12


@pytest.fixture
def storm_nft(lab_fleet, lab_roles):
    """h03 drops TCP to the storm's nftables port for one test."""
    if not find_program("nft"):
        pytest.skip("nft (Debian package nftables, installed by .ci/setup) is not installed")
    add_nft_drop(lab_fleet, lab_roles.quiet)
    yield lab_roles.quiet
    remove_nft_drop(lab_fleet, lab_roles.quiet)


def test_storm_every_drop_accounted_for(lab_fleet, lab_roles, storm_nft, tmp_path):
    receiver, sender, nft_host, idle = lab_roles.receiver, lab_roles.sender, storm_nft, lab_roles.unreachable
    hosts = [receiver, sender, nft_host, idle]
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts)
    reconciled = ("SOCKET_BACKLOG", "PROTO_MEM")
    with TracefsWitness(*reconciled) as witness:
        proc = fleetdiag("collect", "-i", str(inventory), "--duration", str(WINDOW_S), "--tracer", "bpftrace",
                         "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json", "--results-dir", str(tmp_path))  # fmt: skip
        wait_for_windows(4, {h.netns_inode for h in hosts}, proc)
        plan = StormPlan()
        sent = run_storm(lab_fleet, receiver, sender, nft_host, plan)
        out, err = proc.communicate(timeout=WINDOW_S + 90)
        fired = witness.stop()
    assert proc.returncode == 0, err
    assert (sent.syns, sent.nft_syns) == (plan.syns, plan.nft_syns)
    doc = json.loads(out)
    by_name = {h["name"]: h for h in doc["hosts"]}
    for host in by_name.values():
        assert host["status"] == "ok", host["error"]
        stats = host["probe_stats"]
        # Real programs, read from the kernel: a tracepoint (type 5) program at least, misses counted.
        assert stats["programs"] >= 1 and any(p["prog_type"] == 5 for p in stats["per_program"])
        assert stats["recursion_misses"] == sum(p["recursion_misses"] for p in stats["per_program"]) >= 0
        assert stats["events"] == sum(host["drops"].values())
    rx = by_name[receiver.name]
    misses = rx["probe_stats"]["recursion_misses"]
    recs = {r["reason"]: r for r in rx["reconciliation"]}
    # A counted drop is traced, or one of the runs the kernel skipped and counted, or (rarely) an event the
    # perf tracepoint path dropped before any program ran: then the tracepoint did fire for it, so tracefs,
    # counting these reasons machine-wide around the window, saw at least every counted drop.
    counted = sum(recs[reason]["counted"] for reason in reconciled)
    perf_path_allowance = max(1, counted // 1000) if fired is not None and fired >= counted else 0
    for reason in reconciled:
        rec = recs[reason]
        assert rec["recursion_misses"] == misses
        beyond = rec["counted"] - rec["traced"] - misses
        assert beyond <= perf_path_allowance, (rec, fired)
        if rec["missed"]:  # the report says why
            (verdict,) = [v for v in rx["verdicts"] if v["code"] == "untraced_drops" and v["evidence"]["reason"] == reason]
            if beyond > 0:
                assert rec["within_misses"] is False and "perf tracepoint path" in verdict["summary"]
            else:
                assert rec["within_misses"] is True and f"within the {misses} runs the kernel skipped" in verdict["summary"]
    closed = sum(f["drops"] for f in doc["flows"] if f["host"] == receiver.name and f["lport"] == CLOSED_PORT
                 and f["reason"] == "NO_SOCKET")  # fmt: skip
    assert plan.syns - misses <= closed <= plan.syns
    nft = by_name[nft_host.name]
    assert plan.nft_syns - nft["probe_stats"]["recursion_misses"] <= nft["drops"]["NETFILTER_DROP"] <= plan.nft_syns
    assert "NO_SOCKET" in rx["unchecked_reasons"]  # no counter checks it: incomplete by up to the misses
    if misses:
        (verdict,) = [v for v in rx["verdicts"] if v["code"] == "recursion_misses"]
        assert "NO_SOCKET" in verdict["evidence"]["incomplete_reasons"]
    # Readable: the busiest flows per host, the rest folded ("+1,980 flows, ...: NO_SOCKET to port 9998 ...").
    # The JSON keeps them all: every traced SYN is a flow of its own (a run the kernel skipped is not).
    assert len([f for f in doc["flows"] if f["host"] == receiver.name]) >= plan.syns - misses
    text = table.render(load_sweep(doc))
    lines = text.splitlines()
    for host in hosts:
        assert len([line for line in lines if line.startswith(host.name)]) < 100
    assert len(lines) < 100 * len(hosts)
    assert any(line.startswith(f"{receiver.name}: +") and f"NO_SOCKET to port {CLOSED_PORT}" in line for line in lines), text
