"""Every tier that fits Debian 11's 5.10 and Debian 13's 6.12, for real, through `fleetdiag collect`.

The same deterministic generator as on the 6.1 guest (tests/lab/guest/backlog.py) makes 250-odd real
TCPBacklogDrop in each guest while a tier watches; each tier's count must equal the guest's own
counter delta over the window, on the generator's flow, with the socket's state. Where a tool
version cannot run a tier, `check` must already say so. systemtap modules are built on the
controller from the guest's own root filesystem (`--stap-kernel RELEASE=DIR`): the in-guest compile
is what the 6.1 tests cover, and under TCG it costs minutes per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetdiag.facts.kernel import BUILD_ID_COMMAND, parse_build_id
from fleetdiag.module_builds import sources_digest
from tests.e2e.test_guest_tiers import assert_caught_every_drop
from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import GuestCollect, leftovers
from tests.lab.guest.collect_run import collect_during_drops as _collect_during_drops
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]

SUITES = ("bullseye", "trixie")
# Longer than the 6.1 tests' 30 s: with the machine under the guests loaded, polling the guest for
# attached windows and arming the generator's module took most of 30 s, and its drops missed the window.
WINDOW_S = 75
# What each suite's kernel takes, best first, as detection must choose it (docs/probes.md).
BPFTRACE_PROBE = {"bullseye": "bpftrace:kretprobe_tcp_add_backlog", "trixie": "bpftrace:kfree_skb"}
BCC_PROBE = {"bullseye": "bcc:kretprobe_tcp_add_backlog", "trixie": "bcc:kfree_skb"}


def collect_during_drops(*args: Any, **kwargs: Any) -> GuestCollect:
    """tests.lab.guest.collect_run's, with this module's window."""
    return _collect_during_drops(*args, window_s=WINDOW_S, **kwargs)


@pytest.fixture(params=SUITES)
def suite_guest(request: pytest.FixtureRequest) -> GuestVM:
    """The suite's guest, booted while its tests run (the fixtures in tests/lab/guest/fixtures.py)."""
    return request.getfixturevalue(f"lab_guest_{request.param}")


def inventory(fleet: LabFleet, vm: GuestVM, path: Path, *views: str) -> Path:
    """The guest once per sshd view, named g_VIEW."""
    return fleet.write_inventory(path, hosts=[], extra_hosts={f"g_{view}": vm.host_vars(view) for view in views})


def stap_kernel(vm: GuestVM) -> tuple[str, ...]:
    """--stap-kernel for the guest's release: its image's root filesystem, as a user's chroot of that release."""
    assert vm.image is not None
    return ("--stap-kernel", f"{vm.kernel_release}={vm.image.rootfs}")


def check(fleet: LabFleet, vm: GuestVM, inventory_path: Path, *extra: str) -> dict[str, Any]:
    """`fleetdiag check -o json` over the inventory: each host's verdicts by name."""
    argv = [sys.executable, "-m", "fleetdiag", "check", "-i", str(inventory_path), "-o", "json",
            "--known-hosts", str(fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path), *extra]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return {host["name"]: host for host in json.loads(result.stdout)["hosts"]}


def test_the_guest_runs_its_suites_kernel_and_tools(suite_guest: GuestVM) -> None:
    """Built by the one recipe with the suite as parameter: its own kernel series and tool versions."""
    facts = suite_guest.image.facts if suite_guest.image else {}
    series = {"bullseye": "5.10.", "trixie": "6.12."}[facts["suite"]]
    assert suite_guest.check("uname -r").strip() == suite_guest.kernel_release
    assert suite_guest.kernel_release.startswith(series)
    versions = suite_guest.check(
        "dpkg-query -W -f='${Package} ${Version}\\n' bpftrace python3-bpfcc systemtap"
        f" linux-headers-{suite_guest.kernel_release} linux-image-{suite_guest.kernel_release}-dbg"
    )
    assert {line.split()[0] for line in versions.splitlines()} >= {"bpftrace", "python3-bpfcc", "systemtap"}
    assert facts["bpftrace_version"] in versions and facts["systemtap_version"] in versions


