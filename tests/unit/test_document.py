"""The schema_version 1 document read back: the same Sweep, so a saved sweep re-renders as it printed."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from fleetdiag.collector import window_result
from fleetdiag.document import DocumentError, load_sweep, sweep_document
from fleetdiag.facts import parse_facts
from fleetdiag.model import HostResult, HostSpec, Status, Sweep
from fleetdiag.render import RENDERERS
from fleetdiag.tracers import bpftrace
from fleetdiag.transport.base import CommandResult
from tests.unit.conftest import fixture_text


def recorded_sweep() -> Sweep:
    """Two recorded bpftrace windows (real backlog drops; real NO_SOCKET drops) and a host that failed."""
    lab = parse_facts(fixture_text("detection/lab-6.18-netns/stdout.txt"))
    local = parse_facts(fixture_text("detection/debian12-6.18-bpftrace/stdout.txt"))
    backlog = window_result(HostSpec("h01", "10.213.0.2"), lab, bpftrace, "bpftrace:kfree_skb",
                            CommandResult(fixture_text("window/bpftrace-socket-backlog.stdout.txt"), "", 0))
    no_socket = window_result(HostSpec("h02", "127.0.0.1"), local, bpftrace, "bpftrace:kfree_skb",
                              CommandResult(fixture_text("window/bpftrace-no-socket.stdout.txt"), "", 0))
    down = HostResult("h04", "10.213.0.5", Status.UNREACHABLE, error="connection refused on port 22")
    return Sweep(datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=timezone.utc), 8, (backlog, no_socket, down))


def test_document_reads_back_into_the_same_sweep():
    sweep = recorded_sweep()
    document = json.loads(json.dumps(sweep_document(sweep)))
    assert load_sweep(document) == sweep


@pytest.mark.parametrize("output", ["table", "json", "jsonl", "prom"])
def test_every_output_re_renders_identically(output):
    sweep = recorded_sweep()
    again = load_sweep(json.loads(RENDERERS["json"](sweep)))
    assert RENDERERS[output](again) == RENDERERS[output](sweep)


def test_port_and_interruption_survive_the_round_trip():
    from dataclasses import replace

    sweep = replace(recorded_sweep(), port=5201, interrupted="SIGINT")
    again = load_sweep(json.loads(RENDERERS["json"](sweep)))
    assert (again.port, again.interrupted) == (5201, "SIGINT")


def test_unreadable_documents_name_the_problem():
    document = json.loads(RENDERERS["json"](recorded_sweep()))
    with pytest.raises(DocumentError, match=r"saved\.json: schema_version"):
        load_sweep({**document, "schema_version": 2}, source="saved.json")
    with pytest.raises(DocumentError, match=r"hosts\.0\.status"):
        load_sweep({**document, "hosts": [{**document["hosts"][0], "status": "asleep"}]})
    with pytest.raises(DocumentError, match="names host 'ghost'"):
        load_sweep({**document, "flows": [{**document["flows"][0], "host": "ghost"}]})


def test_fidelity_and_tracer_verdicts_survive_the_round_trip():
    from fleetdiag.model import Fidelity, FlowDrop, Verdict, frozen_map

    sampled = HostResult(
        "h05", "10.0.0.6", Status.OK, kernel="3.10.0-1160.el7.x86_64", probe="counters+ss",
        counters=frozen_map({"TCPBacklogDrop": 4}), fidelity=Fidelity.SAMPLED,
        flows=(FlowDrop("10.0.0.6", 80, "10.0.0.7", 5000, None, "SK_DROPS", 4, rcvbuf=87380),),
        tracers=frozen_map({"stap": Verdict(False, "no kernel-devel for 3.10.0-1160"), "counters": Verdict(True, "ss", "counters+ss")}),
    )
    sweep = Sweep(datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc), 30, (sampled,))
    again = load_sweep(json.loads(RENDERERS["json"](sweep)))
    assert again == sweep
    (host,) = json.loads(RENDERERS["json"](again))["hosts"]
    assert host["fidelity"] == "sampled" and host["reconciliation"] == []  # sampled, so nothing claims a trace
    assert [v["code"] for v in host["verdicts"]] == ["backlog_drops_counted"]
