"""ChannelCommand.wait against a scripted channel: the order in which paramiko's transport thread
delivers a command's last data, EOF and close, relative to the reads of the waiting thread."""

from __future__ import annotations

import os
import threading

import pytest

from fleetdiag.transport.channel import ChannelCommand


class _ScriptedChannel:
    """The part of paramiko.Channel that ChannelCommand uses. ``arrivals`` are what the
    transport thread delivers, one batch each time the waiting thread finds stderr drained:
    the moment between its stdout and stderr reads and its end-of-command check."""

    def __init__(self, arrivals: list[dict]) -> None:
        self.arrivals = arrivals
        self.out, self.err = bytearray(), bytearray()
        self.eof_received = self.closed = False
        self.exit_status = -1
        self.status_event = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.write(self._write_fd, b"x")  # always readable: the test never waits in poll

    def exec_command(self, command: str) -> None:
        pass

    def fileno(self) -> int:
        return self._read_fd

    def get_transport(self) -> _ScriptedChannel:
        return self

    def is_active(self) -> bool:
        return True

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, size: int) -> bytes:
        chunk, self.out[:] = bytes(self.out[:size]), self.out[size:]
        return chunk

    def recv_stderr_ready(self) -> bool:
        if self.err:
            return True
        if self.arrivals:
            self._deliver(self.arrivals.pop(0))
        return False

    def recv_stderr(self, size: int) -> bytes:
        chunk, self.err[:] = bytes(self.err[:size]), self.err[size:]
        return chunk

    def _deliver(self, batch: dict) -> None:
        self.out += batch.get("out", b"")
        self.err += batch.get("err", b"")
        if batch.get("end"):
            self.eof_received = self.closed = True
            self.exit_status = 0
            self.status_event.set()

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


class _Transport:
    def __init__(self, channel: _ScriptedChannel) -> None:
        self.channel = channel

    def open_session(self, timeout: float) -> _ScriptedChannel:
        return self.channel


@pytest.mark.parametrize(
    "arrivals",
    [
        # The window's report, its EOF and its close arrive while stderr is being read.
        [{"err": b"Killed\n"}, {"out": b"@@fleetdiag window\n1 2 137\n", "end": True}],
        [{"out": b"@@fleetdiag window\n", "err": b"Killed\n"}, {"out": b"1 2 137\n", "end": True}],
        [{"out": b"@@fleetdiag window\n1 2 137\n", "err": b"Killed\n", "end": True}],
    ],
    ids=["all-stdout-last", "split", "at-once"],
)
def test_the_last_output_before_the_close_is_read(arrivals: list[dict]) -> None:
    result = ChannelCommand(_Transport(_ScriptedChannel(arrivals)), "sh -c :").wait(timeout=5)
    assert result.stdout == "@@fleetdiag window\n1 2 137\n"
    assert result.stderr == "Killed\n"
    assert result.exit_code == 0
