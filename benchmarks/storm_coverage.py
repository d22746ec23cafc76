"""Coverage under a drop storm, run after run: traced against counted/sent, recursion misses, us per event.

    sudo python3 benchmarks/storm_coverage.py            # 3 runs with 4 probes, 1 baseline run with 1
    sudo python3 benchmarks/storm_coverage.py --runs 5
    sudo python3 benchmarks/storm_coverage.py --runs 14 --seconds 20 --bpf-stats 0   # the rare perf-path drop

The storm (tests/lab/storm.py): 4 backlog-drop flows and 2,000 SYNs to a closed port into h01,
500 SYNs into an nftables drop on h03. Probes: `fleetdiag collect --tracer bpftrace` on h01-h04
(4 probes attached, every lab host shares this kernel, so each program runs for every drop of
every namespace), or on h01 alone for the baseline. kernel.bpf_stats_enabled is set to 1 for
the benchmark (restored after), so fleetdiag's own probe_stats carry run_cnt and run_time_ns.
A tracefs witness (tests/lab/tracefs_witness.py) counts the SOCKET_BACKLOG and PROTO_MEM events
the tracepoint fired for around each run: a drop every BPF program missed with no recursion miss
counted, while tracefs saw it, was dropped by the tracepoint's perf path before any program ran.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.test_collect import wait_for_windows
from tests.lab.fleet import LabFleet
from tests.lab.requirements import missing_lab_requirements
from tests.lab.storm import CLOSED_PORT, StormPlan, add_nft_drop, remove_nft_drop, run_storm
from tests.lab.tracefs_witness import TracefsWitness

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
WINDOW_S = 12  # and the storm's seconds beyond its default


def one_run(fleet: LabFleet, scratch: Path, probes: int, plan: StormPlan) -> dict:
    """One storm under `probes` probes; the figures of the receiver (h01) and the nftables host (h03)."""
    hosts = [fleet.host(n) for n in ("h01", "h02", "h03", "h04")][:probes]
    receiver, sender, nft_host = fleet.host("h01"), fleet.host("h02"), fleet.host("h03")
    inventory = fleet.write_inventory(scratch / f"hosts{probes}.yaml", hosts=hosts)
    window = WINDOW_S + max(0, round(plan.seconds - StormPlan().seconds))
    with TracefsWitness("SOCKET_BACKLOG", "PROTO_MEM") as witness:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(window),
             "--tracer", "bpftrace", "--known-hosts", str(fleet.known_hosts_path),
             "--results-dir", str(scratch / "results"), "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        wait_for_windows(len(hosts), {h.netns_inode for h in hosts}, proc)
        run_storm(fleet, receiver, sender, nft_host, plan)
        out, err = proc.communicate(timeout=window + 90)
        fired = witness.stop()
    if proc.returncode != 0:
        raise SystemExit(f"collect failed ({proc.returncode}): {err[-500:]}")
    doc = json.loads(out)
    by_name = {h["name"]: h for h in doc["hosts"]}
    rx = by_name["h01"]
    recs = {r["reason"]: r for r in rx["reconciliation"]}
    closed = sum(f["drops"] for f in doc["flows"] if f["host"] == "h01" and f["lport"] == CLOSED_PORT and f["reason"] == "NO_SOCKET")
    stats = [h["probe_stats"] for h in doc["hosts"] if h.get("probe_stats")]
    runs = sum(s["run_cnt"] or 0 for s in stats)
    ns = sum(s["run_time_ns"] or 0 for s in stats)
    figures = {
        "backlog": (recs["SOCKET_BACKLOG"]["traced"], recs["SOCKET_BACKLOG"]["counted"]),
        "proto_mem": (recs["PROTO_MEM"]["traced"], recs["PROTO_MEM"]["counted"]),
        "no_socket": (closed, plan.syns),
        "misses": {h["name"]: h["probe_stats"]["recursion_misses"] for h in doc["hosts"] if h.get("probe_stats")},
        "within": all(r["within_misses"] for r in rx["reconciliation"]),
        # Counted drops neither traced nor among the misses, and whether the tracepoint fired for every counted one.
        "beyond": max(0, sum(recs[r]["missed"] for r in ("SOCKET_BACKLOG", "PROTO_MEM")) - rx["probe_stats"]["recursion_misses"]),
        "fired": fired,
        "fired_all": fired is not None and fired >= recs["SOCKET_BACKLOG"]["counted"] + recs["PROTO_MEM"]["counted"],
        "runs": runs,
        "us_per_run": ns / runs / 1000 if runs else float("nan"),
        # Every probe's programs run for every kfree_skb of the machine: their time over the drops traced.
        "us_per_drop": ns / max(sum(s["events"] for s in stats), 1) / 1000 if runs else float("nan"),
    }
    if "h03" in by_name:
        figures["nft"] = (by_name["h03"]["drops"].get("NETFILTER_DROP", 0), plan.nft_syns)
    return figures


def _pct(pair: tuple[int, int]) -> str:
    traced, counted = pair
    return f"{traced:,}/{counted:,} ({100 * traced / counted:.1f}%)" if counted else f"{traced:,}/0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=StormPlan().seconds, help="the backlog flows' seconds")
    parser.add_argument("--bpf-stats", choices=("0", "1"), default="1", help="kernel.bpf_stats_enabled for the runs")
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    plan = StormPlan(seconds=args.seconds)
    previous = BPF_STATS.read_text().strip()
    results = []
    with tempfile.TemporaryDirectory() as scratch, LabFleet(4) as fleet:
        add_nft_drop(fleet, fleet.host("h03"))
        BPF_STATS.write_text(args.bpf_stats + "\n")
        try:
            for label, probes in [("baseline, 1 probe", 1), *((f"run {i + 1}, 4 probes", 4) for i in range(args.runs))]:
                figures = one_run(fleet, Path(scratch), probes, plan)
                results.append((label, figures))
                print(f"{label}: SOCKET_BACKLOG {_pct(figures['backlog'])}, PROTO_MEM {_pct(figures['proto_mem'])}, "
                      f"NO_SOCKET {_pct(figures['no_socket'])}"
                      + (f", NETFILTER_DROP {_pct(figures['nft'])}" if "nft" in figures else "")
                      + f"; recursion misses {figures['misses']} (shortfalls within them: {figures['within']}; "
                      f"beyond them {figures['beyond']}, tracefs saw {figures['fired']}, "
                      f"every counted drop fired: {figures['fired_all']}); "
                      f"{figures['runs']:,} program runs, {figures['us_per_run']:.2f} us each, "
                      f"{figures['us_per_drop']:.2f} us of BPF per traced drop", flush=True)  # fmt: skip
        finally:
            BPF_STATS.write_text(previous + "\n")
            remove_nft_drop(fleet, fleet.host("h03"))
    beyond = [f["beyond"] for _, f in results]
    drops = sum(f["backlog"][1] + f["proto_mem"][1] for _, f in results)
    print(f"counted drops neither traced nor missed: {sum(beyond)} of {drops:,} in {len(results)} runs "
          f"(tracepoint fired for every counted drop in {sum(f['fired_all'] for _, f in results)} runs)")  # fmt: skip
    base = results[0][1]["us_per_run"]
    four = sorted(f["us_per_run"] for _, f in results[1:])
    if four and base == base and base:
        print(f"median us per program run with 4 probes / with 1: {four[len(four) // 2] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
