"""Choosing a tracer per host: the preference order, --tracer, and the reason for every other tracer."""

from __future__ import annotations

import dataclasses

import pytest

from fleetdiag.cli.check import check_table
from fleetdiag.document import check_document
from fleetdiag.errors import UsageError
from fleetdiag.facts import parse_facts
from fleetdiag.model import HostCheck, Status
from fleetdiag.tracers import CHOICES, PREFERENCE, choose
from tests.unit.conftest import fixture_text


def detection(case: str):
    return parse_facts(fixture_text(f"detection/{case}/stdout.txt"))


# (fixture, chosen tracer, its probe, {other tracer: words its reason must hold})
CASES = [
    (
        "rhel7.9-3.10-stap",
        "stap",
        "stap:tcp_v4_rcv_statement",
        {
            "bpftrace": "bpftrace is not installed",
            "bcc": "no tcp_add_backlog on 3.10.0-1160.el7.x86_64 (sk_add_backlog is inline",
        },
    ),
    (
        "ubuntu20.04-5.4-bcc",
        "bcc",
        "bcc:kretprobe_tcp_add_backlog",
        {"bpftrace": "bpftrace is not installed", "stap": "systemtap (stap) is not installed"},
    ),
    (
        "ubuntu22.04-5.15-bpftrace",
        "bpftrace",
        "bpftrace:kretfunc_tcp_add_backlog",
        {"bcc": "bcc (its python bindings) is not installed", "stap": "systemtap (stap) is not installed"},
    ),
    (
        "debian12-6.18-all-facts",
        "bpftrace",
        "bpftrace:kfree_skb",
        {
            "bcc": "no kernel headers for 6.18.44-fc-v769",
            "stap": "6.18.44-fc-v769 cannot load modules",
        },
    ),
    (
        "debian10-4.19-nothing",
        "counters",
        "counters",
        {
            "bpftrace": "bpftrace is not installed",
            "bcc": "bcc (its python bindings) is not installed",
            "stap": "systemtap (stap) is not installed",
        },
    ),
]


@pytest.mark.parametrize("case, tracer, probe, reasons", CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_host_gets_its_best_probe_and_every_reason(case, tracer, probe, reasons):
    chosen, verdicts = choose(detection(case))
    assert chosen.name == tracer
    assert verdicts[tracer].usable and verdicts[tracer].probe == probe
    assert list(verdicts) == [t.name for t in PREFERENCE]
    for other, words in reasons.items():
        assert verdicts[other].usable is False
        assert words in verdicts[other].reason
    # Counters always work, and they say they are not traced events.
    assert verdicts["counters"].usable


def test_preference_is_best_fidelity_first_and_feeds_the_cli():
    assert [t.name for t in PREFERENCE] == ["bpftrace", "bcc", "stap", "counters"]
    assert CHOICES == ("auto", "bpftrace", "bcc", "stap", "counters")


def test_forcing_a_tracer_that_cannot_run_gives_none_with_its_reason():
    facts = detection("debian12-6.18-all-facts")
    tracer, verdicts = choose(facts, "bcc")
    assert tracer is None
    assert "no kernel headers" in verdicts["bcc"].reason
    assert choose(facts, "counters")[0].name == "counters"
    with pytest.raises(UsageError):
        choose(facts, "dtrace")


def test_stap_reasons_follow_what_the_kernel_refuses():
    rhel = detection("rhel7.9-3.10-stap")
    cases = [
        ({"modules": "disabled"}, "modules_disabled=1"),
        ({"lockdown": "integrity"}, "lockdown=integrity refuses unsigned modules"),
        ({"secure_boot": True}, "Secure Boot is on"),
        ({"kernel_symbols": frozenset({"tcp_v4_rcv"})}, "no kprobes"),
        ({"kernel_headers": None}, "no kernel-devel/headers for 3.10.0-1160.el7.x86_64"),
        ({"debuginfo": None}, "no debuginfo for 3.10.0-1160.el7.x86_64"),
        ({"backlogdrop_lines": {}, "kernel_source": None}, "no kernel source under /usr/src/debug"),
        ({"uid": 1000, "sudo": "passwordless"}, "passwordless sudo works: add -b/--become"),
    ]
    for change, words in cases:
        tracer, verdicts = choose(dataclasses.replace(rhel, **change))
        assert words in verdicts["stap"].reason, change
        assert tracer.name == "counters"


def test_bcc_and_bpftrace_need_struct_layouts():
    focal = detection("ubuntu20.04-5.4-bcc")
    assert "no kernel headers" in choose(dataclasses.replace(focal, kernel_headers=None))[1]["bcc"].reason
    with_bpftrace = dataclasses.replace(focal, bpftrace_version="0.9.4")
    # No BTF, but headers: bpftrace includes them, and it comes first.
    tracer, verdicts = choose(with_bpftrace)
    assert (tracer.name, verdicts["bpftrace"].probe) == ("bpftrace", "bpftrace:kretprobe_tcp_add_backlog")
    headerless = dataclasses.replace(with_bpftrace, kernel_headers=None)
    assert "no BTF" in choose(headerless)[1]["bpftrace"].reason


def test_the_reason_tier_takes_socket_backlog_from_tcp_add_backlog_where_it_can():
    jammy = detection("ubuntu22.04-5.15-bpftrace")
    reasons = {2: "NOT_SPECIFIED", 3: "NO_SOCKET", 20: "SOCKET_BACKLOG"}
    with_reasons = dataclasses.replace(
        jammy, kfree_skb_fields=("skbaddr", "location", "protocol", "reason"), drop_reasons=reasons
    )
    assert choose(with_reasons)[1]["bpftrace"].probe == "bpftrace:kfree_skb_headers+kretfunc"
    no_ftrace = dataclasses.replace(with_reasons, fentry_tcp_add_backlog=None)
    assert choose(no_ftrace)[1]["bpftrace"].probe == "bpftrace:kfree_skb_headers+kretprobe"
    neither = dataclasses.replace(no_ftrace, kernel_symbols=frozenset())
    verdict = choose(neither)[1]["bpftrace"]
    assert verdict.probe == "bpftrace:kfree_skb_headers" and "netns of late drops unknown" in verdict.reason


def test_check_output_names_every_verdict():
    _, verdicts = choose(detection("rhel7.9-3.10-stap"))
    ok = HostCheck("db1", "10.0.0.5", Status.OK, kernel="3.10.0-1160.el7.x86_64", tracers=verdicts,
                   tracer="stap", probe="stap:tcp_v4_rcv_statement")  # fmt: skip
    down = HostCheck("db2", "10.0.0.6", Status.UNREACHABLE, error="connection refused on port 22")
    doc = check_document([ok, down])
    first, second = doc["hosts"]
    assert (first["name"], first["kernel"], first["probe"]) == ("db1", "3.10.0-1160.el7.x86_64", "stap:tcp_v4_rcv_statement")
    assert first["tracers"]["bpftrace"] == {"usable": False, "reason": "bpftrace is not installed", "probe": None}
    assert first["tracers"]["stap"]["usable"] is True
    assert (second["status"], second["tracers"], second["probe"]) == ("unreachable", {}, None)
    table = check_table([ok, down])
    assert "bpftrace is not installed" in table and "chosen" in table and "connection refused" in table
