# fleetdiag: load probe.c with bcc, watch one window, then print the maps as record lines.
#
# Runs under python3 and under RHEL 7's python2 (python-bcc) alike, so: no f-strings.
# The program's tracepoint and kprobe__/kretprobe__ functions attach themselves on load.
# Output (see fleetdiag/tracers/records.py): "total REASON N", "flow NETNS LADDR LPORT
# RADDR RPORT REASON DROPS RCVBUF SNDBUF USERLOCKS BACKLOG_MAX RMEM_MAX QUEUE_MAX", "overflow N",
# "window NETNS LADDR LPORT RADDR RPORT REASON RCV_WND CLAMP SSTHRESH RATIO LEN_MAX LEN_SUM TRUE_MAX TRUE_SUM".
# and the timeline: "timed", "timeline REASON INDEX N", "flowtl NETNS LADDR LPORT RADDR RPORT REASON INDEX N",
# "porttl REASON LPORT INDEX N" (drops without a socket, per local port).
from __future__ import print_function

import ctypes
import signal
import socket
import sys
import time

from bcc import BPF


def address(family, raw):
    data = bytes(bytearray(raw))
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return socket.inet_ntop(socket.AF_INET, data[:4])


def ident(key):
    return (key.ns, key.reason, key.family, key.lport, key.rport,
            bytes(bytearray(key.laddr)), bytes(bytearray(key.raddr)))


def report(bpf):
    for key, value in bpf["fd_total"].items():
        print("total %d %d" % (key.value, value.value))
    states = dict((ident(k), v) for k, v in bpf["fd_state"].items())
    for key, value in bpf["fd_drops"].items():
        st = states.get(ident(key))
        if st is None:
            sock = ["-"] * 6
        else:
            sock = ["%d" % st.rcvbuf, "%d" % st.sndbuf, "-",
                    "%d" % st.backlog_max, "%d" % st.rmem_max, "%d" % st.queue_max]
        print(" ".join(["flow", "%d" % key.ns, address(key.family, key.laddr), "%d" % key.lport,
                        address(key.family, key.raddr), "%d" % key.rport, "%d" % key.reason,
                        "%d" % value.value] + sock))
    for key, w in bpf["fd_window"].items():
        print(" ".join(["window", "%d" % key.ns, address(key.family, key.laddr), "%d" % key.lport,
                        address(key.family, key.raddr), "%d" % key.rport, "%d" % key.reason] +
                       ["%d" % v for v in (w.rcv_wnd, w.window_clamp, w.rcv_ssthresh, w.scaling_ratio,
                                           w.len_max, w.len_sum, w.truesize_max, w.truesize_sum)]))
    for value in bpf["fd_overflow"].values():
        print("overflow %d" % value.value)
    try:
        timeline, flow_timeline = bpf["fd_tl"], bpf["fd_ftl"]
    except KeyError:  # a program without the timeline's maps
        return
    print("timed")
    for key, value in timeline.items():
        print("timeline %d %d %d" % (key.reason, key.index, value.value))
    for key, value in flow_timeline.items():
        flow = key.flow
        print(" ".join(["flowtl", "%d" % flow.ns, address(flow.family, flow.laddr), "%d" % flow.lport,
                        address(flow.family, flow.raddr), "%d" % flow.rport, "%d" % flow.reason,
                        "%d" % key.index, "%d" % value.value]))
    for key, value in bpf["fd_ptl"].items():
        print("porttl %d %d %d %d" % (key.reason, key.lport, key.index, value.value))


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def monotonic_ns():
    """CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns (python2 has no time.clock_gettime)."""
    if hasattr(time, "clock_gettime"):
        return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000000000)
    try:  # libc by its soname: no ctypes.util.find_library, which runs ldconfig or gcc
        clock_gettime = ctypes.CDLL("libc.so.6", use_errno=True).clock_gettime
    except (OSError, AttributeError):
        return 0  # no clock: every drop lands in interval 0
    now = Timespec()
    if clock_gettime(1, ctypes.byref(now)) != 0:  # 1: CLOCK_MONOTONIC
        return 0
    return now.tv_sec * 1000000000 + now.tv_nsec


def start_timeline(bpf):
    table = bpf["fd_t0"]
    table[table.Key(0)] = table.Leaf(monotonic_ns())


def main():
    duration = int(sys.argv[1])
    with open("probe.c") as source:
        bpf = BPF(text=source.read())
    # `timeout -s INT` ends the window early; the maps are still printed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    start_timeline(bpf)
    print("@@attached")
    sys.stdout.flush()
    try:
        time.sleep(duration)
    except KeyboardInterrupt:
        pass
    report(bpf)
    print("@@window_end")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
