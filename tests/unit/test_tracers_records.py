"""The record lines the bcc, systemtap and counters probes print, and how they are read."""

from __future__ import annotations

from fleetdiag.tracers.records import parse_records, reason_name


def test_reasons_by_number_name_or_alias(facts_6_18):
    assert reason_name("29", facts_6_18.drop_reasons) == "SOCKET_BACKLOG"
    assert reason_name("65535", {}, {65535: "SOCKET_BACKLOG"}) == "SOCKET_BACKLOG"
    assert reason_name("SK_DROPS", facts_6_18.drop_reasons) == "SK_DROPS"
    assert reason_name("4242", {}) == "REASON_4242"


def test_stray_and_broken_lines_are_skipped(facts_6_18):
    out = "\n".join([
        "Attaching 3 probes...",
        "total 29 5",
        "total 29 x",
        "flow - 10.0.0.1 80 10.0.0.2 5000 29 5 - - - - - -",
        "flow - 10.0.0.1 eighty 10.0.0.2 5000 29 5 - - - - - -",
        "flow 0 10.0.0.1 80 10.0.0.2 5001 3 0 - - - - - -",
        "flow short line",
        "overflow 2",
    ])  # fmt: skip
    report = parse_records(out, facts_6_18)
    assert dict(report.drops) == {"SOCKET_BACKLOG": 5}
    (flow,) = report.flows  # the zero-drop flow and the broken ones are gone
    assert (flow.netns, flow.reason, flow.rcvbuf) == (facts_6_18.netns, "SOCKET_BACKLOG", None)
    assert report.flows_truncated is True  # the probe said 2 drops did not fit in its flow map


def test_netns_zero_means_unknown(facts_6_18):
    report = parse_records("total 3 1\nflow 0 ::1 80 ::1 5000 3 1 - - - - - -\n", facts_6_18)
    assert report.flows[0].netns is None
