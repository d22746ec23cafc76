"""Where a collect's time goes on N lab hosts: phases, controller threads and their CPU, host-side CPU.

    sudo python3 benchmarks/profile_sweep.py                       # 200 hosts, 5 s, counters
    sudo python3 benchmarks/profile_sweep.py --facts bpftrace-only  # detection cut to what bpftrace needs

Runs the sweep in this process (the same run_sweep the CLI calls) and prints, per phase,
when hosts reached it (p50/p90/last, seconds from the start): connected, detected, window
sent, done, and the hosts' own window open and shut times; the round trip of detection
and of the window per host; the controller's CPU
split between the per-host worker threads (commands, parsing) and paramiko's transport
threads (key exchange, ciphers, packets), the peak thread count, and the host-side CPU.

``--facts bpftrace-only`` runs detection with only the facts the bpftrace tracer needs:
a diagnostic that separates fleetdiag's orchestration from the cost of the full detection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleetdiag import (
    collector,
    facts,
)
from fleetdiag.inventory import load_inventory
from fleetdiag.model import Window
from fleetdiag.sections import section_header
from fleetdiag.sweep import SweepOptions, run_sweep
from fleetdiag.transport import SshOptions
from tests.lab.fleet import LabFleet

BPFTRACE_FACTS = ("kernel", "os_release", "uid", "netns", "tracefs", "btf", "bpftrace", "kfree_skb_format")


def bpftrace_only_detection() -> str:
    """The detection script with only the facts the bpftrace tracer reads."""
    prelude = getattr(facts, "_PRELUDE", "exec 2>/dev/null")
    parts = [prelude]
    for fact in facts.FACTS:
        if fact.name in BPFTRACE_FACTS:
            parts += [section_header(fact.name), f"( {fact.command.strip()}\n)"]
    return "\n".join(parts) + "\n"


def thread_cpu_by_role() -> dict[str, float]:
    """CPU seconds of this process's live threads, by role: host workers, paramiko transports, others."""
    roles: dict[str, float] = defaultdict(float)
    for thread in threading.enumerate():
        try:  # schedstat: nanoseconds on a CPU (stat's clock ticks are too coarse per thread)
            seconds = int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        if isinstance(thread, paramiko.Transport):
            role = "paramiko transports"  # key exchange, ciphers, packets
        elif thread.name.startswith("fleetdiag-"):
            role = "host workers"  # commands, output, parsing
        else:
            role = "main and others"
        roles[role] += seconds
    return roles


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "-"
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return f"p50 {pick(0.5):6.2f}  p90 {pick(0.9):6.2f}  last {ordered[-1]:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--tracer", default="counters")
    parser.add_argument("--facts", choices=("all", "bpftrace-only"), default="all")
    parser.add_argument("--no-align", action="store_true", help="each host starts its window when it is ready")
    args = parser.parse_args()
    if args.facts == "bpftrace-only":
        collector.detection_script = bpftrace_only_detection  # type: ignore[assignment]
    stamps: dict[str, dict[str, float]] = defaultdict(dict)
    peak_threads = 0
    started = time.monotonic()

    def progress(host: str, stage: str, _result: object) -> None:
        nonlocal peak_threads
        stamps[stage][host] = time.monotonic() - started
        peak_threads = max(peak_threads, threading.active_count())

    with tempfile.TemporaryDirectory() as scratch, LabFleet(args.hosts, cpu_accounting=True) as fleet:
        inventory = load_inventory(fleet.write_inventory(Path(scratch) / "hosts.yaml"))
        options = SweepOptions(
            window=Window(args.duration),
            forks=args.hosts,
            tracer=args.tracer,
            ssh=SshOptions(known_hosts=(str(fleet.known_hosts_path),)),
            align_windows=not args.no_align,
        )
        host_cpu_before = fleet.cpu.seconds() if fleet.cpu else None
        cpu_before = time.process_time()
        started = time.monotonic()
        started_epoch = time.time()
        roles: dict[str, float] = {}
        sampler_stop = threading.Event()

        def sample() -> None:  # thread CPU is only readable while the threads live: keep the peak
            while not sampler_stop.wait(0.2):
                roles.update({k: max(v, roles.get(k, 0.0)) for k, v in thread_cpu_by_role().items()})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sweep = run_sweep(inventory.hosts, options, progress)
        sampler_stop.set()
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu_before
        host_cpu = fleet.cpu.seconds() - host_cpu_before if fleet.cpu and host_cpu_before is not None else None
    ok = sum(h.status.value == "ok" for h in sweep.hosts)
    starts = [h.window_start for h in sweep.hosts if h.window_start]
    print(f"{args.hosts} hosts, --duration {args.duration}, tracer {args.tracer}, facts {args.facts}, "
          f"windows {'each on its own' if args.no_align else 'aligned'}: "
          f"wall {wall:.1f} s, {ok} ok, window start spread {max(starts) - min(starts):.2f} s")  # fmt: skip
    print("phase reached (s from start):")
    for stage in ("connecting", "collecting", "waiting", "watching", "done"):
        label = {"collecting": "connected", "waiting": "detected", "watching": "window sent"}.get(stage, stage)
        print(f"  {label:12s} {percentiles(list(stamps[stage].values()))}")
    for label, values in (
        ("window open", [h.window_start - started_epoch for h in sweep.hosts if h.window_start]),
        ("window shut", [h.window_end - started_epoch for h in sweep.hosts if h.window_end]),
    ):  # the hosts' own clocks: the lab shares the controller's
        print(f"  {label:12s} {percentiles(values)}")
    detect = [stamps["waiting"][h] - stamps["collecting"][h] for h in stamps["waiting"] if h in stamps["collecting"]]
    window = [stamps["done"][h] - stamps["watching"][h] for h in stamps["watching"] if h in stamps["done"]]
    connect = [stamps["collecting"][h] - stamps["connecting"][h] for h in stamps["collecting"]]
    print(f"per host: connect {percentiles(connect)}\n          detection round trip {percentiles(detect)}"
          f"\n          window round trip {percentiles(window)}")  # fmt: skip
    print(f"controller: CPU {cpu:.1f} s ({1000 * cpu / args.hosts:.1f} ms/host), peak threads {peak_threads}")
    for role, seconds in sorted(roles.items()):
        print(f"  {role:20s} {seconds:6.1f} CPU s (while the threads lived)")
    if host_cpu is not None:
        print(f"host side (sshd, scripts, probes): {host_cpu:.1f} CPU s ({1000 * host_cpu / args.hosts:.0f} ms/host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
