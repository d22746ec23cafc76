"""The hosts' fleetdiag.drops.window results, on the controller: one Sweep, saved like a ``collect`` sweep.

The fleetdiag.drops.save task (run once, after the window task) reads each play host's
registered result and hands them here. A host whose window task never returned a fleetdiag
record (unreachable before it, skipped, failed in Ansible itself) is in the sweep all the
same, with Ansible's own message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetdiag.document import SCHEMA_VERSION, format_time, load_sweep
from fleetdiag.history import ResultsStore, SweepRecord
from fleetdiag.model import Status, Sweep

NO_RESULT = "the window task returned no result for this host (it did not run there)"


def host_entry(name: str, result: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One host's ``hosts[]`` entry and its ``flows[]`` from its registered task result (or its absence)."""
    if isinstance(result, Mapping) and isinstance(result.get("host"), Mapping):
        host = dict(result["host"])
        flows = [dict(flow) for flow in result.get("flows") or () if isinstance(flow, Mapping)]
        if result.get("unreachable") and result.get("msg"):
            host.update(status=Status.UNREACHABLE.value, error=str(result["msg"]))
        return host, flows
    status, error = Status.FAILED.value, NO_RESULT
    if isinstance(result, Mapping):
        message = str(result.get("msg") or "").strip()
        if result.get("unreachable"):
            status, error = Status.UNREACHABLE.value, message or "unreachable"
        elif result.get("skipped"):
            error = f"the window task was skipped: {message or result.get('skip_reason') or 'its condition was false'}"
        elif message:
            error = message
    return {"name": name, "address": name, "status": status, "error": error}, []


def sweep_from_results(
    results: Mapping[str, Any],
    addresses: Mapping[str, str] | None = None,
    duration_s: float | None = None,
    port: int | None = None,
    now: datetime | None = None,
) -> Sweep:
    """The Sweep the hosts' results make, in the order given, read back through fleetdiag's own document."""
    hosts: list[dict[str, Any]] = []
    flows: list[dict[str, Any]] = []
    for name, result in results.items():
        host, host_flows = host_entry(name, result)
        host["name"] = name  # the inventory's name, whatever the record said
        if addresses and name in addresses and host.get("address") in (None, name):
            host["address"] = addresses[name]
        for flow in host_flows:
            flow["host"] = name
        hosts.append(host)
        flows.extend(host_flows)
    starts = [h["window_start"] for h in hosts if isinstance(h.get("window_start"), (int, float))]
    ends = [h["window_end"] for h in hosts if isinstance(h.get("window_end"), (int, float))]
    if starts:
        started_at = datetime.fromtimestamp(min(starts), timezone.utc).replace(microsecond=0)
    else:
        started_at = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    if duration_s is None:
        duration_s = round(max(ends) - min(starts)) if starts and ends else 0
    instants = [r["window_instant"] for r in results.values()
                if isinstance(r, Mapping) and isinstance(r.get("window_instant"), (int, float))]  # fmt: skip
    armed = any(isinstance(r, Mapping) and r.get("mode") == "armed" for r in results.values())
    document = {
        "schema_version": SCHEMA_VERSION,
        "mode": "armed" if armed else "held",
        "window_instant": min(instants) if instants else None,
        "started_at": format_time(started_at),
        "duration_s": duration_s,
        "port": port,
        "hosts": hosts,
        "flows": flows,
    }
    return load_sweep(document, source="the hosts' fleetdiag.drops.window results")


def save_sweep(sweep: Sweep, results_dir: str | Path, prom_file: str | None = None) -> tuple[SweepRecord, Path]:
    """Save the sweep in the results dir (document and SQLite index), one sweep at a time; the Prometheus
    file too. The record and the document's path."""
    store = ResultsStore.open(results_dir)
    lock = store.lock()
    lock.acquire()
    try:
        record = store.save(sweep)
    finally:
        lock.release()
    if prom_file:
        from fleetdiag.render.prom import write_prom_file  # prometheus_client only when asked for

        write_prom_file(sweep, prom_file)
    return record, store.sweeps_dir / record.document


def summary(sweep: Sweep) -> dict[str, Any]:
    """Counts for the task's result and its one-line message."""
    by_status = {status.value: [h.name for h in sweep.hosts if h.status is status] for status in Status}
    dropping = sorted(h.name for h in sweep.hosts if any(h.drops.values()))
    return {"hosts": len(sweep.hosts), "by_status": by_status, "dropping": dropping}


def summary_sentence(sweep: Sweep, record: SweepRecord, where: str) -> str:
    """``sweep ID saved in DIR: 4 hosts, 3 ok, 1 unreachable; drops on h01``."""
    counts = summary(sweep)
    parts = [f"{len(names)} {status}" for status, names in counts["by_status"].items() if names]
    drops = f"; drops on {', '.join(counts['dropping'])}" if counts["dropping"] else "; no drops"
    return f"sweep {record.id} saved in {where}: {counts['hosts']} host(s), {', '.join(parts)}{drops}"


def ordered(names: Sequence[str], results: Mapping[str, Any]) -> dict[str, Any]:
    """RESULTS in the play's host order (hosts without one get None)."""
    return {name: results.get(name) for name in names}
