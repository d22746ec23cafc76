"""One fleet, two kernels: namespace hosts on this machine's 6.18 and the qemu guest on Debian's 6.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]


def mixed_inventory(fleet: LabFleet, guest: GuestVM, path: Path) -> Path:
    """h01 and h02 beside the guest as g01, all reached with the fleet's key."""
    hosts = [fleet.host("h01"), fleet.host("h02")]
    return fleet.write_inventory(path, hosts=hosts, extra_hosts={"g01": guest.host_vars()})


def test_check_gives_each_kernel_its_own_verdicts(lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    inventory = mixed_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml")
    argv = [
        sys.executable, "-m", "fleetdiag", "check", "-i", str(inventory), "-o", "json",
        "--known-hosts", str(lab_fleet.known_hosts_path), "--known-hosts", str(lab_guest.known_hosts_path),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    hosts = {host["name"]: host for host in json.loads(result.stdout)["hosts"]}
    guest, namespace_host = hosts["g01"], hosts["h01"]
    assert guest["kernel"] == lab_guest.kernel_release
    assert namespace_host["kernel"] != guest["kernel"]
    # The guest has headers, debug symbols and module loading: every tracer fits there.
    assert all(guest["tracers"][name]["usable"] for name in ("bpftrace", "bcc", "stap", "counters")), guest["tracers"]
    # This machine's kernel has neither headers nor modules, and says so.
    assert not namespace_host["tracers"]["bcc"]["usable"]
    assert not namespace_host["tracers"]["stap"]["usable"]
    assert namespace_host["probe"].startswith("bpftrace:")
    assert guest["probe"] != namespace_host["probe"], "6.1 has no rx_sk in kfree_skb: another probe fits"


def test_collect_runs_each_kernel_its_own_probe_in_one_sweep(lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    inventory = mixed_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml")
    argv = [
        sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", "5", "-o", "json",
        "--known-hosts", str(lab_fleet.known_hosts_path), "--known-hosts", str(lab_guest.known_hosts_path),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    hosts = {host["name"]: host for host in json.loads(result.stdout)["hosts"]}
    assert all(host["status"] == "ok" for host in hosts.values()), {n: h["error"] for n, h in hosts.items()}
    guest, namespace_host = hosts["g01"], hosts["h01"]
    assert namespace_host["probe"] == "bpftrace:kfree_skb"  # 6.18: the socket is in the tracepoint
    assert guest["probe"].startswith("bpftrace:kfree_skb_headers")  # 6.1: reasons, no rx_sk
    assert "TCPBacklogDrop" in guest["counters"] and guest["kernel"] == lab_guest.kernel_release
    # Why: each host's verdicts travel with its result, as `check` shows them.
    assert guest["tracers"]["bpftrace"]["probe"] == guest["probe"]
    assert namespace_host["tracers"]["bpftrace"]["probe"] == namespace_host["probe"]
