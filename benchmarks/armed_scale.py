"""One window for the whole fleet at any size: fleetdiag's armed collect against Ansible's ad-hoc raw.

    sudo python3 benchmarks/armed_scale.py                   # 1000 lab hosts; runs at 200 and at 1000
    sudo python3 benchmarks/armed_scale.py --hosts 200 --sizes 200

Brings up one LabFleet of HOSTS hosts (network namespaces with their own sshd on this
machine; past 253 hosts the bridge takes a bigger subnet and the neighbour table is raised),
then for each size in SIZES, over the first SIZE hosts, in one run:
  (a) `ansible lab -m raw -a 'sleep DURATION; cat /proc/net/netstat' -f 100` (needs ansible-core:
      `pip install ansible-core`; the benchmark only, never a fleetdiag dependency);
  (b) `fleetdiag collect --duration DURATION --tracer counters` with the default forks (50).
  (c) the floor of (b)'s shape: two bare sessions per host (fleetdiag's SshTransport, strict host
      keys, each running `true`), all first sessions then DURATION s then all second sessions, at
      the same forks: what any armed sweep of this lab costs before doing anything (`--no-floor`
      skips it).
It prints wall time, hosts ok, the controller's CPU seconds (per host, in ms) and peak RSS, the
window start spread across the fleet (clock-corrected), and for fleetdiag the time from launch
to the armed instant and from the window's end to the last fetch; then the ratio b/a of wall
times measured in this same run (the machine is shared: only ratios of one run mean much).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import compile_fleetdiag, rusage_of  # noqa: E402
from tests.lab.fleet import LabFleet, LabHost  # noqa: E402
from tests.lab.requirements import missing_lab_requirements  # noqa: E402

TARGETS = "targets: all hosts ok; spread < 1 s; fleetdiag wall <= 0.5x Ansible's; <= 10 ms CPU per host; peak RSS <= 150 MB"


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[dict, str]:
    """Run ARGV to the end: wall, CPU (its reaped descendants included), peak RSS of the largest process; stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        launched = time.time()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        status, usage = rusage_of(proc.pid)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        run = {
            "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "sys": usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status), "launched": launched,
            "stderr_tail": stderr[-600:],
        }  # fmt: skip
        return run, out.read().decode(errors="replace")


