"""--follow: the window script's live lines, their bound, and their decoding into per-interval drops."""

from __future__ import annotations

import time

from fleetdiag.collector import window_result
from fleetdiag.live import LiveDecoder, LiveDrops, describe
from fleetdiag.model import HostSpec, Status, Window, frozen_map
from fleetdiag.tracers import bpftrace, counters
from fleetdiag.tracers.base import ProbePlan
from fleetdiag.transport.base import CommandResult
from fleetdiag.transport.local import LocalTransport
from fleetdiag.window_script import build_window_script
from tests.unit.conftest import fixture_text

RECORDED = "window/bpftrace-follow.stdout.txt"  # real bpftrace --follow window, NO_SOCKET drops to port 9


def test_recorded_follow_output_decodes_into_interval_drops(facts_6_18):
    stdout = fixture_text(RECORDED)
    seen: list[LiveDrops] = []
    decoder = LiveDecoder("localhost", bpftrace, facts_6_18, seen.append)
    for line in stdout.splitlines():
        decoder.feed(line)
    final = window_result(HostSpec("localhost", "127.0.0.1"), facts_6_18, bpftrace, "bpftrace:kfree_skb",
                          CommandResult(stdout, "", 0))
    assert final.status is Status.OK  # the live lines do not disturb the sections
    assert seen and all(d.host == "localhost" and d.at for d in seen)
    assert sum(d.reasons.get("NO_SOCKET", 0) for d in seen) == final.drops["NO_SOCKET"]
    assert all(n > 0 for d in seen for n in d.reasons.values())  # deltas, never running totals


def test_follow_lines_stream_while_the_window_runs(facts_6_18):
    """The counters tier for real: live lines arrive during the window, not at its end."""
    arrivals: list[tuple[float, str]] = []
    script = build_window_script(counters.plan(facts_6_18, Window(2, follow=True)), 2, follow=True)
    result = LocalTransport().run(script, 30, on_line=lambda line: arrivals.append((time.monotonic(), line)))
    ended = time.monotonic()
    live = [(at, line) for at, line in arrivals if line.startswith("@@live tcpext ")]
    assert len(live) >= 2 and ended - live[0][0] > 1.5  # the first came well before the end
    assert "TCPBacklogDrop=" in live[0][1]
    final = window_result(HostSpec("h", "a"), facts_6_18, counters, "counters", result)
    assert final.status is Status.OK and final.counters["TCPBacklogDrop"] == 0


def test_live_output_is_bounded_whatever_the_probe_prints(facts_6_18):
    flood = "sh -c 'echo @@attached; i=0; while [ $i -lt 20000 ]; do echo flood-line-$i; i=$((i+1)); done; sleep 2'"
    plan = ProbePlan(tracer="test", probe="flood", command=flood)
    lines: list[str] = []
    LocalTransport().run(build_window_script(plan, 2, follow=True), 30, on_line=lines.append)
    probe_lines = [line for line in lines if line.startswith("@@live probe ")]
    intervals = [line for line in lines if line.startswith("@@live tcpext ")]
    assert 0 < len(probe_lines) <= 20 * len(intervals)


def test_nothing_streams_without_follow(facts_6_18):
    lines: list[str] = []
    script = build_window_script(counters.plan(facts_6_18, Window(1)), 1)
    LocalTransport().run(script, 30, on_line=lines.append)
    assert not [line for line in lines if line.startswith("@@live")]


def test_bpftrace_prints_running_totals_only_when_following(facts_6_18):
    assert "print(@total)" in bpftrace.plan(facts_6_18, Window(5, follow=True)).files["probe.bt"]
    assert "print(@total)" not in bpftrace.plan(facts_6_18, Window(5)).files["probe.bt"]


def test_one_line_per_interval_for_people():
    drops = LiveDrops("h01", None, frozen_map({"TCP_OLD_DATA": 100, "SOCKET_BACKLOG": 5}), frozen_map({"TCPBacklogDrop": 5}))
    assert describe(drops) == "h01 +100 TCP_OLD_DATA, +5 SOCKET_BACKLOG | TcpExt TCPBacklogDrop +5"
