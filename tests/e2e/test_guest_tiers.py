"""Every tier for real on the 6.1 guest, through `fleetdiag collect`, against real backlog drops.

Each test runs the real CLI while the deterministic generator makes 250-odd TCPBacklogDrop in
the guest, and requires the tier's count to equal the guest's own counter delta over the window,
with the flow and its socket state. The guest's three sshds (build-image.sh) make one kernel
release look like three hosts: "full" (source, headers, debug symbols), "nosource" (no kernel
source) and "runtime" (systemtap-runtime only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import GuestCollect, collect_during_drops, leftovers
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]


def guest_inventory(fleet: LabFleet, vm: GuestVM, path: Path, *views: str) -> Path:
    """The guest once per sshd view, named g_VIEW."""
    return fleet.write_inventory(path, hosts=[], extra_hosts={f"g_{view}": vm.host_vars(view) for view in views})


def assert_caught_every_drop(run: GuestCollect, name: str, probe: str) -> dict:
    """NAME ran PROBE and counted exactly the guest's TCPBacklogDrop delta, on the generator's flow."""
    host = run.host(name)
    assert host["status"] == "ok", host["error"]
    assert host["probe"] == probe, host
    delta = host["counters"]["TCPBacklogDrop"]
    assert delta == run.generated.drops > 0, (delta, run.generated)
    assert host["drops"].get("SOCKET_BACKLOG") == delta, (host["drops"], host["notes"])
    (flow,) = [f for f in run.flows(name) if f["reason"] == "SOCKET_BACKLOG"]
    assert (flow["laddr"], flow["lport"]) == (run.generated.guest_address, run.generated.guest_port)
    assert (flow["raddr"], flow["rport"]) == (run.generated.controller_address, run.generated.controller_port)
    assert flow["drops"] == delta
    # The socket state the origin case printed: buffers, and a queue over the kernel's limit.
    assert flow["rcvbuf"] > 0 and flow["sndbuf"] > 0
    assert flow["queue_max"] >= flow["backlog_limit"] - 65536, flow
    # Issue 16: the window and the dropped skbs' sizes, read at the drop (scaling_ratio only from 6.6).
    assert flow["window_clamp"] > 0 and flow["rcv_ssthresh"] > 0 and "rcv_wnd" in flow, flow
    major, minor = (int(part) for part in host["kernel"].split(".")[:2])
    assert ("scaling_ratio" in flow) == ((major, minor) >= (6, 6)), (host["kernel"], flow)
    assert 0 < flow["skb_len_max"] <= flow["skb_truesize_max"] and flow["skb_truesize_sum"] >= flow["skb_truesize_max"], flow
    assert host["tcp_buffers"]["tcp_adv_win_scale"] == [1], host["tcp_buffers"]
    # Counted per interval in the kernel too: the timeline adds up to the same drops, on the host and the flow.
    assert sum(host["timeline"]["drops"]["SOCKET_BACKLOG"]) == delta, host["timeline"]
    assert sum(flow["timeline"]) == delta
    # The window script's TcpExt samples beside the probe: the counter's own series, on every traced tier.
    assert sum(host["timeline"]["counters"]["TCPBacklogDrop"]) == delta, host["timeline"]["counters"]
    return host


def test_stap_statement_probe_built_once_and_shipped_to_a_runtime_only_host(
    lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path
) -> None:
    """The origin case: the TCPBacklogDrop line found in the host's source, compiled on the host that
    can, shipped to the host with only systemtap-runtime; both catch every drop."""
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full", "runtime")
    cache = tmp_path / "cache"
    run = collect_during_drops(lab_fleet, lab_guest, inventory, "stap", cache, windows=2)
    assert run.returncode == 0, run.stderr
    built = assert_caught_every_drop(run, "g_full", "stap:tcp_add_backlog_statement")
    shipped = assert_caught_every_drop(run, "g_runtime", "stap:tcp_add_backlog_statement")
    assert built["module"]["how"] == "built here" and built["module"]["built_on"] == "g_full"
    assert shipped["module"]["how"] == "shipped" and shipped["module"]["built_on"] == "g_full"
    assert shipped["module"]["sha256"] == built["module"]["sha256"]
    assert "built on g_full" in " ".join(shipped["notes"])
    # The runtime-only host really could not have compiled: check says why, and what it can do instead.
    assert "systemtap-runtime only (systemtap (stap) is not installed)" in shipped["tracers"]["stap"]["reason"]
    assert len(list(cache.rglob("*.ko.gz"))) == 1, "the module is kept for the next sweep"
    assert leftovers(lab_guest) == ""


def test_stap_return_probe_where_the_host_has_no_source(lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "nosource")
    run = collect_during_drops(lab_fleet, lab_guest, inventory, "stap", tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    host = assert_caught_every_drop(run, "g_nosource", "stap:tcp_add_backlog_return")
    assert host["module"]["how"] == "built here"
    assert leftovers(lab_guest) == ""


@pytest.mark.parametrize("tracer", ["bcc", "bpftrace"])
def test_bpf_tiers_catch_every_drop(tracer: str, lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full")
    run = collect_during_drops(lab_fleet, lab_guest, inventory, tracer, tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    # 6.1 has drop reasons but no rx_sk: the socket comes from the companion probe.
    host = assert_caught_every_drop(run, "g_full", run.host("g_full")["tracers"][tracer]["probe"])
    assert host["probe"].startswith(f"{tracer}:") and host["fidelity"] == "traced"
    assert host["module"] is None
    # Its programs were read before they unloaded: kfree_skb as a raw tracepoint (type 17, a recursion
    # guard of its own) under bcc; under bpftrace 0.17 a tracepoint (type 5) and tcp_add_backlog's fexit
    # (type 26, read from its program's fd, not its link's). Misses counted, not inferred. bpftrace takes
    # 16 s to attach here: past the host's limit before, the stopper now reads before it.
    stats = host["probe_stats"]
    assert stats is not None, host["notes"]
    assert not any("misses unknown" in note for note in host["notes"]), host["notes"]
    types = {p["prog_type"] for p in stats["per_program"]}
    assert (17 in types) if tracer == "bcc" else ({5, 26} <= types), stats
    assert stats["recursion_misses"] == sum(p["recursion_misses"] for p in stats["per_program"])
    (backlog,) = [r for r in host["reconciliation"] if r["reason"] == "SOCKET_BACKLOG"]
    assert backlog["within_misses"] is True
    assert leftovers(lab_guest) == ""


def test_counters_tier_counts_exactly_without_tracing(lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full")
    run = collect_during_drops(lab_fleet, lab_guest, inventory, "counters", tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    host = run.host("g_full")
    assert host["status"] == "ok" and host["probe"].startswith("counters")
    assert host["counters"]["TCPBacklogDrop"] == run.generated.drops > 0
    assert host["fidelity"] == "sampled"  # never passed off as traced
    counted = host["timeline"]["counters"]["TCPBacklogDrop"]
    assert sum(counted) == host["counters"]["TCPBacklogDrop"] and len(counted) == host["timeline"]["intervals"]
    assert leftovers(lab_guest) == ""


def test_auto_takes_the_first_usable_tracer_in_the_documented_order(
    lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path
) -> None:
    from fleetdiag.tracers import PREFERENCE

    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full")
    run = collect_during_drops(lab_fleet, lab_guest, inventory, "auto", tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    host = run.host("g_full")
    first_usable = next(t.name for t in PREFERENCE if host["tracers"][t.name]["usable"])
    assert_caught_every_drop(run, "g_full", host["tracers"][first_usable]["probe"])
    assert first_usable == "bpftrace"  # everything fits on the guest; bpftrace comes first


def test_a_failed_module_build_is_every_hosts_one_sentence(lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path) -> None:
    """Debian's own systemtap 4.8 runtime does not build for 6.1.19x (task_work_cancel changed).
    With it back in place, the build fails once, on the host that can build, and both hosts of the
    release say why in one sentence: no stack trace, no second attempt."""
    runtime = "/usr/share/systemtap/runtime"
    swap = f"mv {runtime} {runtime}.fixed && mv {runtime}.debian-orig {runtime}"
    restore = f"mv {runtime} {runtime}.debian-orig && mv {runtime}.fixed {runtime}"
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full", "runtime")
    lab_guest.check(swap)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", "5", "--tracer", "stap",
             "-o", "json", "--known-hosts", str(lab_guest.known_hosts_path)],
            capture_output=True, text=True, timeout=1200, env={**os.environ, "FLEETDIAG_CACHE_DIR": str(tmp_path / "cache")},
        )  # fmt: skip
    finally:
        lab_guest.check(restore)
    assert result.returncode == 4, result.stderr  # no host collected
    hosts = {host["name"]: host for host in json.loads(result.stdout)["hosts"]}
    expected = f"systemtap's runtime does not build for {lab_guest.kernel_release} (task_work_cancel changed): update systemtap"
    for name in ("g_full", "g_runtime"):
        assert hosts[name]["status"] == "failed"
        assert hosts[name]["error"].startswith(f"systemtap module build failed on {lab_guest.kernel_release}: {expected}")
        assert hosts[name]["error"].endswith("(systemtap module build on g_full)")
        assert "Traceback" not in hosts[name]["error"] and "\n" not in hosts[name]["error"]
    assert not list((tmp_path / "cache").rglob("*.ko.gz"))
    assert leftovers(lab_guest) == ""
