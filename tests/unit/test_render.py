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
