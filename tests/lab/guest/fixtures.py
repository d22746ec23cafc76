"""pytest plugin: the lab guests (qemu, Debian's kernels) for tests marked `guest`.

Registered from tests/conftest.py. `lab_guest` is Debian 12 with 6.1; `lab_guest_bullseye` (Debian 11,
5.10) and `lab_guest_trixie` (Debian 13, 6.12) are built by the same script with the suite as its
parameter. Each image is built on first use (2-5 min cold, cached in /var/cache/fleetdiag-lab/).
An emulated guest takes both cores while it is up, so only the guests the running test asks for are
booted (GuestPool): guest tests run grouped by guest, each guest boots at its group's first test and
stops before the next group's guest boots; a test asking for several (the four-kernel sweep) runs
last, with them all. The fixtures stay session-scoped, so fixtures built on them keep working.
Deselect with `pytest -m "not guest"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.image import GuestImage, ensure_image, missing_build_requirements
from tests.lab.guest.vm import GuestVM, missing_guest_requirements
from tests.lab.requirements import missing_lab_requirements, skip_or_fail

# Each suite's guest: its name in inventories and its address slot after the fleet's hosts.
SUITE_GUESTS = {"bookworm": ("g01", 1), "bullseye": ("g11", 2), "trixie": ("g13", 3)}
# The fixture that yields each suite's guest, in the order their tests run.
GUEST_FIXTURES = {"lab_guest": "bookworm", "lab_guest_bullseye": "bullseye", "lab_guest_trixie": "trixie"}
_POOL = pytest.StashKey["GuestPool"]()


class GuestPool:
    """The session's guests; only those the current test needs are up: pool.keep_only({"trixie"})."""

    def __init__(self, fleet: LabFleet):
        self.fleet = fleet
        self.wanted: set[str] = set()
        self._vms: dict[str, GuestVM] = {}

    def guest(self, suite: str, image: GuestImage | None = None) -> GuestVM:
        """SUITE's guest, booted (others not wanted by the current test are stopped first)."""
        if suite not in self._vms:
            name, index = SUITE_GUESTS[suite]
            image = image or ensure_image(log=True, suite=suite)
            self._vms[suite] = GuestVM(self.fleet, image=image, name=name, index=index)
        self.keep_only(self.wanted | {suite})
        return self._vms[suite]

    def keep_only(self, suites: Iterable[str]) -> None:
        """Stop every guest not in SUITES, then (re)boot those of SUITES already made."""
        wanted = set(suites)
        for suite, vm in self._vms.items():
            if suite not in wanted and vm.workdir is not None:
                vm.close()
        for suite in sorted(wanted & self._vms.keys()):
            if self._vms[suite].workdir is None:
                self._vms[suite].start()
        self.wanted = wanted

    def close(self) -> None:
        """Stop every guest (idempotent)."""
        for vm in self._vms.values():
            vm.close()


def suites_of(item: pytest.Item) -> set[str]:
    """The suites whose guests ITEM uses: its guest fixtures, or a suite name it is parametrized with."""
    names = getattr(item, "fixturenames", ())
    suites = {GUEST_FIXTURES[name] for name in names if name in GUEST_FIXTURES}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:  # e.g. test_guest_suites' suite_guest, which asks for its fixture by name
        suites |= {value for value in callspec.params.values() if isinstance(value, str) and value in SUITE_GUESTS}
    return suites


def missing_for_guest() -> list[str]:
    """Everything that stops guest tests here: the lab's own needs, image build tools, qemu, tun."""
    return [*missing_lab_requirements(), *missing_build_requirements(), *missing_guest_requirements()]


def require_guest() -> None:
    """Skip (or, under CI=true, fail) naming exactly what the guest is missing."""
    skip_or_fail("guest", missing_for_guest())


def run_order(item: pytest.Item) -> tuple[int, int]:
    """Guest tests last (the emulated guest takes both cores), grouped by guest, several guests at the end."""
    if item.get_closest_marker("guest") is None:
        return (0, 0)
    suites = suites_of(item)
    order = list(GUEST_FIXTURES.values())
    if len(suites) == 1:
        return (1, order.index(suites.pop()) + 1)
    return (1, 0 if not suites else len(order) + 1)  # no guest (an image only) first, several last


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests in run_order; sorted stably, so the order within a group is kept."""
    items.sort(key=run_order)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `guest` skip or fail up front when the machine cannot run the guest, and find
    only their own guests booted."""
    if item.get_closest_marker("guest"):
        require_guest()
        pool = item.config.stash.get(_POOL, None)
        if pool is not None:
            pool.keep_only(suites_of(item))


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The cached guest image, built now if its recipe changed."""
    require_guest()
    return ensure_image(log=True)


@pytest.fixture(scope="session")
def guest_pool(lab_fleet: LabFleet, pytestconfig: pytest.Config) -> Iterator[GuestPool]:
    """The session's guests on the session fleet's bridge, all stopped when the session ends."""
    pool = GuestPool(lab_fleet)
    pytestconfig.stash[_POOL] = pool
    try:
        yield pool
    finally:
        pool.close()
        del pytestconfig.stash[_POOL]


@pytest.fixture(scope="session")
def lab_guest(guest_pool: GuestPool, guest_image: GuestImage) -> GuestVM:
    """Debian 12 with its 6.1 kernel (address after h04), booted while its tests run."""
    return guest_pool.guest("bookworm", guest_image)


@pytest.fixture(scope="session")
def lab_guest_bullseye(guest_pool: GuestPool) -> GuestVM:
    """Debian 11 with its 5.10 cloud kernel (bpftrace 0.11, bcc 0.18, systemtap 4.4), booted while its tests run."""
    require_guest()
    return guest_pool.guest("bullseye")


@pytest.fixture(scope="session")
def lab_guest_trixie(guest_pool: GuestPool) -> GuestVM:
    """Debian 13 with its 6.12 cloud kernel (current bpftrace, bcc, systemtap), booted while its tests run."""
    require_guest()
    return guest_pool.guest("trixie")
