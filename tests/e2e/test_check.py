"""`fleetdiag check` end to end: the real CLI against the lab's sshd hosts; detection only, no probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.test_collect import probe_windows

pytestmark = pytest.mark.lab


def fleetdiag(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run the real CLI to completion, as a runbook would."""
    return subprocess.run([sys.executable, "-m", "fleetdiag", *args], capture_output=True, text=True, timeout=timeout)


def _bcc_can_compile_here() -> bool:
    release = os.uname().release
    return os.path.exists(f"/lib/modules/{release}/build") or os.path.exists("/sys/kernel/kheaders.tar.xz")


def test_check_reports_every_tracer_per_host(lab_fleet, lab_roles, unreachable_lab_host, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml")
    done = fleetdiag("check", "-i", str(inventory), "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json")
    assert done.returncode == 3, done.stderr  # h04 is down, the others are ready
    hosts = {h["name"]: h for h in json.loads(done.stdout)["hosts"]}
    assert set(hosts) == {"h01", "h02", "h03", "h04"}
    for name in ("h01", "h02", "h03"):
        host = hosts[name]
        assert host["status"] == "ok", host["error"]
        assert host["kernel"] == os.uname().release  # every lab host shares this machine's kernel
        assert list(host["tracers"]) == ["bpftrace", "bcc", "stap", "counters"]
        assert host["tracers"]["bpftrace"]["usable"] is True
        assert host["probe"] == host["tracers"]["bpftrace"]["probe"] == "bpftrace:kfree_skb"
        assert host["tracers"]["counters"]["usable"] is True
        for name_ in ("bcc", "stap"):
            verdict = host["tracers"][name_]
            if not verdict["usable"]:
                assert verdict["reason"] and verdict["probe"] is None
        if not _bcc_can_compile_here():
            assert host["tracers"]["bcc"]["usable"] is False
    down = hosts["h04"]
    assert down["status"] == "unreachable" and "refused" in down["error"]
    assert down["tracers"] == {} and down["probe"] is None
    # Detection only: no probe window was ever opened on the hosts.
    assert probe_windows({h.netns_inode for h in lab_fleet.hosts}) == {}


def test_check_table_for_people(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    done = fleetdiag("check", "-i", str(inventory), "--known-hosts", str(lab_fleet.known_hosts_path))
    assert done.returncode == 0, done.stderr
    assert "h03" in done.stdout and os.uname().release in done.stdout
    assert "chosen" in done.stdout and "bpftrace:kfree_skb" in done.stdout
    assert done.stderr == ""


@pytest.mark.skipif(_bcc_can_compile_here(), reason="this machine has kernel headers, so bcc could run here")
def test_forcing_a_tracer_that_cannot_run_fails_every_host(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.receiver, lab_roles.quiet])
    done = fleetdiag(
        "check", "-i", str(inventory), "--known-hosts", str(lab_fleet.known_hosts_path), "--tracer", "bcc", "-o", "json"
    )
    assert done.returncode == 4, done.stderr
    for host in json.loads(done.stdout)["hosts"]:
        assert host["status"] == "failed" and host["probe"] is None
        assert host["error"].startswith("tracer bcc cannot run here: ")
        assert host["error"].endswith(host["tracers"]["bcc"]["reason"])


def test_bad_inventory_is_a_usage_error(tmp_path):
    done = fleetdiag("check", "-i", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2
    assert done.stdout == "" and "fleetdiag:" in done.stderr
