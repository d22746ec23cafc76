"""The JSON result document, schema_version 1: what scripts, history and our own checks read.

Extend it, never rename: fields may be added; existing ones keep their names and meaning.
``load_sweep`` reads a document back into the same Sweep it was made from; the derived
fields (``backlog_limit``, ``verdicts``, ``reconciliation``, ``activity``, ``fleet_events``) are
recomputed, not read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Mapping, Sequence, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from fleetdiag import model
from fleetdiag.backlog_limit import backlog_limit
from fleetdiag.diagnosis import flow_verdicts, host_verdicts, reconcile, unchecked_reasons
from fleetdiag.diagnosis.fleet import activity, fleet_events
from fleetdiag.errors import FleetdiagError
from fleetdiag.model import FlowDrop, HostCheck, HostResult, Status, Sweep, frozen_map
from fleetdiag.tracers.prog_stats import stats_document, stats_from_document

SCHEMA_VERSION = 1
_OPTIONAL_FLOW_FIELDS = ("rcvbuf", "sndbuf", "backlog_len_max", "rmem_alloc_max", "queue_max", "userlocks")
# Added by issue 16: the window and the dropped skbs' sizes at backlog drops.
_WINDOW_FLOW_FIELDS = (
    "rcv_wnd", "window_clamp", "rcv_ssthresh", "scaling_ratio",
    "skb_len_max", "skb_len_sum", "skb_truesize_max", "skb_truesize_sum",
)  # fmt: skip


class DocumentError(FleetdiagError):
    """A saved document that cannot be read back (corrupt, edited, or from a newer schema)."""


def host_document(host: HostResult, port: int | None = None) -> dict[str, Any]:
    """One host's entry in ``hosts[]``, with its reconciliation and verdicts."""
    fidelity = getattr(host, "fidelity", None)
    tracers = getattr(host, "tracers", None) or {}
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
        "fidelity": getattr(fidelity, "value", fidelity),
        "module": _module_document(getattr(host, "module", None)),
        "tcp_buffers": {name: list(values) for name, values in getattr(host, "tcp_buffers", {}).items()},
        "tracers": {
            name: {"usable": v.usable, "reason": v.reason, "probe": getattr(v, "probe", None)}
            for name, v in tracers.items()
        },
        "reconciliation": [item.as_dict() for item in reconcile(host, port)],
        "probe_stats": stats_document(getattr(host, "probe_stats", None)),
        # Traced reasons no counter checks: short by up to probe_stats.recursion_misses when any.
        "unchecked_reasons": unchecked_reasons(host, port),
        # flows[] holds every flow the probe's map kept; true when it was full (or drops had no flow).
        "flows_truncated": bool(getattr(host, "flows_truncated", False)),
        "verdicts": [v.as_dict() for v in host_verdicts(host, port)],
        "clock_offset_s": getattr(host, "clock_offset_s", None),
        "clock_bound_s": getattr(host, "clock_bound_s", None),
        "groups": list(getattr(host, "groups", ())),
        "timeline": timeline_document(getattr(host, "timeline", None)),
        "activity": activity(host),
    }


def timeline_document(timeline: model.Timeline | None) -> dict[str, Any] | None:
    """``{"interval_s", "start", "intervals", "drops": {REASON: [...]}, "counters": {NAME: [...]}}`` or None."""
    if timeline is None:
        return None
    return {
        "interval_s": timeline.interval_s,
        "start": timeline.start,
        "intervals": timeline.length,
        "drops": {reason: list(series) for reason, series in timeline.drops.items()},
        "counters": {name: list(series) for name, series in timeline.counters.items()},
        "ports": {reason: {str(port): list(s) for port, s in by_port.items()} for reason, by_port in timeline.ports.items()},
    }


def _module_document(origin: model.ModuleOrigin | None) -> dict[str, Any] | None:
    """systemtap hosts: where the module came from (``how``: compiled here, built here, shipped, cache)."""
    if origin is None:
        return None
    return {"how": origin.how, "built_on": origin.built_on, "sha256": origin.sha256,
            "build_seconds": origin.build_seconds, "sentence": origin.sentence()}  # fmt: skip


