"""One self-contained HTML report of a sweep: the fleet heatmap, each host's drops over time, flows, diagnosis.

Drawn with plotly; its JavaScript is inlined once, so the file opens with no network at all.
Fed the same Sweep as every renderer; nothing is computed here that the document does not hold.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from typing import Any, Sequence

from fleetdiag import __version__
from fleetdiag.diagnosis import host_verdicts
from fleetdiag.diagnosis.fleet import activity, drop_series, fleet_events, host_start, total_series
from fleetdiag.document import flow_document, format_time
from fleetdiag.model import HostResult, Status, Sweep
from fleetdiag.render.sparkline import sparkline

# Hosts in the per-host chart's menu (the busiest); every host is in the heatmap and the tables.
HOST_CHARTS_MAX = 50
# Flow table rows; the JSON document has them all.
FLOW_ROWS_MAX = 2000
ROW_PX = 12  # per host in the heatmap: 1000 hosts stay one row each, with their names
GAPS_UP_TO = 200
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee;
 text-align: left; vertical-align: top; } th { background: #f4f4f4; position: sticky; top: 0; }
.num { text-align: right; font-variant-numeric: tabular-nums; } .spark { font-family: monospace; }
.bad { color: #b00; } .verdict { margin: .4em 0 .8em; } .step { color: #555; margin-left: 1.5em; }
.scroll { max-height: 40em; overflow: auto; } code { background: #f4f4f4; padding: 0 3px; }
"""


def render(sweep: Sweep) -> str:
    """The whole report as one HTML document (plotly.js inline, a few MB)."""
    from plotly.offline import get_plotlyjs  # only when a report is drawn: collect -o json starts without it

    sections = [
        f"<h1>fleetdiag sweep {html.escape(format_time(sweep.started_at))}</h1>",
        _settings(sweep),
        "<h2>Fleet: drops per host over time</h2>",
        _heatmap(sweep),
        "<h2>Diagnosis</h2>",
        _diagnosis(sweep),
        "<h2>Drops by reason over time, per host</h2>",
        _host_chart(sweep),
        "<h2>Flows</h2>",
        _flows(sweep),
        "<h2>Hosts</h2>",
        _hosts(sweep),
    ]
    return page(f"fleetdiag {format_time(sweep.started_at)}", get_plotlyjs(), sections)


# Every plot above is drawn when this runs: the page says how long that took (for people and for tests).
_RENDERED = '\n<script>document.body.setAttribute("data-rendered-ms", Math.round(performance.now()));</script>'


def page(title: str, plotly_js: str, sections: Sequence[str]) -> str:
    # The plotly bundle never holds "</script>" (it would end the element early); checked by the tests.
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{plotly_js}</script></head><body>\n" + "\n".join(sections) + _RENDERED + "\n</body></html>\n"
    )


