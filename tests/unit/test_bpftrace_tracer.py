"""The bpftrace backend: its tiers, the scripts it deploys, and the parser of its output."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest

from fleetdiag.model import Window
from fleetdiag.sections import split_sections
from fleetdiag.tracers import bpftrace, choose
from tests.unit.conftest import fixture_text

NO_RX_SK = ("skbaddr", "location", "protocol", "reason")
NO_REASON = ("skbaddr", "location", "protocol")


def tiers(facts):
    """The same host seen as each tier's kernel: {expected probe name: facts}."""
    kprobes = frozenset({"tcp_add_backlog", "register_kprobe"})
    return {
        "bpftrace:kfree_skb": facts,
        "bpftrace:kfree_skb_headers": dataclasses.replace(facts, kfree_skb_fields=NO_RX_SK, kernel_symbols=frozenset()),
        "bpftrace:kfree_skb_headers+kretprobe": dataclasses.replace(facts, kfree_skb_fields=NO_RX_SK, kernel_symbols=kprobes),
        "bpftrace:kfree_skb_headers+kretfunc": dataclasses.replace(
            facts, kfree_skb_fields=NO_RX_SK, kernel_symbols=kprobes, fentry_tcp_add_backlog=True
        ),
        "bpftrace:kretprobe_tcp_add_backlog": dataclasses.replace(
            facts, kfree_skb_fields=NO_REASON, drop_reasons={}, kernel_symbols=kprobes
        ),
        "bpftrace:kretfunc_tcp_add_backlog": dataclasses.replace(
            facts, kfree_skb_fields=NO_REASON, drop_reasons={}, kernel_symbols=kprobes, fentry_tcp_add_backlog=True
        ),
    }


def test_plan_fills_host_numbers(facts_6_18):
    plan = bpftrace.plan(facts_6_18, Window(60))
    script = plan.files["probe.bt"]
    assert plan.probe == "bpftrace:kfree_skb"
    assert f"== {facts_6_18.netns}" in script
    assert "if ($r == 29)" in script
    assert "interval:s:62" in script  # a backstop: the host stops it at 60 s, after reading its programs' stats
    assert plan.reads_stats
    assert "if (0 == 0 ||" in script  # no --port: every flow
    assert "@@" + "NETNS@@" not in script
    assert plan.env["BPFTRACE_MAP_KEYS_MAX"] == str(bpftrace.MAP_KEYS_MAX)


ALL_TIERS = [
    "bpftrace:kfree_skb", "bpftrace:kfree_skb_headers", "bpftrace:kfree_skb_headers+kretprobe",
    "bpftrace:kfree_skb_headers+kretfunc", "bpftrace:kretprobe_tcp_add_backlog", "bpftrace:kretfunc_tcp_add_backlog",
]  # fmt: skip


@pytest.mark.parametrize("probe", ALL_TIERS)
def test_every_tier_fills_the_port_and_the_host(facts_6_18, probe):
    facts = tiers(facts_6_18)[probe]
    assert bpftrace.verdict(facts).probe == probe
    plan = bpftrace.plan(facts, Window(5, port=5201))
    script = plan.files["probe.bt"]
    assert plan.probe == probe
    assert "@@" not in script.replace("@@attached", "").replace("@@window_end", "")
    assert "5201 ||" in script or "== 5201" in script
    assert str(facts.netns) in script and "interval:s:7" in script  # 5 s window + the stats grace
    # The companion probe takes SOCKET_BACKLOG, so kfree_skb must leave it alone, and only then.
    companion = "+" in probe
    assert ("!(1 == 1 && args->reason == 29)" in script) is companion
    if probe.endswith("tcp_add_backlog"):
        assert f"$r = {bpftrace.BACKLOG_SENTINEL};" in script  # no reason table on such kernels
    if "kretprobe" in probe:
        assert "(retval & 0xff) != 0" in script  # a bool return: only the low byte counts


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("probe", ALL_TIERS)
def test_the_window_opens_from_the_last_probe_attached(facts_6_18, probe, follow):
    """bpftrace attaches probes in the script's order after BEGIN: @@attached must come from the last one."""
    script = bpftrace.plan(tiers(facts_6_18)[probe], Window(5, follow=follow)).files["probe.bt"]
    begin = script[script.index("BEGIN"):script.index("}", script.index("BEGIN"))]
    assert "@@attached" not in begin and "@t0 = nsecs" in begin
    assert script.count("@@attached") == 1
    last_probe = script.rstrip().rsplit("\ninterval:", 1)[1]
    assert last_probe.startswith("ms:20") and "@@attached" in last_probe and "@t0 = nsecs" in last_probe


def test_without_btf_the_headers_are_included(facts_6_18):
    facts = dataclasses.replace(facts_6_18, btf=False, kernel_headers="build")
    script = bpftrace.plan(facts, Window(5)).files["probe.bt"]
    assert script.startswith("#include <linux/skbuff.h>")
    assert "#include <net/sock.h>" in script


def test_parse_recorded_no_socket_drops(facts_6_18):
    out = split_sections(fixture_text("window/bpftrace-no-socket.stdout.txt"))["probe_out"]
    report = bpftrace.parse(out, facts_6_18)
    assert dict(report.drops) == {"NO_SOCKET": 6}
    assert len(report.flows) == 6
    assert {f.laddr for f in report.flows} == {"127.0.0.1", "::1"}
    assert all(f.lport == 9 and f.reason == "NO_SOCKET" for f in report.flows)
    assert all(f.rcvbuf is None for f in report.flows)
    assert report.flows_truncated is False
    assert report.notes == ()


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