def flow_document(host: HostResult, flow: FlowDrop) -> dict[str, Any]:
    """One entry in ``flows[]``: the flow, its drops, socket state where captured, its verdicts."""
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
    for name in _OPTIONAL_FLOW_FIELDS + _WINDOW_FLOW_FIELDS:
        value = getattr(flow, name)
        if value is not None:
            doc[name] = value
    if getattr(flow, "timeline", None) is not None:
        doc["timeline"] = list(flow.timeline)
    limit = backlog_limit(host.kernel, flow.rcvbuf, flow.sndbuf)
    if limit is not None:
        doc["backlog_limit"] = limit
    doc["verdicts"] = [v.as_dict() for v in flow_verdicts(host, flow)]
    return doc


def sweep_document(sweep: Sweep) -> dict[str, Any]:
    """The whole sweep as one JSON-ready document."""
    port = getattr(sweep, "port", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": format_time(sweep.started_at),
        "duration_s": sweep.duration_s,
        "port": port,
        "interrupted": getattr(sweep, "interrupted", None),
        "hosts": [host_document(h, port) for h in sweep.hosts],
        "flows": [flow_document(h, f) for h in sweep.hosts for f in h.flows],
        "fleet_events": [v.as_dict() for v in fleet_events(sweep)],
        "mode": getattr(sweep, "mode", None),
        "window_instant": getattr(sweep, "window_instant", None),
        "window_start_spread_s": window_start_spread(sweep),
        "phases": dict(getattr(sweep, "phases", None) or {}),
    }


def check_document(checks: Sequence[HostCheck]) -> dict[str, Any]:
    """What ``fleetdiag check -o json`` prints (and fleetdiag.drops.window returns in check mode):
    ``{"hosts": [{name, address, status, error, kernel, os, tracers: {name: {usable, reason, probe}}, tracer, probe}]}``.
    """
    return {
        "hosts": [
            {
                "name": c.name,
                "address": c.address,
                "status": c.status.value,
                "error": c.error,
                "kernel": c.kernel,
                "os": c.os_name,
                "tracers": {
                    n: {"usable": v.usable, "reason": v.reason, "probe": v.probe} for n, v in c.tracers.items()
                },
                "tracer": c.tracer,
                "probe": c.probe,
            }
            for c in checks
        ]
    }


