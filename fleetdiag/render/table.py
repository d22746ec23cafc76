"""Tables for people: one row per host, one row per dropping flow."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from fleetdiag.document import flow_document
from fleetdiag.model import Sweep

# Numbers stay as written: tabulate would print a kernel "5.10" as 5.1.
_TABULATE = {"tablefmt": "simple", "disable_numparse": True}


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


# The host row names the busiest reasons; the JSON and the flow table have them all.
_REASONS_SHOWN = 3


def _drops_by_reason(drops: dict[str, int]) -> str:
    ranked = sorted(drops.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{name} {count}" for name, count in ranked[:_REASONS_SHOWN])
    if len(ranked) > _REASONS_SHOWN:
        text += f" (+{len(ranked) - _REASONS_SHOWN} more)"
    return text or "-"


def host_rows(sweep: Sweep) -> list[list[Any]]:
    """host, kernel, probe, status, drops by reason, TCPBacklogDrop delta, error."""
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
                host.error or "; ".join(host.notes) or "",
            ]
        )
    return rows


def flow_rows(sweep: Sweep) -> list[list[Any]]:
    """host, local, remote, reason, drops, rcvbuf, queue at drop / limit."""
    rows = []
    for host in sweep.hosts:
        for flow in host.flows:
            doc = flow_document(host, flow)
            queue = doc.get("queue_max")
            limit = doc.get("backlog_limit")
            at_drop = f"{_size(queue)} / {_size(limit)}" if queue is not None else "-"
            rows.append(
                [
                    host.name,
                    _endpoint(flow.laddr, flow.lport),
                    _endpoint(flow.raddr, flow.rport),
                    flow.reason,
                    str(flow.drops),
                    _size(flow.rcvbuf),
                    at_drop,
                ]
            )
    return rows


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def render(sweep: Sweep) -> str:
    """Both tables, the flow table only when something dropped."""
    hosts = tabulate(
        host_rows(sweep),
        headers=["host", "kernel", "probe", "status", "drops by reason", "TCPBacklogDrop", "error / notes"],
        **_TABULATE,
    )
    flows = flow_rows(sweep)
    if not flows:
        return hosts + "\n\nNo dropping TCP flows were seen in the window.\n"
    flow_table = tabulate(
        flows,
        headers=["host", "local", "remote", "reason", "drops", "rcvbuf", "backlog+rmem at drop / limit"],
        **_TABULATE,
    )
    return f"{hosts}\n\n{flow_table}\n"