def ansible_inventory(fleet: LabFleet, hosts: list[LabHost], path: Path) -> Path:
    """An INI inventory with group `lab`, the lab's key, and its known_hosts checked strictly."""
    lines = ["[lab]", *(f"{h.name} ansible_host={h.address}" for h in hosts), "", "[lab:vars]", "ansible_user=root",
             f"ansible_ssh_private_key_file={fleet.key_path}",
             f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts_path} -o StrictHostKeyChecking=yes'"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def run_ansible(fleet: LabFleet, hosts: list[LabHost], duration: int, scratch: Path) -> dict | None:
    """(a) Ansible's ad-hoc raw over HOSTS, -f 100; None when ansible is not installed."""
    ansible = shutil.which("ansible")
    if ansible is None:
        return None
    inventory = ansible_inventory(fleet, hosts, scratch / f"ansible-{len(hosts)}.ini")
    env = {**os.environ, "ANSIBLE_HOME": str(scratch / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(scratch / "ansible-tmp"),
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_CONTROL_PATH_DIR": str(scratch / "cp"),
           "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    argv = [ansible, "lab", "-i", str(inventory), "-m", "raw", "-a", f"sleep {duration}; cat /proc/net/netstat", "-f", "100"]
    run, out = timed(argv, env=env)
    run["ok"] = sum(1 for line in out.splitlines() if "| CHANGED | rc=0" in line or "| SUCCESS | rc=0" in line)
    return run


def run_fleetdiag(fleet: LabFleet, hosts: list[LabHost], duration: int, scratch: Path, forks: int = 50) -> dict:
    """(b) fleetdiag collect over HOSTS, counters, FORKS (the default 50)."""
    inventory = fleet.write_inventory(scratch / f"fleetdiag-{len(hosts)}.yaml", hosts=hosts)
    argv = [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(duration),
            "--tracer", "counters", "--forks", str(forks), "--known-hosts", str(fleet.known_hosts_path),
            "--results-dir", str(scratch / "results"), "-o", "json"]  # fmt: skip
    run, out = timed(argv, cwd=REPO)
    doc = json.loads(out) if out.strip() else {"hosts": [], "phases": {}}
    run["ok"] = sum(h["status"] == "ok" for h in doc["hosts"])
    run["spread"] = doc.get("window_start_spread_s")
    run["mode"] = doc.get("mode")
    run["phases"] = doc.get("phases", {})
    errors: dict[str, int] = {}
    for host in doc["hosts"]:
        if host["error"]:
            errors[host["error"][:90]] = errors.get(host["error"][:90], 0) + 1
    run["errors"] = errors
    return run


def run_floor(fleet: LabFleet, hosts: list[LabHost], duration: int, scratch: Path, forks: int = 50) -> dict:
    """(c) two bare sessions per host, forks-bounded, DURATION s apart: the armed sweep's floor here."""
    listing = scratch / f"floor-{len(hosts)}.json"
    listing.write_text(json.dumps({"hosts": [[h.name, h.address, h.port] for h in hosts],
                                   "known_hosts": str(fleet.known_hosts_path), "key": str(fleet.key_path)}))  # fmt: skip
    argv = [sys.executable, str(Path(__file__).resolve()), "--floor-worker", str(listing), "--forks", str(forks),
            "--duration", str(duration)]  # fmt: skip
    run, out = timed(argv, cwd=REPO)
    doc = json.loads(out) if out.strip() else {"ok": 0, "phases": {}}
    run.update(ok=doc["ok"], phases=doc["phases"], spread=None)
    return run


def floor_worker(listing: Path, forks: int, duration: int) -> int:
    """The floor's process: its CPU and RSS are what `timed` reports."""
    from concurrent.futures import ThreadPoolExecutor

    from fleetdiag.model import HostSpec
    from fleetdiag.transport import SshOptions
    from fleetdiag.transport.ssh import SshTransport

    saved = json.loads(listing.read_text())
    options = SshOptions(known_hosts=(saved["known_hosts"],), default_private_key=saved["key"])
    specs = [HostSpec(name=n, address=a, port=p, user="root") for n, a, p in saved["hosts"]]

    def session(spec: HostSpec) -> bool:
        transport = SshTransport(spec, options)
        try:
            transport.open()
            return transport.run("true", timeout=60).exit_code == 0
        except Exception:  # a host that fails is counted, not fatal
            return False
        finally:
            transport.close()

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=forks) as pool:
        first = list(pool.map(session, specs))
    first_s = time.monotonic() - began
    time.sleep(duration)
    second_began = time.monotonic()
    with ThreadPoolExecutor(max_workers=forks) as pool:
        second = list(pool.map(session, specs))
    phases = {"first_sessions_s": round(first_s, 2), "second_sessions_s": round(time.monotonic() - second_began, 2)}
    print(json.dumps({"ok": sum(a and b for a, b in zip(first, second)), "phases": phases}))
    return 0


def line(name: str, size: int, run: dict | None) -> str:
    if run is None:
        return f"  {name:<10} {size:>5}  (ansible not installed: pip install ansible-core)"
    per_host_ms = 1000 * run["cpu"] / size
    spread = f"{run['spread']:.2f} s" if run.get("spread") is not None else "-"
    return (f"  {name:<10} {size:>5}  wall {run['wall']:6.1f} s  ok {run['ok']:>5}/{size}  "
            f"CPU {run['cpu']:6.1f} s ({per_host_ms:5.1f} ms/host, sys {run['sys']:.1f} s)  "
            f"peak RSS {run['rss_mb']:5.0f} MB  spread {spread}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--sizes", default="200,1000", help="comma-separated fleet sizes to run over (<= --hosts)")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--forks", type=int, default=50, help="fleetdiag's --forks (its default: 50)")
    parser.add_argument("--no-ansible", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip (c), the two-bare-sessions floor")
    parser.add_argument("--floor-worker", type=Path, help=argparse.SUPPRESS)  # (c)'s own process
    args = parser.parse_args()
    if args.floor_worker is not None:
        return floor_worker(args.floor_worker, args.forks, args.duration)
    sizes = [int(s) for s in args.sizes.split(",")]
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    if max(sizes) > args.hosts:
        print("every size must be <= --hosts", file=sys.stderr)
        return 2
    compile_fleetdiag()
    results: list[tuple[int, dict | None, dict, dict | None]] = []
    with tempfile.TemporaryDirectory(prefix="fleetdiag-armed-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        up = time.monotonic()
        with LabFleet(args.hosts, ready_timeout=300) as fleet:
            print(f"lab: {args.hosts} hosts up in {time.monotonic() - up:.0f} s on {fleet.subnet}", file=sys.stderr)
            for size in sizes:
                hosts = list(fleet.hosts[:size])
                ansible = None if args.no_ansible else run_ansible(fleet, hosts, args.duration, scratch)
                if ansible is not None:
                    print(line("ansible", size, ansible), file=sys.stderr)
                collected = run_fleetdiag(fleet, hosts, args.duration, scratch, args.forks)
                print(line("fleetdiag", size, collected), file=sys.stderr)
                floor = None if args.no_floor else run_floor(fleet, hosts, args.duration, scratch, args.forks)
                if floor is not None:
                    print(line("floor", size, floor), file=sys.stderr)
                results.append((size, ansible, collected, floor))
    print(f"\nwindow {args.duration} s, tracer counters, fleetdiag --forks {args.forks}, ansible -f 100; {TARGETS}")
    for size, ansible, collected, floor in results:
        print(line("ansible", size, ansible))
        print(line("fleetdiag", size, collected))
        phases = collected["phases"]
        print(f"  {'':<10} {'':>5}  mode {collected['mode']}; launch to the armed instant "
              f"{phases.get('launch_to_instant_s', float('nan')):.1f} s (arming took {phases.get('arm_s', float('nan')):.1f} s); "
              f"window end to the last fetch {phases.get('window_end_to_last_fetch_s', float('nan')):.1f} s")  # fmt: skip
        if collected["errors"]:
            print(f"  {'':<10} {'':>5}  errors: {collected['errors']}")
        if ansible is not None:
            print(f"  {'':<10} {'':>5}  fleetdiag/ansible wall {collected['wall'] / ansible['wall']:.2f}x")
        if floor is not None:
            print(line("floor", size, floor))
            phases = floor["phases"]
            print(f"  {'':<10} {'':>5}  two bare sessions per host, --forks {args.forks}: first sessions "
                  f"{phases.get('first_sessions_s', float('nan')):.1f} s, second sessions "
                  f"{phases.get('second_sessions_s', float('nan')):.1f} s")  # fmt: skip
            if ansible is not None:
                print(f"  {'':<10} {'':>5}  floor/ansible wall {floor['wall'] / ansible['wall']:.2f}x; "
                      f"fleetdiag/floor wall {collected['wall'] / floor['wall']:.2f}x, "
                      f"CPU {collected['cpu'] / max(floor['cpu'], 1e-9):.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
