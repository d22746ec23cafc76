"""Run the collector's scripts on this machine: the no-inventory mode, and the collector's own host."""

from __future__ import annotations

import subprocess

from fleetdiag.errors import RemoteCommandError
from fleetdiag.transport.base import CommandResult


class LocalTransport:
    """Scripts run with ``sh -c`` as the current user (``sudo -n`` first when ``become``)."""

    def __init__(self, become: bool = False) -> None:
        self.argv_prefix = ["sudo", "-n", "--"] if become else []

    def run(self, script: str, timeout: float) -> CommandResult:
        """Run a script locally; a script that outlives ``timeout`` is killed."""
        try:
            done = subprocess.run(
                [*self.argv_prefix, "sh", "-c", script],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RemoteCommandError(f"a local script did not finish within {timeout:.0f} s") from exc
        except OSError as exc:
            raise RemoteCommandError(f"cannot run sh locally: {exc}") from exc
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def close(self) -> None:
        """Nothing to release."""
