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
    # Detection runs each fact in a subshell, so that one fact's `exit`, `cd` or failing
    # special builtin never hides the others. Facts of builtins and single commands that do
    # none of that say False: they run in a `{ }` group, a fork saved per fact on every host
    # of a sweep at once (about 0.25 ms each, on the lab's shared cores).
    subshell: bool = True

    def parse_or_none(self, output: str | None) -> Any:
        """Parse, treating a missing section (command absent or failed) as None."""
        return None if output is None else self.parse(output)
