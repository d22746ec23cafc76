"""JSON for scripts: the schema_version 1 document, one object on stdout."""

from __future__ import annotations

import json

from fleetdiag.document import sweep_document
from fleetdiag.model import Sweep


def render(sweep: Sweep) -> str:
    """The sweep as pretty-printed JSON (stable key order)."""
    return json.dumps(sweep_document(sweep), indent=2) + "\n"
