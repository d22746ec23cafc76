"""The guest tests' order: one guest booted at a time, so tests run grouped by the guest they use."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.lab.guest.fixtures import run_order, suites_of


def item(*fixtures: str, guest: bool = True, **params: Any) -> Any:
    """A stand-in for a collected pytest item: its fixture names, parameters and `guest` marker."""
    callspec = SimpleNamespace(params=params) if params else None
    return SimpleNamespace(
        fixturenames=list(fixtures),
        callspec=callspec,
        get_closest_marker=lambda name: object() if guest and name == "guest" else None,
    )


def test_a_test_uses_the_guests_of_its_fixtures_and_of_its_suite_parameter() -> None:
    assert suites_of(item("lab_fleet", "lab_guest")) == {"bookworm"}
    assert suites_of(item("suite_guest", suite_guest="trixie")) == {"trixie"}
    assert suites_of(item("lab_guest", "lab_guest_bullseye", "lab_guest_trixie")) == {"bookworm", "bullseye", "trixie"}
    assert suites_of(item("guest_image", tracer="bcc")) == set()


def test_guest_tests_run_last_grouped_by_guest_with_several_guests_at_the_end() -> None:
    items = [
        item("lab_guest", "lab_guest_bullseye", "lab_guest_trixie"),
        item("suite_guest", suite_guest="trixie"),
        item("lab_guest"),
        item("lab_fleet", guest=False),
        item("suite_guest", suite_guest="bullseye"),
        item("guest_image"),
        item("lab_guest"),
    ]
    ordered = sorted(items, key=run_order)
    assert [suites_of(i) for i in ordered] == [
        set(),
        set(),
        {"bookworm"},
        {"bookworm"},
        {"bullseye"},
        {"trixie"},
        {"bookworm", "bullseye", "trixie"},
    ]
    assert ordered[0].get_closest_marker("guest") is None  # the non-guest test first
