"""What a person sees on stderr while a sweep runs: hosts by stage, hosts done, time left in the window.

On a terminal (and without NO_COLOR) one live status line, redrawn by rich, with
finished hosts and --follow lines printed above it; otherwise nothing but the log
(cron mail stays empty unless something is wrong), and --follow lines as plain text.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from fleetdiag.cli.environment import Environment
from fleetdiag.diagnosis import drops_seen
from fleetdiag.model import HostResult, Status

if TYPE_CHECKING:  # rich is imported only on a terminal: cron runs start without it
    from rich.live import Live
    from rich.text import Text

log = logging.getLogger("fleetdiag")

# Stages the sweep reports, in the order hosts move through them.
STAGES = ("connecting", "collecting", "waiting", "watching")


class SweepProgress:
    """The sweep's progress callback and the place --follow lines are printed; a context manager."""

    def __init__(self, env: Environment, total: int, duration_s: int) -> None:
        self.env = env
        self.total = total
        self.duration_s = duration_s
        self._stage: dict[str, str] = {}
        self._done = 0
        self._failed = 0
        self._window_end: float | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None
        if env.interactive:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=env.stderr, force_terminal=True, no_color=env.no_color, highlight=False)
            self._live = Live(console=console, get_renderable=self.status, refresh_per_second=4, transient=True)

    def __enter__(self) -> SweepProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, host: str, stage: str, result: HostResult | None) -> None:
        """The sweep's ProgressCallback (called from worker threads)."""
        with self._lock:
            self._stage[host] = stage
            if stage == "watching" and self._window_end is None:
                self._window_end = self.env.clock() + self.duration_s
            if stage != "done" or result is None:
                log.debug("%s: %s", host, stage)
                return
            self._done += 1
            self._failed += result.status is not Status.OK
            done = self._done
        detail = result.error or f"{drops_seen(result)} drops"
        line = f"[{done}/{self.total}] {host}: {result.status.value} ({detail})"
        if self._live is not None:
            self.print(line)
        else:
            log.info(line)

    def print(self, line: str) -> None:
        """A line for people on stderr, above the live status when there is one."""
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(line))
        else:
            with self._lock:
                self.env.stderr.write(line + "\n")
                self.env.stderr.flush()

    def status(self) -> Text:
        """The live status line, e.g. ``3 connecting · 10 watching · 5/20 done (1 failed) · window: 12 s left``."""
        from rich.text import Text

        with self._lock:
            counts = {stage: 0 for stage in STAGES}
            for stage in self._stage.values():
                if stage in counts:
                    counts[stage] += 1
            parts = [f"{n} {stage}" for stage, n in counts.items() if n]
            failed = f" ({self._failed} failed)" if self._failed else ""
            parts.append(f"{self._done}/{self.total} done{failed}")
            parts.append(self._time_left())
        return Text("fleetdiag: " + " · ".join(parts), style="bold" if not self.env.no_color else "")

    def _time_left(self) -> str:
        if self._window_end is None:
            return f"window of {self.duration_s} s not started"
        left = self._window_end - self.env.clock()
        return f"window: {left:.0f} s left" if left > 0 else "window over, collecting results"

