"""The small interface every way of reaching a host implements (SSH today, local, Ansible later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """What one remote script returned."""

    stdout: str
    stderr: str
    exit_code: int


class Transport(Protocol):
    """Runs POSIX shell scripts on one host, with the privileges the inventory asked for."""

    def run(self, script: str, timeout: float) -> CommandResult:
        """Run ``script`` with ``sh -c`` on the host; raise HostError subclasses on transport failure."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...
