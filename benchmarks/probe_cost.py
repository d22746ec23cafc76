"""What the probe costs a host under a drop storm: BPF run time per event, CPU share, misses, memory.

    sudo python3 benchmarks/probe_cost.py                  # 10 s window, 6 s SYN storm
    sudo python3 benchmarks/probe_cost.py --storm backlog  # the real TCPBacklogDrop generator instead

Two lab hosts: h01 is watched by a real `fleetdiag collect --tracer bpftrace`, h02 floods
it. The SYN storm opens non-blocking connections to a closed port on h01 as fast as one
process can (each SYN is a NO_SOCKET drop on h01, each from a new source port: a new
flow, so the per-flow map fills up to its cap). With kernel.bpf_stats_enabled=1 (restored
after), the kernel counts each of the probe's programs' run time, runs and recursion
misses; bpftrace's own process CPU and peak memory come from /proc.

Note: every lab host shares this kernel, so the probe's programs also run (and filter
out) drops of other namespaces; run_cnt counts those runs too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.test_collect import probe_windows, wait_for_windows
from tests.lab.backlog import generate_backlog_drops
from tests.lab.fleet import LabFleet, LabHost
from tests.lab.requirements import missing_lab_requirements, program

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
CLOSED_PORT = 9  # discard: nothing listens on it in a lab host
SYN_STORM = """
import errno, socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(200):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((address, port))   # one SYN; the host answers RST and drops it (NO_SOCKET)
        s.close()
        sent += 1
print(sent)
"""


def programs_of(pid: int) -> list[int]:
    """BPF program ids held by PID (from its fds' fdinfo: bpftool here cannot list owners)."""
    ids = []
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            for line in info.read_text().splitlines():
                if line.startswith("prog_id:"):
                    ids.append(int(line.split()[1]))
        except OSError:
            continue
    return sorted(set(ids))


def program_stats(ids: list[int]) -> dict[int, dict]:
    """bpftool's view of these programs: run_time_ns, run_cnt, recursion_misses, sizes."""
    shown = json.loads(subprocess.run([program("bpftool"), "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout)
    return {p["id"]: p for p in shown if p["id"] in ids}


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def storm(fleet: LabFleet, target: LabHost, source: LabHost, kind: str, seconds: float) -> str:
    """Run the storm; a line saying what it sent."""
    if kind == "backlog":
        drops = generate_backlog_drops(fleet, target, source, seconds=seconds)
        return f"backlog generator: {drops} TCPBacklogDrop on {target.name}"
    out = fleet.exec(
        source, [sys.executable, "-c", SYN_STORM, target.address, str(CLOSED_PORT), str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sent = int(out.stdout.strip())
    return f"SYN storm: {sent} SYNs to a closed port in {seconds:.0f} s ({sent / seconds:,.0f}/s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--storm-seconds", type=float, default=6.0)
    parser.add_argument("--storm", choices=("syn", "backlog"), default="syn")
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    previous_stats = BPF_STATS.read_text().strip()
    with tempfile.TemporaryDirectory() as scratch, LabFleet(2) as fleet:
        target, source = fleet.host("h01"), fleet.host("h02")
        inventory = fleet.write_inventory(Path(scratch) / "hosts.yaml", hosts=[target])
        BPF_STATS.write_text("1\n")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(args.window),
                 "--tracer", "bpftrace", "--known-hosts", str(fleet.known_hosts_path),
                 "--results-dir", str(Path(scratch) / "results"), "-o", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            )  # fmt: skip
            wait_for_windows(1, {target.netns_inode}, proc)
            (bpftrace_pid,) = [pid for pid in probe_windows({target.netns_inode}) if Path(f"/proc/{pid}/comm").read_text().strip() == "bpftrace"] or [None]
            ids = programs_of(bpftrace_pid)
            before, cpu_before = program_stats(ids), process_cpu(bpftrace_pid)
            started = time.monotonic()
            sent = storm(fleet, target, source, args.storm, args.storm_seconds)
            storm_s = time.monotonic() - started
            after, cpu_after, rss = program_stats(ids), process_cpu(bpftrace_pid), peak_rss_mb(bpftrace_pid)
            out, err = proc.communicate(timeout=args.window + 60)
        finally:
            BPF_STATS.write_text(previous_stats + "\n")
    host = json.loads(out)["hosts"][0]
    print(sent)
    print(f"probe result: status {host['status']}, {sum(host['drops'].values()):,} drops traced "
          f"({', '.join(f'{k} {v:,}' for k, v in host['drops'].items())}); notes: {host['notes'] or '-'}")  # fmt: skip
    total_ns = total_misses = events = 0
    for pid_ in ids:
        b, a = before.get(pid_, {}), after.get(pid_, {})
        runs = a.get("run_cnt", 0) - b.get("run_cnt", 0)
        ns = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        misses = a.get("recursion_misses", 0) - b.get("recursion_misses", 0)
        # Each attached program runs once per kfree_skb event: an event costs the sum of them.
        total_ns, total_misses, events = total_ns + ns, total_misses + misses, max(events, runs)
        if runs:
            print(f"  prog {pid_} {a.get('type')} {a.get('name')}: {runs:,} runs, {ns / runs:,.0f} ns/run, "
                  f"{misses} recursion misses, jited {a.get('bytes_jited')} B")  # fmt: skip
    print(f"BPF programs during the storm: {total_ns / 1e9:.3f} CPU s over {storm_s:.1f} s "
          f"= {100 * total_ns / 1e9 / storm_s:.1f}% of one CPU; {events:,} events, {total_ns / max(events, 1):,.0f} ns each; "
          f"{total_misses} recursion misses")  # fmt: skip
    print(f"bpftrace process: {cpu_after - cpu_before:.2f} CPU s during the storm, peak RSS {rss:.0f} MB")
    if err.strip():
        print(f"collect stderr: {err.strip()[-300:]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
