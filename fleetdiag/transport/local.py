"""Run the collector's scripts on this machine: the no-inventory mode, and the collector's own host."""

from __future__ import annotations

import os
import subprocess
import threading

from fleetdiag.errors import RemoteCommandError
from fleetdiag.transport.base import ASK_MARKER, SESSION_ARGS, Answer, CommandResult, LineCallback


class LocalTransport:
    """Scripts run with ``sh -c`` as the current user (``sudo -n`` first when ``become``)."""

    def __init__(self, become: bool = False) -> None:
        self.argv_prefix = ["sudo", "-n", "--"] if become else []
        self._stdin_writer: int | None = None
        self._lock = threading.Lock()

    can_answer = True  # see Transport

    def run(
        self, script: str, timeout: float, on_line: LineCallback | None = None, answer: Answer | None = None
    ) -> CommandResult:
        """Run a script locally; a script that outlives ``timeout`` is killed. ``on_line``, ``answer``: see Transport."""
        # The script's stdin is a pipe only we hold open: closing it (request_stop, or
        # this process dying) is how the script learns to wrap up, as over SSH.
        stdin_reader, stdin_writer = os.pipe()
        with self._lock:
            self._stdin_writer = stdin_writer
        try:
            process = subprocess.Popen(
                [*self.argv_prefix, "sh", "-c", script, *SESSION_ARGS],
                stdin=stdin_reader,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            self._close_stdin()
            raise RemoteCommandError(f"cannot run sh locally: {exc}") from exc
        finally:
            os.close(stdin_reader)
        try:
            if on_line is None and answer is None:
                stdout, stderr = process.communicate(timeout=timeout)
            else:
                stdout, stderr = _communicate_by_line(process, timeout, on_line, answer and self._answering(answer))
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise RemoteCommandError(f"a local script did not finish within {timeout:.0f} s") from exc
        finally:
            self._close_stdin()
        return CommandResult(stdout, stderr, process.returncode)

    def _answering(self, answer: Answer) -> Answer:
        """``answer``, with its reply written to the script's stdin (unless a stop closed it)."""

        def answer_and_send(stdout: str) -> tuple[bytes, float]:
            data, more_s = answer(stdout)
            with self._lock:
                writer = os.dup(self._stdin_writer) if self._stdin_writer is not None else None
            if writer is not None:
                try:
                    with open(writer, "wb") as pipe:
                        pipe.write(data)
                except OSError:
                    pass  # the script is gone; its result says how it ended
            return data, more_s

        return answer_and_send

    def request_stop(self) -> None:
        """EOF on the running script's stdin."""
        self._close_stdin()

    def _close_stdin(self) -> None:
        with self._lock:
            writer, self._stdin_writer = self._stdin_writer, None
        if writer is not None:
            os.close(writer)

    def close(self) -> None:
        """Nothing to release."""
        self._close_stdin()


def _communicate_by_line(
    process: subprocess.Popen, timeout: float, on_line: LineCallback | None, answer: Answer | None
) -> tuple[str, str]:
    """communicate(), but stdout goes to ``on_line`` line by line as it arrives (--follow),
    and ``answer`` replies each time the script asks (its deadline restarts then)."""
    assert process.stdout is not None and process.stderr is not None
    stderr: list[str] = []
    err_reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    err_reader.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    stdout: list[str] = []
    try:
        for line in process.stdout:
            stdout.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
            if answer is not None and line.rstrip("\n") == ASK_MARKER:
                timer.cancel()  # the gate may hold the answer: its time is not the script's
                _, more_s = answer("".join(stdout))
                timer = threading.Timer(more_s, expire)
                timer.start()
        process.wait()
    finally:
        timer.cancel()
    err_reader.join()
    if expired.is_set():
        raise subprocess.TimeoutExpired(process.args, timeout)
    return "".join(stdout), "".join(stderr)
