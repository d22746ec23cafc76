"""Tables for people: hosts, dropping flows, the counters that move with backlog drops, the diagnosis."""

from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate

from fleetdiag.diagnosis import (
    Verdict,
    flow_verdicts,
    host_verdicts,
    is_traced,
    reconcile,
)
from fleetdiag.diagnosis.fleet import fleet_events, total_series
from fleetdiag.diagnosis.host import COMPANION_COUNTERS
from fleetdiag.diagnosis.verdict import size as _size
from fleetdiag.document import flow_document
from fleetdiag.model import FlowDrop, HostResult, Status, Sweep
from fleetdiag.render.sparkline import sparkline

# Numbers stay as written: tabulate would print a kernel "5.10" as 5.1.
_TABULATE: dict[str, Any] = {"tablefmt": "simple", "disable_numparse": True}
# The host row names the busiest reasons; the JSON and the flow table have them all.
_REASONS_SHOWN = 3
_WIDTH = 110
# Flows with a line of their own per host; the rest fold into a line per reason and what they share.
FLOWS_SHOWN = 20
_GROUPS_SHOWN = 5


def _drops_by_reason(drops: dict[str, int]) -> str:
    ranked = sorted(drops.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{name} {count}" for name, count in ranked[:_REASONS_SHOWN])
    if len(ranked) > _REASONS_SHOWN:
        text += f" (+{len(ranked) - _REASONS_SHOWN} more)"
    return text or "-"


def coverage_cell(host: HostResult, port: int | None = None) -> str:
    """Traced SOCKET_BACKLOG against TCPBacklogDrop: '100%', '76% (5 missed)', 'untraced' or '-'."""
    if host.status is not Status.OK:
        return "-"
    if not is_traced(host):
        return "untraced"
    for item in reconcile(host, port):
        if item.counter == "TCPBacklogDrop":
            if item.coverage_pct is None:
                return "-"
            missed = f" ({item.missed} missed)" if item.missed else ""
            return f"{item.coverage_pct:g}%{missed}"
    return "-"


def host_rows(sweep: Sweep, spark: str = "ascii") -> list[list[Any]]:
    """host, kernel, probe, status, drops by reason, TCPBacklogDrop delta, coverage, drops over time, error.

    SPARK is the sparkline's characters: "unicode" (a UTF-8 terminal) or "ascii".
    """
    port = getattr(sweep, "port", None)
    rows = []
    for host in sweep.hosts:
        counter = host.counters.get("TCPBacklogDrop")
        rows.append(
            [
                host.name,
                host.kernel or "-",
                host.probe or "-",
                host.status.value,
                _drops_by_reason(dict(host.drops)),
                "-" if counter is None else str(counter),
                coverage_cell(host, port),
                sparkline(total_series(host), spark) or "-",
                host.error or "; ".join(host.notes) or "",
            ]
        )
    return rows


def shown_flows(host: HostResult) -> tuple[FlowDrop, ...]:
    """The host's busiest flows, the ones the table prints a line for (the JSON has them all)."""
    return host.flows[:FLOWS_SHOWN]


def _group_text(reason: str, flows: list[FlowDrop], by: tuple[str, ...]) -> str:
    drops = sum(f.drops for f in flows)
    text = f"+{len(flows):,} flow{'s' if len(flows) != 1 else ''}, {drops:,} drop{'s' if drops != 1 else ''}: {reason}"
    if "lport" in by:
        text += f" to port {flows[0].lport}"
    if "raddr" in by:
        text += f" from {flows[0].raddr}"
    return text


def folded_lines(host: HostResult) -> list[str]:
    """One line per reason (and local port / remote address, where the folded flows share them)
    for the flows past the busiest: "+2,431 flows, 2,431 drops: NO_SOCKET to port 9998 from 10.0.0.3"."""
    rest = host.flows[FLOWS_SHOWN:]
    lines: list[str] = []
    for reason in sorted({f.reason for f in rest}):
        flows = [f for f in rest if f.reason == reason]
        for by in (("lport", "raddr"), ("lport",), ("raddr",), ()):
            groups: dict[tuple[Any, ...], list[FlowDrop]] = {}
            for flow in flows:
                groups.setdefault(tuple(getattr(flow, name) for name in by), []).append(flow)
            if len(groups) <= _GROUPS_SHOWN or not by:
                break
        ranked = sorted(groups.values(), key=lambda g: (-sum(f.drops for f in g), -len(g)))
        lines += [f"{host.name}: {_group_text(reason, group, by)}" for group in ranked]
    return lines


def flow_rows(sweep: Sweep) -> list[list[Any]]:
    """host, local, remote, reason, drops, rcvbuf, queue at drop / limit, verdict codes (the busiest flows)."""
    rows = []
    for host in sweep.hosts:
        for flow in shown_flows(host):
            doc = flow_document(host, flow)
            queue = doc.get("queue_max")
            limit = doc.get("backlog_limit")
            at_drop = f"{_size(queue)} / {_size(limit)}" if queue is not None else "-"
            codes = [v["code"] for v in doc["verdicts"] if v["code"] != "drop_reason"]
            rows.append(
                [
                    host.name,
                    _endpoint(flow.laddr, flow.lport),
                    _endpoint(flow.raddr, flow.rport),
                    flow.reason,
                    str(flow.drops),
                    _size(flow.rcvbuf),
                    at_drop,
                    ", ".join(codes) or "-",
                ]
            )
    return rows


def counter_rows(sweep: Sweep) -> list[list[str]]:
    """Per collected host whose counters moved: the TcpExt counters that move with backlog drops."""
    rows = []
    for host in sweep.hosts:
        values = [host.counters.get(name) for name in COMPANION_COUNTERS]
        if host.status is Status.OK and any(values):
            rows.append([host.name, *("-" if v is None else str(v) for v in values)])
    return rows


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _verdict_lines(subject: str, verdict: Verdict) -> list[str]:
    head = textwrap.fill(
        f"{subject}: {verdict.summary}", _WIDTH, subsequent_indent="    ", break_on_hyphens=False
    )
    step = textwrap.fill(
        f"next step: {verdict.next_step}", _WIDTH, initial_indent="    ", subsequent_indent="      ",
        break_on_hyphens=False,
    )
    return [head, step]


def diagnosis_lines(sweep: Sweep) -> list[str]:
    """Each verdict as a sentence with its numbers and a next step.

    Per host: its own findings, then its flows' findings, then each drop reason explained.
    """
    port = getattr(sweep, "port", None)
    lines: list[str] = []
    for host in sweep.hosts:
        verdicts = host_verdicts(host, port)
        for verdict in verdicts:
            if verdict.code != "drop_reason":
                lines += _verdict_lines(host.name, verdict)
        for flow in shown_flows(host):
            lines += _flow_verdict_lines(host, flow)
        for verdict in verdicts:
            if verdict.code == "drop_reason":
                lines += _verdict_lines(host.name, verdict)
    return lines


def _flow_verdict_lines(host: HostResult, flow: FlowDrop) -> list[str]:
    subject = f"{host.name} {_endpoint(flow.laddr, flow.lport)} <- {_endpoint(flow.raddr, flow.rport)} {flow.reason}"
    lines: list[str] = []
    for verdict in flow_verdicts(host, flow):
        if verdict.code != "drop_reason":  # the host's verdicts already explain each reason
            lines += _verdict_lines(subject, verdict)
    return lines


def render(sweep: Sweep, spark: str = "ascii") -> str:
    """Hosts, then (when anything dropped) flows, moving counters and the diagnosis (SPARK: see host_rows)."""
    parts = [
        tabulate(
            host_rows(sweep, spark),
            headers=["host", "kernel", "probe", "status", "drops by reason", "TCPBacklogDrop", "traced", "over time",
                     "error / notes"],  # fmt: skip
            **_TABULATE,
        )
    ]
    flows = flow_rows(sweep)
    if flows:
        parts.append(
            tabulate(
                flows,
                headers=["host", "local", "remote", "reason", "drops", "rcvbuf", "backlog+rmem at drop / limit", "verdicts"],
                **_TABULATE,
            )
        )
        folded = [line for host in sweep.hosts for line in folded_lines(host)]
        if folded:
            parts[-1] += "\n" + "\n".join(folded)
    else:
        parts.append("No dropping TCP flows were seen in the window.")
    counters = counter_rows(sweep)
    if counters:
        parts.append(tabulate(counters, headers=["host", *COMPANION_COUNTERS], **_TABULATE))
    diagnosis = [line for v in fleet_events(sweep) for line in _verdict_lines("fleet", v)] + diagnosis_lines(sweep)
    if diagnosis:
        parts.append("Diagnosis\n" + "\n".join(diagnosis))
    interrupted = getattr(sweep, "interrupted", None)
    if interrupted:
        parts.append(f"Interrupted by {interrupted}: these are partial results.")
    return "\n\n".join(parts) + "\n"
