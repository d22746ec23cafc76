"""Faults on the lab: one host fails and says why in one sentence, the others' results stay complete,
the exit code tells (3, or 130 when interrupted), and nothing is left running or on disk on any host."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdiag.tracers.bpftrace import ATTACH_ALLOWANCE_S as BPFTRACE_ATTACH_S
from fleetdiag.window_script import ATTACH_ALLOWANCE_S, CLEANUP_GRACE_S
from tests.e2e.test_collect import probe_windows, wait_for_windows
from tests.lab.fleet import HostSetup, LabFleet, LabHost

pytestmark = pytest.mark.lab

SUDO_PASSWORD = "lab-sudo-Pa55"
SILENT_PORT = 2222
SETUPS = {
    "h01": HostSetup(readonly_tmp=True),
    "h02": HostSetup(sudo_password=SUDO_PASSWORD),
    "h03": HostSetup(bpftrace="broken"),
    "h07": HostSetup(bpftrace="hung"),
}


@pytest.fixture(scope="module")
def fault_fleet() -> Iterator[LabFleet]:
    """h01 no writable TMPDIR, h02 user ops whose sudo wants a password, h03 broken bpftrace,
    h04-h06 plain, h07 a bpftrace that never ends; every host has a private TMPDIR to check."""
    with LabFleet(7, setups=SETUPS, private_tmp=True) as fleet:
        yield fleet


def collect(fleet: LabFleet, inventory: Path, results: Path, *args: str, **popen: object) -> subprocess.Popen:
    """The real CLI, JSON on stdout, results saved under RESULTS (never the user's own dir)."""
    argv = [
        sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory),
        "--known-hosts", str(fleet.known_hosts_path), "--results-dir", str(results), "-o", "json", *args,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


def hosts_of(stdout: str) -> dict[str, dict]:
    return {host["name"]: host for host in json.loads(stdout)["hosts"]}


def assert_one_sentence(error: str | None) -> None:
    assert error and "\n" not in error and "Traceback" not in error, error


def assert_complete(host: dict, lab_host: LabHost) -> None:
    """A host that collected: its probe watched its own namespace and its counters came back."""
    assert host["status"] == "ok", host["error"]
    assert host["probe"] == "bpftrace:kfree_skb"
    assert host["netns"] == lab_host.netns_inode
    assert "TCPBacklogDrop" in host["counters"]
    assert host["window_end"] > host["window_start"]


def wait_until_clean(fleet: LabFleet, hosts: list[LabHost], deadline_s: float) -> float:
    """Seconds until no probe process or temp file is left on HOSTS; fails past the deadline."""
    started = time.monotonic()
    while (left := fleet.leftovers(hosts)) != {"processes": [], "temp_files": []}:
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"left on the hosts after {deadline_s} s: {left}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_each_broken_host_fails_alone_and_says_why(fault_fleet: LabFleet, tmp_path: Path) -> None:
    fleet = fault_fleet
    mute = fleet.host("h05")
    listener = fleet.silent_listener(mute, SILENT_PORT)
    fleet.set_link(fleet.host("h06"), up=False)  # its address answers nothing at all
    try:
        inventory = fleet.write_inventory(
            tmp_path / "hosts.yaml",
            hosts=[fleet.host(n) for n in ("h01", "h03", "h04", "h06")],
            extra_hosts={
                "h02": {"ansible_host": fleet.host("h02").address, "ansible_user": "ops", "ansible_become": True},
                "mute": {"ansible_host": mute.address, "ansible_port": SILENT_PORT},
            },
        )
        # --tracer bpftrace: with auto, a probe that cannot start hands over to the next tracer.
        proc = collect(
            fleet, inventory, tmp_path / "results", "--duration", "2", "--connect-timeout", "3", "--tracer", "bpftrace"
        )
        out, err = proc.communicate(timeout=90)
    finally:
        listener.kill()
        fleet.set_link(fleet.host("h06"), up=True)
    assert proc.returncode == 3, err
    hosts = hosts_of(out)
    assert_complete(hosts["h04"], fleet.host("h04"))
    expected = {
        "h01": ("failed", "no writable temp dir"),
        "h02": ("failed", "sudo asked for a password"),
        "h03": ("failed", "bpftrace did not start: ERROR: failed to create map"),
        "h06": ("unreachable", "no connection within 3 s"),
        "mute": ("unreachable", "the port accepted TCP but never spoke SSH"),
    }
    for name, (status, reason) in expected.items():
        assert (hosts[name]["status"], hosts[name]["error"][: len(reason)]) == (status, reason), hosts[name]
        assert_one_sentence(hosts[name]["error"])
    assert wait_until_clean(fleet, list(fleet.hosts), deadline_s=5) < 5


def test_a_tracer_that_cannot_start_hands_over_and_says_why(fault_fleet: LabFleet, tmp_path: Path) -> None:
    broken = fault_fleet.host("h03")
    inventory = fault_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[broken])
    out, err = collect(fault_fleet, inventory, tmp_path / "results", "--duration", "1").communicate(timeout=60)
    (host,) = hosts_of(out).values()
    assert host["status"] == "ok", host
    assert host["probe"] != "bpftrace:kfree_skb"
    assert any("did not start" in note and "Too many open files" in note for note in host["notes"]), host["notes"]
    assert fault_fleet.leftovers([broken]) == {"processes": [], "temp_files": []}


