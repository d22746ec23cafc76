"""Renderers, each fed the same Sweep: ``RENDERERS[name](sweep) -> str``."""

from __future__ import annotations

from typing import Callable

from fleetdiag.model import Sweep
from fleetdiag.render import json_doc, jsonl


# table and prom import tabulate and prometheus_client when they are used: a JSON sweep
# from cron (the common case for machines) starts without them (~45 ms of imports).
def _table(sweep: Sweep, spark: str = "ascii") -> str:
    from fleetdiag.render import table

    return table.render(sweep, spark)


def _prom(sweep: Sweep) -> str:
    from fleetdiag.render import prom

    return prom.render(sweep)


def _html(sweep: Sweep) -> str:
    from fleetdiag.render import html

    return html.render(sweep)


RENDERERS: dict[str, Callable[[Sweep], str]] = {
    "table": _table,
    "json": json_doc.render,
    "jsonl": jsonl.render,
    "prom": _prom,
    "html": _html,
}


def rendered(output: str, sweep: Sweep, spark: str = "ascii") -> str:
    """RENDERERS[output](sweep), the table with SPARK's sparkline characters (the CLI knows the terminal)."""
    if output == "table":
        return _table(sweep, spark)
    return RENDERERS[output](sweep)
