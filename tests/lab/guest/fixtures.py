"""pytest plugin: the lab guest (qemu, Debian's 6.1 kernel) for tests marked `guest`.

Registered from tests/conftest.py. The image is built on first use (about 2 min cold, cached in
/var/cache/fleetdiag-lab/), the guest boots once per session on the session fleet's bridge.
Deselect with `pytest -m "not guest"`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.image import GuestImage, ensure_image, missing_build_requirements
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