def test_bpftrace_catches_every_drop_with_the_tier_its_version_can_run(
    lab_fleet: LabFleet, suite_guest: GuestVM, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    suite = suite_guest.image.suite if suite_guest.image else ""
    if suite == "bullseye":
        # Seen 2026-12-02: count, flow, rcvbuf and sndbuf all right (252 = TCPBacklogDrop delta), but the
        # flow has no queue_max: bpftrace 0.11's JSON for its max() maps is not read yet. Strict: fixing it flags.
        request.applymarker(pytest.mark.xfail(reason="bpftrace 0.11: queue_max not read from its max() maps", strict=True))
    views = ("full", "nobtf") if suite == "bullseye" else ("full",)
    path = inventory(lab_fleet, suite_guest, tmp_path / "inventory.yml", *views)
    run = collect_during_drops(lab_fleet, suite_guest, path, "bpftrace", tmp_path / "cache", windows=len(views))
    assert run.returncode == 0, run.stderr
    for view in views:
        host = assert_caught_every_drop(run, f"g_{view}", BPFTRACE_PROBE[suite])
        assert host["fidelity"] == "traced"
    if suite == "bullseye":
        # bpftrace 0.11 cannot attach kretfunc here: detection says why instead of failing at attach.
        verdict = run.host("g_full")["tracers"]["bpftrace"]
        assert "kretfunc" in verdict["reason"] and "0.11" in verdict["reason"], verdict
        assert "kernel headers" in run.host("g_nobtf")["tracers"]["bpftrace"]["reason"]  # no BTF: types from headers
    assert leftovers(suite_guest) == ""


def test_bcc_catches_every_drop(lab_fleet: LabFleet, suite_guest: GuestVM, tmp_path: Path) -> None:
    suite = suite_guest.image.suite if suite_guest.image else ""
    path = inventory(lab_fleet, suite_guest, tmp_path / "inventory.yml", "full")
    run = collect_during_drops(lab_fleet, suite_guest, path, "bcc", tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    host = assert_caught_every_drop(run, "g_full", BCC_PROBE[suite])
    assert host["module"] is None and host["fidelity"] == "traced"
    assert leftovers(suite_guest) == ""


def refused_stap(fleet: LabFleet, vm: GuestVM, path: Path) -> bool:
    """Debian 13's systemtap 5.1 cannot load modules on 6.12: check must say so (True), rather than fail at load."""
    if not (vm.image and vm.image.suite == "trixie" and vm.image.facts["systemtap_version"].startswith("5.1")):
        return False
    for name, host in check(fleet, vm, path).items():
        verdict = host["tracers"]["stap"]
        if name == "g_runtime":  # staprun alone tells no version: it would fail at load, as the module's error says
            continue
        assert not verdict["usable"], (name, verdict)
        assert "cannot load modules on" in verdict["reason"] and "uprobe_unregister" in verdict["reason"], verdict
    return True


def test_stap_statement_probe_built_on_the_controller(lab_fleet: LabFleet, suite_guest: GuestVM, tmp_path: Path) -> None:
    """The TCPBacklogDrop line from the host's own source, compiled on the controller in the release's root filesystem."""
    path = inventory(lab_fleet, suite_guest, tmp_path / "inventory.yml", "full")
    if refused_stap(lab_fleet, suite_guest, path):
        return
    cache = tmp_path / "cache"
    run = collect_during_drops(lab_fleet, suite_guest, path, "stap", cache, extra_args=stap_kernel(suite_guest))
    assert run.returncode == 0, run.stderr
    host = assert_caught_every_drop(run, "g_full", "stap:tcp_add_backlog_statement")
    assert host["module"]["how"] == "built on controller" and host["module"]["built_on"] == "controller"
    (ko,) = cache.rglob("*.ko.gz")  # kept under the release and the kernel's build id
    build_id = parse_build_id(suite_guest.check(BUILD_ID_COMMAND))
    assert build_id and ko.parent.name == suite_guest.kernel_release
    assert ko.name == f"{sources_digest()}-{build_id}.ko.gz"
    assert leftovers(suite_guest) == ""


def test_stap_return_probe_and_a_runtime_only_host_from_one_controller_build(
    lab_fleet: LabFleet, suite_guest: GuestVM, tmp_path: Path
) -> None:
    """No source on one host, only systemtap-runtime on the other: one module from the controller serves both."""
    path = inventory(lab_fleet, suite_guest, tmp_path / "inventory.yml", "nosource", "runtime")
    if refused_stap(lab_fleet, suite_guest, path):
        return
    verdicts = check(lab_fleet, suite_guest, path)
    assert "systemtap-runtime only" in verdicts["g_runtime"]["tracers"]["stap"]["reason"]
    assert "--stap-kernel" in verdicts["g_runtime"]["tracers"]["stap"]["reason"]
    run = collect_during_drops(lab_fleet, suite_guest, path, "stap", tmp_path / "cache", windows=2,
                               extra_args=stap_kernel(suite_guest))  # fmt: skip
    assert run.returncode == 0, run.stderr
    for name in ("g_nosource", "g_runtime"):
        host = assert_caught_every_drop(run, name, "stap:tcp_add_backlog_return")
        assert host["module"]["how"] == "built on controller"
    assert run.host("g_nosource")["module"]["sha256"] == run.host("g_runtime")["module"]["sha256"]
    assert leftovers(suite_guest) == ""


def test_counters_count_exactly_without_tracing(lab_fleet: LabFleet, suite_guest: GuestVM, tmp_path: Path) -> None:
    path = inventory(lab_fleet, suite_guest, tmp_path / "inventory.yml", "full")
    run: GuestCollect = collect_during_drops(lab_fleet, suite_guest, path, "counters", tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    host = run.host("g_full")
    assert host["status"] == "ok" and host["probe"].startswith("counters")
    assert host["counters"]["TCPBacklogDrop"] == run.generated.drops > 0
    assert host["fidelity"] == "sampled"
    assert leftovers(suite_guest) == ""
