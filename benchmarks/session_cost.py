"""Host-side CPU of one host's session, without SSH: what every host pays per sweep.

    sudo python3 benchmarks/session_cost.py                 # counters, 2 s window, 40 at once, 3 rounds
    sudo python3 benchmarks/session_cost.py --duration 5

Runs, in one lab host's network namespace, the exact script a `fleetdiag collect --tracer
counters` session runs there (detection, then the window script, answered the way the
controller answers: the window script, then "go"), N at a time, and prints the CPU of
everything those scripts started (children's rusage, less `ip netns exec`'s own):
  detection  the detection part alone (an empty reply ends it);
  before go  detection, then the window script read and set up to its "ready?" question
             (an empty reply there ends it, so this also holds the temp dir's removal);
  session    detection, set-up, the window and its samples, the report and the cleanup;
and what the pieces before go cost on their own (each in a fresh `sh -c`, less an empty one).
Medians of ROUNDS. On the lab every host shares this machine's cores, so this is the
figure that a 200-host sweep multiplies (benchmarks/scale.py); a real host pays it alone.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleetdiag.facts import detection_script, parse_facts
from fleetdiag.model import Window
from fleetdiag.tracers import counters
from fleetdiag.transport.base import reply
from fleetdiag.window_script import GO_REPLY, build_window_script, detect_then_window_script
from tests.lab.fleet import LabFleet
from tests.lab.requirements import missing_lab_requirements


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_at_once(argv_prefix: list[str], script: str, stdin: bytes, n: int) -> tuple[float, list[bytes]]:
    """CPU seconds of N copies of SCRIPT run at once, each fed STDIN (kept open, as the controller does)."""
    before = children_cpu()
    procs = [
        subprocess.Popen([*argv_prefix, "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
        for _ in range(n)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.flush()
    outs = []
    for proc in procs:
        assert proc.stdout is not None and proc.stdin is not None
        outs.append(proc.stdout.read())
        proc.stdin.close()
        proc.wait()
    return children_cpu() - before, outs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--at-once", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    with LabFleet(1) as fleet:
        host = fleet.hosts[0]
        prefix = ["ip", "netns", "exec", host.netns]
        detection = detection_script(counters_only=True)
        facts_out = subprocess.run([*prefix, "sh", "-c", detection], capture_output=True, text=True, check=True).stdout
        facts = parse_facts(facts_out)
        window = Window(args.duration)
        script = build_window_script(counters.plan(facts, window), args.duration, ask_before_start=True)
        session = detect_then_window_script(detection)
        runs: dict[str, list[float]] = {"ip netns exec": [], "detection": [], "before go": [], "session": []}
        pieces = {  # before go, one by one: what a sweep's connect phase pays per host for each
            "read the window script (head -c)": ('IFS= read -r n; w=$(head -c "$n")', reply(script.encode())),
            "temp dir (mktemp -d, rm -rf)": ('d=$(mktemp -d "${TMPDIR:-/tmp}/fleetdiag.XXXXXXXX") && rm -rf "$d"', b""),
            "clock anchor (date +%s%N)": ("t=$(date +%s%N)", b""),
        }
        piece_runs: dict[str, list[float]] = {name: [] for name in pieces}
        for _ in range(args.rounds):
            started = time.monotonic()
            base, _ = run_at_once(prefix, ":", b"", args.at_once)
            runs["ip netns exec"].append(base)
            cpu, _ = run_at_once(prefix, session, reply(b""), args.at_once)
            runs["detection"].append(cpu - base)
            cpu, _ = run_at_once(prefix, session, reply(script.encode()) + reply(b""), args.at_once)
            runs["before go"].append(cpu - base)
            for name, (piece, stdin) in pieces.items():
                cpu, _ = run_at_once(prefix, piece, stdin, args.at_once)
                piece_runs[name].append(cpu - base)
            cpu, outs = run_at_once(prefix, session, reply(script.encode()) + reply(GO_REPLY), args.at_once)
            runs["session"].append(cpu - base)
            complete = sum(b"@@fleetdiag window" in out for out in outs)
            print(f"round: {time.monotonic() - started:.1f} s, {complete}/{args.at_once} windows complete",
                  file=sys.stderr)  # fmt: skip
    print(f"--tracer counters, {args.duration} s window, {args.at_once} sessions at once, "
          f"{args.rounds} rounds, medians, CPU ms per session:")  # fmt: skip
    for name in ("detection", "before go", "session"):
        print(f"  {name:10s} {1000 * statistics.median(runs[name]) / args.at_once:6.1f}")
    print("pieces before go, each on its own:")
    for name, values in piece_runs.items():
        print(f"  {name:34s} {1000 * statistics.median(values) / args.at_once:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
