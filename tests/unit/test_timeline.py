"""Time inside the window: intervals, dense series whose sums are the totals, fleet events, sparklines, HTML."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import datetime, timezone

import pytest

from fleetdiag.collector import window_result
from fleetdiag.diagnosis.fleet import activity, fleet_events
from fleetdiag.document import load_sweep, sweep_document
from fleetdiag.model import Fidelity, HostResult, HostSpec, ProbeReport, Status, Sweep, Timeline, Window, frozen_map
from fleetdiag.render import html as html_render
from fleetdiag.render import jsonl, rendered, table
from fleetdiag.render.sparkline import buckets, sparkline, style_for
from fleetdiag.timeline import counter_series, dense, host_timeline, interval_count, interval_for
from fleetdiag.tracers import bpftrace, counters, systemtap
from fleetdiag.transport.base import CommandResult
from tests.unit.conftest import fixture_text

T0 = 1_795_000_000.0


def test_intervals_stay_under_600_and_cover_the_window():
    for duration in (1, 59, 600, 601, 1800, 3601, 86400):
        step = interval_for(duration)
        assert interval_count(duration) <= 600 and interval_count(duration) * step >= duration
    assert (interval_for(600), interval_for(601), interval_for(86400)) == (1, 2, 144)


def test_dense_puts_late_stamps_in_the_last_interval():
    assert dense({0: 1, 2: 3, 5: 2, 7: 1}, 6) == (1, 0, 3, 0, 0, 3)


def test_counter_series_telescopes_to_the_window_delta():
    before, after = {"TCPBacklogDrop": 100, "ListenDrops": 5}, {"TCPBacklogDrop": 160, "ListenDrops": 5}
    # Interval 1's sample is missing (a skipped tick): interval 2's read carries it.
    samples = [(0, {"TCPBacklogDrop": 100, "ListenDrops": 5}), (2, {"TCPBacklogDrop": 140}), (3, {"TCPBacklogDrop": 150})]
    series = counter_series(before, samples, after, ["TCPBacklogDrop", "ListenDrops", "Missing"], 5)
    assert series == {"TCPBacklogDrop": (0, 0, 40, 10, 10), "ListenDrops": (0, 0, 0, 0, 0)}
    # A sample for the last interval is ignored: the final read ends it, so the sums are exact.
    assert counter_series(before, [(4, {"TCPBacklogDrop": 999})], after, ["TCPBacklogDrop"], 5)["TCPBacklogDrop"][-1] == 60


def test_a_full_interval_map_is_said_not_hidden():
    report = ProbeReport(drops=frozen_map({"SOCKET_BACKLOG": 10}), timed=True,
                         intervals=frozen_map({"SOCKET_BACKLOG": frozen_map({1: 7})}))  # fmt: skip
    timeline, _, notes = host_timeline(report, 4, T0, {}, {}, [])
    assert timeline.drops["SOCKET_BACKLOG"] == (0, 7, 0, 0)
    (note,) = notes
    assert "7 of 10" in note and "other 3" in note


def test_a_probe_without_a_timeline_gets_none():
    assert host_timeline(ProbeReport(drops=frozen_map({"X": 1})), 5, T0, {}, {}, [])[0] is None


def _recorded(facts_6_18):
    """A real bpftrace window, as the collector reads it: loopback SYNs 4 s into an 8 s window to a closed port
    (NO_SOCKET, no socket) and to a listener whose filter drops all (SOCKET_FILTER, retransmitted a second later)."""
    plan = bpftrace.plan(facts_6_18, Window(8))
    stdout = fixture_text("window/bpftrace-timeline.stdout.txt")
    return window_result(HostSpec("h01", "127.0.0.1"), facts_6_18, bpftrace, plan.probe, CommandResult(stdout, "", 0),
                         plan=plan, window=Window(8))  # fmt: skip


def test_recorded_bpftrace_window_has_its_timeline(facts_6_18):
    host = _recorded(facts_6_18)
    timeline = host.timeline
    assert (timeline.interval_s, timeline.start, timeline.length) == (1, host.window_start, 8)
    assert timeline.drops == {"NO_SOCKET": (0, 0, 0, 0, 2, 0, 0, 0), "SOCKET_FILTER": (0, 0, 0, 0, 1, 1, 0, 0)}
    assert {r: sum(s) for r, s in timeline.drops.items()} == dict(host.drops)
    by_reason = {f.reason: f.timeline for f in host.flows}
    assert by_reason == {"SOCKET_FILTER": (0, 0, 0, 0, 1, 1, 0, 0), "NO_SOCKET": None}  # per flow: socket drops only
    assert activity(host) == {"dropping": True, "first_interval": 4, "first_at": round(host.window_start + 4, 3),
                              "ongoing_at_end": False}  # fmt: skip


def test_the_interval_reaches_every_tracer_script(facts_6_18):
    long = Window(3600)
    assert "/ 6000000000;" in bpftrace.plan(facts_6_18, long).files["probe.bt"]
    assert "fd_interval_s=6" in systemtap.module_parameters(facts_6_18, long)
    script = counters.plan(dataclasses.replace(facts_6_18, tools=frozenset({"ss"})), long).files["probe.sh"]
    assert "step=6\n" in script and "every=5\n" in script and "interval=30\n" in script


def test_stap_records_parse_into_a_timeline(facts_6_18):
    # The shape stap_backlog.stp's end probe prints (stap cannot run on this kernel).
    out = ("@@attached\ntotal SOCKET_BACKLOG 5\nflow - 10.0.0.2 80 10.0.0.3 4000 SOCKET_BACKLOG 5 8192 4096 0 1 2 3\n"
           "timed\ntimeline SOCKET_BACKLOG 1 2\ntimeline SOCKET_BACKLOG 3 3\n"
           "flowtl - 10.0.0.2 80 10.0.0.3 4000 SOCKET_BACKLOG 1 2\nflowtl - 10.0.0.2 80 10.0.0.3 4000 SOCKET_BACKLOG 3 3\n"
           "@@window_end\n")  # fmt: skip
    timeline, flows, notes = host_timeline(systemtap.parse(out, facts_6_18), 5, T0, {}, {}, [])
    assert timeline.drops == {"SOCKET_BACKLOG": (0, 2, 0, 3, 0)} and notes == ()
    assert flows[0].timeline == (0, 2, 0, 3, 0)


def test_the_counters_sampler_reads_tcpext_every_interval(facts_6_18, tmp_path):
    """probes/counters_ss.sh run for real (a 2 s window, ss absent from its output): a tcpext line per interval."""
    fake = tmp_path / "bin" / "ss"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ntrue\n")
    fake.chmod(0o755)
    facts = dataclasses.replace(facts_6_18, tools=frozenset({"ss"}))
    (tmp_path / "probe.sh").write_text(counters.plan(facts, Window(2)).files["probe.sh"])
    import os

    done = subprocess.run(["sh", "probe.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples = counters.counter_samples(done.stdout)
    assert [i for i, _ in samples][:1] == [0] and len(samples) <= 2
    assert "TCPBacklogDrop" in samples[0][1]  # the first read names every counter; later ones what moved
    assert counters.parse(done.stdout, facts).timed


def _host(name, series, reason="NO_SOCKET", start=T0, groups=(), status=Status.OK):
    timeline = Timeline(1, start, frozen_map({reason: tuple(series)} if any(series) else {}), frozen_map(), len(series))
    return HostResult(name, "a", status, probe="bpftrace:kfree_skb", drops=frozen_map({reason: sum(series)} if any(series) else {}),
                      window_start=start, timeline=timeline if status is Status.OK else None, groups=groups)  # fmt: skip


def _sweep(*hosts):
    return Sweep(datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc), 6, hosts)


def test_hosts_starting_together_are_one_fleet_event():
    sweep = _sweep(
        _host("a", [0, 0, 3, 1, 0, 0]), _host("b", [0, 0, 0, 2, 0, 0], start=T0 - 0.6),  # same second, other clock phase
        _host("quiet", [0] * 6), _host("late", [0, 0, 0, 0, 0, 5]), _host("always", [4, 4, 4, 4, 4, 4]),
        _host("other", [0, 0, 9, 0, 0, 0], reason="SOCKET_BACKLOG"),
    )
    (event,) = fleet_events(sweep)
    assert event.code == "fleet_event" and event.evidence["reason"] == "NO_SOCKET"
    assert event.evidence["hosts"] == "a, b" and event.evidence["at"] == "2026-11-18T11:06:42Z"
    for name in ("quiet", "late", "always", "other"):
        assert name not in event.summary
    assert event.next_step
    # A corrected clock drops in: host b's clock was 5 s behind, so it did not start with a.
    corrected = fleet_events(sweep, start_of=lambda h: h.window_start + (5 if h.name == "b" else 0))
    assert corrected == ()


def test_activity_says_when_and_whether_still_going():
    assert activity(_host("x", [0, 0, 1, 0, 2]))["ongoing_at_end"] is True
    assert activity(_host("x", [0, 0, 0]))["dropping"] is False
    assert activity(HostResult("x", "a", Status.UNREACHABLE)) is None


def test_document_round_trip_keeps_the_timeline_and_jsonl_stays_as_it_was(facts_6_18):
    sweep = _sweep(dataclasses.replace(_recorded(facts_6_18), groups=("web",)), _host("b", [0, 1, 0, 0, 0, 0, 0, 0]))
    doc = sweep_document(sweep)
    host = doc["hosts"][0]
    assert host["timeline"]["drops"]["NO_SOCKET"] == [0, 0, 0, 0, 2, 0, 0, 0] and host["timeline"]["intervals"] == 8
    assert host["groups"] == ["web"] and host["activity"]["first_interval"] == 4
    assert [f.get("timeline") for f in doc["flows"] if f["host"] == "h01"] == [[0, 0, 0, 0, 1, 1, 0, 0], None, None]
    again = sweep_document(load_sweep(json.loads(json.dumps(doc))))
    assert again == doc
    for line in jsonl.render(sweep).splitlines():
        record = json.loads(line)
        assert not {"timeline", "activity", "groups"} & set(record), record


def test_sparklines_by_terminal():
    assert sparkline([0, 1, 0, 8], "unicode") == "▁▂▁█"
    assert sparkline([0, 1, 0, 8], "ascii") == ".:.@"
    assert sparkline([0, 0], "unicode") == "▁▁" and sparkline((), "ascii") == ""
    assert len(sparkline([1] * 600)) == 24 and sum(buckets(list(range(600)))) == sum(range(600))
    assert style_for(True, {"LANG": "C.UTF-8"}) == "unicode"
    assert style_for(True, {"LANG": "C"}) == "ascii" and style_for(False, {"LANG": "en_US.UTF-8"}) == "ascii"


def test_table_shows_the_sparkline_and_fleet_events():
    sweep = _sweep(_host("a", [0, 0, 3, 1, 0, 0]), _host("b", [0, 0, 2, 0, 0, 0]))
    rows = table.host_rows(sweep, "unicode")
    assert rows[0][-2] == "▁▁█▄▁▁" and table.host_rows(sweep)[0][-2] == "..@=.."
    text = rendered("table", sweep, "ascii")
    assert "over time" in text and "fleet: 2 hosts started dropping NO_SOCKET" in text
    assert "█" not in rendered("table", sweep)  # piped: plain characters only


@pytest.fixture(scope="module")
def page():
    pytest.importorskip("plotly")
    hosts = [_host(f"web{i:02d}", [0, 0, i % 3, 1, 0, 0], groups=("web",)) for i in range(5)]
    hosts += [_host("db01", [0] * 6, groups=("db",)), HostResult("down01", "a", Status.UNREACHABLE, error="refused")]
    return html_render.render(_sweep(*hosts))


def test_html_is_one_self_contained_page(page):
    assert page.startswith("<!DOCTYPE html>") and "<script src" not in page and "<link" not in page
    assert page.count("Plotly.newPlot(") == 2  # the heatmap and the per-host chart
    for name in [f"web{i:02d}" for i in range(5)] + ["db01", "down01 (unreachable)"]:
        assert name in page
    assert 'data-code="fleet_event"' in page and "refused" in page


def test_heatmap_rows_sit_by_group_then_start():
    hosts = [_host("z-early", [0, 5, 0], groups=("b",)), _host("a-quiet", [0, 0, 0], groups=("b",)),
             _host("m-late", [0, 0, 1], groups=("a",)), _host("x-late", [0, 0, 1], groups=("b",)),
             _host("y-mid", [0, 0, 1], groups=("b",), start=T0 - 1)]  # fmt: skip
    ordered = [h.name for h in html_render.ordered_hosts(_sweep(*hosts))]
    assert ordered == ["m-late", "z-early", "y-mid", "x-late", "a-quiet"]
    origin, step, rows = html_render.heatmap_grid(html_render.ordered_hosts(_sweep(*hosts)))
    assert (origin, step) == (T0 - 1, 1) and rows[2] == [0, 0, 1, None]  # y-mid started a second earlier


def test_html_into_a_missing_directory_is_refused_before_any_host(tmp_path):
    from click.testing import CliRunner

    from fleetdiag.cli.collect import collect

    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 192.0.2.1\n")
    done = CliRunner().invoke(collect, ["-i", str(inventory), "--html", str(tmp_path / "no" / "r.html"),
                                        "--results-dir", str(tmp_path / "results")])  # fmt: skip
    assert done.exit_code == 2
    assert "--html" in done.output and "does not exist" in done.output
    assert not (tmp_path / "results").exists()  # not even the results dir was made


def test_untraced_hosts_start_by_their_drop_counters():
    timeline = Timeline(1, T0, frozen_map(), frozen_map({"TCPBacklogDrop": (0, 0, 4, 0), "TCPRcvCollapsed": (9, 9, 9, 9)}), 4)
    host = HostResult("c", "a", Status.OK, probe="counters+ss", window_start=T0, timeline=timeline,
                      fidelity=Fidelity.SAMPLED)  # fmt: skip
    assert activity(host)["first_interval"] == 2  # TCPRcvCollapsed is no drop counter
    (event,) = fleet_events(_sweep(host, _host("t", [0, 0, 1, 0], reason="TCPBacklogDrop")))
    assert event.evidence["hosts"] == "c, t"


def test_history_page_draws_each_sweep(page):
    from fleetdiag.history.store import summarize
    from fleetdiag.render import trend_html

    sweeps = []
    for day, drops in ((1, [0, 2, 0]), (2, [5, 0, 0])):
        sweep = dataclasses.replace(_sweep(_host("web01", drops), _host("db01", [0, 0, 0])),
                                    started_at=datetime(2026, 11, day, tzinfo=timezone.utc))  # fmt: skip
        sweeps.append((summarize(f"s{day}", sweep, f"s{day}.json"), sweep))
    text = trend_html.render(sweeps)
    assert text.count("Plotly.newPlot(") == 2 and "<script src" not in text
    assert '"x":["2026-11-01T00:00:00Z","2026-11-02T00:00:00Z"]' in text and '"y":[2,5]' in text


def test_a_traced_window_samples_tcpext_at_each_interval_end(tmp_path):
    """The real window script, run here: beside a traced probe it reads TcpExt at the end of every interval but the last."""
    from fleetdiag.counters import parse_netstat
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan
    from fleetdiag.transport.local import LocalTransport
    from fleetdiag.window_script import build_window_script

    plan = ProbePlan(tracer="x", probe="x", command="sh -c 'echo @@attached; exec sleep 5'")
    assert plan.traces
    script = f"export TMPDIR={tmp_path}\n" + build_window_script(plan, 2)
    sections = split_sections(LocalTransport().run(script, 30).stdout)
    samples = counters.counter_samples(sections["tcpext_samples"])
    # A 2 s window: interval 0 ends at a sample, interval 1 at the final read; the first sample names every counter.
    assert [index for index, _ in samples] == [0], sections["tcpext_samples"]
    before, after = parse_netstat(sections["counters_before"]), parse_netstat(sections["counters_after"])
    assert set(samples[0][1]) == set(before) and all(before[n] <= v <= after[n] for n, v in samples[0][1].items())
    assert list(tmp_path.iterdir()) == []  # the sampler's file went with the temp dir


def test_a_traced_windows_tcpext_samples_give_its_counters_a_timeline(facts_6_18):
    plan = bpftrace.plan(facts_6_18, Window(8))
    stdout = fixture_text("window/bpftrace-timeline.stdout.txt")
    before, after = _section_counters(stdout, "counters_before"), _section_counters(stdout, "counters_after")
    moved = next(name for name in before if after[name] > before[name])
    mid = before[moved] + (after[moved] - before[moved]) // 2
    stdout += f"@@fleetdiag tcpext_samples\ntcpext 0 {moved}={before[moved]}\ntcpext 4 {moved}={mid}\n"
    host = window_result(HostSpec("h01", "127.0.0.1"), facts_6_18, bpftrace, plan.probe, CommandResult(stdout, "", 0),
                         plan=plan, window=Window(8))  # fmt: skip
    series = host.timeline.counters[moved]
    assert series == (0, 0, 0, 0, mid - before[moved], 0, 0, after[moved] - mid)
    assert {n: sum(s) for n, s in host.timeline.counters.items()} == dict(host.counters)


def _section_counters(stdout: str, section: str) -> dict[str, int]:
    """The TcpExt counters of one section of a recorded window's output."""
    from fleetdiag.counters import parse_netstat
    from fleetdiag.sections import split_sections

    return parse_netstat(split_sections(stdout)[section])


