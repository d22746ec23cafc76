"""One tier for real on the 6.1 guest: `fleetdiag collect --tracer TIER` while the generator makes drops.

    python3 -m tests.lab.guest.run_tier stap      # or bpftrace, bcc, counters, auto

Boots the guest on a one-host lab, starts collect, waits for the window's own "@@attached"
line inside the guest (a stap tier compiles there first: minutes), runs the deterministic
backlog-drop generator, and prints what fleetdiag found beside the guest's TCPBacklogDrop
delta. The seed of issue 6's tier tests; the figures in docs/probes.md come from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.fleet import LabFleet
from tests.lab.guest.backlog import generate_guest_backlog_drops
from tests.lab.guest.image import ensure_image
from tests.lab.guest.vm import GuestVM

WINDOW_S = 30
ATTACH_TIMEOUT_S = 900  # a cold stap compile in the emulated guest takes about 5 minutes


def wait_for_window(vm: GuestVM, proc: subprocess.Popen, timeout: float = ATTACH_TIMEOUT_S) -> float:
    """Seconds until the probe inside the guest printed "@@attached" in its private temp dir."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"collect ended before its window opened: {proc.stderr.read() if proc.stderr else ''}")
        found = vm.ssh("grep -l @@attached /tmp/fleetdiag.*/out 2>/dev/null | head -n 1", timeout=30).stdout
        if (found if isinstance(found, str) else found.decode()).strip():
            return time.monotonic() - start
        time.sleep(5)
    raise TimeoutError(f"no probe attached in the guest within {timeout:.0f} s")


def run_tier(tracer: str) -> int:
    """Run one tier against the guest and print the comparison; the collect's exit code."""
    with LabFleet(1) as fleet, GuestVM(fleet, image=ensure_image()) as vm:
        inventory = fleet.write_inventory(Path(fleet.workdir) / "guest.yml", hosts=[], extra_hosts={"g01": vm.host_vars()})
        argv = [
            sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(WINDOW_S),
            "--tracer", tracer, "-o", "json",
            "--known-hosts", str(fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(f"window open after {wait_for_window(vm, proc):.0f} s", flush=True)
        generated = generate_guest_backlog_drops(vm).drops
        out, err = proc.communicate(timeout=WINDOW_S + ATTACH_TIMEOUT_S)
        (host,) = json.loads(out)["hosts"]
        print(f"generator: TCPBacklogDrop delta {generated}")
        print(f"fleetdiag: {host['status']} {host['probe']} drops {host['drops']} "
              f"TCPBacklogDrop {host['counters'].get('TCPBacklogDrop')} notes {host['notes']} {host['error'] or ''}")  # fmt: skip
        for flow in json.loads(out)["flows"]:
            print("flow", {k: flow.get(k) for k in ("laddr", "lport", "reason", "drops", "rcvbuf", "backlog_len_max", "backlog_limit")})
        return proc.returncode


if __name__ == "__main__":
    sys.exit(run_tier(sys.argv[1] if len(sys.argv) > 1 else "auto"))
