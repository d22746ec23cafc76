"""Where the machine's 2 cores go, a quarter second at a time, during (b) Fabric and (c) collect.

    sudo python3 benchmarks/cpu_timeline.py              # 200 hosts, 5 s, tracer counters
    sudo python3 benchmarks/cpu_timeline.py --hosts 50 --step 0.5

On the lab every host's sshd and scripts run on the controller's own cores, so a run's wall
time is set by when the cores are busy and with what: the hosts (sshd, scripts, probes: the
fleet's cpuacct cgroup), the controller process (its own CPU), others, and idle. Each row is
one STEP of wall time, in cores (2.0 = both cores for the whole step). It shows the phases
benchmarks/scale.py only totals: the connect phase, the window's samples, the end of window.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import collect_argv, compile_fleetdiag, fabric_argv, lab_with_inventory
from tests.lab.fleet import LabFleet
from tests.lab.requirements import missing_lab_requirements

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """CPU seconds of a live process (its own threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float]:
    """Idle (idle + iowait) and total CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (values[3] + values[4]) / _TICK, sum(values) / _TICK


def timeline(name: str, argv: list[str], fleet: LabFleet, step: float) -> list[tuple[float, float, float, float, float]]:
    """Run ARGV to its end; rows of (seconds since start, hosts, controller, others, idle) in cores."""
    assert fleet.cpu is not None
    samples = []
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        controller = 0.0
        while True:
            done = proc.poll() is not None
            controller = process_cpu(proc.pid) or controller  # the last reading before it exits
            samples.append((time.monotonic() - started, fleet.cpu.seconds() or 0.0, controller, *machine_cpu()))
            if done:
                break
            time.sleep(0.05)
        if proc.returncode != 0:  # a timeline of a crash would read as a fast run
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{name} exited {proc.returncode}: " + " | ".join(tail))
    rows, previous = [], samples[0]
    for sample in samples[1:]:
        if sample[0] - previous[0] >= step or sample is samples[-1]:
            span = sample[0] - previous[0]
            hosts, ctl = (sample[1] - previous[1]) / span, (sample[2] - previous[2]) / span
            idle, total = (sample[3] - previous[3]) / span, (sample[4] - previous[4]) / span
            rows.append((sample[0], hosts, ctl, max(0.0, total - idle - hosts - ctl), idle))
            previous = sample
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--tracer", default="counters")
    parser.add_argument("--step", type=float, default=0.25)
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    compile_fleetdiag()
    with lab_with_inventory(args.hosts) as (fleet, inventory, scratch):
        runs = {
            "(b) Fabric ThreadingGroup.run": fabric_argv(fleet, f"sleep {args.duration}"),
            "(c) fleetdiag collect": collect_argv(fleet, inventory, args.duration, args.tracer, scratch / "r"),
        }
        for name, argv in runs.items():
            rows = timeline(name, argv, fleet, args.step)
            print(f"{name}, {args.hosts} hosts: cores busy per {args.step} s (ends at {rows[-1][0]:.2f} s)")
            print(f"{'t s':>6s} {'hosts':>6s} {'ctl':>6s} {'other':>6s} {'idle':>6s}")
            for t, hosts, ctl, other, idle in rows:
                print(f"{t:6.2f} {hosts:6.2f} {ctl:6.2f} {other:6.2f} {idle:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
