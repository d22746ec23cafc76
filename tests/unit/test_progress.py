"""What people see on stderr: live progress on a terminal, nothing for cron, NO_COLOR honoured."""

from __future__ import annotations

import io

from fleetdiag.cli.environment import Environment
from fleetdiag.cli.progress import SweepProgress
from fleetdiag.model import HostResult, Status


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_terminal_gets_stages_done_lines_and_time_left():
    clock, stderr = Clock(), Terminal()
    env = Environment(stderr=stderr, environ={}, clock=clock)
    with SweepProgress(env, total=2, duration_s=30) as progress:
        progress("h01", "connecting", None)
        progress("h02", "watching", None)
        clock.now += 12
        status = progress.status().plain
        assert "1 connecting" in status and "1 watching" in status and "0/2 done" in status
        assert "window: 18 s left" in status
        progress("h01", "done", HostResult("h01", "a", Status.UNREACHABLE, error="connection refused"))
        assert "1/2 done (1 failed)" in progress.status().plain
    assert "[1/2] h01: unreachable (connection refused)" in stderr.getvalue()


def test_cron_gets_nothing_on_stderr_but_follow_lines():
    stderr = io.StringIO()  # not a terminal
    env = Environment(stderr=stderr, environ={})
    assert not env.interactive
    with SweepProgress(env, total=1, duration_s=5) as progress:
        progress("h01", "watching", None)
        progress("h01", "done", HostResult("h01", "a", Status.OK))
        assert stderr.getvalue() == ""
        progress.print("08:00:01 h01 +3 NO_SOCKET")  # --follow was asked for: plain lines
    assert stderr.getvalue() == "08:00:01 h01 +3 NO_SOCKET\n"


def test_no_color_turns_a_terminal_into_plain_output():
    assert not Environment(stderr=Terminal(), environ={"NO_COLOR": "1"}).interactive
    assert Environment(stderr=Terminal(), environ={"NO_COLOR": ""}).interactive  # set but empty: ignored
    assert Environment(stderr=Terminal(), environ={}).interactive
