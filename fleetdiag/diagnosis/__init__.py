"""From counts to answers: pure functions over a HostResult that say why packets were dropped.

Every verdict carries the numbers that justify it and a next step; a host or flow
without evidence gets no verdict. Nothing here is stored: documents, tables and
metrics compute the same verdicts from the same model, so a saved sweep re-renders
exactly as it first printed.
"""

from __future__ import annotations

from fleetdiag.diagnosis import backlog
from fleetdiag.diagnosis import host as host_rules
from fleetdiag.diagnosis.reasons import REASON_TABLE, explain_reason, reason_verdict
from fleetdiag.diagnosis.reconcile import (
    Reconciliation,
    drops_by_kind,
    drops_seen,
    is_traced,
    missed_verdicts,
    misses_verdict,
    reconcile,
    unchecked_reasons,
)
from fleetdiag.diagnosis.verdict import Verdict
from fleetdiag.model import FlowDrop, HostResult, Status

__all__ = [
    "REASON_TABLE",
    "Reconciliation",
    "Verdict",
    "drops_by_kind",
    "drops_seen",
    "explain_reason",
    "flow_verdicts",
    "host_verdicts",
    "reconcile",
    "unchecked_reasons",
]


def host_verdicts(host: HostResult, port: int | None = None) -> tuple[Verdict, ...]:
    """Verdicts on a host: missed drops first, then counters, then each reason explained by name."""
    if host.status is not Status.OK:
        return ()
    found = missed_verdicts(reconcile(host, port))
    misses = misses_verdict(host, port)
    if misses is not None:
        found.append(misses)
    rules = [host_rules.memory_pressure, host_rules.receive_pruning, host_rules.listen_overflow]
    if not is_traced(host):
        rules.append(host_rules.counted_backlog_drops)
    found += [v for v in (rule(host.counters) for rule in rules) if v is not None]
    ranked = sorted(host.drops.items(), key=lambda item: (-int(item[1]), item[0]))
    found += [reason_verdict(reason, int(drops), "in the window") for reason, drops in ranked if drops]
    return tuple(found)


def flow_verdicts(host: HostResult, flow: FlowDrop) -> tuple[Verdict, ...]:
    """Backlog verdicts from the socket state at drop; otherwise the flow's reason explained."""
    return backlog.flow_verdicts(host, flow) or (reason_verdict(flow.reason, flow.drops, "on this flow"),)