def plot(div_id: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> str:
    """A div and the script that draws it (static plots: no mode bar, no network for fonts or icons)."""
    config = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}
    payload = json.dumps([data, layout, config], separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<div id="{div_id}" class="plot"></div><script>(function(){{var a={payload};'
        f'Plotly.newPlot("{div_id}",a[0],a[1],a[2]);}})();</script>'
    )


def _settings(sweep: Sweep) -> str:
    counts = {s.value: sum(1 for h in sweep.hosts if h.status is s) for s in Status}
    rows = [
        ("started", format_time(sweep.started_at)),
        ("window", f"{sweep.duration_s:g} s"),
        ("port", str(sweep.port) if getattr(sweep, "port", None) else "every port"),
        ("hosts", ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none"),
        ("interval", _intervals(sweep)),
        ("interrupted", getattr(sweep, "interrupted", None) or "no"),
        ("made by", f"fleetdiag {__version__}"),
    ]
    return html_table(["setting", "value"], [[k, v] for k, v in rows])


def _intervals(sweep: Sweep) -> str:
    steps = sorted({h.timeline.interval_s for h in sweep.hosts if h.timeline is not None})
    return " / ".join(f"{s} s" for s in steps) if steps else "no timeline (no host counted per interval)"


def ordered_hosts(sweep: Sweep) -> list[HostResult]:
    """Hosts as the heatmap lists them: by group, then dropping hosts by when they started, quiet, failed."""

    def key(host: HostResult) -> tuple[Any, ...]:
        group = host.groups[0] if getattr(host, "groups", ()) else ""
        if host.status is not Status.OK:
            return (group, 2, 0, 0, host.name)
        series = total_series(host)
        first = next((i for i, n in enumerate(series) if n), None)
        start = host_start(host) or 0.0
        if first is None:
            return (group, 1, 0, 0, host.name)
        step = host.timeline.interval_s if host.timeline else 1
        return (group, 0, math.floor(start + first * step), -sum(series), host.name)

    return sorted(sweep.hosts, key=key)


def heatmap_grid(hosts: Sequence[HostResult]) -> tuple[float, int, list[list[int | None]]]:
    """(origin epoch, step s, one row per host) on a grid common to the fleet; None where a host did not watch."""
    timed = [h for h in hosts if h.timeline is not None and host_start(h) is not None]
    if not timed:
        return 0.0, 1, [[] for _ in hosts]
    step = max(h.timeline.interval_s for h in timed)  # type: ignore[union-attr]
    origin = math.floor(min(host_start(h) for h in timed))  # type: ignore[type-var]
    end = max(host_start(h) + h.timeline.length * h.timeline.interval_s for h in timed)  # type: ignore[operator,union-attr]
    columns = max(1, math.ceil((end - origin) / step))
    rows: list[list[int | None]] = []
    for host in hosts:
        row: list[int | None] = [None] * columns
        start = host_start(host)
        if host.timeline is not None and start is not None:
            for i, n in enumerate(total_series(host)):
                col = min(columns - 1, int((start + i * host.timeline.interval_s - origin) // step))
                row[col] = (row[col] or 0) + n
        rows.append(row)
    return float(origin), step, rows


def _label(host: HostResult) -> str:
    if host.status is not Status.OK:
        return f"{host.name} ({host.status.value})"
    return host.name


def _heatmap(sweep: Sweep) -> str:
    hosts = ordered_hosts(sweep)
    origin, step, rows = heatmap_grid(hosts)
    if not any(rows):
        return "<p>No host has a timeline (its probe does not count per interval).</p>"
    times = [_iso(origin + c * step) for c in range(len(rows[0]))]
    # Colour by log10(1 + drops): one storm must not wash out the hosts with a handful.
    z = [[None if n is None else round(math.log10(1 + n), 3) for n in row] for row in rows]
    top = max((n for row in rows for n in row if n), default=1)
    ticks = [v for v in (0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000) if v <= max(top, 1)]
    names = [_label(h) for h in hosts]
    data = [{
        "type": "heatmap", "x": times, "y": names, "z": z, "customdata": rows,
        "hovertemplate": "%{y}<br>%{x}<br>%{customdata} drops<extra></extra>",
        "colorscale": [[0, "#f2f2f2"], [0.0001, "#fee8c8"], [0.5, "#fc8d59"], [1, "#7f0000"]],
        "zmin": 0, "zmax": max(0.3, math.log10(1 + top)), "hoverongaps": False,
        "colorbar": {"title": {"text": "drops"}, "tickvals": [math.log10(1 + v) for v in ticks],
                     "ticktext": [str(v) for v in ticks]},
    }]  # fmt: skip
    if len(hosts) <= GAPS_UP_TO:
        data[0].update(xgap=1, ygap=1)  # cells apart; past this many rows, gaps cost more to draw than they help
    # A margin fitted to the longest name, not plotly's automargin: that measures all 1000 labels twice.
    left = min(400, 20 + 6 * max((len(n) for n in names), default=4))
    layout = {
        "height": 160 + ROW_PX * len(hosts), "margin": {"l": left, "r": 40, "t": 30, "b": 60},
        "yaxis": {"autorange": "reversed", "tickfont": {"size": 9}, "dtick": 1},
        "xaxis": {"title": {"text": f"time (UTC, {step} s per column, each host's own clock)"}, "type": "date"},
    }  # fmt: skip
    return plot("heatmap", data, layout)


def _host_chart(sweep: Sweep) -> str:
    dropping = sorted((h for h in sweep.hosts if any(total_series(h))), key=lambda h: (-sum(total_series(h)), h.name))
    shown = dropping[:HOST_CHARTS_MAX]
    if not shown:
        return "<p>No host dropped inside its timeline.</p>"
    data, owner = [], []
    for index, host in enumerate(shown):
        step = host.timeline.interval_s  # type: ignore[union-attr]
        for kind, series in sorted(drop_series(host).items()):
            if any(series):
                data.append({"type": "bar", "name": kind, "x": [i * step for i in range(len(series))], "y": list(series),
                             "visible": index == 0, "hovertemplate": f"{kind}<br>%{{x}} s: %{{y}}<extra></extra>"})  # fmt: skip
                owner.append(index)
    buttons = [
        {"label": host.name, "method": "update",
         "args": [{"visible": [o == index for o in owner]}, {"title": {"text": _host_title(host)}}]}
        for index, host in enumerate(shown)
    ]  # fmt: skip
    layout = {
        "barmode": "stack", "height": 380, "title": {"text": _host_title(shown[0])},
        "xaxis": {"title": {"text": "seconds into the host's window"}}, "yaxis": {"title": {"text": "drops"}},
        "updatemenus": [{"buttons": buttons, "x": 0, "y": 1.25, "xanchor": "left", "showactive": True}],
        "margin": {"t": 90},
    }  # fmt: skip
    more = f"<p>The {HOST_CHARTS_MAX} busiest of {len(dropping)} dropping hosts.</p>" if len(dropping) > len(shown) else ""
    return plot("hosts", data, layout) + more


def _host_title(host: HostResult) -> str:
    started = activity(host) or {}
    first = started.get("first_interval")
    step = host.timeline.interval_s if host.timeline else 1
    going = "still dropping at the window's end" if started.get("ongoing_at_end") else "stopped before the end"
    return f"{host.name} ({host.probe}): from {first * step if first is not None else '-'} s, {going}"


def _diagnosis(sweep: Sweep) -> str:
    port = getattr(sweep, "port", None)
    parts = [_verdict("fleet", v) for v in fleet_events(sweep)]
    for host in sweep.hosts:
        parts += [_verdict(host.name, v) for v in host_verdicts(host, port) if v.code != "drop_reason"]
        for flow in host.flows:
            for verdict in flow_document(host, flow)["verdicts"]:
                if verdict["code"] != "drop_reason":
                    parts.append(_verdict(f"{host.name} {flow.laddr}:{flow.lport} <- {flow.raddr}:{flow.rport}", verdict))
    for host in sweep.hosts:
        parts += [_verdict(host.name, v) for v in host_verdicts(host, port) if v.code == "drop_reason"]
    return "\n".join(parts) or "<p>No findings: nothing dropped, nothing to explain.</p>"


def _verdict(subject: str, verdict: Any) -> str:
    doc = verdict if isinstance(verdict, dict) else verdict.as_dict()
    return (
        f'<div class="verdict" data-code="{html.escape(doc["code"])}"><b>{html.escape(subject)}</b>: '
        f'{html.escape(doc["summary"])}<div class="step">next step: {html.escape(doc["next_step"])}</div></div>'
    )


def _flows(sweep: Sweep) -> str:
    headers = ["host", "local", "remote", "reason", "drops", "over time", "rcvbuf", "sndbuf", "backlog max",
               "rmem max", "queue max", "limit", "verdicts"]  # fmt: skip
    rows = []
    for host in sweep.hosts:
        for flow in host.flows:
            doc = flow_document(host, flow)
            rows.append([
                host.name, f"{flow.laddr}:{flow.lport}", f"{flow.raddr}:{flow.rport}", flow.reason, flow.drops,
                sparkline(flow.timeline, "unicode") if flow.timeline else "",
                *(doc.get(k, "") for k in ("rcvbuf", "sndbuf", "backlog_len_max", "rmem_alloc_max", "queue_max",
                                           "backlog_limit")),
                ", ".join(v["code"] for v in doc["verdicts"]),
            ])  # fmt: skip
    if not rows:
        return "<p>No dropping TCP flow was seen in the window.</p>"
    rows.sort(key=lambda r: -int(r[4]))
    more = f"<p>The {FLOW_ROWS_MAX} busiest of {len(rows)} flows (the JSON document has them all).</p>" if len(rows) > FLOW_ROWS_MAX else ""
    return html_table(headers, rows[:FLOW_ROWS_MAX]) + more + _socketless(sweep)


def _socketless(sweep: Sweep) -> str:
    """Drops without a socket over time, per host, reason and local port (such flows have no series of their own)."""
    rows = [
        [host.name, reason, port, sum(series), sparkline(series, "unicode")]
        for host in sweep.hosts if host.timeline is not None
        for reason, by_port in host.timeline.ports.items()
        for port, series in by_port.items() if sum(series)
    ]  # fmt: skip
    if not rows:
        return ""
    rows.sort(key=lambda r: -int(r[3]))
    return ("<h3>Drops without a socket, by local port</h3>"
            + html_table(["host", "reason", "local port", "drops", "over time"], rows[:FLOW_ROWS_MAX]))  # fmt: skip


def _hosts(sweep: Sweep) -> str:
    headers = ["host", "groups", "status", "probe", "fidelity", "kernel", "drops", "over time", "started at",
               "at the end", "error / notes"]  # fmt: skip
    rows = []
    for host in sweep.hosts:
        seen = activity(host) or {}
        series = total_series(host)
        fidelity = getattr(host.fidelity, "value", host.fidelity) or ""
        rows.append([
            host.name, ", ".join(host.groups), host.status.value, host.probe or "", fidelity, host.kernel or "",
            sum(series) if series else sum(host.drops.values()), sparkline(series, "unicode") if series else "",
            _iso(seen["first_at"]) if seen.get("first_at") else "", "dropping" if seen.get("ongoing_at_end") else "",
            host.error or "; ".join(host.notes),
        ])  # fmt: skip
    return html_table(headers, rows)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            cls = ' class="num"' if number else (' class="spark"' if isinstance(value, str) and _is_spark(value) else "")
            cells.append(f"<td{cls}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>' + "\n".join(body) + "</tbody></table></div>"


def _is_spark(text: str) -> bool:
    return bool(text) and all(ch in "▁▂▃▄▅▆▇█" for ch in text)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
