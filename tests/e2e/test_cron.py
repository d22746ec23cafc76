"""A cron-style run end to end: no TTY, files saved, history listed, report equal to the live output,
the Prometheus file parsed by prometheus_client, and the lock and retention that cron needs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_collect import wait_for_windows
from tests.lab.backlog import generate_backlog_drops

pytestmark = pytest.mark.lab

WINDOW_S = 9
TRAFFIC_S = 4.0
PORT = 5202


def cron(*args: str, **kwargs) -> subprocess.Popen:
    """The CLI as cron runs it: no terminal anywhere, no colour settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    return subprocess.Popen(
        [sys.executable, "-m", "fleetdiag", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs,
    )


def run(*args: str) -> subprocess.CompletedProcess:
    proc = cron(*args)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cron_run_saves_reports_and_exports(lab_fleet, lab_roles, tmp_path):
    hosts = [lab_roles.receiver, lab_roles.sender, lab_roles.quiet]
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts)
    results, prom_dir = tmp_path / "results", tmp_path / "textfile"
    prom_dir.mkdir()
    common = ["--results-dir", str(results)]
    for _attempt in range(3):
        proc = cron(
            "collect", "-i", str(inventory), "--duration", str(WINDOW_S), "--known-hosts", str(lab_fleet.known_hosts_path),
            "-o", "json", "--prom-file", str(prom_dir / "fleetdiag.prom"), "--keep", "5", "--fail-on-drops", "1", *common,
        )
        wait_for_windows(3, {h.netns_inode for h in hosts}, proc)
        generated = generate_backlog_drops(lab_fleet, lab_roles.receiver, lab_roles.sender, port=PORT, seconds=TRAFFIC_S)
        live_out, live_err = proc.communicate(timeout=WINDOW_S + 60)
        if generated:
            break
    else:
        pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")

    assert proc.returncode == 5, live_err  # --fail-on-drops 1, and the receiver dropped
    assert live_err == ""  # no TTY: no progress, no colour, nothing to mail
    doc = json.loads(live_out)

    # Saved: private dirs and files, one document per sweep, equal to what was printed.
    saved = sorted((results / "sweeps").iterdir())
    assert mode(results) == mode(results / "sweeps") == 0o700
    assert {mode(p) for p in [*saved, results / "index.sqlite3"]} == {0o600}
    assert saved[-1].read_text() == live_out

    listed = json.loads(run("history", "-o", "json", *common).stdout)["sweeps"]
    assert listed[0]["document"] == saved[-1].name and listed[0]["hosts"] == 3 and listed[0]["ok"] == 3
    assert listed[0]["backlog_drops"] == generated
    assert listed[0]["drops"] == sum(sum(h["drops"].values()) for h in doc["hosts"])
    assert run("history", *common).stdout.splitlines()[2].startswith(listed[0]["id"])

    # Re-rendered from the saved sweep, in every format, exactly as the live run would print it.
    assert run("report", "-o", "json", *common).stdout == live_out
    assert run("report", listed[0]["id"], "-o", "json", *common).stdout == live_out
    table = run("report", "-o", "table", *common).stdout
    assert "Diagnosis" in table and "over_backlog_limit" in table

    # The Prometheus textfile: parsed by prometheus_client, the same numbers, nothing left behind.
    assert [p.name for p in prom_dir.iterdir()] == ["fleetdiag.prom"]
    families = text_string_to_metric_families((prom_dir / "fleetdiag.prom").read_text())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    receiver = {h["name"]: h for h in doc["hosts"]}["h01"]
    for reason, count in receiver["drops"].items():
        assert samples[("fleetdiag_host_drops", (("host", "h01"), ("reason", reason)))] == count
    assert samples[("fleetdiag_host_tcpext_delta", (("counter", "TCPBacklogDrop"), ("host", "h01")))] == generated
    assert samples[("fleetdiag_sweep_hosts", (("status", "ok"),))] == 3

    # The verdicts on real backlog drops: the generator locks a tiny SO_RCVBUF and overflows the limit.
    (flow,) = [f for f in doc["flows"] if f["reason"] == "SOCKET_BACKLOG" and f["host"] == "h01"]
    flow_codes = {v["code"] for v in flow["verdicts"]}
    assert {"over_backlog_limit", "rcvbuf_set_small"} <= flow_codes, flow["verdicts"]
    assert flow["queue_max"] > flow["backlog_limit"] and flow["userlocks"] & 2
    (backlog,) = [r for r in receiver["reconciliation"] if r["counter"] == "TCPBacklogDrop"]
    assert backlog["counted"] == generated and backlog["traced"] > 0
    missed_flagged = any(v["code"] == "untraced_drops" for v in receiver["verdicts"])
    assert missed_flagged == (backlog["missed"] > 0)  # a miss is always said, and never invented


