"""Streams and terminal facts, injected so tests and cron runs see the same code paths (httpie)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Environment:
    """Where output goes, and whether a person is watching."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def interactive(self) -> bool:
        """Progress and colour are for people: a TTY on stderr and no NO_COLOR."""
        return self.stderr.isatty() and "NO_COLOR" not in os.environ