def test_flows_without_a_socket_get_their_ports_series(facts_6_18):
    """@ptl: socketless drops per (reason, local port); a port's only flow takes its series, a shared one does not."""
    from fleetdiag.model import FlowDrop

    def flow(lport, rport, drops):
        return FlowDrop("10.0.0.2", lport, "10.0.0.3", rport, 1, "NO_SOCKET", drops)

    out = json.dumps({"type": "map", "data": {"@ptl": {"3,9998,1": 2, "3,9998,3": 1, "3,22,0": 4},
                                              "@tl": {"3,0": 4, "3,1": 2, "3,3": 1}, "@t0": 1}})  # fmt: skip
    parsed = bpftrace.parse(out, facts_6_18)
    assert parsed.port_intervals == {("NO_SOCKET", 9998): {1: 2, 3: 1}, ("NO_SOCKET", 22): {0: 4}}
    report = dataclasses.replace(parsed, drops=frozen_map({"NO_SOCKET": 7}),
                                 flows=(flow(9998, 40000, 2), flow(9998, 40001, 1), flow(22, 40002, 4)))  # fmt: skip
    timeline, flows, _ = host_timeline(report, 5, T0, {}, {}, [])
    assert timeline.ports == {"NO_SOCKET": {22: (4, 0, 0, 0, 0), 9998: (0, 2, 0, 1, 0)}}
    assert [f.timeline for f in flows] == [None, None, (4, 0, 0, 0, 0)]
    host = HostResult("h", "a", Status.OK, probe="bpftrace:kfree_skb", drops=report.drops, flows=flows,
                      window_start=T0, timeline=timeline)  # fmt: skip
    doc = sweep_document(_sweep(host))
    assert doc["hosts"][0]["timeline"]["ports"] == {"NO_SOCKET": {"22": [4, 0, 0, 0, 0], "9998": [0, 2, 0, 1, 0]}}
    assert load_sweep(json.loads(json.dumps(doc))).hosts[0].timeline.ports == timeline.ports
    page = html_render.render(_sweep(host))
    assert "Drops without a socket, by local port" in page and ">9998<" in page
