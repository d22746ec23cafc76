"""Drops of other reasons, made for real in the lab, explained by name with a next step.

NO_SOCKET: SYNs to a closed port. SOCKET_FILTER: SYNs to a listener whose socket filter
drops everything. NETFILTER_DROP: an nftables drop rule inside one lab namespace.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.e2e.test_collect import wait_for_windows
from tests.e2e.test_cron import cron
from tests.lab.requirements import find_program

pytestmark = pytest.mark.lab

WINDOW_S = 6
CLOSED, FILTERED, NFT_DROPPED = 7000, 7001, 7777
NFT_TABLE = "fleetdiag_test"

# A listener whose classic BPF filter returns 0 for every packet: the kernel drops them all.
FILTERED_LISTENER = f"""
import ctypes, socket, struct, sys, time
s = socket.socket()
s.bind((sys.argv[1], {FILTERED}))
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K 0
s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", 1, ctypes.addressof(insn)))  # SO_ATTACH_FILTER
s.listen(8)
print("listening", flush=True)
time.sleep(float(sys.argv[2]))
"""
CONNECT = """
import socket, sys
for port in sys.argv[2:]:
    with socket.socket() as s:
        s.settimeout(0.3)
        s.connect_ex((sys.argv[1], int(port)))
"""


@pytest.fixture
def nft_drop_rule(lab_fleet, lab_roles):
    """An nftables rule in h02's namespace dropping TCP to port 7777; removed afterwards."""
    if not find_program("nft"):
        pytest.skip("nft (Debian package nftables, installed by .ci/setup) is not installed")
    host = lab_roles.sender
    rules = (
        f"add table inet {NFT_TABLE}\n"
        f"add chain inet {NFT_TABLE} input {{ type filter hook input priority 0 ; }}\n"
        f"add rule inet {NFT_TABLE} input tcp dport {NFT_DROPPED} drop\n"
    )
    lab_fleet.exec(host, ["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
    yield host
    lab_fleet.exec(host, ["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def test_other_reasons_are_explained_by_name(lab_fleet, lab_roles, nft_drop_rule, tmp_path):
    client, server = lab_roles.sender, lab_roles.quiet  # h02 connects to h03; h03 connects to h02
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[client, server])
    proc = cron("collect", "-i", str(inventory), "--duration", str(WINDOW_S),
                "--known-hosts", str(lab_fleet.known_hosts_path), "-o", "json", "--results-dir", str(tmp_path))
    wait_for_windows(2, {client.netns_inode, server.netns_inode}, proc)
    listener = lab_fleet.popen(server, [sys.executable, "-c", FILTERED_LISTENER, server.address, "3"],
                               stdout=-1, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        ports = [str(p) for p in (CLOSED, CLOSED, CLOSED, FILTERED)]
        lab_fleet.exec(client, [sys.executable, "-c", CONNECT, server.address, *ports], check=True, timeout=30)
        lab_fleet.exec(server, [sys.executable, "-c", CONNECT, client.address, str(NFT_DROPPED)], check=True, timeout=30)
    finally:
        listener.kill()
        listener.wait()
    out, err = proc.communicate(timeout=WINDOW_S + 60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    hosts = {h["name"]: h for h in doc["hosts"]}

    def flows(host, port, reason):
        return [f for f in doc["flows"] if f["host"] == host.name and f["lport"] == port and f["reason"] == reason]

    closed = flows(server, CLOSED, "NO_SOCKET")
    assert sum(f["drops"] for f in closed) == 3  # one SYN per connect, answered by a RST
    assert flows(server, FILTERED, "SOCKET_FILTER")  # the SYN and its retransmissions
    assert flows(client, NFT_DROPPED, "NETFILTER_DROP")
    for host, reason, hint in [(server, "NO_SOCKET", "ss -ltn"), (server, "SOCKET_FILTER", "filter"),
                               (client, "NETFILTER_DROP", "nft list ruleset")]:
        (verdict,) = [v for v in hosts[host.name]["verdicts"] if v["evidence"].get("reason") == reason]
        assert verdict["code"] == "drop_reason" and verdict["evidence"]["explained"] is True
        assert verdict["evidence"]["drops"] == hosts[host.name]["drops"][reason]
        assert hint in verdict["next_step"]
    for flow in closed:
        assert [v["code"] for v in flow["verdicts"]] == ["drop_reason"]
