"""The lab itself: hosts reachable by key in their own namespaces, real backlog drops, clean teardown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.backlog import start_backlog_traffic
from tests.lab.fleet import LabFleet, LabHost, cleanup_stale
from tests.lab.requirements import program
from tests.lab.runs import NETNS_CONFIG_ROOT, run_id_of
from tests.lab.teardown import pids_in_netns

pytestmark = pytest.mark.lab

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKLOG_ATTEMPTS = 3  # LAB.md: a 6 s run gives 2-40 drops, rarely 0


def ssh(fleet: LabFleet, host: LabHost, command: str) -> subprocess.CompletedProcess:
    """Run COMMAND on HOST with the fleet's key, checking its host key strictly."""
    argv = [
        program("ssh"), "-F", "none",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={fleet.known_hosts_path}",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-i", str(fleet.key_path),
        f"root@{host.address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def leftovers_of(run_id: str, inodes: set[int]) -> dict[str, list]:
    """Everything of RUN_ID still on the machine; all lists empty after a clean teardown."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [n for n in os.listdir("/run/netns") if run_id_of(n) == run_id],
        "links": [line for line in links.splitlines() if f"fdl-{run_id}-" in line],
        "etc_netns": list(NETNS_CONFIG_ROOT.glob(f"fdl-{run_id}-*")),
        "processes": pids_in_netns(inodes),
    }


def test_each_host_answers_ssh_in_its_own_namespace(lab_fleet: LabFleet) -> None:
    seen = {}
    for host in lab_fleet.hosts:
        result = ssh(lab_fleet, host, "readlink /proc/self/ns/net")
        assert result.returncode == 0, f"{host.name}: {result.stderr}"
        seen[host.name] = result.stdout.strip()
        assert seen[host.name] == f"net:[{host.netns_inode}]"
        local = lab_fleet.exec(host, ["readlink", "/proc/self/ns/net"], capture_output=True, text=True)
        assert local.stdout.strip() == seen[host.name]
    assert len(set(seen.values())) == len(lab_fleet.hosts), seen


def test_ssh_sessions_get_the_clean_home(lab_fleet: LabFleet) -> None:
    result = ssh(lab_fleet, lab_fleet.host("h01"), 'echo "$HOME"; ls -A "$HOME"')
    home, *entries = result.stdout.split()
    assert home != "/root"
    assert entries == [".ssh"]


def test_ssh_sessions_see_tracepoints_like_a_real_host(lab_fleet: LabFleet) -> None:
    result = ssh(lab_fleet, lab_fleet.host("h01"), "bpftrace -l tracepoint:skb:kfree_skb")
    assert result.stdout.strip() == "tracepoint:skb:kfree_skb", result.stderr


def test_stopped_sshd_refuses_connections(lab_fleet: LabFleet, unreachable_lab_host: LabHost) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((unreachable_lab_host.address, unreachable_lab_host.port), timeout=2)
    result = ssh(lab_fleet, unreachable_lab_host, "true")
    assert result.returncode == 255
    assert "Connection refused" in result.stderr


def test_sshd_comes_back_after_restart(lab_fleet: LabFleet) -> None:
    host = lab_fleet.host("h04")
    lab_fleet.stop_sshd(host)
    lab_fleet.start_sshd(host)
    assert ssh(lab_fleet, host, "true").returncode == 0


def test_tcpext_counters_are_per_namespace_ints(lab_fleet: LabFleet) -> None:
    counters = lab_fleet.tcpext(lab_fleet.host("h03"))
    assert isinstance(counters["TCPBacklogDrop"], int)
    assert "TCPBacklogDrop" in counters and "ListenDrops" in counters


def test_backlog_traffic_produces_real_backlog_drops(lab_fleet: LabFleet) -> None:
    receiver, sender, quiet = (lab_fleet.host(n) for n in ("h01", "h02", "h03"))
    quiet_before = lab_fleet.tcpext(quiet)["TCPBacklogDrop"]
    deltas = []
    for _ in range(BACKLOG_ATTEMPTS):
        started = time.monotonic()
        traffic = start_backlog_traffic(lab_fleet, receiver, sender, seconds=6)
        assert time.monotonic() - started < 3, "start_backlog_traffic must not block for the run"
        deltas.append(traffic.wait())
        assert traffic.bytes_moved("receive") > 0
        if deltas[-1] > 0:
            break
    assert deltas[-1] > 0, f"no TCPBacklogDrop in {BACKLOG_ATTEMPTS} runs: {deltas}"
    assert lab_fleet.tcpext(quiet)["TCPBacklogDrop"] == quiet_before


def test_every_backlog_traffic_run_drops(lab_fleet: LabFleet) -> None:
    """The held recv()s make every run drop, not just most: one short run, no retry."""
    receiver, sender = lab_fleet.host("h01"), lab_fleet.host("h02")
    traffic = start_backlog_traffic(lab_fleet, receiver, sender, port=5209, seconds=2)
    drops = traffic.wait()
    assert traffic.holds() > 0, traffic._stderr()
    assert drops > 0


def test_inventory_lists_every_host_with_the_fleet_key(lab_fleet: LabFleet, lab_inventory: Path) -> None:
    yaml = pytest.importorskip("yaml")
    inventory = yaml.safe_load(lab_inventory.read_text())["all"]
    assert inventory["vars"] == {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab_fleet.key_path),
    }
    assert inventory["hosts"] == {h.name: {"ansible_host": h.address} for h in lab_fleet.hosts}


def test_teardown_leaves_no_namespace_link_or_process(tmp_path: Path) -> None:
    with LabFleet(2) as fleet:
        run_id, workdir = fleet.run_id, fleet.workdir
        inodes = {h.netns_inode for h in fleet.hosts}
        host = fleet.host("h01")
        sleeper = fleet.popen(host, ["sleep", "300"])
        session = subprocess.Popen(
            [program("ssh"), "-F", "none", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={fleet.known_hosts_path}", "-i", str(fleet.key_path),
             f"root@{host.address}", "sleep 300"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for(lambda: len(pids_in_netns({host.netns_inode})) >= 4)  # sshd, session, sleeps
        assert all(leftovers_of(run_id, inodes).values())
    assert sleeper.wait(timeout=5) is not None
    session.wait(timeout=10)
    assert leftovers_of(run_id, inodes) == {"netns": [], "links": [], "etc_netns": [], "processes": []}
    assert workdir is not None and not workdir.exists()


def test_cleanup_stale_removes_a_crashed_run_but_not_live_ones(lab_fleet: LabFleet) -> None:
    crashed = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tests.lab.fleet import LabFleet; "
         "f = LabFleet(2); f.start(); print(f.run_id, flush=True); time.sleep(120)"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert crashed.stdout is not None
    run_id = crashed.stdout.readline().strip()
    inodes = {os.stat(f"/run/netns/fdl-{run_id}-h{i:02d}").st_ino for i in (1, 2)}
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert run_id in cleanup_stale()
    assert leftovers_of(run_id, inodes) == {"netns": [], "links": [], "etc_netns": [], "processes": []}
    assert ssh(lab_fleet, lab_fleet.host("h01"), "true").returncode == 0


def _wait_for(condition, timeout: float = 10.0) -> None:
    """Poll CONDITION until true or fail after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
