"""`fleetdiag collect` against the guest while the generator makes real backlog drops in it.

Starts the real CLI, waits until every window inside the guest has printed "@@attached" in its
private temp dir (a systemtap build takes minutes first), runs the deterministic generator, and
returns the JSON document beside the guest's own TCPBacklogDrop delta. The tier tests, the
mixed-fleet test and `python3 -m tests.lab.guest.run_tier` all go through here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.fleet import LabFleet
from tests.lab.guest.backlog import GuestBacklogRun, generate_guest_backlog_drops
from tests.lab.guest.vm import GuestVM

WINDOW_S = 30
# A cold systemtap compile in the emulated guest: about 4 minutes, more while other work runs.
ATTACH_TIMEOUT_S = 900
_POLL_S = 3


@dataclass(frozen=True)
class GuestCollect:
    """One collect run: its exit code, document and stderr, and what the generator did meanwhile."""

    returncode: int
    document: dict[str, Any]
    stderr: str
    generated: GuestBacklogRun
    attach_seconds: float  # from starting collect to the last window attached
    # The guest's own epoch clock just before the generator started and just after it ended: its
    # drops fall between (what a timeline's intervals are checked against; the window's start is the guest's too).
    generated_from: float = 0.0
    generated_to: float = 0.0

    def host(self, name: str) -> dict[str, Any]:
        return next(host for host in self.document["hosts"] if host["name"] == name)

    def flows(self, name: str) -> list[dict[str, Any]]:
        return [flow for flow in self.document["flows"] if flow["host"] == name]


# Each window's probe runs in its temp dir and writes to its `out` file; once it watches, the
# window unlinks both (they stay open), so the probe's own stdout is what is read.
_ATTACHED_WINDOWS = r"""
for p in /proc/[0-9]*; do
  c=$(readlink "$p/cwd" 2>/dev/null) || continue
  case $c in /tmp/fleetdiag.*) ;; *) continue ;; esac
  [ -f "$p/fd/1" ] && grep -q @@attached "$p/fd/1" 2>/dev/null && echo "${c% (deleted)}"
done | sort -u | wc -l
"""


def attached_windows(vm: GuestVM) -> int:
    """How many fleetdiag windows in the guest are watching now."""
    out = vm.ssh(_ATTACHED_WINDOWS, timeout=60).stdout
    return int(out.strip() or 0)


def leftovers(vm: GuestVM) -> str:
    """Anything fleetdiag left in the guest: temp dirs, loaded probe modules, probe processes."""
    return vm.ssh(
        "ls -d /tmp/fleetdiag.* 2>/dev/null; lsmod | awk '$1 ~ /^fleetdiag/ {print $1}';"
        " pgrep -a -f 'staprun|bpftrace|fleetdiag' | grep -v pgrep || true",
        timeout=60,
    ).stdout.strip()


def collect_during_drops(
    fleet: LabFleet,
    vm: GuestVM,
    inventory: Path,
    tracer: str,
    cache_dir: Path,
    windows: int = 1,
    extra_args: tuple[str, ...] = (),
    window_s: int = WINDOW_S,
    settle_s: float = 0.0,
) -> GuestCollect:
    """Run collect with TRACER over INVENTORY; drops are made SETTLE_S after WINDOWS windows watch in the guest."""
    argv = [
        sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(window_s),
        "--tracer", tracer, "-o", "json",
        "--known-hosts", str(fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path), *extra_args,
    ]  # fmt: skip
    env = {**os.environ, "FLEETDIAG_CACHE_DIR": str(cache_dir)}
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while attached_windows(vm) < windows:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise RuntimeError(f"collect ended ({proc.returncode}) before its windows opened:\n{err[-3000:]}\n{out[-3000:]}")
            if time.monotonic() - started > ATTACH_TIMEOUT_S:
                raise TimeoutError(f"{windows} window(s) did not attach in the guest within {ATTACH_TIMEOUT_S} s")
            time.sleep(_POLL_S)
        attach_seconds = time.monotonic() - started
        time.sleep(settle_s)
        generated_from = guest_clock(vm)
        generated = generate_guest_backlog_drops(vm)
        generated_to = guest_clock(vm)
        out, err = proc.communicate(timeout=window_s + ATTACH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return GuestCollect(proc.returncode, json.loads(out), err, generated, attach_seconds, generated_from, generated_to)


def guest_clock(vm: GuestVM) -> float:
    """The guest's epoch time now (its clock is not the controller's: a TCG guest drifts)."""
    return float(vm.check("date +%s.%N").strip())
