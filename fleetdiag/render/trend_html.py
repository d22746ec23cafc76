"""``fleetdiag history -o html``: the saved sweeps' drops per reason and per host over time, one self-contained page."""

from __future__ import annotations

import html
from typing import Sequence

from fleetdiag.diagnosis import drops_by_kind
from fleetdiag.document import format_time
from fleetdiag.history.store import SweepRecord
from fleetdiag.model import Status, Sweep
from fleetdiag.render.html import html_table, page, plot

# Hosts drawn as their own line (the busiest over all the sweeps shown); the table has every sweep.
TREND_HOSTS_MAX = 30


def render(saved: Sequence[tuple[SweepRecord, Sweep]]) -> str:
    """Two charts (drops per reason, drops per host, one point per sweep) and the sweeps' table."""
    from plotly.offline import get_plotlyjs

    ordered = sorted(saved, key=lambda pair: pair[1].started_at)
    times = [format_time(s.started_at) for _, s in ordered]
    by_reason: dict[str, list[int]] = {}
    by_host: dict[str, list[int | None]] = {}
    for index, (_record, sweep) in enumerate(ordered):
        for host in sweep.hosts:
            row = by_host.setdefault(host.name, [None] * len(ordered))
            if host.status is not Status.OK:
                continue  # a gap, not a zero: the host was not watched in that sweep
            kinds = drops_by_kind(host)
            row[index] = sum(kinds.values())
            for kind, n in kinds.items():
                by_reason.setdefault(kind, [0] * len(ordered))[index] += n
    busiest = sorted(by_host, key=lambda h: (-sum(n or 0 for n in by_host[h]), h))[:TREND_HOSTS_MAX]
    sections = [f"<h1>fleetdiag history: {len(ordered)} saved sweep(s)</h1>"]
    if not ordered:
        sections.append("<p>No sweep is saved yet.</p>")
        return page("fleetdiag history", get_plotlyjs(), sections)
    axis = {"xaxis": {"type": "date", "title": {"text": "sweep started (UTC)"}}, "yaxis": {"title": {"text": "drops in the window"}}}
    reasons = [{"type": "scatter", "mode": "lines+markers", "name": k, "x": times, "y": v} for k, v in sorted(by_reason.items())]
    hosts = [{"type": "scatter", "mode": "lines+markers", "name": h, "x": times, "y": by_host[h], "connectgaps": False}
             for h in busiest]  # fmt: skip
    sections += [
        "<h2>Drops per reason, per sweep (all hosts)</h2>",
        plot("reasons", reasons, {"height": 420, **axis}) if reasons else "<p>No drops in any sweep.</p>",
        f"<h2>Drops per host, per sweep (the {len(busiest)} busiest)</h2>",
        plot("trend_hosts", hosts, {"height": 480, **axis}),
        "<h2>Sweeps</h2>",
        html_table(["sweep", "started", "window", "hosts ok", "drops", "TCPBacklogDrop", "findings"],
               [[r.id, r.started_at, f"{r.duration_s:g} s", f"{r.ok}/{r.hosts}", r.drops, r.backlog_drops, r.findings]
                for r, _ in reversed(ordered)]),  # fmt: skip
        f"<p>Drawn from {html.escape(str(len(ordered)))} saved sweep(s); hosts missing from a sweep show a gap.</p>",
    ]
    return page("fleetdiag history", get_plotlyjs(), sections)
