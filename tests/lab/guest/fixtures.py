"""pytest plugin: the lab guests (qemu, Debian's kernels) for tests marked `guest`.

Registered from tests/conftest.py. `lab_guest` is Debian 12 with 6.1; `lab_guest_bullseye` (Debian 11,
5.10) and `lab_guest_trixie` (Debian 13, 6.12) are built by the same script with the suite as its
parameter. Each image is built on first use (2-5 min cold, cached in /var/cache/fleetdiag-lab/), each
guest boots once per session on the session fleet's bridge, at its own address after the fleet's
hosts. Deselect with `pytest -m "not guest"`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.image import GuestImage, ensure_image, missing_build_requirements

# Each suite's guest: its name in inventories and its address slot after the fleet's hosts.
SUITE_GUESTS = {"bookworm": ("g01", 1), "bullseye": ("g11", 2), "trixie": ("g13", 3)}
from tests.lab.guest.vm import GuestVM, missing_guest_requirements
from tests.lab.requirements import missing_lab_requirements, skip_or_fail


def missing_for_guest() -> list[str]:
    """Everything that stops guest tests here: the lab's own needs, image build tools, qemu, tun."""
    return [*missing_lab_requirements(), *missing_build_requirements(), *missing_guest_requirements()]


def require_guest() -> None:
    """Skip (or, under CI=true, fail) naming exactly what the guest is missing."""
    skip_or_fail("guest", missing_for_guest())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Guest tests last: the emulated guest takes both cores while it runs, so no other test
    should run beside it (it boots at the first guest test and stops when the session ends)."""
    items.sort(key=lambda item: item.get_closest_marker("guest") is not None)  # stable: order kept within


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `guest` skip or fail up front when the machine cannot run the guest."""
    if item.get_closest_marker("guest"):
        require_guest()


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The cached guest image, built now if its recipe changed."""
    require_guest()
    return ensure_image(log=True)


@pytest.fixture(scope="session")
def lab_guest(lab_fleet: LabFleet, guest_image: GuestImage) -> Iterator[GuestVM]:
    """The guest, booted once per session on the session fleet's bridge (address after h04)."""
    with GuestVM(lab_fleet, image=guest_image) as vm:
        yield vm


def _suite_guest(fleet: LabFleet, suite: str) -> Iterator[GuestVM]:
    """SUITE's guest booted on FLEET's bridge, killed when the session ends."""
    require_guest()
    name, index = SUITE_GUESTS[suite]
    with GuestVM(fleet, image=ensure_image(log=True, suite=suite), name=name, index=index) as vm:
        yield vm


@pytest.fixture(scope="session")
def lab_guest_bullseye(lab_fleet: LabFleet) -> Iterator[GuestVM]:
    """Debian 11 with its 5.10 cloud kernel (bpftrace 0.11, bcc 0.18, systemtap 4.4), once per session."""
    yield from _suite_guest(lab_fleet, "bullseye")


@pytest.fixture(scope="session")
def lab_guest_trixie(lab_fleet: LabFleet) -> Iterator[GuestVM]:
    """Debian 13 with its 6.12 cloud kernel (current bpftrace, bcc, systemtap), once per session."""
    yield from _suite_guest(lab_fleet, "trixie")
