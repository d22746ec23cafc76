"""Coverage under a drop storm, run after run: traced against counted/sent, recursion misses, us per event.

    sudo python3 benchmarks/storm_coverage.py            # 3 runs with 4 probes, 1 baseline run with 1
    sudo python3 benchmarks/storm_coverage.py --runs 5

The storm (tests/lab/storm.py): 4 backlog-drop flows and 2,000 SYNs to a closed port into h01,
500 SYNs into an nftables drop on h03. Probes: `fleetdiag collect --tracer bpftrace` on h01-h04
(4 probes attached, every lab host shares this kernel, so each program runs for every drop of
every namespace), or on h01 alone for the baseline. kernel.bpf_stats_enabled is set to 1 for
the benchmark (restored after), so fleetdiag's own probe_stats carry run_cnt and run_time_ns.
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

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
WINDOW_S = 12


def one_run(fleet: LabFleet, scratch: Path, probes: int, plan: StormPlan) -> dict:
    """One storm under `probes` probes; the figures of the receiver (h01) and the nftables host (h03)."""
    hosts = [fleet.host(n) for n in ("h01", "h02", "h03", "h04")][:probes]
    receiver, sender, nft_host = fleet.host("h01"), fleet.host("h02"), fleet.host("h03")
    inventory = fleet.write_inventory(scratch / f"hosts{probes}.yaml", hosts=hosts)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(WINDOW_S),
         "--tracer", "bpftrace", "--known-hosts", str(fleet.known_hosts_path),
         "--results-dir", str(scratch / "results"), "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    wait_for_windows(len(hosts), {h.netns_inode for h in hosts}, proc)
    run_storm(fleet, receiver, sender, nft_host, plan)
    out, err = proc.communicate(timeout=WINDOW_S + 90)
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
    args = parser.parse_args()
    if missing := missing_lab_requirements():
        print(f"benchmark needs the lab: {'; '.join(missing)}", file=sys.stderr)
        return 2
    plan = StormPlan()
    previous = BPF_STATS.read_text().strip()
    results = []
    with tempfile.TemporaryDirectory() as scratch, LabFleet(4) as fleet:
        add_nft_drop(fleet, fleet.host("h03"))
        BPF_STATS.write_text("1\n")
        try:
            for label, probes in [("baseline, 1 probe", 1), *((f"run {i + 1}, 4 probes", 4) for i in range(args.runs))]:
                figures = one_run(fleet, Path(scratch), probes, plan)
                results.append((label, figures))
                print(f"{label}: SOCKET_BACKLOG {_pct(figures['backlog'])}, PROTO_MEM {_pct(figures['proto_mem'])}, "
                      f"NO_SOCKET {_pct(figures['no_socket'])}"
                      + (f", NETFILTER_DROP {_pct(figures['nft'])}" if "nft" in figures else "")
                      + f"; recursion misses {figures['misses']} (shortfalls within them: {figures['within']}); "
                      f"{figures['runs']:,} program runs, {figures['us_per_run']:.2f} us each, "
                      f"{figures['us_per_drop']:.2f} us of BPF per traced drop", flush=True)  # fmt: skip
        finally:
            BPF_STATS.write_text(previous + "\n")
            remove_nft_drop(fleet, fleet.host("h03"))
    base = results[0][1]["us_per_run"]
    four = sorted(f["us_per_run"] for _, f in results[1:])
    if four and base == base and base:
        print(f"median us per program run with 4 probes / with 1: {four[len(four) // 2] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