def test_drops_without_a_namespace_are_flagged_not_hidden(facts_6_18):
    # The kfree_skb_headers tier keys drops after the socket lookup (no skb->dev) with netns 0.
    lines = [
        {"type": "map", "data": {"@total": {"33": 4, "65535": 2}}},
        {"type": "map", "data": {"@drops": {"0,10.1.0.2,5201,10.1.0.3,40000,33": 4,
                                            "4026532100,10.1.0.2,5201,10.1.0.3,40000,65535": 2}}},
    ]  # fmt: skip
    report = bpftrace.parse("\n".join(json.dumps(line) for line in lines), facts_6_18)
    unknown = [f for f in report.flows if f.netns is None]
    assert [(f.reason, f.drops) for f in unknown] == [("TCP_OLD_DATA", 4)]
    assert dict(report.drops) == {"SOCKET_BACKLOG": 2, "TCP_OLD_DATA": 4}  # the sentinel is a backlog drop
    (note,) = report.notes
    assert note.startswith("4 drops came after the socket lookup")


def test_unknown_reason_numbers_keep_their_number(facts_6_18):
    line = json.dumps({"type": "map", "data": {"@total": {"999": 2}}})
    assert dict(bpftrace.parse(line, facts_6_18).drops) == {"REASON_999": 2}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"bpftrace_version": None}, "bpftrace is not installed"),
        ({"uid": 1000}, "not root"),
        ({"btf": False}, "no BTF"),
        ({"lockdown": "confidentiality"}, "lockdown=confidentiality"),
        ({"kfree_skb_fields": NO_REASON, "kernel_symbols": frozenset()}, "no tcp_add_backlog"),
        ({"drop_reasons": {}, "kernel_symbols": frozenset({"tcp_add_backlog"})}, "neither kretfunc nor kprobes"),
    ],
)
def test_verdicts_say_why_not(facts_6_18, change, reason):
    facts = dataclasses.replace(facts_6_18, **change)
    verdict = bpftrace.verdict(facts)
    assert verdict.usable is False and verdict.probe is None
    assert reason in verdict.reason
    tracer, verdicts = choose(facts)
    assert tracer.name == "counters"
    assert verdicts["bpftrace"].reason == verdict.reason


def test_auto_prefers_bpftrace(facts_6_18):
    tracer, verdicts = choose(facts_6_18)
    assert tracer.name == "bpftrace"
    assert verdicts["counters"].usable


def _dry_run(script: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "probe.bt"
    path.write_text(script)
    return subprocess.run(["bpftrace", "-d", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed here")
@pytest.mark.parametrize(
    "probe",
    ["bpftrace:kfree_skb", "bpftrace:kfree_skb_headers", "bpftrace:kfree_skb_headers+kretprobe",
     "bpftrace:kretprobe_tcp_add_backlog"],
)  # fmt: skip
def test_tier_scripts_parse_with_real_bpftrace(facts_6_18, probe, tmp_path):
    # `bpftrace -d` (0.17: "debug info dry run") parses, type-checks against BTF and
    # compiles without attaching anything. The kretfunc tiers are not here: bpftrace
    # refuses kfunc without a readable available_filter_functions, which this kernel denies.
    done = _dry_run(bpftrace.plan(tiers(facts_6_18)[probe], Window(5, port=5201)).files["probe.bt"], tmp_path)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line and "RLIMIT_MEMLOCK" not in line]
    assert done.returncode == 0 and not errors, done.stderr[-2000:]


@pytest.mark.parametrize("version", ["0.21.0", "0.23.2", "v0.17.0", "0.20.4"])
def test_kfree_skb_attaches_as_a_raw_tracepoint_where_bpftrace_can(facts_6_18, version):
    """Issue 19: bpftrace 0.21+ has rawtracepoint:, whose program has its own recursion guard; the
    verdict says which attach fits, and the raw script reads the tracepoint's fields as its arguments."""
    facts = dataclasses.replace(facts_6_18, bpftrace_version=version)
    raw = bpftrace.bpftrace_version(facts) >= (0, 21)
    text = bpftrace.plan(facts, Window(5)).files["probe.bt"]
    reason = bpftrace.verdict(facts).reason
    assert reason.endswith(", kfree_skb as a raw tracepoint (per-program recursion guard)" if raw
                           else ", kfree_skb as a tracepoint (raw tracepoints need bpftrace 0.21)")  # fmt: skip
    assert ("rawtracepoint:kfree_skb" in text) is raw and ("tracepoint:skb:kfree_skb" in text) is not raw
    if raw:
        assert "args" not in text.replace("arg0", "").replace("arg2", "").replace("arg3", "")
        assert "(struct sock *)arg3" in text and "$r = arg2;" in text and "->protocol == 0x0008" in text
    # The headers tier (5.18-6.10) keeps the tracepoint: its raw form has not run on a real kernel.
    headers = dataclasses.replace(facts, kfree_skb_fields=NO_RX_SK, kernel_symbols=frozenset())
    assert "tracepoint:skb:kfree_skb" in bpftrace.plan(headers, Window(5)).files["probe.bt"]


def test_a_tracepoint_field_with_no_raw_argument_is_refused():
    with pytest.raises(ValueError, match="no raw tracepoint argument"):
        bpftrace.raw_tracepoint_text("tracepoint:skb:kfree_skb { @l[args->location] = count(); }")