def test_sshd_killed_mid_window(fault_fleet: LabFleet, tmp_path: Path) -> None:
    fleet = fault_fleet
    keep, victim = fleet.host("h04"), fleet.host("h05")
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[keep, victim])
    proc = collect(fleet, inventory, tmp_path / "results", "--duration", "5")
    try:
        wait_for_windows(2, {keep.netns_inode, victim.netns_inode}, proc)
        killed = fleet.kill_sshd(victim)
        out, err = proc.communicate(timeout=60)
    finally:
        fleet.start_sshd(victim)
    assert killed, "no sshd to kill"
    assert proc.returncode == 3, err
    hosts = hosts_of(out)
    assert_complete(hosts["h04"], keep)
    assert hosts["h05"]["status"] == "unreachable"
    assert hosts["h05"]["error"].startswith("SSH connection lost")
    assert_one_sentence(hosts["h05"]["error"])
    # The session died with sshd: the window script saw its stdin close and stopped the probe.
    assert wait_until_clean(fleet, [victim], deadline_s=5) < 5


def test_network_down_mid_window(fault_fleet: LabFleet, tmp_path: Path) -> None:
    fleet = fault_fleet
    keep, victim = fleet.host("h04"), fleet.host("h06")
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[keep, victim])
    window_s = 4
    proc = collect(fleet, inventory, tmp_path / "results", "--duration", str(window_s))
    try:
        wait_for_windows(2, {keep.netns_inode, victim.netns_inode}, proc)
        cut = time.monotonic()
        fleet.set_link(victim, up=False)
        # Nothing tells the host its controller is gone: its probe must end by its own timer.
        assert wait_until_clean(fleet, [victim], deadline_s=window_s + ATTACH_ALLOWANCE_S + CLEANUP_GRACE_S)
        out, err = proc.communicate(timeout=60)
        noticed_after = time.monotonic() - cut
    finally:
        fleet.set_link(victim, up=True)
    assert proc.returncode == 3, err
    hosts = hosts_of(out)
    assert_complete(hosts["h04"], keep)
    assert hosts["h06"]["status"] == "unreachable", hosts["h06"]
    assert_one_sentence(hosts["h06"]["error"])
    assert noticed_after < 40  # keepalives + TCP_USER_TIMEOUT, not TCP's 15 minutes


def test_a_probe_that_never_ends_is_killed_by_the_host_itself(fault_fleet: LabFleet, tmp_path: Path) -> None:
    fleet = fault_fleet
    hung = fleet.host("h07")
    window_s = 2
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[hung])
    started = time.monotonic()
    proc = collect(fleet, inventory, tmp_path / "results", "--duration", str(window_s))
    wait_for_windows(1, {hung.netns_inode}, proc)
    # The host's own limit for a bpftrace window is its duration plus bpftrace's attach allowance.
    limit_s = window_s + BPFTRACE_ATTACH_S + CLEANUP_GRACE_S + 5
    out, err = proc.communicate(timeout=limit_s + 30)
    lifetime = time.monotonic() - started
    (host,) = hosts_of(out).values()
    # `timeout` sent INT at window + attach allowance, then KILL 2 s later; the run reports it.
    assert lifetime <= limit_s, lifetime
    why = {key: host[key] for key in ("status", "error", "notes", "window_start", "window_end")}
    assert any("exited with code" in note for note in host["notes"]) or host["status"] != "ok", why
    assert fleet.leftovers([hung]) == {"processes": [], "temp_files": []}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_window_ends_every_window_early_with_partial_results(
    fault_fleet: LabFleet, tmp_path: Path, sig: signal.Signals
) -> None:
    fleet = fault_fleet
    hosts_used = [fleet.host("h04"), fleet.host("h05")]
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts_used)
    window_s = 60
    proc = collect(fleet, inventory, tmp_path / "results", "--duration", str(window_s))
    wait_for_windows(2, {h.netns_inode for h in hosts_used}, proc)
    time.sleep(1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    hosts = hosts_of(out)
    for lab_host in hosts_used:
        host = hosts[lab_host.name]
        assert_complete(host, lab_host)
        watched = host["window_end"] - host["window_start"]
        assert 0.5 < watched < window_s / 2
        assert f"window cut short by {sig.name}" in " ".join(host["notes"])
    assert json.loads(out)["interrupted"] == sig.name
    assert list((tmp_path / "results").rglob("*.json")), "the partial sweep was not saved"
    assert wait_until_clean(fleet, hosts_used, deadline_s=5) < 5


def test_controller_killed_mid_window_leaves_nothing_behind(fault_fleet: LabFleet, tmp_path: Path) -> None:
    fleet = fault_fleet
    hosts_used = [fleet.host("h04"), fleet.host("h05")]
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts_used)
    window_s = 60
    proc = collect(fleet, inventory, tmp_path / "results", "--duration", str(window_s))
    tmpdirs = wait_for_windows(2, {h.netns_inode for h in hosts_used}, proc)
    proc.kill()
    proc.communicate(timeout=10)
    # The SSH sessions died with the controller; the probes stop long before their window ends.
    assert wait_until_clean(fleet, hosts_used, deadline_s=10) < 10
    assert not [d for d in tmpdirs if d.exists()]
    assert probe_windows({h.netns_inode for h in hosts_used}) == {}
