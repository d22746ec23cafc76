"""One remote command on one paramiko channel, without invoke's per-command threads and polling.

Invoke's runner starts reader threads for every command and polls for the exit every
10 ms; on 200 hosts watching a window that is most of the controller's CPU. Here the
calling thread sleeps in ``select`` until the host sends something, answers sudo's
password prompt itself, and keeps stdin open: the window script ends its window
early when stdin reaches EOF (``request_stop``, or the controller dying).
"""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass

import paramiko

from fleetdiag.errors import RemoteCommandError, UnreachableError
from fleetdiag.transport.base import Answer, CommandResult, LineCallback, LineSplitter, QuestionCounter

_READ_SIZE = 65536


@dataclass(frozen=True)
class SudoPrompt:
    """sudo's password prompt (a unique marker, ``sudo -p``) and the answer to give once."""

    marker: str
    password: str

    def __repr__(self) -> str:
        return f"SudoPrompt(marker={self.marker!r}, password='********')"


class ChannelCommand:
    """A command running on its own channel; ``wait`` collects its output and exit code."""

    def __init__(self, transport: paramiko.Transport, command: str, sudo: SudoPrompt | None = None) -> None:
        self.sudo = sudo
        self._lock = threading.Lock()
        self._stop_requested = False
        try:
            self.channel = transport.open_session(timeout=30)
            self.channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise UnreachableError(f"SSH connection lost: {_describe(exc)}") from exc

    def request_stop(self) -> None:
        """Send EOF on the command's stdin: the window script ends its window now and reports."""
        with self._lock:
            if self._stop_requested or self.channel.closed:
                return
            self._stop_requested = True
            try:
                self.channel.shutdown_write()
            except (paramiko.SSHException, OSError, EOFError):
                pass  # the channel is going anyway; wait() reports how it ended

    def wait(self, timeout: float, on_line: LineCallback | None = None, answer: Answer | None = None) -> CommandResult:
        """Read stdout and stderr to the end, answering sudo once; the exit code last.

        ``on_line`` also gets each stdout line as it arrives (--follow); ``answer`` replies
        each time the script asks (ASK_MARKER), and the deadline restarts from each reply.
        """
        lines = LineSplitter(on_line) if on_line is not None else None
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        prompts_seen = 0
        questions, asked, answered = QuestionCounter(), 0, 0
        channel = self.channel
        # poll, not select: a sweep of hundreds of hosts has descriptors above select's 1024.
        poller = select.poll()
        # fileno() is a pipe paramiko writes to whenever stdout or stderr data (or EOF) arrives.
        poller.register(channel.fileno(), select.POLLIN)
        try:
            while True:
                # Whether it ended is read before the buffers: paramiko queues a channel's data
                # before its EOF and close, so once they are seen the reads below get the rest.
                # (Checked after the reads, a last chunk arriving in between was left unread.)
                ended = channel.eof_received or channel.closed or not channel.get_transport().is_active()
                while channel.recv_ready():
                    chunk = channel.recv(_READ_SIZE)
                    out += chunk
                    if lines is not None:
                        lines.feed(chunk)
                    if answer is not None:
                        asked = questions.feed(chunk)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(_READ_SIZE)
                if self.sudo is not None:
                    prompts_seen = self._answer_sudo(err, prompts_seen)
                while answer is not None and asked > answered:  # one reply per question, in order
                    answered += 1
                    data, more_s = answer(out.decode("utf-8", "replace"))
                    deadline = time.monotonic() + more_s
                    self._send(data)
                if ended:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RemoteCommandError(f"no answer from the host within {timeout:.0f} s")
                poller.poll(min(remaining, 1.0) * 1000)
            exit_code = self._exit_code(deadline)
        finally:
            channel.close()
        stderr = err.decode("utf-8", "replace")
        if self.sudo is not None:
            stderr = stderr.replace(self.sudo.marker, "")
        return CommandResult(out.decode("utf-8", "replace"), stderr, exit_code)

    def _send(self, data: bytes) -> None:
        """Write to the script's stdin, unless a stop already closed it (the script then reads EOF)."""
        with self._lock:
            if self._stop_requested:
                return
            try:
                self.channel.sendall(data)
            except (paramiko.SSHException, OSError, EOFError):
                pass  # the channel is going; wait() reports how it ended

    def _answer_sudo(self, err: bytearray, answered: int) -> int:
        """Give the password at the first prompt; a second prompt means sudo refused it."""
        assert self.sudo is not None
        prompts = err.count(self.sudo.marker.encode())
        if prompts > 1:
            raise RemoteCommandError(
                "sudo refused the become password",
                hint="check FLEETDIAG_BECOME_PASSWORD or the password typed at the -K prompt",
            )
        if prompts == 1 and answered == 0:
            self.channel.sendall((self.sudo.password + "\n").encode())
            return 1
        return answered

    def _exit_code(self, deadline: float) -> int:
        if not self.channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise RemoteCommandError("the host sent its output but no exit status")
        code = self.channel.exit_status
        if code == -1 and not self.channel.get_transport().is_active():
            raise UnreachableError("SSH connection lost before the command finished")
        return code


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
