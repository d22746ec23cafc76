"""JSON Lines: one record per host and per flow, then one for the sweep; streamable as hosts finish.

Every record has ``record`` ("host", "flow" or "sweep"); host and flow records carry
the same fields as the JSON document's ``hosts[]`` and ``flows[]``. The sweep record
comes last, since only then are its start time and totals known.
"""

from __future__ import annotations

import json
from typing import Any

from fleetdiag.diagnosis import drops_seen
from fleetdiag.document import SCHEMA_VERSION, flow_document, format_time, host_document
from fleetdiag.model import HostResult, Status, Sweep

# The timeline stays in the JSON document and the saved sweep: records stay one short line each.
_DOCUMENT_ONLY = ("timeline", "activity", "groups")


def _without_timeline(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _DOCUMENT_ONLY}


def host_records(host: HostResult, port: int | None = None) -> list[dict[str, Any]]:
    """The host's record followed by one record per flow."""
    records = [{"record": "host", **_without_timeline(host_document(host, port))}]
    records += [{"record": "flow", **_without_timeline(flow_document(host, flow))} for flow in host.flows]
    return records


def sweep_record(sweep: Sweep) -> dict[str, Any]:
    """The closing record: when, how long, and how many hosts ended how."""
    return {
        "record": "sweep",
        "schema_version": SCHEMA_VERSION,
        "started_at": format_time(sweep.started_at),
        "duration_s": sweep.duration_s,
        "port": getattr(sweep, "port", None),
        "interrupted": getattr(sweep, "interrupted", None),
        "hosts": {status.value: sum(1 for h in sweep.hosts if h.status is status) for status in Status},
        "drops": sum(drops_seen(h) for h in sweep.hosts),
    }


def line(record: dict[str, Any]) -> str:
    """One record as one line of JSON."""
    return json.dumps(record, separators=(",", ":")) + "\n"


def render(sweep: Sweep) -> str:
    """Every record of a finished sweep, hosts in inventory order."""
    port = getattr(sweep, "port", None)
    records = [r for host in sweep.hosts for r in host_records(host, port)]
    return "".join(line(r) for r in [*records, sweep_record(sweep)])
