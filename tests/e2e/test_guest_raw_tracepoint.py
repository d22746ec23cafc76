"""bpftrace 0.23 (Debian 13, 6.12) attaches kfree_skb as a raw tracepoint, for real (issue 19).

A raw tracepoint's program has a recursion guard of its own, where a tracepoint's shares one per
CPU with every kprobe and tracepoint program: the storm's misses. The window runs the real CLI on
the trixie guest while the controller makes two kinds of drop there, neither needing the backlog
generator (a systemtap module, which systemtap 5.1 cannot load on 6.12):
- NO_SOCKET: SYNs to a closed port, each refused once (one drop per SYN, before any socket);
- TCP_OLD_DATA: copies of one data segment on an open connection (every copy after the first is
  old data, dropped with rx_sk, the receiving socket: the script's socket branch).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.fleet import LabFleet
from tests.lab.guest.collect_run import attached_windows, leftovers
from tests.lab.guest.raw_tcp import send_duplicates
from tests.lab.guest.vm import GuestVM

pytestmark = [pytest.mark.lab, pytest.mark.guest]

WINDOW_S = 45
ATTACH_TIMEOUT_S = 300
CLOSED_PORT = 9  # discard: nothing listens in the guest
SYNS = 300
SERVER_PORT = 5290
COPIES = 40
# Accepts one connection and reads it until it goes quiet for 3 s (the copies after the first are old data).
SERVER = f"""import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {SERVER_PORT}))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(3)
try:
    while c.recv(65536):
        pass
except OSError:
    pass
"""
SERVER_PATH = "/root/fdl-old-data-server.py"


def refused_syns(address: str, source: str, count: int) -> int:
    """COUNT connects to the guest's closed port; how many it refused (each one SYN, one RST)."""
    refused = 0
    for _ in range(count):
        with socket.socket() as sock:
            sock.settimeout(10)
            sock.bind((source, 0))
            try:
                sock.connect((address, CLOSED_PORT))
            except ConnectionRefusedError:
                refused += 1
    return refused


def old_data_copies(vm: GuestVM) -> int:
    """COPIES copies of one segment on a connection to the guest's server; the controller's port."""
    vm.put(SERVER.encode(), SERVER_PATH)
    server = vm.popen(f"timeout 60 python3 {SERVER_PATH}", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        with socket.create_connection((vm.address, SERVER_PORT), timeout=30,
                                      source_address=(vm.fleet.controller_address, 0)) as conn:  # fmt: skip
            time.sleep(0.5)
            send_duplicates(conn, COPIES)
            time.sleep(1)
            port = conn.getsockname()[1]
            # RST on close: the stream is out of step after the copies.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        server.wait(timeout=60)
        return port
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_bpftrace_kfree_skb_as_a_raw_tracepoint_on_6_12(
    lab_fleet: LabFleet, lab_guest_trixie: GuestVM, tmp_path: Path
) -> None:
    vm = lab_guest_trixie
    hosts = {"g_full": vm.host_vars("full")}
    inventory = lab_fleet.write_inventory(tmp_path / "inventory.yml", hosts=[], extra_hosts=hosts)
    argv = [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(WINDOW_S),
            "--tracer", "bpftrace", "-o", "json",
            "--known-hosts", str(lab_fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path)]  # fmt: skip
    env = {**os.environ, "FLEETDIAG_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = time.monotonic()
        while attached_windows(vm) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - started < ATTACH_TIMEOUT_S, "the window did not attach in the guest"
            time.sleep(2)
        # No margin: @@attached comes from the script's last probe, once every other one watches.
        refused = refused_syns(vm.address, vm.fleet.controller_address, SYNS)
        client_port = old_data_copies(vm)
        out, err = proc.communicate(timeout=WINDOW_S + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    (host,) = json.loads(out)["hosts"]
    flows = json.loads(out)["flows"]
    assert host["status"] == "ok" and host["probe"] == "bpftrace:kfree_skb", host
    assert "kfree_skb as a raw tracepoint (per-program recursion guard)" in host["tracers"]["bpftrace"]["reason"]
    # The kernel's own count of the programs: kfree_skb's are raw tracepoints (type 17), read before unload.
    stats = host["probe_stats"]
    assert stats is not None, host["notes"]
    types = {p["prog_type"] for p in stats["per_program"]}
    assert 17 in types and 5 not in types, stats
    assert stats["recursion_misses"] == sum(p["recursion_misses"] for p in stats["per_program"])
    # Every refused SYN once, from the packet's headers (no socket).
    assert refused == SYNS
    syns = [f for f in flows if f["reason"] == "NO_SOCKET" and f["lport"] == CLOSED_PORT]
    assert 0 <= SYNS - sum(f["drops"] for f in syns) <= stats["recursion_misses"], syns[:3]  # misses bound it
    assert {f["raddr"] for f in syns} == {vm.fleet.controller_address}
    # The copies, dropped with the receiving socket: the flow and the socket's buffers come from rx_sk.
    (old,) = [f for f in flows if f["reason"] == "TCP_OLD_DATA" and f["rport"] == client_port]
    assert (old["laddr"], old["lport"], old["raddr"]) == (vm.address, SERVER_PORT, vm.fleet.controller_address)
    assert 0 < old["drops"] <= COPIES - 1, old
    assert old["netns"] and old["netns"] > 0
    assert old["timeline"] and sum(old["timeline"]) == old["drops"]  # per-flow intervals: the socket branch only
    assert leftovers(vm) == ""