def test_second_sweep_is_refused_while_one_runs(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    common = ["-i", str(inventory), "--known-hosts", str(lab_fleet.known_hosts_path), "--results-dir", str(tmp_path)]
    first = cron("collect", "--duration", "3", "-o", "json", *common)
    wait_for_windows(1, {lab_roles.quiet.netns_inode}, first)
    started = time.monotonic()
    second = run("collect", "--duration", "1", *common)
    assert second.returncode == 6 and second.stdout == ""
    assert "another sweep is running" in second.stderr and f"pid {first.pid}" in second.stderr
    assert time.monotonic() - started < 10  # refused at once, no host contacted
    err = first.communicate(timeout=60)[1]
    assert first.returncode == 0, err
    assert len(json.loads(run("history", "-o", "json", "--results-dir", str(tmp_path)).stdout)["sweeps"]) == 1


def test_keep_retains_the_newest_sweeps(tmp_path):
    """Three quick sweeps of this machine (no SSH, counters only) with --keep 2."""
    common = ["--tracer", "counters", "--duration", "1", "--results-dir", str(tmp_path), "-o", "json"]
    starts = []
    for _ in range(3):
        done = run("collect", "--keep", "2", *common)
        assert done.returncode == 0, done.stderr
        starts.append(json.loads(done.stdout)["started_at"])
    listed = json.loads(run("history", "-o", "json", "--results-dir", str(tmp_path)).stdout)["sweeps"]
    assert [s["started_at"] for s in listed] == starts[:0:-1]
    assert len(list((tmp_path / "sweeps").iterdir())) == 2
    diff = run("diff", "--results-dir", str(tmp_path), "-o", "json")
    assert diff.returncode == 0 and json.loads(diff.stdout)["a"] == listed[1]["id"]


def test_jsonl_streams_each_host_as_it_finishes(lab_fleet, lab_roles, unreachable_lab_host, tmp_path):
    hosts = [lab_roles.quiet, unreachable_lab_host]
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=hosts)
    proc = cron("collect", "-i", str(inventory), "--duration", "4", "--known-hosts", str(lab_fleet.known_hosts_path),
                "-o", "jsonl", "--results-dir", str(tmp_path))
    arrived = [(time.monotonic(), json.loads(line)) for line in proc.stdout]
    ended = time.monotonic()
    assert proc.wait(timeout=60) == 3, proc.stderr.read()
    kinds = [(r["record"], r.get("name")) for _, r in arrived]
    assert kinds == [("host", "h04"), ("host", "h03"), ("sweep", None)]
    assert ended - arrived[0][0] > 3  # the unreachable host was written while h03 still watched its window
    assert arrived[0][1]["status"] == "unreachable" and arrived[-1][1]["hosts"]["unreachable"] == 1
    # The saved sweep re-renders to the same records, in inventory order.
    again = [json.loads(line) for line in run("report", "-o", "jsonl", "--results-dir", str(tmp_path)).stdout.splitlines()]
    assert sorted(map(json.dumps, again)) == sorted(json.dumps(r) for _, r in arrived)
