"""The HTML report at fleet scale: a 1000-host sweep drawn in headless Chromium, against an empty page.

Run from the repository root: ``python3 benchmarks/html_report.py [--hosts 1000] [--intervals 60]``.
The sweep is built from a recorded bpftrace window (tests/unit/fixtures/window/bpftrace-timeline.stdout.txt,
real NO_SOCKET and SOCKET_FILTER drops) copied to every host, with its drops moved to each group's own second so the
heatmap has structure. Both pages (the report, and plotly alone with no plot) are opened 3 times
in the same run with the network off; the page's own ``data-rendered-ms`` (performance.now() once
every plot is drawn) is compared. Target: the report renders in under 5 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the lab's browser helper lives with the tests

from fleetdiag.collector import window_result  # noqa: E402
from fleetdiag.facts import parse_facts  # noqa: E402
from fleetdiag.model import HostResult, HostSpec, Status, Sweep, Timeline, Window, frozen_map  # noqa: E402
from fleetdiag.render import html  # noqa: E402
from fleetdiag.tracers import bpftrace  # noqa: E402
from tests.lab.browser import chromium, open_offline  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures"
RUNS = 3
TARGET_MS = 5000


def recorded_host() -> HostResult:
    """The recorded window, read by the collector as it reads any host's."""
    facts = parse_facts((FIXTURES / "detection" / "debian12-6.18-bpftrace" / "stdout.txt").read_text())
    stdout = (FIXTURES / "window" / "bpftrace-timeline.stdout.txt").read_text()
    plan = bpftrace.plan(facts, Window(8))
    from fleetdiag.transport.base import CommandResult

    return window_result(HostSpec("rec", "127.0.0.1"), facts, bpftrace, plan.probe, CommandResult(stdout, "", 0),
                         plan=plan, window=Window(8))  # fmt: skip


def fleet(hosts: int, intervals: int) -> Sweep:
    """HOSTS copies of the recorded host in 10 groups; a third drop, at their group's second, the rest are quiet."""
    base = recorded_host()
    assert base.timeline is not None
    burst = [sum(s[i] for s in base.timeline.drops.values()) for i in range(base.timeline.length)]
    burst = [n for n in burst if n] or [1]
    results = []
    for i in range(hosts):
        group = f"rack{i % 10:02d}"
        series = [0] * intervals
        dropping = i % 3 == 0
        if dropping:
            onset = (i % 10) * intervals // 12
            for k, n in enumerate(burst * (1 + i % 4)):
                series[min(intervals - 1, onset + k)] += n * (1 + i % 7)
        drops = {"NO_SOCKET": sum(series)} if dropping else {}
        timeline = Timeline(1, base.window_start, frozen_map({"NO_SOCKET": tuple(series)} if dropping else {}),
                            frozen_map(), intervals)  # fmt: skip
        flows = tuple(dataclasses.replace(f, timeline=None, drops=0) for f in base.flows[:1]) if dropping else ()
        flows = tuple(dataclasses.replace(f, drops=sum(series), timeline=tuple(series)) for f in flows)
        results.append(dataclasses.replace(base, name=f"host{i:04d}.{group}", address=f"10.{i // 250}.{i % 250}.1",
                                           drops=frozen_map(drops), flows=flows, timeline=timeline, groups=(group,)))  # fmt: skip
    results[-1] = HostResult("host-down", "10.9.9.9", Status.UNREACHABLE, error="connection refused", groups=("rack00",))
    return Sweep(datetime.fromtimestamp(base.window_start or 0, timezone.utc), intervals, tuple(results))


def rendered_ms(page: Path, workdir: Path) -> tuple[float, str, list[str]]:
    opened = open_offline(page, workdir)
    found = re.search(r'data-rendered-ms="(\d+)"', opened.dom)
    if not found:
        raise SystemExit(f"{page.name}: the page never finished drawing; console: {opened.console}")
    return float(found.group(1)), opened.dom, opened.console


def measure(hosts: int, intervals: int, runs: int = RUNS) -> dict[str, float]:
    """Python render seconds, file size and the median Chromium draw times of the report and of the empty page."""
    if not chromium():
        raise SystemExit("needs chromium (Debian package chromium)")
    from plotly.offline import get_plotlyjs

    sweep = fleet(hosts, intervals)
    started = time.perf_counter()
    text = html.render(sweep)
    python_s = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="fleetdiag-html-bench-"))
    report, empty = work / "report.html", work / "empty.html"
    report.write_text(text)
    empty.write_text(html.page("empty", get_plotlyjs(), []))
    full, bare = [], []
    for run in range(runs):
        for page, into in ((report, full), (empty, bare)):
            (work / f"{page.stem}{run}").mkdir()
            ms, dom, console = rendered_ms(page, work / f"{page.stem}{run}")
            if console:
                raise SystemExit(f"{page.name}: console messages: {console}")
            if page is report:
                missing = [h.name for h in sweep.hosts if h.name not in dom]
                if missing:
                    raise SystemExit(f"the DOM lacks {len(missing)} host names, e.g. {missing[:3]}")
            into.append(ms)
    return {"python_s": python_s, "bytes": float(len(text.encode())), "report_ms": statistics.median(full),
            "empty_ms": statistics.median(bare)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--intervals", type=int, default=60)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    got = measure(args.hosts, args.intervals, args.runs)
    print(f"{args.hosts} hosts x {args.intervals} intervals: HTML {got['bytes'] / 1e6:.2f} MB, rendered by Python in "
          f"{got['python_s']:.2f} s")  # fmt: skip
    print(f"Chromium, median of {args.runs}: report drawn at {got['report_ms']:.0f} ms, plotly alone at "
          f"{got['empty_ms']:.0f} ms (ratio {got['report_ms'] / max(got['empty_ms'], 1):.2f}); "
          f"target < {TARGET_MS} ms: {'met' if got['report_ms'] < TARGET_MS else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
