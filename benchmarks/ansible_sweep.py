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
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.armed_scale import ansible_inventory, line, run_fleetdiag, timed  # noqa: E402
from benchmarks.scale import compile_fleetdiag  # noqa: E402
from fleetdiag import ansible_instant  # noqa: E402
from tests.lab.fleet import LabFleet, LabHost  # noqa: E402
from tests.lab.requirements import missing_lab_requirements  # noqa: E402

TARGET = "target: sweep playbook wall <= 1.3x Ansible's bare raw"


def ansible_env(scratch: Path) -> dict[str, str]:
    """This tree's fleetdiag and collection on sys.path; Ansible's state in the scratch dir.

    Each run gets a scratch dir of its own: its SSH control masters (ControlPersist 60 s) must not
    carry one run's connections over to the next, or the later run would skip its handshakes."""
    scratch.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(REPO), "ANSIBLE_HOME": str(scratch / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(scratch / "ansible-tmp"), "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(scratch / "cp"), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip


def run_raw(fleet: LabFleet, hosts: list[LabHost], duration: int, forks: int, scratch: Path) -> dict:
    """(a) Ansible's ad-hoc raw: one `sleep DURATION` per host."""
    env = ansible_env(scratch)
    inventory = ansible_inventory(fleet, hosts, scratch / "raw.ini")
    argv = [shutil.which("ansible") or "ansible", "lab", "-i", str(inventory), "-m", "raw", "-a", f"sleep {duration}",
            "-f", str(forks)]  # fmt: skip
    run, out = timed(argv, env=env)
    run["ok"] = sum(1 for text in out.splitlines() if "| CHANGED | rc=0" in text or "| SUCCESS | rc=0" in text)
    return run


def run_sweep(fleet: LabFleet, hosts: list[LabHost], duration: int, forks: int, scratch: Path) -> dict:
    """(b) the collection's sweep playbook, counters, FORKS; its window starts as the saved sweep has them."""
    env = ansible_env(scratch)
    inventory = ansible_inventory(fleet, hosts, scratch / "sweep.ini")
    results = scratch / "sweep-results"
    argv = [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "fleetdiag.drops.sweep",
            "-e", f"fleetdiag_duration={duration}", "-e", "fleetdiag_tracer=counters",
            "-e", f"fleetdiag_results_dir={results}", "-f", str(forks)]  # fmt: skip
    began = time.time()
    run, _out = timed(argv, env=env, cwd=scratch)
    saved = sorted((results / "sweeps").glob("*.json"))
    doc = json.loads(saved[-1].read_text()) if saved else {"hosts": []}
    run.update(window_starts(doc), document=saved[-1] if saved else None, phases=play_phases(began))
    return run


def play_phases(began: float) -> dict:
    """The play's timeline from its instant file (fleetdiag/ansible_instant.py), seconds after launch.

    ``last_ready``: the first batch all ready to be armed (the instant is set then); ``instant``: the window's start."""
    plays = [p for p in ansible_instant.states_dir().glob("*.instant") if p.stat().st_mtime >= began]
    if not plays:
        return {}
    state = json.loads(max(plays, key=lambda p: p.stat().st_mtime).read_text())
    decided = state.get("decided") or {}
    arrivals = state.get("arrivals") or []
    return {
        "first_arrival": min(arrivals) - began if arrivals else None,
        "last_arrival": max(arrivals) - began if arrivals else None,
        "last_ready": decided["at"] - began if "at" in decided else None,
        "instant": state["start_at"] - began if "start_at" in state else None,
    }


def window_starts(doc: dict) -> dict:
    """How one window the saved sweep's hosts watched.

    ``spread``: first to last clock-corrected start, as the document has them. ``lab_spread``: the
    same from the hosts' own clocks (start + offset): the lab's hosts share this machine's clock,
    so that is the true spread, and an offset mis-measured through Ansible's connection shows here
    and not in ``spread``. ``late``: hosts armed after the play's instant (their window started late).
    """
    ok = [h for h in doc["hosts"] if h["status"] == "ok"]
    starts = [h["window_start"] for h in ok if h.get("window_start") is not None]
    own = [h["window_start"] + (h.get("clock_offset_s") or 0.0) for h in ok if h.get("window_start") is not None]
    late = sorted(h["name"] for h in ok if any("armed after the fleet's instant" in n for n in h.get("notes") or ()))
    offsets = [abs(h["clock_offset_s"]) for h in ok if h.get("clock_offset_s") is not None]
    instant = doc.get("window_instant")
    return {
        "ok": len(ok),
        "failed": {h["name"]: h["error"] for h in doc["hosts"] if h["status"] != "ok"},
        "spread": max(starts) - min(starts) if starts else None,
        "lab_spread": max(own) - min(own) if own else None,
        "late": late,
        "max_offset": max(offsets) if offsets else None,
        "after_instant": max(starts) - instant if starts and instant is not None else None,
    }


def verdict(sweep: dict, hosts: int) -> list[str]:
    """What breaks the one window (must-have 4): hosts late, not ok, or starts spread 1 s or more."""
    problems = []
    if sweep["late"]:
        problems.append(
            f"{len(sweep['late'])} host(s) armed after the play's instant (late): {', '.join(sweep['late'][:10])}"
        )
    if sweep["ok"] < hosts:
        problems.append(f"{hosts - sweep['ok']} host(s) not ok: {dict(list(sweep['failed'].items())[:3])}")
    for key in ("spread", "lab_spread"):
        if sweep[key] is None or sweep[key] >= 1.0:
            problems.append(f"window start {key.replace('_', ' ')} {sweep[key]} s (must be < 1 s)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of raw, sweep, collect on the same lab; medians")
    parser.add_argument("--only", choices=("sweep",), help="run the sweep playbook alone (no ratios)")
    parser.add_argument("--keep", type=Path, help="copy each round's saved sweep document into this directory")
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    if shutil.which("ansible") is None:
        print("benchmark needs ansible-core: pip install '.[ansible]'", file=sys.stderr)
        return 2
    compile_fleetdiag()
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="fleetdiag-ansible-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        up = time.monotonic()
        with LabFleet(args.hosts, ready_timeout=300) as fleet:
            print(f"lab: {args.hosts} hosts up in {time.monotonic() - up:.0f} s", file=sys.stderr)
            hosts = list(fleet.hosts)
            for number in range(1, args.repeat + 1):
                runs: dict[str, dict] = {}
                if args.only is None:
                    runs["raw"] = run_raw(fleet, hosts, args.duration, args.forks, scratch / f"raw-{number}")
                    print(line("raw", args.hosts, runs["raw"]), file=sys.stderr)
                runs["sweep"] = run_sweep(fleet, hosts, args.duration, args.forks, scratch / f"sweep-{number}")
                print(line("sweep", args.hosts, runs["sweep"]), file=sys.stderr)
                if args.keep and runs["sweep"].get("document"):
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(runs["sweep"]["document"], args.keep / f"sweep-{number}.json")
                if args.only is None:
                    runs["collect"] = run_fleetdiag(fleet, hosts, args.duration, scratch, args.forks)
                    print(line("collect", args.hosts, runs["collect"]), file=sys.stderr)
                rounds.append(runs)
    print(f"\n{args.hosts} hosts, window {args.duration} s, tracer counters, -f/--forks {args.forks}; {TARGET}")
    problems = []
    for number, runs in enumerate(rounds, 1):
        print(f"round {number}")
        for name, run in runs.items():
            print(line(name, args.hosts, run))
        sweep = runs["sweep"]
        if "raw" in runs:
            print(f"  sweep / raw     {sweep['wall'] / runs['raw']['wall']:.2f}x")
            print(f"  sweep / collect {sweep['wall'] / runs['collect']['wall']:.2f}x")
        print(f"  sweep's window starts: spread {_s(sweep['spread'])} (clock-corrected), {_s(sweep['lab_spread'])} on "
              f"the hosts' own clocks (the lab's hosts share one); last start {_s(sweep['after_instant'])} after the "
              f"instant; largest measured clock offset {_s(sweep['max_offset'])}; late hosts {len(sweep['late'])}")  # fmt: skip
        if sweep.get("phases"):
            phases = sweep["phases"]
            print("  sweep's play: " + ", ".join(f"{k.replace('_', ' ')} {_s(v)}" for k, v in phases.items())
                  + f" (after launch); wall {sweep['wall']:.2f} s")
        problems += [f"round {number}: {p}" for p in verdict(sweep, args.hosts)]
    if len(rounds) > 1:
        print(f"medians of {len(rounds)} rounds")
        for key in ("wall", "spread", "lab_spread"):
            values = {name: statistics.median(r[name][key] for r in rounds) for name in rounds[0]
                      if all(r[name].get(key) is not None for r in rounds)}  # fmt: skip
            print(f"  {key:<10} " + "  ".join(f"{name} {value:.2f} s" for name, value in values.items()))
        if "raw" in rounds[0]:
            ratios = [r["sweep"]["wall"] / r["raw"]["wall"] for r in rounds]
            print(f"  sweep / raw {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
