"""Shared helpers for unit tests: recorded outputs of real tools live under fixtures/."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.model import HostFacts

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(relative: str) -> str:
    """A recorded output, e.g. ``detection/debian12-6.18-bpftrace/stdout.txt``."""
    return (FIXTURES / relative).read_text(encoding="utf-8")


@pytest.fixture
def facts_6_18() -> HostFacts:
    """Facts recorded on the project's machine: Debian 12, kernel 6.18, bpftrace 0.17, BTF."""
    return parse_facts(fixture_text("detection/debian12-6.18-bpftrace/stdout.txt"))
