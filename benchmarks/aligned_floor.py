"""The least an aligned window costs on this lab, before fleetdiag does anything of its own.

    sudo python3 benchmarks/aligned_floor.py          # 200 hosts, 5 s, 3 rounds

`scale.py` compares fleetdiag's whole collect with (a) 200 OpenSSH clients and (b) Fabric,
each host running `sleep 5` whenever its own connection is up. fleetdiag instead opens
every host's window at one moment (its window gate), so that all hosts watch the same
5 seconds, and a counters window must read the host's state at both ends of it. This
script measures those two requirements alone, on fleetdiag's own transport and gate with
nothing else on the hosts, in the same run as (a), (b) and the whole collect (c):

  (f0) aligned sleep: connect, ask, wait for every host ("go"), `sleep 5`;
  (f1) aligned counters floor: as f0, and at each end of the window what any tool reading
       per-socket drops needs there: the TcpExt counters (`cat /proc/net/netstat`) and one
       socket table with memory counters (`ss -4 -tanm`).

On this lab every host's sshd and scripts run on the controller's 2 cores, so the work
that an aligned window puts at its start and at its end on 200 hosts at once is paid in
wall time; on a real fleet each host pays its own share, in parallel.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import (  # noqa: E402
    Run,
    compile_fleetdiag,
    fleetdiag_collect,
    lab_with_inventory,
    sleep_baselines,
    timed_popen,
)
from tests.lab.fleet import LabFleet  # noqa: E402
from tests.lab.requirements import missing_lab_requirements  # noqa: E402

# What each floor runs on a host once every host is ready ("go"). The output goes back to the
# controller as a window's would; `ss` is read on the host (the counters tier folds it there).
# -4: a lab host has no IPv6 TCP socket, and the counters sampler then skips IPv6's table walk
# too (about 0.9 ms of the 3.3 that `ss -tanm` costs here).
_ENDS = "cat /proc/net/netstat; ss -4 -tanm >/dev/null"
FLOOR_BODIES = {
    "f0": "sleep {duration}",
    "f1": f"{_ENDS}; sleep {{duration}}; {_ENDS}",
}


def worker(body: str, duration: int, addresses: list[str], key: str, known_hosts: str) -> tuple[int, float]:
    """One floor run over ADDRESSES with fleetdiag's SshTransport and WindowGate.

    Returns the hosts that failed and when the gate opened (epoch seconds)."""
    from fleetdiag.model import HostSpec
    from fleetdiag.transport.base import reply
    from fleetdiag.transport.host_keys import HostKeyChecking
    from fleetdiag.transport.ssh import SshOptions, SshTransport
    from fleetdiag.window_gate import WindowGate
    from fleetdiag.window_script import GO_REPLY, READY_QUESTION

    options = SshOptions(
        host_key_checking=HostKeyChecking.STRICT, known_hosts=(known_hosts,), default_user="root",
        default_private_key=key,
    )  # fmt: skip
    script = f"{READY_QUESTION}\n{body.format(duration=duration)}\n"
    gate = WindowGate(len(addresses), timeout_s=60)
    start = threading.Event()  # as the sweep does: threads start first, then all connect
    failed: list[str] = []
    opened: list[float] = []

    def one(address: str) -> None:
        start.wait()
        transport = SshTransport(HostSpec(address, address), options)

        def answer(_stdout: str) -> tuple[bytes, float]:
            gate.wait(address)
            if not opened:
                opened.append(time.time())
            return reply(GO_REPLY), float(duration + 30)

        try:
            if transport.run(script, timeout=60, answer=answer).exit_code != 0:
                failed.append(address)
        except Exception:  # noqa: BLE001 - counted, the others go on
            failed.append(address)
        finally:
            gate.arrive(address)
            transport.close()

    threads = [threading.Thread(target=one, args=(a,), daemon=True) for a in addresses]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join()
    return len(failed), opened[0] if opened else float("nan")


def floor_run(fleet: LabFleet, name: str, duration: int) -> Run:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--worker", name, "--duration", str(duration),
        "--key", str(fleet.key_path), "--known-hosts", str(fleet.known_hosts_path),
        ",".join(h.address for h in fleet.hosts),
    ]  # fmt: skip
    run, out = timed_popen(argv, fleet, cwd=REPO)
    failed, opened = out.split() if out.strip() else ("nan", "nan")
    run.extra.update(failed=float(failed), go=float(opened) - run.extra["launched"])
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=sorted(FLOOR_BODIES), help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--known-hosts", help=argparse.SUPPRESS)
    parser.add_argument("addresses", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        failed, opened = worker(FLOOR_BODIES[args.worker], args.duration, args.addresses.split(","), args.key, args.known_hosts)
        print(failed, opened)
        return 0
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    compile_fleetdiag()
    names = {
        "a": f"(a) {args.hosts} OpenSSH clients, sleep {args.duration}",
        "b": f"(b) Fabric ThreadingGroup.run, sleep {args.duration}",
        "f0": "(f0) aligned sleep, fleetdiag's transport and gate",
        "f1": "(f1) aligned counters floor: f0 + netstat and ss at both ends",
        "c": f"(c) fleetdiag collect --duration {args.duration} --tracer counters",
    }
    runs: dict[str, list[Run]] = {key: [] for key in names}
    with lab_with_inventory(args.hosts) as (fleet, inventory, scratch):
        for round_ in range(args.repeat):
            for key, run in zip("ab", sleep_baselines(fleet, args.duration)):
                runs[key].append(run)
            runs["f0"].append(floor_run(fleet, "f0", args.duration))
            runs["f1"].append(floor_run(fleet, "f1", args.duration))
            runs["c"].append(fleetdiag_collect(fleet, inventory, args.duration, "counters", scratch / "r"))
            walls = "  ".join(f"{key} {runs[key][-1].wall:.2f}" for key in names)
            failed = {key: runs[key][-1].extra.get("failed", 0) for key in ("a", "f0", "f1")}
            print(f"round {round_ + 1}: {walls} s; failed hosts {failed}, c ok {runs['c'][-1].extra['ok']:.0f}",
                  file=sys.stderr)  # fmt: skip
    walls = {key: statistics.median(r.wall for r in runs[key]) for key in names}
    print(f"{args.hosts} lab hosts, {args.repeat} round(s), medians")
    # "go": from launch until every host's window opened together (the gate; for (c) its first
    # window start); what follows it is the window and its two ends.
    print(f"{'':64s} {'wall s':>7s} {'/ (b)':>6s} {'/ (a)':>6s} {'host CPU s':>10s} {'go s':>5s} {'after':>6s}")
    for key, name in names.items():
        host_cpu = statistics.median(r.host_cpu or 0.0 for r in runs[key])
        go = statistics.median(r.extra.get("go", math.nan) for r in runs[key])  # (a), (b) have none
        go_text, after = (f"{'-':>5s}", f"{'-':>6s}") if math.isnan(go) else (f"{go:5.2f}", f"{walls[key] - go:6.2f}")
        print(f"{name:64s} {walls[key]:7.2f} {walls[key] / walls['b']:6.2f} {walls[key] / walls['a']:6.2f} {host_cpu:10.1f} {go_text} {after}")
    # A floor with failed hosts did less work than it claims: its figures mean nothing.
    failed = sum(r.extra.get("failed", 0) != 0 for key in ("a", "f0", "f1") for r in runs[key])
    failed += sum(r.extra["ok"] != args.hosts for r in runs["c"])
    if failed:
        print(f"{failed} run(s) had failed hosts: see the rounds above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
