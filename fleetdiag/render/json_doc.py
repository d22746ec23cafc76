"""JSON for scripts: the schema_version 1 document, one object on stdout."""

from __future__ import annotations

import json
import re

from fleetdiag.document import sweep_document
from fleetdiag.model import Sweep

# A list of integers (a timeline's counts per interval) on one line, not one line per number:
# 1000 hosts x 600 intervals would otherwise be 600,000 lines. Only the layout changes.
_INT_LIST = re.compile(r"\[\n\s+(-?\d+(?:,\n\s+-?\d+)*)\n\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(number.strip() for number in match.group(1).split(",")) + "]"


def render(sweep: Sweep) -> str:
    """The sweep as pretty-printed JSON (stable key order)."""
    return _INT_LIST.sub(_one_line, json.dumps(sweep_document(sweep), indent=2)) + "\n"
