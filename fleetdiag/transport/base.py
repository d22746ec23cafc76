"""The small interface every way of reaching a host implements (SSH today, local, Ansible later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Every script runs as `sh -c SCRIPT fleetdiag stop-on-stdin-eof`: its stdin stays open for
# as long as the controller wants it to run, and EOF on stdin (the controller asked to stop,
# or died) tells a window script to end its window now. $1 says this contract holds.
SESSION_ARGS = ("fleetdiag", "stop-on-stdin-eof")


# Receives stdout line by line while a script runs (from the thread running it).
LineCallback = Callable[[str], None]

# A script may ask the controller questions mid-run, so detection and the window share one
# round trip: it prints ASK_MARKER on a line of its own and reads the reply, "LENGTH\nBYTES", on
# stdin. The Answer gets stdout so far for each question in turn and returns the reply
# (``reply(...)``) and the seconds the script may take until it asks again or ends; it may
# block (the sweep's window gate) and must not raise.
ASK_MARKER = "@@fleetdiag ask"
Answer = Callable[[str], "tuple[bytes, float]"]


def reply(data: bytes) -> bytes:
    """The framing a script reads after ASK_MARKER: the length on a line, then the bytes."""
    return f"{len(data)}\n".encode() + data


class LineSplitter:
    """Feeds ``on_line`` each complete line of a stream that arrives in arbitrary chunks."""

    def __init__(self, on_line: LineCallback) -> None:
        self.on_line = on_line
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        """Add bytes; call ``on_line`` for every line they complete (text, newline stripped)."""
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self.on_line(line.decode("utf-8", "replace"))


class QuestionCounter:
    """Counts the ASK_MARKER lines in a stream that arrives in arbitrary chunks."""

    def __init__(self) -> None:
        self.count = 0
        self._lines = LineSplitter(self._line)

    def _line(self, line: str) -> None:
        if line == ASK_MARKER:
            self.count += 1

    def feed(self, chunk: bytes) -> int:
        """Add bytes; the number of questions asked so far."""
        self._lines.feed(chunk)
        return self.count


@dataclass(frozen=True)
class CommandResult:
    """What one remote script returned."""

    stdout: str
    stderr: str
    exit_code: int


class Transport(Protocol):
    """Runs POSIX shell scripts on one host, with the privileges the inventory asked for.

    ``can_answer`` says whether ``run`` takes ``answer`` (SSH and local do; a transport that
    cannot talk back mid-run gets detection and the window as two runs).
    """

    can_answer: bool

    def run(
        self, script: str, timeout: float, on_line: LineCallback | None = None, answer: Answer | None = None
    ) -> CommandResult:
        """Run ``script`` with ``sh -c`` on the host; raise HostError subclasses on transport failure.

        ``on_line`` (optional) also gets each stdout line as it arrives (--follow);
        the result still holds all of stdout. ``answer`` replies to each ASK_MARKER.
        """
        ...

    def request_stop(self) -> None:
        """Close the running script's stdin (it wraps up and reports); safe from any thread."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...
