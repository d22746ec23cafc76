"""One tier for real on the 6.1 guest, by hand: `fleetdiag collect --tracer TIER` while the generator makes drops.

    python3 -m tests.lab.guest.run_tier stap                 # or bpftrace, bcc, counters, auto
    python3 -m tests.lab.guest.run_tier stap full,runtime    # the guest as several hosts (GUEST_PORTS)
    python3 -m tests.lab.guest.run_tier bcc full bullseye    # another suite's guest (5.10; trixie: 6.12)
    python3 -m tests.lab.guest.run_tier check,counters,bcc full trixie   # several in one boot; check first

Boots the guest on a one-host lab and prints what fleetdiag found beside the guest's TCPBacklogDrop
delta. tests/e2e/test_guest_tiers.py runs the same in CI; docs/probes.md quotes both.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import collect_during_drops
from tests.lab.guest.image import ensure_image
from tests.lab.guest.vm import GuestVM

__all__ = ["run_tier"]


def run_tier(tracer: str, views: list[str], suite: str = "bookworm") -> int:
    """Run one tier against SUITE's guest and print the comparison; the collect's exit code."""
    image = ensure_image(suite=suite)
    with LabFleet(1) as fleet, GuestVM(fleet, image=image) as vm, tempfile.TemporaryDirectory() as cache:
        extra = {f"g_{view}": vm.host_vars(view) for view in views}
        inventory = fleet.write_inventory(Path(fleet.workdir) / "guest.yml", hosts=[], extra_hosts=extra)
        print(f"{vm.kernel_release}: booted in {vm.boot_seconds:.0f} s", flush=True)
        returncode = 0
        for one in tracer.split(","):
            returncode = max(returncode, _run_one(fleet, vm, inventory, one, views, Path(cache)))
        return returncode


def _run_one(fleet: LabFleet, vm: GuestVM, inventory: Path, tracer: str, views: list[str], cache: Path) -> int:
    """`check` (TRACER "check") or one collect during the generator's drops, printed."""
    if tracer == "check":
        argv = [sys.executable, "-m", "fleetdiag", "check", "-i", str(inventory),
                "--known-hosts", str(fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path)]  # fmt: skip
        return subprocess.run(argv, check=False).returncode
    started = time.monotonic()
    try:
        run = collect_during_drops(fleet, vm, inventory, tracer, cache, windows=len(views))
    except (RuntimeError, TimeoutError) as exc:  # one tier's failure must not hide the next one's result
        print(f"--- {tracer}: failed after {time.monotonic() - started:.0f} s: {exc}")
        return 1
    print(f"--- {tracer}: {time.monotonic() - started:.0f} s in all")
    print(f"windows attached after {run.attach_seconds:.0f} s; generator: TCPBacklogDrop delta {run.generated.drops}")
    for host in run.document["hosts"]:
        print(f"{host['name']}: {host['status']} {host['probe']} drops {host['drops']} "
              f"TCPBacklogDrop {host['counters'].get('TCPBacklogDrop')} notes {host['notes']} {host['error'] or ''}")  # fmt: skip
    for flow in run.document["flows"]:
        print("flow", {k: flow.get(k) for k in ("host", "laddr", "lport", "reason", "drops", "rcvbuf", "queue_max", "backlog_limit")})
    return run.returncode

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(run_tier(args[0] if args else "auto", (args[1] if len(args) > 1 else "full").split(","), *args[2:3]))