def window_start_spread(sweep: Sweep) -> float | None:
    """Seconds between the first and the last window start of the hosts that collected (clock-corrected)."""
    starts = [h.window_start for h in sweep.hosts if h.status is Status.OK and h.window_start is not None]
    return round(max(starts) - min(starts), 3) if starts else None


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with a Z, as the document writes times: ``2026-11-26T08:00:00Z``."""
    return moment.isoformat().replace("+00:00", "Z")


# -- reading a document back -------------------------------------------------------------------

class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _TracerIn(_In):
    usable: bool
    reason: str
    probe: str | None = None


class _FlowIn(_In):
    host: str
    laddr: str
    lport: int
    raddr: str
    rport: int
    netns: int | None = None
    reason: str
    drops: int
    rcvbuf: int | None = None
    sndbuf: int | None = None
    backlog_len_max: int | None = None
    rmem_alloc_max: int | None = None
    queue_max: int | None = None
    userlocks: int | None = None
    rcv_wnd: int | None = None
    window_clamp: int | None = None
    rcv_ssthresh: int | None = None
    scaling_ratio: int | None = None
    skb_len_max: int | None = None
    skb_len_sum: int | None = None
    skb_truesize_max: int | None = None
    skb_truesize_sum: int | None = None
    timeline: list[int] | None = None


class _TimelineIn(_In):
    interval_s: int
    start: float | None = None
    intervals: int = 0
    drops: dict[str, list[int]] = {}
    counters: dict[str, list[int]] = {}
    ports: dict[str, dict[int, list[int]]] = {}


class _ModuleIn(_In):
    how: str
    built_on: str | None = None
    sha256: str | None = None
    build_seconds: float | None = None
    sentence: str | None = None  # derived, not read back


class _HostIn(_In):
    name: str
    address: str
    status: Status
    error: str | None = None
    kernel: str | None = None
    probe: str | None = None
    drops: dict[str, int] = {}
    counters: dict[str, int] = {}
    netns: int | None = None
    window_start: float | None = None
    window_end: float | None = None
    notes: list[str] = []
    fidelity: str | None = None
    module: _ModuleIn | None = None
    tracers: dict[str, _TracerIn] = {}
    probe_stats: dict[str, Any] | None = None
    flows_truncated: bool = False
    tcp_buffers: dict[str, list[int]] = {}
    timeline: _TimelineIn | None = None
    groups: list[str] = []
    clock_offset_s: float | None = None
    clock_bound_s: float | None = None


class _SweepIn(_In):
    schema_version: Literal[1]
    started_at: datetime
    duration_s: Union[int, float]  # kept as written, so a re-render prints it the same way
    port: int | None = None
    interrupted: str | None = None
    hosts: list[_HostIn]
    flows: list[_FlowIn] = []
    mode: str | None = None
    window_instant: float | None = None
    phases: dict[str, float] = {}


def load_sweep(document: Mapping[str, Any], source: str = "document") -> Sweep:
    """The Sweep a schema_version 1 document was made from; raises DocumentError naming the problem."""
    try:
        parsed = _SweepIn.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DocumentError(
            f"{source}: {where}: {first['msg']}", hint="the file is not a fleetdiag schema_version 1 document"
        ) from exc
    flows: dict[str, list[FlowDrop]] = {h.name: [] for h in parsed.hosts}
    for flow in parsed.flows:
        if flow.host not in flows:
            raise DocumentError(f"{source}: a flow names host {flow.host!r}, which is not in hosts[]")
        fields = flow.model_dump(exclude={"host", "timeline"})
        if flow.timeline is not None:
            fields["timeline"] = tuple(flow.timeline)
        flows[flow.host].append(FlowDrop(**fields))
    hosts = tuple(_host(h, tuple(flows[h.name])) for h in parsed.hosts)
    extra: dict[str, Any] = {}
    if parsed.port is not None:
        extra["port"] = parsed.port
    if parsed.interrupted is not None:
        extra["interrupted"] = parsed.interrupted
    if parsed.mode is not None:
        extra["mode"] = parsed.mode
    if parsed.window_instant is not None:
        extra["window_instant"] = parsed.window_instant
    if parsed.phases:
        extra["phases"] = frozen_map(parsed.phases)
    return Sweep(started_at=parsed.started_at, duration_s=parsed.duration_s, hosts=hosts, **extra)


def _host(doc: _HostIn, flows: tuple[FlowDrop, ...]) -> HostResult:
    extra: dict[str, Any] = {}
    fidelity_type = getattr(model, "Fidelity", None)
    if doc.fidelity is not None and fidelity_type is not None:
        extra["fidelity"] = fidelity_type(doc.fidelity)
    tracer_type = getattr(model, "Verdict", None)
    if doc.tracers and tracer_type is not None:
        extra["tracers"] = frozen_map({name: tracer_type(**t.model_dump()) for name, t in doc.tracers.items()})
    if doc.module is not None:
        extra["module"] = model.ModuleOrigin(**doc.module.model_dump(exclude={"sentence"}))
    if doc.probe_stats is not None:
        extra["probe_stats"] = stats_from_document(doc.probe_stats)
    if doc.flows_truncated:
        extra["flows_truncated"] = True
    if doc.tcp_buffers:
        extra["tcp_buffers"] = frozen_map({name: tuple(values) for name, values in doc.tcp_buffers.items()})
    if doc.groups:
        extra["groups"] = tuple(doc.groups)
    if doc.timeline is not None:
        t = doc.timeline
        extra["timeline"] = model.Timeline(
            t.interval_s, t.start,
            frozen_map({k: tuple(v) for k, v in t.drops.items()}),
            frozen_map({k: tuple(v) for k, v in t.counters.items()}),
            t.intervals,
            frozen_map({r: frozen_map({int(p): tuple(s) for p, s in by_port.items()}) for r, by_port in t.ports.items()}),
        )  # fmt: skip
    if doc.clock_offset_s is not None:
        extra["clock_offset_s"] = doc.clock_offset_s
        extra["clock_bound_s"] = doc.clock_bound_s
    return HostResult(
        name=doc.name,
        address=doc.address,
        status=doc.status,
        error=doc.error,
        kernel=doc.kernel,
        probe=doc.probe,
        drops=frozen_map(doc.drops),
        counters=frozen_map(doc.counters),
        flows=flows,
        netns=doc.netns,
        window_start=doc.window_start,
        window_end=doc.window_end,
        notes=tuple(doc.notes),
        **extra,
    )
