"""Compile once per kernel release: who builds, who waits, what every host hears, what is cached.

The transports are stand-ins that answer the build script with a recorded module or a recorded
failure; the build script itself runs for real in test_tracers_systemtap.py and on the guest.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import stat
import threading

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.module_builds import ModuleBuilds, ModuleCache, ModuleUnavailable
from fleetdiag.transport.base import CommandResult
from tests.unit.conftest import fixture_text

KO = b"\x7fELF module for 3.10" * 50


def builder_facts():
    return parse_facts(fixture_text("detection/rhel7.9-3.10-stap/stdout.txt"))


def runtime_facts():
    return dataclasses.replace(builder_facts(), stap_version=None, debuginfo=None, kernel_headers=None)


class BuildHost:
    """Answers the build script like a host whose compile succeeds (or fails with FAILURE)."""

    def __init__(self, failure: str | None = None, started: threading.Event | None = None, release: threading.Event | None = None):
        self.failure = failure
        self.builds = 0
        self.started, self.release = started, release

    def run(self, script: str, timeout: float, on_line=None) -> CommandResult:
        assert "-p4 -m fleetdiag_backlog" in script
        self.builds += 1
        if self.started is not None:
            self.started.set()
            assert self.release is not None and self.release.wait(10)
        if self.failure:
            return CommandResult(f"@@fleetdiag error\n{self.failure}\n", "", 3)
        return CommandResult("@@fleetdiag module\n" + base64.encodebytes(gzip.compress(KO)).decode(), "", 0)


class NoCommands:
    """A host that must not be asked to run anything."""

    def run(self, script, timeout, on_line=None):
        raise AssertionError("this host should have received the module, not run a command")


def in_thread(function, *args):
    box = {}

    def target():
        try:
            box["value"] = function(*args)
        except Exception as exc:  # the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def test_one_build_serves_every_host_of_the_release(tmp_path):
    builds = ModuleBuilds(ModuleCache(tmp_path))
    started, release = threading.Event(), threading.Event()
    builder = BuildHost(started=started, release=release)
    builds.announce("b1", builder_facts())
    builds.announce("r1", runtime_facts())  # cannot build: not a builder
    first, box1 = in_thread(builds.module_for, "b1", builder_facts(), builder)
    assert started.wait(10)
    second, box2 = in_thread(builds.module_for, "r1", runtime_facts(), NoCommands())
    release.set()
    first.join(30), second.join(30)
    assert "value" in box1 and "value" in box2, (box1, box2)
    module, origin = box1["value"]
    assert gzip.decompress(module.gzip_data) == KO and module.built_on == "b1"
    assert (origin.how, origin.built_on) == ("built here", "b1")
    shipped, origin2 = box2["value"]
    assert shipped is module
    assert (origin2.how, origin2.built_on) == ("shipped", "b1")
    assert "built on b1" in origin2.sentence() and "shipped" in origin2.sentence()
    assert builder.builds == 1


def test_a_failed_build_is_every_hosts_reason_and_is_not_retried(tmp_path):
    builds = ModuleBuilds(ModuleCache(tmp_path))
    failing = BuildHost("systemtap module build failed on 3.10.0-1160.el7.x86_64: semantic error: no match")
    other = BuildHost()
    for host in ("b1", "b2"):
        builds.announce(host, builder_facts())
    with pytest.raises(ModuleUnavailable, match="semantic error: no match.*on b1"):
        builds.module_for("b1", builder_facts(), failing)
    with pytest.raises(ModuleUnavailable, match="semantic error: no match.*on b1"):
        builds.module_for("b2", builder_facts(), other)
    with pytest.raises(ModuleUnavailable, match="semantic error"):
        builds.module_for("r1", runtime_facts(), NoCommands())
    assert (failing.builds, other.builds) == (1, 0)
    assert not list(tmp_path.rglob("*.ko.gz"))  # nothing cached from a failure


def test_without_any_builder_a_runtime_host_is_told_what_to_add(tmp_path):
    builds = ModuleBuilds(ModuleCache(tmp_path))
    with pytest.raises(ModuleUnavailable) as caught:
        builds.module_for("r1", runtime_facts(), NoCommands())
    assert "no host in this run can build a systemtap module for 3.10.0-1160.el7.x86_64" in str(caught.value)
    assert "devel and debuginfo" in caught.value.hint


def test_a_waiting_host_is_released_when_its_builder_withdraws(tmp_path):
    builds = ModuleBuilds(ModuleCache(tmp_path))
    builds.announce("b1", builder_facts())
    waiting, box = in_thread(builds.module_for, "r1", runtime_facts(), NoCommands())
    builds.withdraw("b1")  # e.g. b1 became unreachable before its window
    waiting.join(10)
    assert isinstance(box["error"], ModuleUnavailable)


def test_the_next_sweep_takes_the_module_from_the_controllers_cache(tmp_path):
    first = ModuleBuilds(ModuleCache(tmp_path))
    first.announce("b1", builder_facts())
    built, _ = first.module_for("b1", builder_facts(), BuildHost())
    (ko,) = tmp_path.rglob("*.ko.gz")
    assert ko.parent.name == "3.10.0-1160.el7.x86_64"
    assert stat.S_IMODE(ko.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "stap").stat().st_mode) == 0o700
    later = ModuleBuilds(ModuleCache(tmp_path))  # no builder at all this time
    module, origin = later.module_for("r1", runtime_facts(), NoCommands())
    assert module.gzip_data == built.gzip_data
    assert (origin.how, origin.built_on) == ("cache", "b1")
    # A corrupted cache entry is ignored, never shipped.
    ko.write_bytes(b"garbage")
    with pytest.raises(ModuleUnavailable):
        ModuleBuilds(ModuleCache(tmp_path)).module_for("r1", runtime_facts(), NoCommands())


def test_a_module_too_big_for_one_command_is_refused_with_its_size(tmp_path, monkeypatch):
    import fleetdiag.module_builds as module_builds

    monkeypatch.setattr(module_builds, "MAX_SHIPPED_CHARS", 10)
    builds = ModuleBuilds(ModuleCache(tmp_path))
    builds.announce("b1", builder_facts())
    with pytest.raises(ModuleUnavailable, match="more than fits in one remote command"):
        builds.module_for("b1", builder_facts(), BuildHost())
    with pytest.raises(ModuleUnavailable, match="more than fits"):
        builds.module_for("r1", runtime_facts(), NoCommands())
