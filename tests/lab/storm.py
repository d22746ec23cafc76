"""A drop storm on the lab, bounded in count and time: backlog-drop flows, a SYN flood, an nftables drop.

Into RECEIVER: FLOWS real backlog-drop flows (tests/lab/backlog.py) from SENDER and SYNS SYNs to a
closed port (one NO_SOCKET drop each: the socket closes at once, so no SYN is retransmitted).
Into NFT_HOST: NFT_SYNS SYNs into an nftables drop rule (one NETFILTER_DROP each). Lab addresses only.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from tests.lab.backlog import BacklogTraffic, start_backlog_traffic
from tests.lab.fleet import LabFleet, LabHost

CLOSED_PORT = 9998
NFT_PORT = 7778
NFT_TABLE = "fleetdiag_storm"
BACKLOG_PORTS = (5241, 5242, 5243, 5244)
# Exactly COUNT SYNs, each from a new non-blocking socket closed at once (no retransmission).
SYN_SENDER = """
import socket, sys, time
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((address, port))
    s.close()
    if i % 200 == 199:
        time.sleep(0.01)
print(count)
"""


@dataclass
class StormPlan:
    """How big a storm: bounded in count (SYNs) and in time (the flows' seconds)."""

    flows: int = 4
    seconds: float = 4.0
    syns: int = 2000
    nft_syns: int = 500


@dataclass
class StormResult:
    """What the storm sent."""

    backlog: list[BacklogTraffic] = field(default_factory=list)
    syns: int = 0
    nft_syns: int = 0


def add_nft_drop(fleet: LabFleet, host: LabHost) -> None:
    """An nftables table in HOST's namespace dropping TCP to NFT_PORT."""
    rules = (
        f"add table inet {NFT_TABLE}\n"
        f"add chain inet {NFT_TABLE} input {{ type filter hook input priority 0 ; }}\n"
        f"add rule inet {NFT_TABLE} input tcp dport {NFT_PORT} drop\n"
    )
    fleet.exec(host, ["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)


def remove_nft_drop(fleet: LabFleet, host: LabHost) -> None:
    fleet.exec(host, ["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def _syns(fleet: LabFleet, source: LabHost, target: LabHost, port: int, count: int) -> int:
    out = fleet.exec(source, [sys.executable, "-c", SYN_SENDER, target.address, str(port), str(count)],
                     capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return int(out.stdout.strip())


def run_storm(
    fleet: LabFleet, receiver: LabHost, sender: LabHost, nft_host: LabHost | None, plan: StormPlan | None = None
) -> StormResult:
    """Everything at once; returns when all of it has ended (the nftables rule must already be in place)."""
    plan = plan or StormPlan()
    result = StormResult()
    result.backlog = [
        start_backlog_traffic(fleet, receiver, sender, port=port, seconds=plan.seconds)
        for port in BACKLOG_PORTS[: plan.flows]
    ]
    sent: dict[str, int] = {}
    threads = [threading.Thread(target=lambda: sent.__setitem__("syn", _syns(fleet, sender, receiver, CLOSED_PORT, plan.syns)))]
    if nft_host is not None and plan.nft_syns:
        threads.append(threading.Thread(
            target=lambda: sent.__setitem__("nft", _syns(fleet, sender, nft_host, NFT_PORT, plan.nft_syns))))  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for flow in result.backlog:
        flow.wait()
    result.syns, result.nft_syns = sent.get("syn", 0), sent.get("nft", 0)
    return result
