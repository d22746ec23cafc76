"""The benchmarks run with one command: a smoke run on 3 lab hosts (their figures are not checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The benchmark as anyone runs it, with one command; it must succeed."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done


def test_scale_benchmark_runs_and_prints_its_ratios() -> None:
    done = run_benchmark("scale.py", "--hosts", "3", "--repeat", "1", "--duration", "1")
    assert re.search(r"ratio c/b = \d+\.\d\d .* ratio c/a = \d+\.\d\d", done.stdout), done.stdout
    assert "hosts ok per round: [3]" in done.stdout


def test_profile_benchmark_runs_and_prints_its_phases() -> None:
    done = run_benchmark("profile_sweep.py", "--hosts", "3", "--duration", "1")
    assert "3 ok" in done.stdout and "window round trip" in done.stdout and "paramiko transports" in done.stdout


def test_session_cost_benchmark_runs_every_window_to_the_end() -> None:
    done = run_benchmark("session_cost.py", "--duration", "1", "--at-once", "3", "--rounds", "1")
    assert "3/3 windows complete" in done.stderr, done.stderr
    assert re.search(r"detection\s+\d+\.\d\n\s+before go\s+\d+\.\d\n\s+session\s+\d+\.\d", done.stdout), done.stdout
    assert re.search(r"temp dir \(mktemp -d, rm -rf\)\s+\d+\.\d", done.stdout), done.stdout


def test_cpu_timeline_benchmark_shows_both_runs_to_their_end() -> None:
    done = run_benchmark("cpu_timeline.py", "--hosts", "3", "--duration", "1", "--step", "0.5")
    for name in ("(b) Fabric ThreadingGroup.run, 3 hosts", "(c) fleetdiag collect, 3 hosts"):
        assert name in done.stdout, done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if re.fullmatch(r"\s*[\d. ]+", line)]
    assert len(rows) >= 4 and all(len(row) == 5 for row in rows), done.stdout
    assert max(float(row[1]) for row in rows) > 0  # the hosts' sshd did work


def test_aligned_floor_benchmark_runs_every_floor_on_every_host() -> None:
    done = run_benchmark("aligned_floor.py", "--hosts", "3", "--repeat", "1", "--duration", "1")
    rows = {line.split(")")[0] + ")": line.split()[-6:] for line in done.stdout.splitlines() if line.startswith("(")}
    assert set(rows) == {"(a)", "(b)", "(f0)", "(f1)", "(c)"}, done.stdout
    assert rows["(b)"][1] == "1.00" and rows["(a)"][2] == "1.00", done.stdout  # the ratios' own baselines
    for floor in ("(f0)", "(f1)", "(c)"):  # exit 0 said no host failed; each watched its 1 s window after go
        wall, go, after = float(rows[floor][0]), float(rows[floor][4]), float(rows[floor][5])
        assert 0 < go < wall and after >= 1.0, done.stdout


def test_armed_scale_benchmark_runs_both_sides_over_an_armed_fleet() -> None:
    done = run_benchmark("armed_scale.py", "--hosts", "3", "--sizes", "3", "--duration", "1", "--forks", "2")
    assert re.search(r"fleetdiag\s+3  wall\s+\d+\.\d s  ok\s+3/3", done.stdout), done.stdout
    assert "mode armed; launch to the armed instant" in done.stdout, done.stdout
    if "ansible not installed" not in done.stdout:
        assert re.search(r"ansible\s+3  wall\s+\d+\.\d s  ok\s+3/3", done.stdout), done.stdout
        assert re.search(r"fleetdiag/ansible wall \d+\.\d\dx", done.stdout), done.stdout


def test_storm_coverage_benchmark_prints_every_run() -> None:
    done = run_benchmark("storm_coverage.py", "--runs", "1")
    for label in ("baseline, 1 probe: ", "run 1, 4 probes: "):
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(label)]
        assert "SOCKET_BACKLOG " in line and "PROTO_MEM " in line, done.stdout
        # The benchmark says whether every shortfall was within the counted misses, how many drops were beyond
        # them and whether tracefs saw the tracepoint fire for each (the perf path's rare uncounted drop: one
        # 4-probe run in CI once had 944 of 945 traced with 0 misses); the claim itself is test_storm.py's.
        assert re.search(r"\(shortfalls within them: (True|False); beyond them \d+, tracefs saw \d+, "
                         r"every counted drop fired: (True|False)\)", line), done.stdout  # fmt: skip
        assert re.search(r"program runs, \d+\.\d\d us each", line), done.stdout
    assert "median us per program run with 4 probes / with 1: " in done.stdout
    assert re.search(r"counted drops neither traced nor missed: \d+ of [\d,]+ in 2 runs", done.stdout), done.stdout
