"""What the collector does with tracers: verdicts on every result, fidelity, and honest notes."""

from __future__ import annotations

import dataclasses
import json

from fleetdiag.collector import check_host, collect_host, window_result
from fleetdiag.model import Fidelity, HostSpec, Status, Window
from fleetdiag.tracers import bpftrace, verdicts
from fleetdiag.transport.base import CommandResult
from tests.unit.conftest import fixture_text

SPEC = HostSpec(name="db1", address="10.0.0.5")


class RecordedHost:
    """A transport that answers the detection script with recorded output."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.scripts: list[str] = []

    def run(self, script: str, timeout: float) -> CommandResult:
        self.scripts.append(script)
        return CommandResult(self.stdout, "", 0)

    def close(self) -> None:
        pass


def test_check_detects_in_one_round_trip_and_runs_nothing():
    host = RecordedHost(fixture_text("detection/rhel7.9-3.10-stap/stdout.txt"))
    check = check_host(SPEC, host)
    assert len(host.scripts) == 1
    assert (check.status, check.kernel, check.tracer, check.probe) == (
        Status.OK, "3.10.0-1160.el7.x86_64", "stap", "stap:tcp_v4_rcv_statement")  # fmt: skip
    assert check.os_name == "Red Hat Enterprise Linux Server 7.9 (Maipo)"
    assert list(check.tracers) == ["bpftrace", "bcc", "stap", "counters"]


def test_check_with_a_forced_tracer_that_cannot_run_fails_the_host():
    check = check_host(SPEC, RecordedHost(fixture_text("detection/rhel7.9-3.10-stap/stdout.txt")), "bpftrace")
    assert check.status is Status.FAILED and check.probe is None
    assert check.error == "tracer bpftrace cannot run here: bpftrace is not installed"


def _window(probe_out: str, before: int, after: int) -> str:
    return (
        f"@@fleetdiag window\n1.0 6.0 0\n@@fleetdiag counters_before\nTcpExt: TCPBacklogDrop\nTcpExt: {before}\n"
        f"@@fleetdiag counters_after\nTcpExt: TCPBacklogDrop\nTcpExt: {after}\n@@fleetdiag probe_out\n{probe_out}\n"
    )


def test_results_carry_fidelity_every_verdict_and_what_the_probe_could_not_see(facts_6_18):
    facts = dataclasses.replace(facts_6_18, kfree_skb_fields=("skbaddr", "location", "protocol", "reason"))
    plan = bpftrace.plan(facts, Window(5))
    assert plan.probe == "bpftrace:kfree_skb_headers"
    drops = {"0,10.0.0.5,80,10.0.0.9,4000,29": 4}  # a backlog drop after the lookup: no namespace
    probe_out = "@@attached\n" + "\n".join(
        json.dumps({"type": "map", "data": data}) for data in ({"@total": {"29": 4}}, {"@drops": drops})
    )
    result = window_result(SPEC, facts, bpftrace, plan.probe, CommandResult(_window(probe_out, 100, 104), "", 0),
                           plan=plan, verdicts=verdicts(facts))  # fmt: skip
    assert result.status is Status.OK
    assert result.fidelity is Fidelity.TRACED
    assert list(result.tracers) == ["bpftrace", "bcc", "stap", "counters"]
    assert result.tracers["bpftrace"].probe == "bpftrace:kfree_skb_headers"
    assert result.flows[0].netns is None
    assert any("network namespace is unknown" in note for note in result.notes)
    assert result.counters["TCPBacklogDrop"] == 4


class ScriptedHost:
    """A transport answering each script in turn with the next recorded stdout."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.scripts: list[str] = []

    def run(self, script: str, timeout: float, on_line=None) -> CommandResult:
        self.scripts.append(script)
        return CommandResult(self.answers.pop(0), "", 0)

    def close(self) -> None:
        pass


NEVER_ATTACHED = (
    "@@fleetdiag window\n1.0 2.0 1\n@@fleetdiag probe_out\n@@fleetdiag probe_err\n"
    "ERROR: Could not resolve symbol: /proc/self/exe:BEGIN_trigger\n"
)


def test_auto_falls_back_when_the_chosen_probe_does_not_start():
    detection_out = fixture_text("detection/debian12-6.18-all-facts/stdout.txt")
    counters_out = _window(fixture_text("tracers/counters-ss.stdout.txt"), 7, 9)
    host = ScriptedHost(detection_out, NEVER_ATTACHED, counters_out)
    result = collect_host(SPEC, host, Window(3))
    assert result.status is Status.OK
    assert (result.probe, result.fidelity) == ("counters+ss", Fidelity.SAMPLED)
    assert result.notes[0] == (
        "bpftrace:kfree_skb: bpftrace did not start: "
        "ERROR: Could not resolve symbol: /proc/self/exe:BEGIN_trigger; fell back to counters+ss"
    )
    assert "sh probe.sh" in host.scripts[2]  # the second window ran the sampler


def test_a_forced_tracer_that_does_not_start_fails_without_fallback():
    host = ScriptedHost(fixture_text("detection/debian12-6.18-all-facts/stdout.txt"), NEVER_ATTACHED)
    result = collect_host(SPEC, host, Window(3), "bpftrace")
    assert result.status is Status.FAILED
    assert result.error.startswith("bpftrace did not start")
    assert len(host.scripts) == 2


def test_a_stop_request_is_not_followed_by_a_fallback_window():
    from fleetdiag.errors import HostError

    calls = []

    def before_window():
        calls.append(1)
        if len(calls) > 1:
            raise HostError("interrupted by SIGINT before the window started")

    host = ScriptedHost(fixture_text("detection/debian12-6.18-all-facts/stdout.txt"), NEVER_ATTACHED)
    result = collect_host(SPEC, host, Window(3), before_window=before_window)
    assert result.status is Status.FAILED and result.error.startswith("interrupted by SIGINT")
    assert len(host.scripts) == 2  # detection and the one window; no counters window after the stop
