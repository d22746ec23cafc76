"""Issue 16 on the 6.1 guest: a window-bound sender against an autotuned rcvbuf and against fleetdiag's SO_RCVBUF.

A real sender streams with small segments (MSS 524: each in a full-size receive buffer, truesize/len
near 3.8) while the guest's receiver lets autotuning grow rcvbuf (tcp_rmem max 64 MB, as on the
origin host), then holds one recv() with the socket owned. A bpftrace counter checks every
tcp_add_backlog call against each kernel's limit. Debian's 6.1.192 has ec00ed472bdb (limit
2*rcvbuf + sndbuf/2 + 64K): it drops nothing, as the window arithmetic predicts (a*r = 1.9 < 2).
Whether either socket passes the mainline 6.1 limit varies run to run (autotuned 5, 0, 0 calls;
with fleetdiag's SO_RCVBUF 0, 0, 1), so those counts are printed, not asserted: on this kernel the
difference the origin case saw cannot be shown. docs/backlog-drops.md has the numbers.
"""

from __future__ import annotations

import re

import pytest

from fleetdiag.diagnosis.window import window_verdict
from fleetdiag.facts.buffers import TCP_BUFFERS_COMMAND, parse_tcp_buffers
from fleetdiag.model import FlowDrop, HostResult, Status
from tests.lab.guest.vm import GuestVM
from tests.lab.guest.window_backlog import DEFAULT_PORT, run_window_backlog

pytestmark = [pytest.mark.lab, pytest.mark.guest]

MSS = 524
RMEM_MAX = 64 << 20  # tcp_rmem[2] and rmem_max, as on the origin host


def advice(vm: GuestVM, limits: dict[str, int], sndbuf: int) -> tuple[int, dict]:
    """fleetdiag's window verdict on the autotuned run's numbers: (SO_RCVBUF it advises, its evidence)."""
    buffers = parse_tcp_buffers(vm.check(TCP_BUFFERS_COMMAND))
    flow = FlowDrop(vm.address, DEFAULT_PORT, vm.fleet.controller_address, 0, None, "SOCKET_BACKLOG",
                    limits["over_6_1"], rcvbuf=limits["rcvbuf_max"], sndbuf=sndbuf, queue_max=limits["peak"],
                    userlocks=0, skb_len_sum=limits["len"], skb_truesize_sum=limits["truesize"])  # fmt: skip
    host = HostResult("g01", vm.address, Status.OK, kernel=vm.check("uname -r").strip(), flows=(flow,),
                      tcp_buffers=buffers)  # fmt: skip
    verdict = window_verdict(host, flow)
    assert verdict is not None and verdict.code == "window_over_backlog_room", verdict
    return int(re.search(r"set SO_RCVBUF to (\d+) bytes", verdict.next_step).group(1)), verdict.evidence


def test_autotuned_window_outgrows_the_6_1_limit_and_the_advised_so_rcvbuf_does_not(lab_guest: GuestVM) -> None:
    vm = lab_guest
    saved = vm.check("sysctl -n net.ipv4.tcp_rmem net.core.rmem_max").split()
    vm.check(f"sysctl -w net.ipv4.tcp_rmem='4096 131072 {RMEM_MAX}' net.core.rmem_max={RMEM_MAX}")
    try:
        auto = run_window_backlog(vm, 0, port=DEFAULT_PORT, mss=MSS)
        so_rcvbuf, evidence = advice(vm, auto.limits, auto.warm["sndbuf"])
        locked = run_window_backlog(vm, so_rcvbuf, port=DEFAULT_PORT + 1, mss=MSS)
    finally:
        vm.check(f"sysctl -w net.ipv4.tcp_rmem='{' '.join(saved[:3])}' net.core.rmem_max={saved[3]}")
    print(f"autotuned: {auto.limits} drops {auto.drops}; advice SO_RCVBUF {so_rcvbuf} ({evidence['truesize_ratio']} "
          f"truesize/len); set: {locked.limits} drops {locked.drops}")  # quoted in docs/backlog-drops.md
    # Autotuning grew rcvbuf well past tcp_rmem's default (131072), unlocked.
    assert auto.warm["rcvbuf"] > 8 * 131072, auto.warm
    # This kernel's own limit (ec00ed472bdb) held every call: no TCPBacklogDrop.
    assert auto.limits["calls"] > 0 and auto.limits["over_ec00"] == 0 and auto.drops == 0, (auto.drops, auto.limits)
    # The verdict's arithmetic: a window's worth (half of rcvbuf at truesize/len ~3.8) fits under the
    # doubled limit at any rcvbuf, and only under a few tens of KB of rcvbuf under the mainline one.
    assert evidence["largest_fitting_rcvbuf_with_ec00ed472bdb"] is None and auto.limits["over_ec00"] == 0
    assert evidence["largest_fitting_rcvbuf"] < auto.limits["rcvbuf_max"]
    # The same traffic with the advised SO_RCVBUF, set by the receiver: locked at twice the value, no
    # drop, nothing over this kernel's limit, and the backlog+rmem it reached is a small fraction of
    # what the autotuned socket held. Over the mainline 6.1 limit it went 0, 0 and 1 times in three
    # runs (the backlog still counts what the owner moved into the queue until release_sock() ends:
    # ec00ed472bdb's reason), so that count is printed, not asserted.
    assert locked.warm["rcvbuf"] == 2 * so_rcvbuf
    assert locked.limits["calls"] > 0 and locked.limits["over_ec00"] == 0 and locked.drops == 0, locked.limits
    assert locked.limits["peak"] * 10 < auto.limits["peak"], (locked.limits, auto.limits)
