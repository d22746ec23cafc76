"""Prometheus textfile-collector metrics: per host and reason gauges, no flow labels, no timestamps.

Flows stay out of labels (ports and peers would explode cardinality); the JSON
document has them. ``write_prom_file`` writes atomically (temp file + rename), so
node_exporter never reads half a file.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fleetdiag.counters import ALWAYS_REPORTED
from fleetdiag.diagnosis import flow_verdicts, host_verdicts, reconcile
from fleetdiag.model import Status, Sweep


class SweepCollector(Collector):
    """Exposes one Sweep as gauges; collected once per render."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Sweep-wide, then per-host gauges."""
        sweep = self.sweep
        port = getattr(sweep, "port", None)
        yield GaugeMetricFamily(
            "fleetdiag_sweep_start_time_seconds", "When the last sweep started (Unix time).",
            value=sweep.started_at.timestamp(),
        )
        yield GaugeMetricFamily("fleetdiag_sweep_window_seconds", "Window every host watched.", value=sweep.duration_s)
        statuses = GaugeMetricFamily("fleetdiag_sweep_hosts", "Hosts of the last sweep by outcome.", labels=["status"])
        for status in Status:
            statuses.add_metric([status.value], sum(1 for h in sweep.hosts if h.status is status))
        yield statuses

        up = GaugeMetricFamily("fleetdiag_host_up", "1 if the host was collected in the last sweep.", labels=["host"])
        drops = GaugeMetricFamily(
            "fleetdiag_host_drops", "TCP drops traced in the window, by the kernel's reason.", labels=["host", "reason"]
        )
        counters = GaugeMetricFamily(
            "fleetdiag_host_tcpext_delta", "TcpExt counter change over the window.", labels=["host", "counter"]
        )
        coverage = GaugeMetricFamily(
            "fleetdiag_host_trace_coverage_ratio",
            "Traced drops / the kernel counter of the same drops (only when the counter moved).",
            labels=["host", "reason"],
        )
        missed = GaugeMetricFamily(
            "fleetdiag_host_untraced_drops", "Drops the kernel counted that the probe did not trace.", labels=["host", "reason"]
        )
        verdicts = GaugeMetricFamily(
            "fleetdiag_host_verdicts", "Verdicts on the host and its flows, by code.", labels=["host", "code"]
        )
        for host in sweep.hosts:
            up.add_metric([host.name], 1 if host.status is Status.OK else 0)
            for reason, count in sorted(host.drops.items()):
                drops.add_metric([host.name, reason], count)
            for name in ALWAYS_REPORTED:
                if name in host.counters:
                    counters.add_metric([host.name, name], host.counters[name])
            for item in reconcile(host, port):
                missed.add_metric([host.name, item.reason], item.missed)
                if item.coverage_pct is not None:
                    coverage.add_metric([host.name, item.reason], min(item.traced, item.counted) / item.counted)
            codes: dict[str, int] = {}
            found = [*host_verdicts(host, port), *(v for f in host.flows for v in flow_verdicts(host, f))]
            for verdict in found:
                codes[verdict.code] = codes.get(verdict.code, 0) + 1
            for code, count in sorted(codes.items()):
                verdicts.add_metric([host.name, code], count)
        yield from (up, drops, counters, coverage, missed, verdicts)


def registry_for(sweep: Sweep) -> CollectorRegistry:
    """A fresh registry holding only this sweep's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SweepCollector(sweep))
    return registry


def render(sweep: Sweep) -> str:
    """The textfile-collector text for a sweep."""
    return generate_latest(registry_for(sweep)).decode("utf-8")


def write_prom_file(sweep: Sweep, path: str) -> None:
    """Write the metrics to PATH atomically (a temp file beside it, then rename)."""
    write_to_textfile(path, registry_for(sweep))
