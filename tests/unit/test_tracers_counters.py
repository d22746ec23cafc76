"""The counters backend: ss samples folded on the host, and what they may and may not claim."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest

from fleetdiag.collector import window_result
from fleetdiag.model import Fidelity, HostSpec, Status, Window
from fleetdiag.tracers import counters
from fleetdiag.transport.base import CommandResult
from fleetdiag.window_script import build_window_script
from tests.unit.conftest import FIXTURES, fixture_text


@pytest.fixture
def facts(facts_6_18):
    return dataclasses.replace(facts_6_18, tools=frozenset({"ss", "timeout"}))


def test_without_ss_only_counters_and_it_says_so(facts_6_18):
    plan = counters.plan(facts_6_18, Window(5))
    assert (plan.probe, plan.fidelity) == ("counters", Fidelity.COUNTERS)
    assert "only" in counters.verdict(facts_6_18).reason


def test_with_ss_the_plan_samples_sockets(facts):
    plan = counters.plan(facts, Window(600, port=5201))
    assert (plan.probe, plan.fidelity) == ("counters+ss", Fidelity.SAMPLED)
    script = plan.files["probe.sh"]
    assert "duration=600" in script and "interval=5" in script and "port=5201" in script
    assert "sampled, not traced" in counters.verdict(facts).reason


def test_parse_recorded_probe_output(facts):
    report = counters.parse(fixture_text("tracers/counters-ss.stdout.txt"), facts)
    (flow,) = report.flows
    assert (flow.laddr, flow.lport, flow.raddr, flow.rport) == ("127.0.0.1", 47011, "127.0.0.1", 53632)
    assert (flow.reason, flow.drops, flow.netns) == ("SK_DROPS", 5, facts.netns)
    assert (flow.rcvbuf, flow.sndbuf, flow.rmem_alloc_max, flow.backlog_len_max) == (8192, 3939840, 33573, 0)
    # Sampled socket counters never become traced drop reasons.
    assert dict(report.drops) == {}
    (note,) = report.notes
    assert "sampled" in note and "every 1 s" in note


@pytest.mark.parametrize("layout", ["ss-tanm", "ss-tanmO"])
def test_the_sampler_folds_real_ss_output(layout, tmp_path):
    """probes/counters_ss.sh run for real, with `ss` replaying two recorded samples (either layout)."""
    samples = [FIXTURES / "tracers" / f"{layout}-{when}.txt" for when in ("before", "after")]
    fake = tmp_path / "bin" / "ss"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {tmp_path}/calls 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/calls\n"
        f'if [ "$n" = 0 ]; then cat {samples[0]}; else cat {samples[1]}; fi\n'
    )
    fake.chmod(0o755)
    script = counters.plan(dataclasses.replace(_facts(), tools=frozenset({"ss"})), Window(1)).files["probe.sh"]
    (tmp_path / "probe.sh").write_text(script)
    done = subprocess.run(["sh", "probe.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = counters.parse(done.stdout, _facts())
    (flow,) = report.flows
    assert (flow.lport, flow.drops, flow.rcvbuf, flow.rmem_alloc_max) == (47011, 5, 8192, 33573)


def test_a_window_of_samples_is_reported_as_sampled(facts):
    stdout = (
        "@@fleetdiag window\n1.0 4.0 0\n@@fleetdiag counters_before\nTcpExt: TCPBacklogDrop\nTcpExt: 10\n"
        "@@fleetdiag counters_after\nTcpExt: TCPBacklogDrop\nTcpExt: 13\n@@fleetdiag probe_out\n"
        + fixture_text("tracers/counters-ss.stdout.txt")
    )
    plan = counters.plan(facts, Window(3))
    result = window_result(HostSpec("h1", "10.0.0.1"), facts, counters, plan.probe, CommandResult(stdout, "", 0), plan=plan)
    assert result.status is Status.OK
    assert result.fidelity is Fidelity.SAMPLED
    assert result.counters["TCPBacklogDrop"] == 3
    assert dict(result.drops) == {}
    assert any("sampled" in note for note in result.notes)


def test_window_script_carries_the_sampler(facts):
    plan = counters.plan(facts, Window(2))
    script = build_window_script(plan, 2)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert "timeout -s INT -k 2 12 sh probe.sh" in script


def _facts():
    from fleetdiag.facts import parse_facts

    return parse_facts(fixture_text("detection/debian12-6.18-all-facts/stdout.txt"))


def _fake_ss(tmp_path):
    """An ss that logs its arguments and the host's uptime, and prints one sample."""
    sample = FIXTURES / "tracers" / "ss-tanm-before.txt"
    fake = tmp_path / "bin" / "ss"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nread -r up _ </proc/uptime\necho "$up $*" >> {tmp_path}/calls\ncat {sample}\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}


def _uptime_cs() -> int:
    with open("/proc/uptime") as f:
        return round(float(f.read().split()[0]) * 100)


def test_the_sampler_keeps_to_the_window_it_was_started_in(tmp_path):
    """Samples on the window's clock: at its start, each interval, and its end, which comes
    from FLEETDIAG_WINDOW_START_CS (when the window script opened it), not from the sampler's start."""
    env = _fake_ss(tmp_path)
    script = counters.plan(dataclasses.replace(_facts(), tools=frozenset({"ss"})), Window(3)).files["probe.sh"]
    (tmp_path / "probe.sh").write_text(script)
    opened = _uptime_cs() - 100  # the window opened a second ago
    done = subprocess.run(["sh", "probe.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={**env, "FLEETDIAG_WINDOW_START_CS": str(opened)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("@@window_end")
    times = [round(float(line.split()[0]) * 100) for line in (tmp_path / "calls").read_text().splitlines()]
    # At once (a second late), then at 2 s and at 3 s after the window opened: not 3 s after the sampler started.
    assert len(times) == 3, times
    assert [t - opened for t in times[1:]] == pytest.approx([200, 300], abs=15)


@pytest.mark.parametrize(("sockstat6", "families"), [
    ("TCP6: inuse 0\nUDP6: inuse 2\n", "-4 -tanm"),  # no IPv6 TCP socket: skip that family's walk
    ("TCP6: inuse 3\nUDP6: inuse 0\n", "-tanm"),
    (None, "-4 -tanm"),  # no IPv6 in this kernel at all
])  # fmt: skip
def test_the_sampler_asks_ss_only_for_the_families_in_use(tmp_path, sockstat6, families):
    env = _fake_ss(tmp_path)
    path = tmp_path / "sockstat6"
    if sockstat6 is not None:
        path.write_text(sockstat6)
    script = counters.plan(dataclasses.replace(_facts(), tools=frozenset({"ss"})), Window(1)).files["probe.sh"]
    assert "/proc/net/sockstat6" in script
    (tmp_path / "probe.sh").write_text(script.replace("/proc/net/sockstat6", str(path)))
    done = subprocess.run(["sh", "probe.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls and all(line.split(" ", 1)[1] == families for line in calls), calls
