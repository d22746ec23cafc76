"""The probe tiers that can run on this machine's kernel, for real, with real drops from the lab.

- counters (ss samples + TcpExt) and a forced bpftrace, through the CLI with --tracer;
- bpftrace's kfree_skb_headers tier (the one 5.17-6.10 kernels get) through the library, on
  facts that hide rx_sk, with --port's filter in the kernel.
bcc and systemtap cannot run here (no headers, no modules); docs/probes.md says so.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time

import pytest

from fleetdiag.collector import detect, window_result
from fleetdiag.diagnosis.reconcile import missed_verdicts, reconcile
from fleetdiag.model import HostSpec, Status, Window
from fleetdiag.tracers import bpftrace
from fleetdiag.transport import SshOptions, open_transport
from fleetdiag.window_script import build_window_script, remote_deadline_s
from tests.e2e.test_collect import assert_traced_or_flagged, attached, fleetdiag, probe_windows, wait_for_windows
from tests.lab.backlog import start_backlog_traffic

pytestmark = pytest.mark.lab

WINDOW_S = 10
TRAFFIC_S = 5.0
# Ports of their own: other tests' flows use 5201, and --port must single this one out.
PORT = 5231
CLOSED_PORT = 5232


def test_counters_tier_points_at_the_dropping_flow(lab_fleet, lab_roles, tmp_path):
    """No tracer: the receiver's socket drop counter (ss) moves on the flow the kernel dropped from."""
    receiver, sender = lab_roles.receiver, lab_roles.sender
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[receiver, sender])
    for _attempt in range(3):
        proc = fleetdiag(
            "collect", "-i", str(inventory), "--duration", str(WINDOW_S), "--tracer", "counters",
            "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json",
        )  # fmt: skip
        wait_for_windows(2, {receiver.netns_inode, sender.netns_inode}, proc, probe_file="probe.sh")
        generated = start_backlog_traffic(lab_fleet, receiver, sender, port=PORT, seconds=TRAFFIC_S).wait()
        out, err = proc.communicate(timeout=WINDOW_S + 60)
        if generated > 0:
            break
    else:
        pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")
    assert proc.returncode == 0, err
    doc = json.loads(out)
    host = next(h for h in doc["hosts"] if h["name"] == receiver.name)
    assert (host["probe"], host["fidelity"]) == ("counters+ss", "sampled")
    assert host["counters"]["TCPBacklogDrop"] == generated  # exact: the kernel's own counter
    assert host["drops"] == {}  # nothing traced, so no drop reasons are claimed
    assert any("sampled" in note for note in host["notes"])
    flows = [f for f in doc["flows"] if f["host"] == receiver.name and f["lport"] == PORT]
    assert flows, doc["flows"]
    for flow in flows:
        assert (flow["laddr"], flow["raddr"], flow["reason"]) == (receiver.address, sender.address, "SK_DROPS")
        assert flow["drops"] > 0 and flow["rcvbuf"] > 0
        assert flow["netns"] == receiver.netns_inode
    assert host["tracers"]["counters"]["usable"]
    # Forced counters examines nothing else (bpftrace --version alone is half of detection's cost).
    assert host["tracers"]["bpftrace"]["reason"].startswith("not examined: --tracer counters")


