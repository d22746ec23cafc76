"""The exception tree: every expected failure is a FleetdiagError carrying a hint.

The CLI turns these into one-line messages and exit codes; nothing below the CLI
prints or exits.
"""

from __future__ import annotations


class FleetdiagError(Exception):
    """Root of every expected fleetdiag failure; ``hint`` says what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(FleetdiagError):
    """Bad command-line input, found before any host is contacted (exit 2)."""


class InventoryError(UsageError):
    """An inventory that cannot be used; ``problems`` holds one line per problem.

    Each line names the file and the dotted path, e.g.
    ``hosts.yaml: all.children.web.hosts.web01.ansible_port: Input should be a valid integer``.
    """

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint)


class HostError(FleetdiagError):
    """A failure confined to one host; it becomes that host's result, never aborts a sweep."""


class UnreachableError(HostError):
    """The host could not be connected to or authenticated against."""


class RemoteCommandError(HostError):
    """A command ran on the host but failed (privileges, missing tools, tracer errors)."""
