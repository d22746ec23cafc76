"""Run the collector's scripts over an Ansible connection (the fleetdiag.drops collection's action plugins).

The action plugin hands in a function that runs one command through Ansible's own connection
plugin (``ActionBase._low_level_execute_command``, with ``sudoable=True``), so whatever the
inventory says (ssh, local, paramiko, a bastion, become with -K, vault-encrypted variables) is
Ansible's business, not ours. This module imports nothing of Ansible.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

from fleetdiag.transport.base import Answer, CommandResult, LineCallback

# Runs COMMAND on the host with the bytes given on its stdin; returns Ansible's result (rc, stdout,
# stderr). Raises fleetdiag's UnreachableError when the connection fails (the action maps it).
Execute = Callable[[str, bytes], Mapping[str, Any]]

# Ansible's ssh connection gives a command without stdin data a tty (-tt), which merges stderr into
# stdout and ends lines with CRLF; one newline on stdin keeps the plain pipes. Nothing reads it:
# scripts run here never get the stop-on-stdin-eof contract (SESSION_ARGS), whose stdin must be held.
_NO_TTY_STDIN = b"\n"


class AnsibleTransport:
    """Scripts run as ``sh -c SCRIPT`` through the task's Ansible connection, with the task's become."""

    # Ansible's exec gives a command its stdin up front and cannot reply to a script mid-run:
    # the collector then runs detection and the window as two round trips.
    can_answer = False

    def __init__(self, execute: Execute) -> None:
        self.execute = execute

    def run(
        self, script: str, timeout: float, on_line: LineCallback | None = None, answer: Answer | None = None
    ) -> CommandResult:
        """Run a script; the host's own deadline (the window's ``timeout``) bounds it, Ansible's task timeout too."""
        return self.run_with_input(script, _NO_TTY_STDIN, on_line)

    def run_with_input(self, script: str, stdin: bytes, on_line: LineCallback | None = None) -> CommandResult:
        """Run a script with STDIN given up front (replies a script reads, known before it runs)."""
        result = self.execute(f"sh -c {shlex.quote(script)}", stdin or _NO_TTY_STDIN)
        stdout = _text(result.get("stdout"))
        if on_line is not None:  # no streaming over Ansible's exec: the lines arrive at the end
            for line in stdout.splitlines():
                on_line(line)
        rc = result.get("rc")
        return CommandResult(stdout, _text(result.get("stderr")), rc if isinstance(rc, int) else -1)

    def request_stop(self) -> None:
        """Nothing to close: the script's stdin was given whole; its own deadline ends it."""

    def close(self) -> None:
        """The connection belongs to Ansible."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
