"""Detection and the window in one round trip: the script asks, the controller answers mid-run.

Run for real through the local transport (the SSH transport shares the protocol; the lab's
e2e tests exercise it on every collect).
"""

from __future__ import annotations

import os

from fleetdiag.collector import collect_host
from fleetdiag.model import HostSpec, Status, Window
from fleetdiag.transport.base import ASK_MARKER, reply
from fleetdiag.transport.local import LocalTransport
from fleetdiag.window_script import detect_then_window_script


def test_the_reply_runs_in_the_same_shell_with_the_session_contract():
    asked = []

    def answer(stdout: str) -> tuple[bytes, float]:
        asked.append(stdout)
        return reply(b'echo "window ran with $1"; echo "trailing newlines kept"\n\n'), 10.0

    result = LocalTransport().run(detect_then_window_script("echo '@@fleetdiag kernel'; uname -r"), 10, answer=answer)
    assert asked == [f"@@fleetdiag kernel\n{os.uname().release}\n{ASK_MARKER}\n"]
    assert result.exit_code == 0
    assert result.stdout.endswith(f"{ASK_MARKER}\nwindow ran with stop-on-stdin-eof\ntrailing newlines kept\n")


def test_an_empty_reply_ends_the_script_having_done_nothing_else():
    result = LocalTransport().run(detect_then_window_script("echo facts"), 10, answer=lambda _: (reply(b""), 5.0))
    assert (result.stdout, result.exit_code) == (f"facts\n{ASK_MARKER}\n", 0)


def test_a_reply_larger_than_a_pipe_buffer_arrives_whole():
    body = "".join(f"# filler line {i:06d} ........................................\n" for i in range(3000))
    script = (body + "echo done\n").encode()
    assert len(script) > 150_000  # beyond both a pipe buffer and one argument's 128 KiB
    result = LocalTransport().run(detect_then_window_script("true"), 20, answer=lambda _: (reply(script), 10.0))
    assert result.exit_code == 0, result.stderr
    assert "done" in result.stdout


class CountingLocal(LocalTransport):
    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return super().run(*args, **kwargs)


def test_collect_detects_and_watches_in_one_round_trip():
    transport = CountingLocal()
    gate_calls = []
    result = collect_host(HostSpec("here", "127.0.0.1", connection="local"), transport, Window(1), "counters",
                          before_window=lambda: gate_calls.append(1))  # fmt: skip
    assert result.status is Status.OK, result.error
    assert result.probe.startswith("counters") and "TCPBacklogDrop" in result.counters
    assert result.window_end - result.window_start >= 0.9
    assert transport.runs == 1 and gate_calls == [1]


def test_a_stop_at_the_gate_ends_the_host_with_its_reason_and_no_window():
    from fleetdiag.errors import HostError

    def stop() -> None:
        raise HostError("interrupted by SIGINT before the window started")

    transport = CountingLocal()
    result = collect_host(HostSpec("here", "127.0.0.1", connection="local"), transport, Window(30), "counters", before_window=stop)
    assert result.status is Status.FAILED
    assert result.error == "interrupted by SIGINT before the window started"
    assert transport.runs == 1


def test_each_question_is_counted_in_what_the_channel_reads():
    from fleetdiag.transport.base import QuestionCounter

    counter = QuestionCounter()
    assert counter.feed(b"@@fleetdiag kernel\n6.1\n@@fleetdiag a") == 0  # not a whole line yet
    assert counter.feed(b"sk\n") == 1
    assert counter.feed(b"@@fleetdiag ask\n@@fleetdiag ask\n") == 3  # adjacent questions both count
    assert counter.feed(b"echo '@@fleetdiag ask' is quoted\n") == 3


def test_the_window_sets_up_before_the_gate_and_starts_on_go(tmp_path):
    """Second question: the temp dir and files exist while the host waits at the gate."""
    from fleetdiag.tracers.base import ProbePlan
    from fleetdiag.window_script import GO_REPLY, build_window_script

    plan = ProbePlan(tracer="x", probe="x", files={"a.txt": "hello"}, command="sh -c 'cat a.txt; echo @@attached'")
    window = build_window_script(plan, 1, ask_before_start=True).encode()
    seen = []

    def answer(stdout: str) -> tuple[bytes, float]:
        seen.append(sorted(p.name for d in tmp_path.glob("fleetdiag.*") for p in d.iterdir()))
        return (reply(window), 10.0) if len(seen) == 1 else (reply(GO_REPLY), 10.0)

    script = f"export TMPDIR={tmp_path}\n" + detect_then_window_script("echo facts")
    result = LocalTransport().run(script, 20, answer=answer)
    # Set up before "go" (the plan's file, the result's section headers, the stopper's closing read, the TcpExt
    # samples' file); nothing started yet.
    assert seen == [[], ["a.txt", "section.counters_after", "section.probe_out", "stop", "tcpext"]]
    assert "@@fleetdiag window" in result.stdout and "hello\n@@attached" in result.stdout
    assert not list(tmp_path.iterdir())  # and removed after


def test_no_go_ends_the_window_script_before_its_probe_starts(tmp_path):
    from fleetdiag.tracers.base import ProbePlan
    from fleetdiag.window_script import build_window_script

    plan = ProbePlan(tracer="x", probe="x", command="touch started; echo @@attached")
    window = build_window_script(plan, 1, ask_before_start=True).encode()
    replies = iter([reply(window), reply(b"")])
    script = f"export TMPDIR={tmp_path}\n" + detect_then_window_script("echo facts")
    result = LocalTransport().run(script, 20, answer=lambda _: (next(replies), 10.0))
    assert result.exit_code == 0 and "@@fleetdiag window" not in result.stdout
    assert not list(tmp_path.iterdir())
