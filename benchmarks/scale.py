"""How fleetdiag's whole collect compares with plain SSH fan-out, on N lab hosts, in one run.

    sudo python3 benchmarks/scale.py                 # 200 hosts, 5 s, tracer counters
    sudo python3 benchmarks/scale.py --hosts 3 --repeat 1 --tracer auto

Brings up a LabFleet (network namespaces with their own sshd on this machine) and times,
in turn and REPEAT times:
  (a) N parallel OpenSSH clients each running `sleep DURATION` on one host;
  (b) Fabric's ThreadingGroup(...).run("sleep DURATION") over the same hosts;
  (c) `fleetdiag collect --duration DURATION --forks N` (detect, deploy, probe, fetch, clean up).
It prints wall-clock medians and the ratios c/b and c/a measured in this same run (the
machine is shared and noisy: only ratios of one run mean anything), the controller's CPU
seconds per host and peak memory, the host-side CPU (sshd, scripts, probes: on a real
fleet each host pays its own), and the spread of window start times across hosts.

The default tracer is `counters`: on the lab every host shares these 2 cores, and 200
bpftrace processes (0.7 CPU-s and 110 MB each to start) would measure the lab, not
fleetdiag. `--tracer auto` runs the real probe (use fewer hosts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.fleet import LabFleet
from tests.lab.requirements import missing_lab_requirements, program

FABRIC_GROUP = """
import sys
from fabric import ThreadingGroup
hosts, key, command = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
ThreadingGroup(*hosts, user="root", connect_kwargs={"key_filename": [key]}).run(command, hide=True)
"""


@dataclass
class Run:
    """One timed run: wall seconds, CPU seconds and peak RSS of the controller side."""

    wall: float
    cpu: float
    max_rss_mb: float
    host_cpu: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def rusage_of(pid: int) -> tuple[int, resource.struct_rusage]:
    """Wait for PID; its exit status and resource usage (its reaped descendants included)."""
    _, status, usage = os.wait4(pid, 0)
    return status, usage


def timed_popen(argv: list[str], fleet: LabFleet, **kwargs: object) -> tuple[Run, str]:
    """Run ARGV to the end; its Run and stdout."""
    host_cpu_before = fleet.cpu.seconds() if fleet.cpu else None
    launched = time.time()  # epoch: hosts' window times are on this machine's clock too
    started = time.monotonic()
    out_file = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=out_file, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    status, usage = rusage_of(proc.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    out_file.seek(0)
    host_cpu = fleet.cpu.seconds() - host_cpu_before if fleet.cpu and host_cpu_before is not None else None
    extra = {"launched": launched, "exit": float(proc.returncode)}
    run = Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, host_cpu, extra)
    return run, out_file.read().decode(errors="replace")


def openssh_fanout(fleet: LabFleet, command: str) -> Run:
    """(a) one OpenSSH client per host, all at once."""
    host_cpu_before = fleet.cpu.seconds() if fleet.cpu else None
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [program("ssh"), "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", f"UserKnownHostsFile={fleet.known_hosts_path}", "-i", str(fleet.key_path),
             f"root@{host.address}", command],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for host in fleet.hosts
    ]
    cpu, peak, failed = 0.0, 0.0, 0
    for proc in procs:
        status, usage = rusage_of(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        failed += proc.returncode != 0
        cpu += usage.ru_utime + usage.ru_stime
        peak += usage.ru_maxrss / 1024  # all run at once: their memory adds up
    wall = time.monotonic() - started
    host_cpu = fleet.cpu.seconds() - host_cpu_before if fleet.cpu and host_cpu_before is not None else None
    return Run(wall, cpu, peak, host_cpu, {"failed": failed})


def fabric_argv(fleet: LabFleet, command: str) -> list[str]:
    """(b) Fabric's ThreadingGroup, one process."""
    hosts = ",".join(h.address for h in fleet.hosts)
    return [sys.executable, "-c", FABRIC_GROUP, hosts, str(fleet.key_path), command]


def collect_argv(fleet: LabFleet, inventory: Path, duration: int, tracer: str, results: Path) -> list[str]:
    """(c) the whole collect, as a user runs it."""
    return [
        sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(duration),
        "--forks", str(len(fleet.hosts)), "--tracer", tracer, "--known-hosts", str(fleet.known_hosts_path),
        "--results-dir", str(results), "-o", "json",
    ]  # fmt: skip


