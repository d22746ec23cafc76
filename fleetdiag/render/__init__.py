"""Renderers, each fed the same Sweep: ``RENDERERS[name](sweep) -> str``."""

from __future__ import annotations

from typing import Callable

from fleetdiag.model import Sweep
from fleetdiag.render import json_doc, jsonl, prom, table

RENDERERS: dict[str, Callable[[Sweep], str]] = {
    "table": table.render,
    "json": json_doc.render,
    "jsonl": jsonl.render,
    "prom": prom.render,
}
