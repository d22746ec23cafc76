"""Read a child's stdout line by line with a deadline (a guest tool that hangs must not hang the test)."""

from __future__ import annotations

import os
import select
import subprocess
import time


class StreamTimeout(RuntimeError):
    """The expected line did not come in time; carries what came instead."""


class LineReader:
    """Lines of a Popen's binary stdout pipe, each wait bounded: LineReader(proc).until("ready", 60)."""

    def __init__(self, proc: subprocess.Popen):
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._pending = b""
        self.seen: list[str] = []  # every line read so far, for error messages

    def until(self, prefix: str, timeout: float) -> str:
        """The next line starting with PREFIX (stripped); raise at EOF or after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                self.seen.append(line)
                if line.startswith(prefix):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StreamTimeout(f"no line starting {prefix!r} within {timeout:.0f}s; got {self.seen[-10:]}")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise StreamTimeout(f"output ended before a line starting {prefix!r}; got {self.seen[-10:]}")
                self._pending += chunk
