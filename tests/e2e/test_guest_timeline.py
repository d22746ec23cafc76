"""The systemtap timeline for real, on the 6.1 guest: drops made seconds into the window land in their intervals.

stap_backlog.stp counts SOCKET_BACKLOG per interval in the module (fd_tl, fd_ftl) and the window
script samples the guest's TcpExt at every interval's end; neither runs on this machine's kernel.
The generator makes its 250-odd drops SETTLE_S after the window attached; the guest's own clock,
read just before and just after it, says which intervals must be empty. The module is compiled on
the controller from the guest's root filesystem (`--stap-kernel`), as runtime-only hosts of a release receive it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_guest_tiers import assert_caught_every_drop, guest_inventory
from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import collect_during_drops, leftovers
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]

WINDOW_S = 60  # long enough for the settle, the generator and a loaded machine's polling
SETTLE_S = 6.0


def outside(timeline: dict, series: list[int], first: float, last: float, slack: int = 0) -> tuple[list[int], list[int]]:
    """SERIES' intervals that ended before FIRST and that began after LAST (guest epoch), SLACK intervals wider."""
    step, start = timeline["interval_s"], timeline["start"]
    before = [n for i, n in enumerate(series) if start + (i + 1 + slack) * step <= first]
    after = [n for i, n in enumerate(series) if start + (i - slack) * step >= last]
    return before, after


def test_stap_timeline_sums_to_the_drops_and_places_them_in_their_intervals(
    lab_fleet: LabFleet, lab_guest: GuestVM, tmp_path: Path
) -> None:
    assert lab_guest.image is not None
    inventory = guest_inventory(lab_fleet, lab_guest, tmp_path / "inventory.yml", "full")
    run = collect_during_drops(lab_fleet, lab_guest, inventory, "stap", tmp_path / "cache", window_s=WINDOW_S,
                               settle_s=SETTLE_S,
                               extra_args=("--stap-kernel", f"{lab_guest.kernel_release}={lab_guest.image.rootfs}"))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # The sums: host, flow and per interval equal the guest's own TCPBacklogDrop delta.
    host = assert_caught_every_drop(run, "g_full", "stap:tcp_add_backlog_statement")
    assert host["module"]["built_on"] == "controller", host["module"]
    timeline, delta = host["timeline"], run.generated.drops
    assert timeline["interval_s"] == 1 and timeline["start"] == host["window_start"]
    series = timeline["drops"]["SOCKET_BACKLOG"]
    assert len(series) == WINDOW_S and sum(series) == delta
    # The intervals: nothing before the generator started, nothing after it ended, all of it between.
    before, after = outside(timeline, series, run.generated_from, run.generated_to)
    assert len(before) >= SETTLE_S - 2, (timeline["start"], run.generated_from, series)
    assert not any(before) and not any(after), (timeline["start"], run.generated_from, run.generated_to, series)
    (flow,) = [f for f in run.flows("g_full") if f["reason"] == "SOCKET_BACKLOG"]
    assert flow["timeline"] == series
    assert host["activity"]["dropping"] and host["activity"]["first_interval"] >= len(before)
    assert host["activity"]["ongoing_at_end"] is False
    # The TcpExt samples beside the probe: the counter's own series, in the same intervals (one
    # interval of slack: a sample taken late under load counts drops just after its interval's end).
    counted = timeline["counters"]["TCPBacklogDrop"]
    assert len(counted) == WINDOW_S and sum(counted) == delta
    for name, values in timeline["counters"].items():
        assert sum(values) == host["counters"][name], name
    counted_before, counted_after = outside(timeline, counted, run.generated_from, run.generated_to, slack=1)
    assert not any(counted_before) and not any(counted_after), counted
    assert leftovers(lab_guest) == ""
