"""`fleetdiag collect` end to end: the real CLI, real sshd hosts, real kernel drops, real bpftrace."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.backlog import generate_backlog_drops
from tests.lab.fleet import LabFleet

pytestmark = pytest.mark.lab

WINDOW_S = 14
TRAFFIC_S = 5.0
PORT = 5201


def fleetdiag(*args: str) -> subprocess.Popen:
    """Start the real CLI, as a user would, with JSON on stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "fleetdiag", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def probe_windows(netns_inodes: set[int], probe_file: str = "probe.bt") -> dict[int, Path]:
    """The fleetdiag windows running now in these network namespaces: {pid: its private temp dir}.

    The lab's hosts share this machine's process table, so a test can find each host's
    probe by its namespace and working directory, whatever else runs on the machine.
    """
    found: dict[int, Path] = {}
    pids = subprocess.run(["pgrep", "-f", probe_file], capture_output=True, text=True).stdout.split()
    for pid in map(int, pids):
        try:
            inode = int(os.readlink(f"/proc/{pid}/ns/net").split("[")[1].rstrip("]"))
            # The window removes its temp dir once the probe watches (its files stay open).
            cwd = Path(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)"))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if inode in netns_inodes and cwd.name.startswith("fleetdiag."):
            found[pid] = cwd
    return found


def attached(windows: dict[int, Path]) -> set[Path]:
    """The temp dirs whose probe has printed its "@@attached" line (on its stdout, the window's
    ``out`` file, read through the process: the file may be unlinked already)."""
    done = set()
    for pid, tmpdir in windows.items():
        stdout = Path(f"/proc/{pid}/fd/1")
        try:  # a sampler's subshell writes into a pipe: reading that would steal its samples
            if stat.S_ISREG(stdout.stat().st_mode) and "@@attached" in stdout.read_text(errors="replace"):
                done.add(tmpdir)
        except OSError:
            continue
    return done


def wait_for_windows(
    expected: int, netns_inodes: set[int], proc: subprocess.Popen, timeout: float = 30, probe_file: str = "probe.bt"
) -> set[Path]:
    """Wait until EXPECTED probes in these namespaces are watching; their temp dirs."""
    deadline = time.monotonic() + timeout
    while len(ready := attached(probe_windows(netns_inodes, probe_file))) < expected:
        if proc.poll() is not None:
            pytest.fail(f"fleetdiag exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(ready)} of {expected} probes attached within {timeout} s")
        time.sleep(0.1)
    return ready


