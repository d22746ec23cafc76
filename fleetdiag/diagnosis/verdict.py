"""A verdict: one finding about a host or a flow, with the numbers behind it and what to do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from fleetdiag.model import frozen_map

Number = Union[int, float, str, None]


@dataclass(frozen=True)
class Verdict:
    """A finding that never stands without evidence.

    ``code`` is stable (scripts match on it); ``summary`` is one sentence with the
    numbers; ``evidence`` holds the same numbers for machines; ``next_step`` says
    what to check or change.
    """

    code: str
    title: str
    summary: str
    next_step: str
    evidence: Mapping[str, Number] = field(default_factory=frozen_map)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"code", "title", "summary", "evidence", "next_step"}``."""
        return {
            "code": self.code,
            "title": self.title,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "next_step": self.next_step,
        }


def size(value: int | None) -> str:
    """Bytes for people: 8192 -> '8.0K', 67108864 -> '64.0M'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


def percent(part: float, whole: float) -> float:
    """part/whole as a percentage with one decimal (0 when whole is 0)."""
    return round(100.0 * part / whole, 1) if whole else 0.0
