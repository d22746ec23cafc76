"""Streams, terminal facts, the environment and the clock, injected so tests and cron runs see the same code paths (httpie)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, TextIO


@dataclass
class Environment:
    """Where output goes, and whether a person is watching."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], float] = time.monotonic

    @property
    def no_color(self) -> bool:
        """NO_COLOR set to anything but the empty string (no-color.org)."""
        return bool(self.environ.get("NO_COLOR"))

    @property
    def sparkline_style(self) -> str:
        """Block characters when stdout is a UTF-8 terminal; plain ASCII on pipes and other locales."""
        from fleetdiag.render.sparkline import style_for

        return style_for(_isatty(self.stdout), self.environ)

    @property
    def interactive(self) -> bool:
        """Progress and colour are for people: a TTY on stderr and no NO_COLOR."""
        return _isatty(self.stderr) and not self.no_color


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
