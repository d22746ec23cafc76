"""For incidents: live progress on a terminal, --follow printing drops as they happen, --port to one service."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.test_collect import wait_for_windows
from tests.e2e.test_cron import cron
from tests.e2e.test_diagnosis import CONNECT
from tests.lab.backlog import generate_backlog_drops

pytestmark = pytest.mark.lab

WINDOW_S = 8
TRAFFIC_S = 4.0
PORT = 5203
OTHER_PORT = 7010


def test_follow_prints_drops_during_the_window(lab_fleet, lab_roles, tmp_path):
    receiver, sender = lab_roles.receiver, lab_roles.sender
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[receiver])
    for _attempt in range(3):
        proc = cron("collect", "-i", str(inventory), "--duration", str(WINDOW_S), "--follow", "--port", str(PORT),
                    "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json", "--results-dir", str(tmp_path))
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=_timestamp_lines, args=(proc.stderr, lines))
        reader.start()
        wait_for_windows(1, {receiver.netns_inode}, proc)
        # Drops on another port of the same host: counted by TcpExt, but --port keeps them out of the trace.
        lab_fleet.exec(sender, [sys.executable, "-c", CONNECT, receiver.address, str(OTHER_PORT)], check=True)
        generated = generate_backlog_drops(lab_fleet, receiver, sender, port=PORT, seconds=TRAFFIC_S)
        out = proc.stdout.read()
        proc.wait(timeout=60)
        ended = time.monotonic()
        reader.join()
        if generated:
            break
    else:
        pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")
    assert proc.returncode == 0, lines
    live = [(at, line) for at, line in lines if " h01 " in line and "+" in line]
    assert live, lines
    # Printed as they happened: the first drops reached stderr seconds before the sweep ended.
    assert ended - live[0][0] > 1.5
    assert any("SOCKET_BACKLOG" in line or "TCPBacklogDrop" in line for _, line in live)
    assert len(live) <= WINDOW_S + 2  # at most one line per second per host, whatever the drop rate

    doc = json.loads(out)
    assert doc["port"] == PORT
    assert doc["flows"] and all(PORT in (f["lport"], f["rport"]) for f in doc["flows"])
    (host,) = doc["hosts"]
    (backlog,) = [r for r in host["reconciliation"] if r["counter"] == "TCPBacklogDrop"]
    assert backlog["port"] == PORT and backlog["counted"] == generated


def test_terminal_gets_live_progress_and_cron_does_not(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[lab_roles.quiet])
    args = [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", "3",
            "--known-hosts", str(lab_fleet.known_hosts_path), "--results-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    for no_color, expect_progress in ((None, True), ("1", False)):
        if no_color:
            env["NO_COLOR"] = no_color
        master, slave = pty.openpty()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
        os.close(slave)
        seen = _read_all(master)
        out = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 0, seen
        assert "h03" in out and "bpftrace" in out  # the table still goes to stdout
        if expect_progress:
            assert "watching 1 host(s) for 3 s" in seen
            assert "window:" in seen and "s left" in seen  # the live status line with time left
            assert "[1/1] h03: ok" in seen
        else:
            assert seen == "", seen


def _timestamp_lines(stream, into: list[tuple[float, str]]) -> None:
    """Each line of STREAM with the moment it arrived."""
    for line in stream:
        into.append((time.monotonic(), line))


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")
