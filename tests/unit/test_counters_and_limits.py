"""TcpExt parsing and deltas; the kernel's backlog limit by version."""

from __future__ import annotations

import pytest

from fleetdiag.backlog_limit import backlog_limit
from fleetdiag.counters import counter_delta, parse_netstat

NETSTAT = "TcpExt: TCPBacklogDrop ListenDrops TCPOFOQueue\nTcpExt: 5 1 7\nIpExt: InNoRoutes\nIpExt: 3\n"


def test_parse_groups():
    assert parse_netstat(NETSTAT) == {"TCPBacklogDrop": 5, "ListenDrops": 1, "TCPOFOQueue": 7}
    assert parse_netstat(NETSTAT, "IpExt") == {"InNoRoutes": 3}
    assert parse_netstat("") == {}


def test_delta_keeps_movers_and_always_reported():
    before = {"TCPBacklogDrop": 5, "ListenDrops": 1, "TCPOFOQueue": 7, "Other": 2}
    after = {"TCPBacklogDrop": 17, "ListenDrops": 1, "TCPOFOQueue": 9, "Other": 2}
    assert counter_delta(before, after) == {"ListenDrops": 0, "TCPBacklogDrop": 12, "TCPOFOQueue": 2}


@pytest.mark.parametrize(
    "release, limit",
    [
        ("3.10.0-1160.el7.x86_64", 67108864 + 46080),  # the origin case: rcvbuf + sndbuf
        ("4.19.0-25-amd64", 67108864 + 46080 + 65536),
        ("6.1.0-56-cloud-amd64", 67108864 + 23040 + 65536),
        ("6.18.44", 2 * 67108864 + 23040 + 65536),
    ],
)
def test_backlog_limit_by_version(release, limit):
    assert backlog_limit(release, 67108864, 46080) == limit


def test_backlog_limit_caps_and_unknowns():
    assert backlog_limit("6.12", 2**31, 2**31) == 2**32 - 1
    assert backlog_limit(None, 1, 1) is None
    assert backlog_limit("6.12", None, 1) is None
