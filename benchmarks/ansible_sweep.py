"""The fleetdiag.drops sweep playbook at scale: against Ansible's bare ad-hoc raw, and against fleetdiag collect.

    sudo python3 benchmarks/ansible_sweep.py                  # 200 lab hosts, -f 200, 5 s windows
    sudo python3 benchmarks/ansible_sweep.py --hosts 50 --forks 20

Brings up one LabFleet of HOSTS hosts, then in one run, over the same hosts:
  (a) `ansible lab -m raw -a 'sleep DURATION' -f FORKS` (Ansible's floor for touching every host once
      for the window's length);
  (b) `ansible-playbook fleetdiag.drops.sweep -e fleetdiag_duration=DURATION -e fleetdiag_tracer=counters
      -f FORKS` (arm, fetch, save: the collection with this tree's fleetdiag on sys.path);
  (c) `fleetdiag collect --duration DURATION --tracer counters --forks FORKS`.
It prints each one's wall time, hosts ok, controller CPU and peak RSS, the window start spread of
(b) and (c), and the ratios b/a (target <= 1.3) and b/c, measured in this same run (the machine is
shared: only ratios of one run mean much). Needs ansible-core (`pip install '.[ansible]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.armed_scale import ansible_inventory, line, run_fleetdiag, timed  # noqa: E402
from benchmarks.scale import compile_fleetdiag  # noqa: E402
from tests.lab.fleet import LabFleet, LabHost  # noqa: E402
from tests.lab.requirements import missing_lab_requirements  # noqa: E402

TARGET = "target: sweep playbook wall <= 1.3x Ansible's bare raw"


def ansible_env(scratch: Path) -> dict[str, str]:
    """This tree's fleetdiag and collection on sys.path; Ansible's state in the scratch dir."""
    return {**os.environ, "PYTHONPATH": str(REPO), "ANSIBLE_HOME": str(scratch / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(scratch / "ansible-tmp"), "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(scratch / "cp"), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip


def run_raw(fleet: LabFleet, hosts: list[LabHost], duration: int, forks: int, scratch: Path) -> dict:
    """(a) Ansible's ad-hoc raw: one `sleep DURATION` per host."""
    inventory = ansible_inventory(fleet, hosts, scratch / "raw.ini")
    argv = [shutil.which("ansible") or "ansible", "lab", "-i", str(inventory), "-m", "raw", "-a", f"sleep {duration}",
            "-f", str(forks)]  # fmt: skip
    run, out = timed(argv, env=ansible_env(scratch))
    run["ok"] = sum(1 for text in out.splitlines() if "| CHANGED | rc=0" in text or "| SUCCESS | rc=0" in text)
    return run


def run_sweep(fleet: LabFleet, hosts: list[LabHost], duration: int, forks: int, scratch: Path) -> dict:
    """(b) the collection's sweep playbook, counters, FORKS."""
    inventory = ansible_inventory(fleet, hosts, scratch / "sweep.ini")
    results = scratch / "sweep-results"
    argv = [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "fleetdiag.drops.sweep",
            "-e", f"fleetdiag_duration={duration}", "-e", "fleetdiag_tracer=counters",
            "-e", f"fleetdiag_results_dir={results}", "-f", str(forks)]  # fmt: skip
    run, _out = timed(argv, env=ansible_env(scratch), cwd=scratch)
    saved = sorted((results / "sweeps").glob("*.json"))
    doc = json.loads(saved[-1].read_text()) if saved else {"hosts": []}
    run["ok"] = sum(h["status"] == "ok" for h in doc["hosts"])
    starts = [h["window_start"] for h in doc["hosts"] if h.get("window_start") is not None]
    run["spread"] = max(starts) - min(starts) if starts else None
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    if shutil.which("ansible") is None:
        print("benchmark needs ansible-core: pip install '.[ansible]'", file=sys.stderr)
        return 2
    compile_fleetdiag()
    with tempfile.TemporaryDirectory(prefix="fleetdiag-ansible-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        up = time.monotonic()
        with LabFleet(args.hosts, ready_timeout=300) as fleet:
            print(f"lab: {args.hosts} hosts up in {time.monotonic() - up:.0f} s", file=sys.stderr)
            hosts = list(fleet.hosts)
            raw = run_raw(fleet, hosts, args.duration, args.forks, scratch)
            print(line("raw", args.hosts, raw), file=sys.stderr)
            sweep = run_sweep(fleet, hosts, args.duration, args.forks, scratch)
            print(line("sweep", args.hosts, sweep), file=sys.stderr)
            collected = run_fleetdiag(fleet, hosts, args.duration, scratch, args.forks)
            print(line("collect", args.hosts, collected), file=sys.stderr)
    print(f"\n{args.hosts} hosts, window {args.duration} s, tracer counters, -f/--forks {args.forks}; {TARGET}")
    for name, run in (("raw", raw), ("sweep", sweep), ("collect", collected)):
        print(line(name, args.hosts, run))
    print(f"  sweep / raw     {sweep['wall'] / raw['wall']:.2f}x")
    print(f"  sweep / collect {sweep['wall'] / collected['wall']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
