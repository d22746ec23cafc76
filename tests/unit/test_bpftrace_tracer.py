"""The bpftrace backend: its verdicts, the script it deploys, and the parser of its output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import shutil

import pytest

from fleetdiag.model import Window
from fleetdiag.tracers import bpftrace, choose
from tests.unit.conftest import fixture_text
from fleetdiag.sections import split_sections


def test_plan_fills_host_numbers(facts_6_18):
    plan = bpftrace.plan(facts_6_18, Window(60))
    script = plan.files["probe.bt"]
    assert f"== {facts_6_18.netns}" in script
    assert "if ($r == 29)" in script
    assert "interval:s:60" in script
    assert "@@NETNS@@" not in script
    assert plan.env["BPFTRACE_MAP_KEYS_MAX"] == str(bpftrace.MAP_KEYS_MAX)


def test_parse_recorded_no_socket_drops(facts_6_18):
    out = split_sections(fixture_text("window/bpftrace-no-socket.stdout.txt"))["probe_out"]
    report = bpftrace.parse(out, facts_6_18)
    assert dict(report.drops) == {"NO_SOCKET": 6}
    assert len(report.flows) == 6
    assert {f.laddr for f in report.flows} == {"127.0.0.1", "::1"}
    assert all(f.lport == 9 and f.reason == "NO_SOCKET" for f in report.flows)
    assert all(f.rcvbuf is None for f in report.flows)
    assert report.flows_truncated is False


def test_parse_socket_state_and_truncation(facts_6_18):
    key = "4026532100,10.1.0.2,5201,10.1.0.3,40000,29"
    lines = [
        {"type": "map", "data": {"@drops": {key: 7}}},
        {"type": "map", "data": {"@total": {"29": 9, "3": 1}}},
        {"type": "map", "data": {"@sock": {key: [8192, 46080, 1]}}},
        {"type": "map", "data": {"@backlog": {key: 131072}}},
        {"type": "map", "data": {"@rmem": {key: 2048}}},
        {"type": "map", "data": {"@queue": {key: 133120}}},
    ]
    report = bpftrace.parse("\n".join(json.dumps(line) for line in lines), facts_6_18)
    (flow,) = report.flows
    assert (flow.laddr, flow.lport, flow.raddr, flow.rport) == ("10.1.0.2", 5201, "10.1.0.3", 40000)
    assert flow.reason == "SOCKET_BACKLOG"
    assert (flow.rcvbuf, flow.sndbuf, flow.userlocks) == (8192, 46080, 1)
    assert (flow.backlog_len_max, flow.rmem_alloc_max, flow.queue_max) == (131072, 2048, 133120)
    assert dict(report.drops) == {"NO_SOCKET": 1, "SOCKET_BACKLOG": 9}
    # 10 drops traced, 7 of them placed in a flow: the per-flow split is incomplete.
    assert report.flows_truncated is True


def test_unknown_reason_numbers_keep_their_number(facts_6_18):
    line = json.dumps({"type": "map", "data": {"@total": {"999": 2}}})
    assert dict(bpftrace.parse(line, facts_6_18).drops) == {"REASON_999": 2}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"bpftrace_version": None}, "bpftrace is not installed"),
        ({"uid": 1000}, "not root"),
        ({"btf": False}, "no BTF"),
        ({"kfree_skb_fields": ("skbaddr", "location", "protocol", "reason")}, "lacks rx_sk"),
        ({"drop_reasons": {}}, "no SOCKET_BACKLOG"),
    ],
)
def test_verdicts_say_why_not(facts_6_18, change, reason):
    facts = dataclasses.replace(facts_6_18, **change)
    verdict = bpftrace.verdict(facts)
    assert verdict.usable is False
    assert reason in verdict.reason
    tracer, verdicts = choose(facts)
    assert tracer.name == "counters"
    assert verdicts["bpftrace"].reason == verdict.reason


def test_auto_prefers_bpftrace(facts_6_18):
    tracer, verdicts = choose(facts_6_18)
    assert tracer.name == "bpftrace"
    assert verdicts["counters"].usable


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed here")
def test_probe_script_parses_with_real_bpftrace(facts_6_18, tmp_path):
    # `bpftrace -d` (0.17: "debug info dry run") parses, type-checks against BTF and
    # compiles without attaching anything.
    script = tmp_path / "probe.bt"
    script.write_text(bpftrace.plan(facts_6_18, Window(5)).files["probe.bt"])
    done = subprocess.run(["bpftrace", "-d", str(script)], capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line and "RLIMIT_MEMLOCK" not in line]
    assert done.returncode == 0 and not errors, done.stderr[-2000:]
