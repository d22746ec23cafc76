"""Shared fixtures: the lab fleet of network-namespace hosts for end-to-end tests."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.fleet import LabFleet, LabHost, cleanup_stale
from tests.lab.requirements import find_program, missing_lab_requirements, skip_or_fail

# The qemu guest with Debian's 6.1 kernel: `lab_guest` fixture and the `guest` marker's checks.
pytest_plugins = ("tests.lab.guest.fixtures",)

SESSION_FLEET_SIZE = 4


@dataclass(frozen=True)
class LabRoles:
    """What each session-fleet host is for in end-to-end tests."""

    receiver: LabHost  # h01: gets backlog traffic, so it has real TCPBacklogDrop
    sender: LabHost  # h02: sends that traffic
    quiet: LabHost  # h03: no traffic, expect no drops
    unreachable: LabHost  # h04: tests stop its sshd (see `unreachable_lab_host`)


def require_lab() -> None:
    """Skip (or, under CI=true, fail) naming exactly what the lab is missing."""
    skip_or_fail("lab", missing_lab_requirements())


def pytest_sessionstart(session: pytest.Session) -> None:
    """Clear leftovers of crashed lab runs before anything else builds namespaces."""
    if os.geteuid() != 0 or not find_program("ip"):  # the lab cannot have run here
        return
    try:
        stale = cleanup_stale()
    except Exception as exc:  # a broken cleanup must not take the unit tests down with it
        warnings.warn(f"lab cleanup_stale() failed: {exc}", stacklevel=1)
        return
    if stale:
        warnings.warn(f"removed leftovers of crashed lab runs {stale}", stacklevel=1)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `lab` skip or fail up front when the machine cannot host the lab."""
    if item.get_closest_marker("lab"):
        require_lab()


@pytest.fixture(scope="session", autouse=True)
def private_results_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sweeps saved by the CLI under test go to this session's own dir (inherited by subprocesses):
    never the user's data dir, and never another session's lock (`collect` allows one sweep per dir)."""
    path = tmp_path_factory.mktemp("fleetdiag-results")
    previous = os.environ.get("FLEETDIAG_RESULTS_DIR")
    os.environ["FLEETDIAG_RESULTS_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("FLEETDIAG_RESULTS_DIR", None)
    else:
        os.environ["FLEETDIAG_RESULTS_DIR"] = previous


@pytest.fixture(scope="session")
def lab_fleet() -> Iterator[LabFleet]:
    """Four hosts h01..h04 for the whole session; see `lab_roles` for what each is for."""
    require_lab()
    with LabFleet(SESSION_FLEET_SIZE) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def lab_roles(lab_fleet: LabFleet) -> LabRoles:
    """The session fleet's hosts by purpose: receiver h01, sender h02, quiet h03, unreachable h04."""
    return LabRoles(*(lab_fleet.host(name) for name in ("h01", "h02", "h03", "h04")))


@pytest.fixture
def unreachable_lab_host(lab_fleet: LabFleet, lab_roles: LabRoles) -> Iterator[LabHost]:
    """h04 with its sshd stopped (connections refused) for one test; restarted afterwards."""
    host = lab_roles.unreachable
    lab_fleet.stop_sshd(host)
    yield host
    lab_fleet.start_sshd(host)


@pytest.fixture
def lab_inventory(lab_fleet: LabFleet, tmp_path: Path) -> Path:
    """An Ansible YAML inventory of all session hosts, using the fleet's key."""
    return lab_fleet.write_inventory(tmp_path / "inventory.yml")
