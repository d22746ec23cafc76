"""Armed and held windows choose and fall back between tracers through one code path.

This machine stands in for a host that has only systemtap-runtime (its detection is made to say
so; everything else is real: the local transport, the arm keeper, the counters window). Such a
host can neither build its module nor, with no builder in the run, receive one: held mode falls
back to counters, and armed mode (collect's and the Ansible arm task's) must do exactly the same.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fleetdiag import ansible_armed, armed_sweep, collector
from fleetdiag.armed_fetch import finish
from fleetdiag.armed_sweep import ArmedHost, ArmOptions, arm_fleet, armed_document, armed_from_document
from fleetdiag.collector import Detection, collect_host
from fleetdiag.history import ResultsStore
from fleetdiag.history.pending import load_pending, save_pending
from fleetdiag.interrupt import StopRequest
from fleetdiag.model import HostResult, HostSpec, ModuleOrigin, StapModule, Status, Verdict, Window
from fleetdiag.module_builds import ModuleBuilds, ModuleCache
from fleetdiag.sweep import SweepOptions
from fleetdiag.tracers import systemtap
from fleetdiag.transport import SshOptions
from fleetdiag.transport.ansible_connection import AnsibleTransport
from fleetdiag.transport.local import LocalTransport

LOCAL = HostSpec(name="here", address="localhost", connection="local")
STAP_PROBE = "stap:tcp_add_backlog_statement"
FELL_BACK = f"{STAP_PROBE}: "


@pytest.fixture
def runtime_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's detection, seen as a systemtap-runtime-only host; windows' dirs in a TMPDIR of its own."""
    real = collector._detection_from

    def detection_from(result, wanted: str) -> Detection:
        seen = real(result, "counters")
        facts = replace(seen.facts, stap_version=None, staprun=True, kernel_headers=None, debuginfo=None)
        verdicts = {
            "bpftrace": Verdict(False, "not installed"),
            "bcc": Verdict(False, "not installed"),
            "stap": Verdict(True, "systemtap-runtime only: needs a module built elsewhere", STAP_PROBE),
            "counters": seen.verdicts["counters"],
        }
        return Detection(facts, systemtap, verdicts)

    for module in (collector, armed_sweep, ansible_armed):
        monkeypatch.setattr(module, "_detection_from", detection_from)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def assert_fell_back_to_counters(host: HostResult) -> None:
    assert host.status is Status.OK, host.error
    assert host.probe.startswith("counters"), host.probe
    assert host.notes[0].startswith(FELL_BACK) and host.notes[0].endswith(f"; fell back to {host.probe}"), host.notes
    assert "systemtap module" in host.notes[0]
    assert "TCPBacklogDrop" in host.counters


def sweep_options(tmp_path: Path) -> SweepOptions:
    return SweepOptions(window=Window(duration_s=1), tracer="auto", module_cache=tmp_path / "cache")


def held_sweep_host(tmp_path: Path) -> HostResult:
    """The host as a held sweep collects it (a sweep's module builds: nobody here can build)."""
    modules = ModuleBuilds(ModuleCache(tmp_path / "cache"))
    return collect_host(LOCAL, LocalTransport(), Window(duration_s=1), "auto", modules=modules)


def test_held_mode_falls_back_to_counters(runtime_only: Path) -> None:
    host = held_sweep_host(runtime_only)
    assert_fell_back_to_counters(host)
    assert "no host in this run can build a systemtap module" in host.notes[0]


def test_armed_mode_falls_back_exactly_as_held_mode(runtime_only: Path) -> None:
    held = held_sweep_host(runtime_only)
    stop = StopRequest()
    fleet = arm_fleet([LOCAL], sweep_options(runtime_only), ArmOptions(pickup_s=60), stop=stop)
    assert not fleet.failed, fleet.failed
    (armed,) = fleet.armed
    assert (armed.tracer, armed.module) == ("counters", None)
    (host,) = finish(fleet, SshOptions(), forks=1, wanted="auto", stop=stop).hosts
    assert_fell_back_to_counters(host)
    assert (host.probe, host.notes[0]) == (held.probe, held.notes[0])


def test_without_fallback_allowed_the_host_fails_saying_why(runtime_only: Path) -> None:
    options = replace(sweep_options(runtime_only), tracer="stap")
    fleet = arm_fleet([LOCAL], options, ArmOptions(pickup_s=60), stop=StopRequest())
    assert not fleet.armed
    host = fleet.failed["here"]
    assert host.status is Status.FAILED and "no host in this run can build a systemtap module" in host.error
    assert host.probe == STAP_PROBE
    assert [p.name for p in runtime_only.iterdir() if p.name != "cache"] == []  # nothing armed, nothing left


def local_execute(command: str, stdin: bytes) -> dict:
    """What Ansible's exec gives the arm task, here run on this machine."""
    done = subprocess.run(command, shell=True, input=stdin, capture_output=True, timeout=120, check=False)
    return {"rc": done.returncode, "stdout": done.stdout.decode(), "stderr": done.stderr.decode()}


def test_the_ansible_arm_task_falls_back_too(runtime_only: Path) -> None:
    transport = AnsibleTransport(local_execute)
    # An instant long past (the window starts at once), but not 0: plus a negative measured clock
    # offset that is a negative start, which the arm script refuses (it ended early, now and then).
    armed = ansible_armed.arm(LOCAL, transport, Window(duration_s=1), "auto", instant=lambda _s: 1.0)
    assert isinstance(armed, ArmedHost), armed
    # The arm task's result goes through Ansible as JSON, and the fetch task reads it back.
    document = json.loads(json.dumps(ansible_armed.armed_document(armed, 1)))
    back, duration, wanted, _port = ansible_armed.armed_from(document)
    assert back == armed and (duration, wanted) == (1, "auto")
    host = ansible_armed.fetch(back, duration, transport, wanted)
    assert_fell_back_to_counters(host)


def test_an_armed_systemtap_host_keeps_where_its_module_came_from(runtime_only: Path) -> None:
    """The module comes from the controller's cache; the window itself cannot load it here (no modules)."""
    options = sweep_options(runtime_only)
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=True).stdout.strip()
    module = StapModule(gzip.compress(b"\x7fELF not a real module"), kernel, "tcp_add_backlog_statement", "g01", 12.0)
    ModuleCache(options.module_cache).store(module)
    stop = StopRequest()
    fleet = arm_fleet([LOCAL], options, ArmOptions(pickup_s=60), stop=stop)
    assert not fleet.failed, fleet.failed
    (armed,) = fleet.armed
    assert armed.tracer == "stap"
    assert armed.module == ModuleOrigin("cache", "g01", module.sha256, 12.0)
    # A pending sweep's record keeps it too (fetch later, from another process).
    store = ResultsStore.open(runtime_only / "results")
    sweep_id = save_pending(store, fleet, SshOptions(), "auto", None, pickup_s=60)
    assert load_pending(store, sweep_id).fleet().armed == [armed]
    assert armed_from_document(LOCAL, json.loads(json.dumps(armed_document(armed)))) == armed
    (host,) = finish(fleet, SshOptions(), forks=1, wanted="auto", stop=stop).hosts
    # Whatever the window did (staprun cannot load a module on this kernel), the result says where it came from.
    assert host.module == armed.module
    assert "module from the controller's cache (built on g01)" in host.notes
    assert [p.name for p in runtime_only.iterdir() if p.name not in ("cache", "results")] == []
