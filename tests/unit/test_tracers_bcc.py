"""The bcc backend: the C program per tier, its runner's output, and the parser of that output.

bcc cannot compile here (no kernel headers), so the runner's printing is exercised on
tables shaped like the ones bcc builds from bcc_drops.c (ctypes structures), and its
output is kept as a fixture (fixtures/tracers/README.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib.util
import io
import re
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.model import Window
from fleetdiag.tracers import bcc
from fleetdiag.tracers.base import probe_text
from tests.unit.conftest import FIXTURES, fixture_text

RUNNER = Path(__file__).parents[2] / "probes" / "bcc_runner.py"


def detection(case: str):
    return parse_facts(fixture_text(f"detection/{case}/stdout.txt"))


class Key(ctypes.Structure):
    """struct fd_key of bcc_drops.c, as bcc hands it to python."""

    _fields_ = [("ns", ctypes.c_uint64), ("reason", ctypes.c_uint32), ("family", ctypes.c_uint16),
                ("lport", ctypes.c_uint16), ("rport", ctypes.c_uint16), ("pad", ctypes.c_uint16),
                ("laddr", ctypes.c_uint8 * 16), ("raddr", ctypes.c_uint8 * 16)]  # fmt: skip


class State(ctypes.Structure):
    """struct fd_state of bcc_drops.c."""

    _fields_ = [(n, ctypes.c_uint32) for n in ("rcvbuf", "sndbuf", "backlog_max", "rmem_max", "queue_max")]


class WindowState(ctypes.Structure):
    """struct fd_window of bcc_drops.c."""

    _fields_ = [("rcv_wnd", ctypes.c_uint32), ("window_clamp", ctypes.c_uint32), ("rcv_ssthresh", ctypes.c_uint32),
                ("scaling_ratio", ctypes.c_int32), ("len_max", ctypes.c_uint32), ("truesize_max", ctypes.c_uint32),
                ("len_sum", ctypes.c_uint64), ("truesize_sum", ctypes.c_uint64)]  # fmt: skip
class TlKey(ctypes.Structure):
    """struct fd_tl_key of bcc_drops.c."""

    _fields_ = [("reason", ctypes.c_uint32), ("index", ctypes.c_uint32)]


class FtlKey(ctypes.Structure):
    """struct fd_ftl_key of bcc_drops.c."""

    _fields_ = [("flow", Key), ("index", ctypes.c_uint64)]


class PtlKey(ctypes.Structure):
    """struct fd_ptl_key of bcc_drops.c."""

    _fields_ = [("reason", ctypes.c_uint32), ("lport", ctypes.c_uint32), ("index", ctypes.c_uint64)]


class Table:
    """What bpf["name"] gives: items() and values() of ctypes keys and values (unhashable, so pairs)."""

    def __init__(self, *pairs):
        self.pairs = list(pairs)

    def items(self):
        return list(self.pairs)

    def values(self):
        return [value for _, value in self.pairs]


def key(ns, reason, family, laddr, lport, raddr, rport):
    k = Key(ns=ns, reason=reason, family=family, lport=lport, rport=rport)
    packed_l, packed_r = socket.inet_pton(family, laddr), socket.inet_pton(family, raddr)
    ctypes.memmove(k.laddr, packed_l, len(packed_l))
    ctypes.memmove(k.raddr, packed_r, len(packed_r))
    return k


def runner_output(tables: dict) -> str:
    """Run the deployed runner's report() on these tables and return what it prints."""
    fake = types.ModuleType("bcc")
    fake.BPF = object  # type: ignore[attr-defined]
    sys.modules.setdefault("bcc", fake)
    spec = importlib.util.spec_from_file_location("fleetdiag_bcc_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "bcc", fake)
        spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.report(tables)
    return out.getvalue()


def sample_tables():
    """A 6.1-like host: backlog drops on an IPv4 and an IPv6 flow, an old-data drop without namespace."""
    ns = 4026532100
    v4 = key(ns, 20, socket.AF_INET, "10.1.0.2", 5201, "10.1.0.3", 40000)
    v6 = key(ns, 20, socket.AF_INET6, "fd00::2", 5201, "fd00::3", 40002)
    late = key(0, 33, socket.AF_INET, "10.1.0.2", 5201, "10.1.0.3", 40000)
    drops = Table((v4, ctypes.c_uint64(278)), (v6, ctypes.c_uint64(3)), (late, ctypes.c_uint64(9)))
    state = Table((
        key(ns, 20, socket.AF_INET, "10.1.0.2", 5201, "10.1.0.3", 40000),
        State(rcvbuf=8192, sndbuf=46080, backlog_max=131072, rmem_max=4096, queue_max=135168),
    ))  # fmt: skip
    total = Table((ctypes.c_uint32(20), ctypes.c_uint64(281)), (ctypes.c_uint32(33), ctypes.c_uint64(9)))
    window = Table((
        key(ns, 20, socket.AF_INET, "10.1.0.2", 5201, "10.1.0.3", 40000),
        WindowState(rcv_wnd=4096, window_clamp=65483, rcv_ssthresh=4096, scaling_ratio=-1,
                    len_max=1500, truesize_max=2304, len_sum=278 * 1500, truesize_sum=278 * 2304),
    ))  # fmt: skip
    timeline = Table((TlKey(20, 3), ctypes.c_uint64(200)), (TlKey(20, 4), ctypes.c_uint64(81)), (TlKey(33, 0), ctypes.c_uint64(9)))
    flow_timeline = Table(
        (FtlKey(v4, 3), ctypes.c_uint64(200)), (FtlKey(v4, 4), ctypes.c_uint64(78)),
        (FtlKey(v6, 4), ctypes.c_uint64(3)),  # `late` has no socket: no per-flow series in the kernel
    )  # fmt: skip
    port_timeline = Table((PtlKey(33, 5201, 0), ctypes.c_uint64(9)))  # ... but one per (reason, local port)
    return {"fd_total": total, "fd_drops": drops, "fd_state": state, "fd_overflow": Table((0, ctypes.c_uint64(0))),
            "fd_window": window, "fd_tl": timeline, "fd_ftl": flow_timeline, "fd_ptl": port_timeline}  # fmt: skip


def test_runner_output_is_the_recorded_fixture():
    # The fixture the parser tests read is exactly what the deployed runner prints.
    assert runner_output(sample_tables()) == fixture_text("tracers/bcc-runner.stdout.txt").split("@@attached\n")[1].split("@@window_end")[0]


def test_parse_runner_output():
    facts = dataclasses.replace(detection("ubuntu20.04-5.4-bcc"), drop_reasons={20: "SOCKET_BACKLOG", 33: "TCP_OLD_DATA"})
    report = bcc.parse(fixture_text("tracers/bcc-runner.stdout.txt"), facts)
    assert dict(report.drops) == {"SOCKET_BACKLOG": 281, "TCP_OLD_DATA": 9}
    first = report.flows[0]
    assert (first.laddr, first.lport, first.raddr, first.rport, first.reason, first.drops) == (
        "10.1.0.2", 5201, "10.1.0.3", 40000, "SOCKET_BACKLOG", 278)
    assert (first.netns, first.rcvbuf, first.sndbuf, first.queue_max) == (4026532100, 8192, 46080, 135168)
    assert first.userlocks is None  # a bitfield on older kernels: bcc does not read it
    assert (first.rcv_wnd, first.window_clamp, first.rcv_ssthresh, first.scaling_ratio) == (4096, 65483, 4096, None)
    assert (first.skb_len_max, first.skb_len_sum, first.skb_truesize_max, first.skb_truesize_sum) == (
        1500, 417000, 2304, 640512)
    v6 = next(f for f in report.flows if f.laddr == "fd00::2")
    assert (v6.drops, v6.rcvbuf) == (3, None)
    late = next(f for f in report.flows if f.reason == "TCP_OLD_DATA")
    assert late.netns is None
    assert report.port_intervals == {("TCP_OLD_DATA", 5201): {0: 9}}
    assert any("namespace is unknown" in note for note in report.notes)
    assert report.flows_truncated is False


@pytest.mark.parametrize(
    "case, change, probe, switches",
    [
        ("ubuntu20.04-5.4-bcc", {}, "bcc:kretprobe_tcp_add_backlog",
         {"TRACEPOINT": 0, "RX_SK": 0, "ADD_BACKLOG": 1, "READ_KERNEL": 0, "SOCKET_BACKLOG": bcc.BACKLOG_SENTINEL,
          "RAW_TP": 0}),
        ("ubuntu20.04-5.4-bcc", {"kernel": "6.1.0-26-amd64", "kfree_skb_fields": ("skbaddr", "location", "protocol", "reason"),
                                 "drop_reasons": {2: "NOT_SPECIFIED", 20: "SOCKET_BACKLOG"}},
         "bcc:kfree_skb_headers+kretprobe",
         {"TRACEPOINT": 1, "RX_SK": 0, "ADD_BACKLOG": 1, "READ_KERNEL": 1, "SOCKET_BACKLOG": 20, "RAW_TP": 1}),
        ("debian12-6.18-all-facts", {"kernel_headers": "kheaders"}, "bcc:kfree_skb",
         {"TRACEPOINT": 1, "RX_SK": 1, "ADD_BACKLOG": 0, "READ_KERNEL": 1, "SOCKET_BACKLOG": 29, "RAW_TP": 1}),
    ],
)  # fmt: skip
def test_program_switches_per_tier(case, change, probe, switches):
    facts = dataclasses.replace(detection(case), **change)
    assert bcc.verdict(facts).probe == probe
    plan = bcc.plan(facts, Window(7, port=443))
    assert plan.probe == probe
    program = plan.files["probe.c"]
    assert not re.findall(r"@@[A-Z_]+@@", program)
    defines = dict(re.findall(r"^#define FD_([A-Z_]+) (\S+)$", program, re.MULTILINE))
    assert defines["NETNS"] == f"{facts.netns}ULL" and defines["PORT"] == "443"
    for name, value in switches.items():
        assert defines[name] == str(value), name
    assert plan.files["probe.py"] == probe_text("bcc_runner.py")
    assert plan.command == f"{facts.bcc_python} probe.py 9"  # 7 s window + the stats grace: the host stops it first
    assert plan.reads_stats
    assert plan.attach_allowance_s > 10  # clang runs on the host before it attaches


def test_kfree_skb_attaches_as_a_raw_tracepoint_where_kernel_and_bcc_allow():
    """Raw tracepoints have a recursion guard per program; the tracepoint stays for older bcc or kernels."""
    facts = dataclasses.replace(detection("debian12-6.18-all-facts"), kernel_headers="kheaders")
    assert bcc.raw_tracepoint(facts) and "as a raw tracepoint" in bcc.verdict(facts).reason
    old_bcc = dataclasses.replace(facts, bcc_version="0.5.0")
    assert not bcc.raw_tracepoint(old_bcc) and "as a tracepoint" in bcc.verdict(old_bcc).reason
    assert "#define FD_RAW_TP 0" in bcc.plan(old_bcc, Window(5)).files["probe.c"]
    assert not bcc.raw_tracepoint(dataclasses.replace(facts, kernel="4.15.0-20-generic"))


def _python(name: str) -> str | None:
    path = shutil.which(name)
    if path and subprocess.run([path, "-c", "pass"], capture_output=True).returncode == 0:
        return path
    return None


@pytest.mark.parametrize("python", ["python3", "python2"])
def test_runner_is_valid_source_for_both_pythons(python):
    path = _python(python)
    if path is None:
        pytest.skip(f"no working {python} here (RHEL 7's python-bcc runs the runner under python2)")
    done = subprocess.run([path, "-c", f"compile(open({str(RUNNER)!r}).read(), 'r', 'exec')"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_fixture_dir_says_what_is_recorded():
    assert "bcc-runner.stdout.txt" in (FIXTURES / "tracers" / "README.md").read_text()


def test_runner_timeline_becomes_the_hosts_timeline():
    # The in-kernel (reason, interval) and (flow, interval) counts, made dense and whole by the timeline.
    from fleetdiag.timeline import host_timeline

    facts = dataclasses.replace(detection("ubuntu20.04-5.4-bcc"), drop_reasons={20: "SOCKET_BACKLOG", 33: "TCP_OLD_DATA"})
    report = bcc.parse(fixture_text("tracers/bcc-runner.stdout.txt"), facts)
    assert report.timed and dict(report.intervals["SOCKET_BACKLOG"]) == {3: 200, 4: 81}
    timeline, flows, notes = host_timeline(report, 6, 100.0, {}, {}, [])
    assert timeline.drops["SOCKET_BACKLOG"] == (0, 0, 0, 200, 81, 0)
    assert timeline.drops["TCP_OLD_DATA"] == (9, 0, 0, 0, 0, 0)
    assert notes == ()
    by_port = {(f.rport, f.reason): f.timeline for f in flows}
    assert by_port[(40000, "SOCKET_BACKLOG")] == (0, 0, 0, 200, 78, 0)
    assert by_port[(40002, "SOCKET_BACKLOG")] == (0, 0, 0, 0, 3, 0)
    # A drop without a socket: no series of its own in the kernel, its (reason, local port) bucket's, which it alone fills.
    assert timeline.ports == {"TCP_OLD_DATA": {5201: (9, 0, 0, 0, 0, 0)}}
    assert by_port[(40000, "TCP_OLD_DATA")] == (9, 0, 0, 0, 0, 0)
