"""Renderers and exit codes, fed one model."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from fleetdiag.exit_status import ExitStatus, sweep_exit_status
from fleetdiag.model import FlowDrop, HostResult, Status, Sweep, frozen_map
from fleetdiag.render import json_doc, table

FLOW = FlowDrop("10.1.0.2", 5201, "10.1.0.3", 40000, 4026532100, "SOCKET_BACKLOG", 12,
                rcvbuf=8192, sndbuf=46080, backlog_len_max=131072, rmem_alloc_max=4096, queue_max=133120, userlocks=1)
OK = HostResult("h01", "10.1.0.2", Status.OK, kernel="5.10.0-26-amd64", probe="bpftrace:kfree_skb",
                drops=frozen_map({"SOCKET_BACKLOG": 12}), counters=frozen_map({"TCPBacklogDrop": 12}), flows=(FLOW,))
QUIET = HostResult("h02", "10.1.0.3", Status.OK, kernel="6.18.44", probe="bpftrace:kfree_skb",
                   counters=frozen_map({"TCPBacklogDrop": 0}))
DOWN = HostResult("h04", "10.1.0.5", Status.UNREACHABLE, error="connection refused on port 22")


def sweep(*hosts):
    return Sweep(datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc), 60, hosts)


def test_json_schema_v1():
    doc = json.loads(json_doc.render(sweep(OK, QUIET, DOWN)))
    assert doc["schema_version"] == 1
    assert doc["started_at"] == "2026-11-26T08:00:00Z"
    assert [h["status"] for h in doc["hosts"]] == ["ok", "ok", "unreachable"]
    assert doc["hosts"][2]["error"] == "connection refused on port 22"
    assert doc["hosts"][0]["counters"] == {"TCPBacklogDrop": 12}
    (flow,) = doc["flows"]
    assert flow["host"] == "h01" and flow["reason"] == "SOCKET_BACKLOG" and flow["drops"] == 12
    assert flow["rcvbuf"] == 8192 and flow["backlog_len_max"] == 131072 and flow["rmem_alloc_max"] == 4096
    # 5.10: rcvbuf + sndbuf + 64K
    assert flow["backlog_limit"] == 8192 + 46080 + 65536


def test_uncaptured_state_is_absent_not_null():
    bare = HostResult("h", "a", Status.OK, flows=(FlowDrop("::1", 9, "::1", 5, 1, "NO_SOCKET", 1),))
    (flow,) = json.loads(json_doc.render(sweep(bare)))["flows"]
    assert "rcvbuf" not in flow and "backlog_limit" not in flow


def test_table_keeps_kernel_versions_as_written():
    text = table.render(sweep(HostResult("h", "a", Status.OK, kernel="5.10")))
    assert " 5.10 " in text
    assert "No dropping TCP flows" in text


def test_table_shows_flow_and_limit():
    text = table.render(sweep(OK, DOWN))
    assert "10.1.0.2:5201" in text and "SOCKET_BACKLOG" in text
    assert "130.0K / 117.0K" in text
    assert "connection refused on port 22" in text


def test_exit_codes():
    assert sweep_exit_status(sweep(OK, QUIET)) is ExitStatus.OK
    assert sweep_exit_status(sweep(OK, DOWN)) is ExitStatus.PARTIAL
    assert sweep_exit_status(sweep(DOWN)) is ExitStatus.NOTHING
    assert int(ExitStatus.PARTIAL) == 3


def test_host_row_names_the_busiest_reasons():
    drops = frozen_map({"TCP_OLD_DATA": 918, "SOCKET_BACKLOG": 5, "PROTO_MEM": 14, "NO_SOCKET": 1})
    (row,) = table.host_rows(sweep(HostResult("h", "a", Status.OK, drops=drops)))
    assert row[4] == "TCP_OLD_DATA 918, PROTO_MEM 14, SOCKET_BACKLOG 5 (+1 more)"


def test_json_carries_verdicts_and_reconciliation():
    doc = json.loads(json_doc.render(sweep(OK, QUIET, DOWN)))
    (flow,) = doc["flows"]
    assert "over_backlog_limit" in [v["code"] for v in flow["verdicts"]]
    for verdict in flow["verdicts"]:
        assert set(verdict) == {"code", "title", "summary", "evidence", "next_step"} and verdict["evidence"]
    (rec,) = doc["hosts"][0]["reconciliation"]  # TCPZeroWindowDrop was not reported, so not reconciled
    assert rec == {"reason": "SOCKET_BACKLOG", "counter": "TCPBacklogDrop", "traced": 12, "counted": 12,
                   "missed": 0, "coverage_pct": 100.0, "port": None,
                   "recursion_misses": None, "within_misses": None, "exact": True}
    assert doc["hosts"][2]["verdicts"] == [] and doc["hosts"][2]["reconciliation"] == []


def test_table_shows_verdicts_coverage_and_companion_counters():
    counters = frozen_map({"TCPBacklogDrop": 20, "PruneCalled": 4, "RcvPruned": 0})
    host = HostResult("h01", "10.1.0.2", Status.OK, kernel="5.10.0-26-amd64", probe="bpftrace:kfree_skb",
                      drops=frozen_map({"SOCKET_BACKLOG": 12}), counters=counters, flows=(FLOW,))
    text = table.render(sweep(host))
    assert "60% (8 missed)" in text  # 12 traced of 20 counted
    assert "over_backlog_limit" in text and "Diagnosis" in text and "next step:" in text
    assert "PruneCalled" in text


def test_jsonl_one_record_per_host_and_flow_then_the_sweep():
    from fleetdiag.render import jsonl

    lines = jsonl.render(sweep(OK, QUIET, DOWN)).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["record"] for r in records] == ["host", "flow", "host", "host", "sweep"]
    assert records[1]["host"] == "h01" and records[1]["verdicts"]
    assert records[-1]["hosts"] == {"ok": 2, "unreachable": 1, "failed": 0} and records[-1]["drops"] == 12


def test_prom_text_parses_and_keeps_flows_out_of_labels():
    from prometheus_client.parser import text_string_to_metric_families

    from fleetdiag.render import prom

    families = {f.name: f for f in text_string_to_metric_families(prom.render(sweep(OK, QUIET, DOWN)))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("fleetdiag_host_drops", (("host", "h01"), ("reason", "SOCKET_BACKLOG")))] == 12
    assert samples[("fleetdiag_host_up", (("host", "h04"),))] == 0
    assert samples[("fleetdiag_host_trace_coverage_ratio", (("host", "h01"), ("reason", "SOCKET_BACKLOG")))] == 1.0
    assert samples[("fleetdiag_sweep_hosts", (("status", "unreachable"),))] == 1
    labels = {name for f in families.values() for s in f.samples for name in s.labels}
    assert labels <= {"host", "reason", "counter", "code", "status"}
    assert all(s.timestamp is None for f in families.values() for s in f.samples)


def test_prom_file_is_replaced_atomically(tmp_path):
    from fleetdiag.render import prom

    target = tmp_path / "fleetdiag.prom"
    target.write_text("old\n")
    prom.write_prom_file(sweep(OK), str(target))
    assert target.read_text().startswith("# HELP") and [p.name for p in tmp_path.iterdir()] == ["fleetdiag.prom"]


def test_exit_status_precedence_with_fail_on_drops():
    from dataclasses import replace

    assert sweep_exit_status(sweep(OK, QUIET), fail_on_drops=12) is ExitStatus.DROPS
    assert sweep_exit_status(sweep(OK, QUIET), fail_on_drops=13) is ExitStatus.OK
    assert sweep_exit_status(sweep(OK, DOWN), fail_on_drops=1) is ExitStatus.DROPS  # the question asked wins over 3
    assert sweep_exit_status(sweep(DOWN), fail_on_drops=1) is ExitStatus.NOTHING
    assert sweep_exit_status(replace(sweep(OK), interrupted="SIGINT"), fail_on_drops=1) is ExitStatus.INTERRUPTED
    assert (int(ExitStatus.DROPS), int(ExitStatus.LOCKED)) == (5, 6)
