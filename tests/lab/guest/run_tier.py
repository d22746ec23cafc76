"""One tier for real on the 6.1 guest, by hand: `fleetdiag collect --tracer TIER` while the generator makes drops.

    python3 -m tests.lab.guest.run_tier stap                 # or bpftrace, bcc, counters, auto
    python3 -m tests.lab.guest.run_tier stap full,runtime    # the guest as several hosts (GUEST_PORTS)

Boots the guest on a one-host lab and prints what fleetdiag found beside the guest's TCPBacklogDrop
delta. tests/e2e/test_guest_tiers.py runs the same in CI; docs/probes.md quotes both.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import collect_during_drops
from tests.lab.guest.image import ensure_image
from tests.lab.guest.vm import GuestVM


def run_tier(tracer: str, views: list[str]) -> int:
    """Run one tier against the guest and print the comparison; the collect's exit code."""
    with LabFleet(1) as fleet, GuestVM(fleet, image=ensure_image()) as vm, tempfile.TemporaryDirectory() as cache:
        extra = {f"g_{view}": vm.host_vars(view) for view in views}
        inventory = fleet.write_inventory(Path(fleet.workdir) / "guest.yml", hosts=[], extra_hosts=extra)
        run = collect_during_drops(fleet, vm, inventory, tracer, Path(cache), windows=len(views))
        print(f"windows attached after {run.attach_seconds:.0f} s; generator: TCPBacklogDrop delta {run.generated.drops}")
        for host in run.document["hosts"]:
            print(f"{host['name']}: {host['status']} {host['probe']} drops {host['drops']} "
                  f"TCPBacklogDrop {host['counters'].get('TCPBacklogDrop')} notes {host['notes']} {host['error'] or ''}")  # fmt: skip
        for flow in run.document["flows"]:
            print("flow", {k: flow.get(k) for k in ("host", "laddr", "lport", "reason", "drops", "rcvbuf", "queue_max", "backlog_limit")})
        return run.returncode


if __name__ == "__main__":
    sys.exit(run_tier(sys.argv[1] if len(sys.argv) > 1 else "auto", (sys.argv[2] if len(sys.argv) > 2 else "full").split(",")))
