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


def test_the_question_is_recognised_in_what_the_channel_reads():
    from fleetdiag.transport.base import asked

    assert asked(bytearray(b"@@fleetdiag kernel\n6.1\n@@fleetdiag ask\n"))
    assert asked(b"@@fleetdiag ask\n")
    assert not asked(bytearray(b"@@fleetdiag ask"))  # not a whole line yet
    assert not asked(b"echo '@@fleetdiag ask' is quoted\n")
