"""The JSON result document, schema_version 1: what scripts and our own checks read.

Extend it, never rename: fields may be added; existing ones keep their names and meaning.
"""

from __future__ import annotations

from typing import Any

from fleetdiag.backlog_limit import backlog_limit
from fleetdiag.model import FlowDrop, HostResult, Sweep

SCHEMA_VERSION = 1
_OPTIONAL_FLOW_FIELDS = ("rcvbuf", "sndbuf", "backlog_len_max", "rmem_alloc_max", "queue_max", "userlocks")


def host_document(host: HostResult) -> dict[str, Any]:
    """One host's entry in ``hosts[]``."""
    return {
        "name": host.name,
        "address": host.address,
        "status": host.status.value,
        "error": host.error,
        "kernel": host.kernel,
        "probe": host.probe,
        "drops": dict(host.drops),
        "counters": dict(host.counters),
        "netns": host.netns,
        "window_start": host.window_start,
        "window_end": host.window_end,
        "notes": list(host.notes),
    }


def flow_document(host: HostResult, flow: FlowDrop) -> dict[str, Any]:
    """One entry in ``flows[]``: the flow, its drops, and socket state where captured."""
    doc: dict[str, Any] = {
        "host": host.name,
        "laddr": flow.laddr,
        "lport": flow.lport,
        "raddr": flow.raddr,
        "rport": flow.rport,
        "netns": flow.netns,
        "reason": flow.reason,
        "drops": flow.drops,
    }
    for name in _OPTIONAL_FLOW_FIELDS:
        value = getattr(flow, name)
        if value is not None:
            doc[name] = value
    limit = backlog_limit(host.kernel, flow.rcvbuf, flow.sndbuf)
    if limit is not None:
        doc["backlog_limit"] = limit
    return doc


def sweep_document(sweep: Sweep) -> dict[str, Any]:
    """The whole sweep as one JSON-ready document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": sweep.started_at.isoformat().replace("+00:00", "Z"),
        "duration_s": sweep.duration_s,
        "hosts": [host_document(h) for h in sweep.hosts],
        "flows": [flow_document(h, f) for h in sweep.hosts for f in h.flows],
    }
