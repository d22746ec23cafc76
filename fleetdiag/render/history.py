"""Renderers for the history commands: the list of saved sweeps, and the difference between two."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Sequence

from fleetdiag.history.compare import BETTER, GONE, NEW, WORSE, Change, SweepDiff
from fleetdiag.history.store import SweepRecord

_TABULATE: dict[str, Any] = {"tablefmt": "simple", "disable_numparse": True}


def records_table(records: Sequence[SweepRecord]) -> str:
    """One row per saved sweep, newest first."""
    from tabulate import tabulate  # when a table is drawn: `collect -o json` starts without it

    if not records:
        return "No sweep is saved yet.\n"
    rows = [
        [
            r.id,
            r.started_at,
            f"{r.duration_s:g} s" + (f" port {r.port}" if r.port else ""),
            f"{r.ok}/{r.hosts}" + (f" ({r.unreachable} unreachable, {r.failed} failed)" if r.ok < r.hosts else ""),
            str(r.drops),
            str(r.backlog_drops),
            str(r.findings),
            r.interrupted or "",
        ]
        for r in records
    ]
    headers = ["sweep", "started", "window", "hosts ok", "drops", "TCPBacklogDrop", "findings", "interrupted"]
    return tabulate(rows, headers=headers, **_TABULATE) + "\n"


def records_json(records: Sequence[SweepRecord]) -> str:
    """``{"sweeps": [...]}``, newest first."""
    return json.dumps({"sweeps": [asdict(r) for r in records]}, indent=2) + "\n"


def _where(change: Change) -> str:
    if change.flow is None:
        return "-"
    laddr, lport, raddr, rport = change.flow
    return f"{laddr}:{lport} <- {raddr}:{rport}"


def _rows(changes: Sequence[Change]) -> list[list[str]]:
    return [
        [c.kind, c.host, _where(c), c.reason, str(c.before), str(c.after), f"{c.before_per_min:g} -> {c.after_per_min:g}"]
        for c in changes
    ]


def diff_table(diff: SweepDiff, a: SweepRecord, b: SweepRecord) -> str:
    """New and worsened hosts and flows of B against A; improvements counted in one line."""
    from tabulate import tabulate

    parts = [f"Comparing sweep {a.id} (A, {a.started_at}) with {b.id} (B, {b.started_at})."]
    hosts, flows = diff.of_kind(NEW, WORSE)
    headers = ["change", "host", "flow", "reason", "drops A", "drops B", "per minute A -> B"]
    if hosts:
        parts.append("Hosts dropping more\n" + tabulate(_rows(hosts), headers=headers, **_TABULATE))
    if flows:
        parts.append("Flows dropping more\n" + tabulate(_rows(flows), headers=headers, **_TABULATE))
    if not hosts and not flows:
        parts.append("No new or worsened drops in B.")
    better_hosts, better_flows = diff.of_kind(BETTER, GONE)
    if better_hosts or better_flows:
        parts.append(
            f"Better in B: {len(better_hosts)} host reason(s) and {len(better_flows)} flow(s) dropped less or stopped."
        )
    for host, before, after in diff.status_changes:
        parts.append(f"{host}: {before} in A, {after} in B (not compared)")
    return "\n\n".join(parts) + "\n"


def diff_json(diff: SweepDiff, a: SweepRecord, b: SweepRecord) -> str:
    """``{"a", "b", "hosts": [...], "flows": [...], "status_changes": [...]}`` with every change kind."""
    return json.dumps(
        {
            "a": a.id,
            "b": b.id,
            "hosts": [c.as_dict() for c in diff.hosts],
            "flows": [c.as_dict() for c in diff.flows],
            "status_changes": [{"host": h, "a": x, "b": y} for h, x, y in diff.status_changes],
        },
        indent=2,
    ) + "\n"
