"""One fleet, four kernels, one command: namespace hosts on 6.18 beside the 6.1, 5.10 and 6.12 guests.

`fleetdiag collect --tracer auto` over all of them in one sweep must pick each kernel's own probe and
count every host's real backlog drops: the namespace receiver's from its flow, each guest's from the
deterministic generator (not the 6.12 guest's: the generator is a stap module, which Debian 13's
systemtap 5.1 cannot load there; its probe choice and its own zero are checked), all inside one window. `check` over the same inventory says why each
probe was picked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import LabRoles
from tests.lab.backlog import start_backlog_traffic
from tests.lab.fleet import LabFleet
from tests.lab.guest.backlog import GuestBacklogRun, generate_guest_backlog_drops
from tests.lab.guest.collect_run import ATTACH_TIMEOUT_S, attached_windows, leftovers
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]

WINDOW_S = 90  # three guests' generators and the namespace flow, all inside one window
PORT = 5241  # the namespace flow's own port


@pytest.fixture
def four_kernels(
    lab_fleet: LabFleet, lab_guest: GuestVM, lab_guest_bullseye: GuestVM, lab_guest_trixie: GuestVM
) -> dict[str, GuestVM]:
    """The three guests by inventory name (the namespace hosts are the session fleet's)."""
    return {"g01": lab_guest, "g11": lab_guest_bullseye, "g13": lab_guest_trixie}


def four_kernel_inventory(fleet: LabFleet, guests: dict[str, GuestVM], path: Path) -> Path:
    hosts = [fleet.host("h01"), fleet.host("h03")]
    return fleet.write_inventory(path, hosts=hosts, extra_hosts={name: vm.host_vars() for name, vm in guests.items()})


def known_hosts(fleet: LabFleet, guests: dict[str, GuestVM]) -> list[str]:
    args = ["--known-hosts", str(fleet.known_hosts_path)]
    for vm in guests.values():
        args += ["--known-hosts", str(vm.known_hosts_path)]
    return args


def test_one_sweep_picks_each_kernels_probe_and_counts_every_hosts_drops(
    lab_fleet: LabFleet, lab_roles: LabRoles, four_kernels: dict[str, GuestVM], tmp_path: Path
) -> None:
    guests = four_kernels
    path = four_kernel_inventory(lab_fleet, guests, tmp_path / "inventory.yml")
    check = subprocess.run(
        [sys.executable, "-m", "fleetdiag", "check", "-i", str(path), "-o", "json", *known_hosts(lab_fleet, guests)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    verdicts = {host["name"]: host for host in json.loads(check.stdout)["hosts"]}
    kernels = {name: verdicts[name]["kernel"] for name in ("h01", "g01", "g11", "g13")}
    assert len(set(kernels.values())) == 4, kernels
    argv = [sys.executable, "-m", "fleetdiag", "collect", "-i", str(path), "--duration", str(WINDOW_S), "-o", "json",
            *known_hosts(lab_fleet, guests)]  # fmt: skip
    env = {**os.environ, "FLEETDIAG_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = time.monotonic()
        while not all(attached_windows(vm) >= 1 for vm in guests.values()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - started < ATTACH_TIMEOUT_S, "the guests' windows did not attach"
            time.sleep(3)
        # The windows open together (aligned): once the guests watch, the namespace host does too.
        traffic = start_backlog_traffic(lab_fleet, lab_roles.receiver, lab_roles.sender, port=PORT, seconds=5.0)
        with ThreadPoolExecutor(len(guests)) as pool:
            generated = pool.map(generate_guest_backlog_drops, guests.values())
            runs: dict[str, GuestBacklogRun] = dict(zip(guests, generated))
        traffic.wait()
        out, err = proc.communicate(timeout=WINDOW_S + 300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    hosts = {host["name"]: host for host in json.loads(out)["hosts"]}
    assert all(host["status"] == "ok" for host in hosts.values()), {n: h["error"] for n, h in hosts.items()}
    expected = {
        "h01": "bpftrace:kfree_skb",  # 6.18: rx_sk in the tracepoint
        "g13": "bpftrace:kfree_skb",  # 6.12: the same, on a distro kernel with kprobes and modules
        "g11": verdicts["g11"]["probe"],  # 5.10: the return of tcp_add_backlog (check says which hook)
    }
    for name, probe in expected.items():
        assert hosts[name]["probe"] == probe, hosts[name]
    assert hosts["g01"]["probe"].startswith("bpftrace:kfree_skb_headers")  # 6.1: reasons, no rx_sk
    assert hosts["g11"]["probe"].endswith("_tcp_add_backlog")
    # Every host's drops, each equal to its own kernel's counter over the window.
    for name in ("h01", *guests):
        host = hosts[name]
        delta = host["counters"]["TCPBacklogDrop"]
        assert host["drops"].get("SOCKET_BACKLOG", 0) == delta, (name, host["drops"], delta)
        assert host["probe"] == verdicts[name]["probe"], "check and collect agree on every host's probe"
    for name, run in runs.items():
        assert hosts[name]["counters"]["TCPBacklogDrop"] == run.drops > 0, (name, run)
    assert hosts["h03"]["drops"] == {} and hosts["h03"]["counters"]["TCPBacklogDrop"] == 0
    # Why: the verdicts name what each kernel has.
    assert "rx_sk" in verdicts["h01"]["tracers"]["bpftrace"]["reason"]
    assert "rx_sk" in verdicts["g13"]["tracers"]["bpftrace"]["reason"]
    assert "tcp_add_backlog return" in verdicts["g11"]["tracers"]["bpftrace"]["reason"]
    assert not verdicts["h01"]["tracers"]["stap"]["usable"] and verdicts["g11"]["tracers"]["stap"]["usable"]
    for vm in guests.values():
        assert leftovers(vm) == ""