def test_forced_bpftrace_through_the_cli(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    proc = fleetdiag(
        "collect", "-i", str(inventory), "--duration", "1", "--tracer", "bpftrace",
        "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json",
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (host,) = json.loads(out)["hosts"]
    assert (host["status"], host["probe"], host["fidelity"]) == ("ok", "bpftrace:kfree_skb", "traced")
    assert set(host["tracers"]) == {"bpftrace", "bcc", "stap", "counters"}


def _connect_closed_port(fleet, client, server, port: int, attempts: int) -> None:
    """SYNs to a port nobody listens on: NO_SOCKET drops on the server, another port than PORT."""
    code = (
        "import socket\n"
        f"for _ in range({attempts}):\n"
        "    s = socket.socket(); s.settimeout(1)\n"
        f"    s.connect_ex(({server.address!r}, {port})); s.close()\n"
    )
    fleet.exec(client, [sys.executable, "-I", "-c", code], check=True, timeout=30)


def test_kfree_skb_headers_tier_runs_for_real(lab_fleet, lab_roles):
    """The 5.17-6.10 tier on this kernel: facts without rx_sk, flows from packet headers, --port in the kernel."""
    receiver, sender = lab_roles.receiver, lab_roles.sender
    spec = HostSpec(name=receiver.name, address=receiver.address, user="root", private_key_file=str(lab_fleet.key_path))
    transport = open_transport(spec, SshOptions(known_hosts=(str(lab_fleet.known_hosts_path),)))
    try:
        facts = detect(transport).facts
        without_rx_sk = dataclasses.replace(
            facts, kfree_skb_fields=tuple(f for f in facts.kfree_skb_fields if f != "rx_sk")
        )
        window = Window(WINDOW_S, port=PORT)
        plan = bpftrace.plan(without_rx_sk, window)
        # This kernel has no kprobes and denies ftrace's function list: no tcp_add_backlog companion.
        assert plan.probe == "bpftrace:kfree_skb_headers"
        for _attempt in range(3):
            result, generated = _run_window(lab_fleet, transport, plan, window, receiver, sender)
            if generated > 0:
                break
        else:
            pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")
    finally:
        transport.close()
    host = window_result(spec, without_rx_sk, bpftrace, plan.probe, result, plan=plan)
    assert host.status is Status.OK, host.error
    backlog = [f for f in host.flows if f.reason == "SOCKET_BACKLOG"]
    assert backlog, host.flows
    for flow in backlog:
        assert (flow.laddr, flow.lport, flow.raddr) == (receiver.address, PORT, sender.address)
        # TCP clears skb->dev after the socket lookup: without rx_sk the namespace is unknown, and said so.
        assert flow.netns is None and flow.rcvbuf is None
    assert any("namespace is unknown" in note for note in host.notes)
    # No socket in this tier: the drops' series is their (reason, local port) bucket's, and a port's only flow has it.
    bucket = host.timeline.ports["SOCKET_BACKLOG"][PORT]
    assert sum(bucket) == sum(f.drops for f in backlog) == sum(host.timeline.drops["SOCKET_BACKLOG"])
    if len(backlog) == 1:
        assert backlog[0].timeline == bucket
    assert host.counters["TCPBacklogDrop"] == generated
    missed = [v for v in missed_verdicts(reconcile(host)) if v.code == "untraced_drops"]
    flagged = next((r.missed for r in reconcile(host) if r.reason == "SOCKET_BACKLOG"), None) if missed else None
    assert_traced_or_flagged(sum(f.drops for f in backlog), generated, flagged)
    # --port: the SYNs to the closed port were dropped in the same window, but are not here.
    assert all(PORT in (f.lport, f.rport) for f in host.flows)
    assert not any(CLOSED_PORT in (f.lport, f.rport) for f in host.flows)


def _run_window(fleet, transport, plan, window, receiver, sender):
    """One window on the receiver, with backlog traffic and closed-port SYNs inside it."""
    outcome = {}

    def run() -> None:
        outcome["result"] = transport.run(
            build_window_script(plan, window.duration_s), timeout=remote_deadline_s(window.duration_s, plan) + 15
        )

    before = fleet.tcpext(receiver)["TCPBacklogDrop"]
    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not attached(probe_windows({receiver.netns_inode})):
        assert worker.is_alive() and time.monotonic() < deadline, "the probe never attached"
        time.sleep(0.1)
    traffic = start_backlog_traffic(fleet, receiver, sender, port=PORT, seconds=TRAFFIC_S)
    _connect_closed_port(fleet, sender, receiver, CLOSED_PORT, attempts=3)
    traffic.wait()
    worker.join(timeout=window.duration_s + 60)
    return outcome["result"], fleet.tcpext(receiver)["TCPBacklogDrop"] - before
