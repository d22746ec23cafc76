"""A fact is a static shell command plus a pure parser of its output (pyinfra's model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Fact(Generic[T]):
    """One thing to learn about a host: ``command`` runs there, ``parse`` reads its stdout.

    Commands are constant text: no inventory value is ever spliced into them.
    """

    name: str
    command: str
    parse: Callable[[str], T]

    def parse_or_none(self, output: str | None) -> Any:
        """Parse, treating a missing section (command absent or failed) as None."""
        return None if output is None else self.parse(output)