def fabric_group(fleet: LabFleet, command: str) -> Run:
    run, _ = timed_popen(fabric_argv(fleet, command), fleet)
    if run.extra["exit"] != 0:  # a baseline that failed fast would flatter every ratio against it
        raise SystemExit(f"(b) Fabric's run failed (exit {run.extra['exit']:.0f}): its time is no baseline")
    return run


def fleetdiag_collect(fleet: LabFleet, inventory: Path, duration: int, tracer: str, results: Path) -> Run:
    run, out = timed_popen(collect_argv(fleet, inventory, duration, tracer, results), fleet, cwd=REPO)
    hosts = json.loads(out)["hosts"] if out.strip() else []
    starts = [h["window_start"] for h in hosts if h.get("window_start")]
    run.extra.update(
        ok=sum(h["status"] == "ok" for h in hosts),
        spread=(max(starts) - min(starts)) if starts else float("nan"),
        go=(min(starts) - run.extra["launched"]) if starts else float("nan"),  # launch to the first window
    )
    return run


@contextlib.contextmanager
def lab_with_inventory(hosts: int) -> Iterator[tuple[LabFleet, Path, Path]]:
    """HOSTS lab hosts with CPU accounting, their inventory file, and a scratch dir."""
    with tempfile.TemporaryDirectory(prefix="fleetdiag-bench-") as scratch:
        with LabFleet(hosts, cpu_accounting=True) as fleet:
            yield fleet, fleet.write_inventory(Path(scratch) / "hosts.yaml"), Path(scratch)


def sleep_baselines(fleet: LabFleet, duration: int) -> tuple[Run, Run]:
    """(a) and (b): every host runs `sleep DURATION` as soon as its own connection is up."""
    command = f"sleep {duration}"
    return openssh_fanout(fleet, command), fabric_group(fleet, command)


def compile_fleetdiag() -> None:
    """Bytecode for the checkout, as pip makes for an installed fleetdiag: where
    PYTHONDONTWRITEBYTECODE is set (this machine) ~70 modules would compile on every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "fleetdiag")], check=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tracer", default="counters")
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    compile_fleetdiag()
    runs: dict[str, list[Run]] = {"a": [], "b": [], "c": []}
    with lab_with_inventory(args.hosts) as (fleet, inventory, scratch):
        for round_ in range(args.repeat):
            for key, run in zip("ab", sleep_baselines(fleet, args.duration)):
                runs[key].append(run)
            runs["c"].append(fleetdiag_collect(fleet, inventory, args.duration, args.tracer, scratch / "results"))
            a, b, c = (runs[k][-1] for k in "abc")
            print(
                f"round {round_ + 1}: (a) {a.wall:.1f} s  (b) {b.wall:.1f} s  (c) {c.wall:.1f} s, "
                f"{c.extra['ok']:.0f}/{args.hosts} ok, window start spread {c.extra['spread']:.2f} s",
                file=sys.stderr,
            )
    report(runs, args)
    return 0


def report(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    """The table of medians and ratios."""
    names = {
        "a": f"(a) {args.hosts} OpenSSH clients, sleep {args.duration}",
        "b": f"(b) Fabric ThreadingGroup.run, sleep {args.duration}",
        "c": f"(c) fleetdiag collect --duration {args.duration} --tracer {args.tracer}",
    }
    print(f"{args.hosts} lab hosts, {args.repeat} round(s), medians")
    print(f"{'':58s} {'wall s':>7s} {'ctl CPU s':>9s} {'ctl CPU ms/host':>15s} {'peak MB':>8s} {'host CPU s':>10s}")
    for key, name in names.items():
        wall = median([r.wall for r in runs[key]])
        cpu = median([r.cpu for r in runs[key]])
        rss = median([r.max_rss_mb for r in runs[key]])
        host_cpu = median([r.host_cpu for r in runs[key] if r.host_cpu is not None])
        print(f"{name:58s} {wall:7.1f} {cpu:9.1f} {1000 * cpu / args.hosts:15.1f} {rss:8.0f} {host_cpu:10.1f}")
    a, b, c = (median([r.wall for r in runs[k]]) for k in "abc")
    print(f"ratio c/b = {c / b:.2f} (target <= 1.0)   ratio c/a = {c / a:.2f} (target <= 0.6)")
    spreads = [r.extra["spread"] for r in runs["c"]]
    oks = [r.extra["ok"] for r in runs["c"]]
    print(f"window start spread across hosts: median {median(spreads):.2f} s; hosts ok per round: {oks}")
    failed = [r.extra.get("failed", 0) for r in runs["a"]]
    if any(failed):
        print(f"note: OpenSSH clients that failed per round: {failed}")


if __name__ == "__main__":
    sys.exit(main())