def assert_traced_or_flagged(traced: int, counted: int, flagged_missed: int | None) -> None:
    """Traced drops equal the kernel's counter, or the few the probe missed are reported exactly.

    The kernel skips a tracing program that is already running on that CPU (a drop in
    softirq arriving while the program handles another): LAB.md saw it, and one run in
    a few here misses one of ~20 drops. fleetdiag must then say so (reconciliation and an
    untraced_drops verdict), never hide it; a large gap would be a probe bug, not a skip.
    """
    assert traced <= counted
    if traced < counted:
        assert flagged_missed == counted - traced, "a miss must be reported, with its size"
        assert counted - traced <= max(2, counted // 10), f"traced {traced} of {counted}: far too many missed"


def collect_during_backlog_drops(fleet: LabFleet, inventory: Path, roles) -> tuple[dict, int, int, str, set[Path]]:
    """Run collect while real backlog drops happen inside its window; retry when the kernel made none."""
    for _attempt in range(3):
        proc = fleetdiag(
            "collect", "-i", str(inventory), "--duration", str(WINDOW_S),
            "--known-hosts", str(fleet.known_hosts_path), "-o", "json",
        )
        tmpdirs = wait_for_windows(3, {h.netns_inode for h in fleet.hosts}, proc)
        drops = generate_backlog_drops(fleet, roles.receiver, roles.sender, port=PORT, seconds=TRAFFIC_S)
        out, err = proc.communicate(timeout=WINDOW_S + 60)
        if drops > 0:
            return json.loads(out), proc.returncode, drops, err, tmpdirs
    pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")


def test_collect_finds_real_backlog_drops_across_the_fleet(lab_fleet, lab_roles, unreachable_lab_host, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml")
    doc, exit_code, generated, stderr, tmpdirs = collect_during_backlog_drops(lab_fleet, inventory, lab_roles)

    assert exit_code == 3, stderr  # one host unreachable, the others collected
    assert doc["schema_version"] == 1
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == {"h01", "h02", "h03", "h04"}

    receiver = hosts["h01"]
    assert receiver["status"] == "ok", receiver["error"]
    assert receiver["probe"] == "bpftrace:kfree_skb"
    assert receiver["netns"] == lab_roles.receiver.netns_inode
    # The whole traffic run fell inside the window, so the kernel's counter saw exactly it.
    assert receiver["counters"]["TCPBacklogDrop"] == generated

    backlog_flows = [f for f in doc["flows"] if f["reason"] == "SOCKET_BACKLOG"]
    assert backlog_flows, doc["flows"]
    assert {f["host"] for f in backlog_flows} == {"h01"}
    for flow in backlog_flows:
        assert (flow["laddr"], flow["lport"]) == (lab_roles.receiver.address, PORT)
        assert flow["raddr"] == lab_roles.sender.address
        assert flow["netns"] == lab_roles.receiver.netns_inode
        assert flow["rcvbuf"] > 0 and flow["sndbuf"] > 0
        # The kernel drops when backlog.len + rmem_alloc exceeds its limit; either part
        # may be 0 (a receive queue filled while rcvbuf was large overflows alone).
        assert flow["queue_max"] > 0
        assert flow["queue_max"] >= max(flow["backlog_len_max"], flow["rmem_alloc_max"])
        assert flow["backlog_limit"] > 0
    traced = sum(f["drops"] for f in backlog_flows)
    (backlog_reconciled,) = [r for r in receiver["reconciliation"] if r["reason"] == "SOCKET_BACKLOG"]
    assert (backlog_reconciled["traced"], backlog_reconciled["counted"]) == (traced, generated)
    flagged = [v for v in receiver["verdicts"] if v["code"] == "untraced_drops"]
    assert_traced_or_flagged(traced, generated, backlog_reconciled["missed"] if flagged else None)
    assert receiver["drops"]["SOCKET_BACKLOG"] == traced

    for quiet in ("h02", "h03"):
        assert hosts[quiet]["status"] == "ok", hosts[quiet]["error"]
        assert hosts[quiet]["counters"]["TCPBacklogDrop"] == 0
        assert "SOCKET_BACKLOG" not in hosts[quiet]["drops"]

    down = hosts["h04"]
    assert down["status"] == "unreachable"
    assert "refused" in down["error"]

    # Nothing left behind on the hosts: no temp dir, no probe process.
    assert len(tmpdirs) == 3
    assert not [d for d in tmpdirs if d.exists()]
    assert probe_windows({h.netns_inode for h in lab_fleet.hosts}) == {}


def test_collect_table_output_for_people(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    proc = fleetdiag(
        "collect", "-i", str(inventory), "--duration", "2",
        "--known-hosts", str(lab_fleet.known_hosts_path),
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "h03" in out and "bpftrace:kfree_skb" in out and " ok " in out
    assert "No dropping TCP flows" in out
    assert err == ""  # not a TTY: no progress lines


def test_unknown_host_key_is_refused_by_default(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    proc = fleetdiag(
        "collect", "-i", str(inventory), "--duration", "1", "--known-hosts", str(empty_known_hosts), "-o", "json",
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    (host,) = json.loads(out)["hosts"]
    assert host["status"] == "unreachable"
    assert "not in known_hosts" in host["error"]


def test_local_mode_without_inventory():
    """No -i: this machine, no SSH; real NO_SOCKET drops to a closed loopback port are traced."""
    proc = fleetdiag("collect", "--duration", "4", "-o", "json")
    wait_for_windows(1, {_own_netns()}, proc)
    closed_port = _closed_loopback_port()
    for _ in range(3):
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", closed_port)) != 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    (host,) = doc["hosts"]
    assert host["name"] == "localhost" and host["status"] == "ok"
    mine = [f for f in doc["flows"] if f["lport"] == closed_port and f["reason"] == "NO_SOCKET"]
    assert sum(f["drops"] for f in mine) == 3
    assert host["drops"]["NO_SOCKET"] >= 3


def _own_netns() -> int:
    return int(os.readlink("/proc/self/ns/net").split("[")[1].rstrip("]"))


def _closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns
