"""The bcc backend: the bpftrace tiers, for hosts with bcc's python bindings and kernel headers.

bcc compiles its C on the host at load time, against the kernel headers of the running
kernel (``/lib/modules/R/build`` or the kernel's own ``/sys/kernel/kheaders.tar.xz``), so
it fits hosts that have headers but no bpftrace (Ubuntu 18.04/20.04, RHEL 8). One C
program covers the tiers, switched by integers fleetdiag fills in:

- ``kfree_skb``: tracepoint skb:kfree_skb with ``reason`` and ``rx_sk`` (6.11+)
- ``kfree_skb_headers``: the tracepoint with ``reason`` only (5.18-6.10), flows from the
  packet headers; SOCKET_BACKLOG from the return of tcp_add_backlog when kprobes exist
- ``tcp_add_backlog``: only the return of tcp_add_backlog (4.9-5.17), backlog drops only

The runner prints record lines (``fleetdiag/tracers/records.py``) once, at the end.
"""

from __future__ import annotations

import re
from dataclasses import replace

from fleetdiag.model import HostFacts, ProbeReport, Verdict, Window, frozen_map
from fleetdiag.timeline import interval_for
from fleetdiag.tracers.base import (
    STOP_GRACE_S,
    ProbePlan,
    at_least,
    bpf_access_problem,
    fill_template,
    kfree_skb_missing,
    kfree_skb_tier,
    probe_text,
)
from fleetdiag.tracers.bpftrace import (
    BACKLOG_SENTINEL,
    MAP_KEYS_MAX,
    UNKNOWN_NETNS_NOTE,
)
from fleetdiag.tracers.records import parse_records

name = "bcc"
PROGRAM = "bcc_drops.c"
RUNNER = "bcc_runner.py"
# bcc runs clang on the host before it attaches: seconds on a server, ~4 s in an idle emulated guest,
# but over 90 s seen in one (bcc 0.18, Debian 11) while the machine under it was loaded: clang was
# killed before it attached. The window itself stays bounded by its duration after attach.
ATTACH_ALLOWANCE_S = 240


def tier(facts: HostFacts) -> tuple[str, bool] | None:
    """(tier, whether tcp_add_backlog's return is probed too), or None when no tier fits."""
    tracepoint = kfree_skb_tier(facts)
    kretprobe = facts.kprobes and "tcp_add_backlog" in facts.kernel_symbols
    if tracepoint == "rx_sk":
        return "kfree_skb", False
    if tracepoint == "reason":
        return "kfree_skb_headers", kretprobe
    if kretprobe:
        return "tcp_add_backlog", True
    return None


def raw_tracepoint(facts: HostFacts) -> bool:
    """kfree_skb attaches as a raw tracepoint (per-program recursion guard) rather than a tracepoint
    (one guard per CPU for every tracing program): raw tracepoints came in 4.17, bcc's
    RAW_TRACEPOINT_PROBE in 0.6; older kernels or bcc fall back to the tracepoint."""
    return at_least(facts, 4, 17) and _bcc_at_least(facts.bcc_version, (0, 6))


def _bcc_at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    parts = re.findall(r"\d+", version or "")[:2]
    return len(parts) == 2 and (int(parts[0]), int(parts[1])) >= wanted


def probe_name(chosen: tuple[str, bool]) -> str:
    """The probe's name in results, e.g. ``bcc:kfree_skb_headers+kretprobe``."""
    tier_name, kretprobe = chosen
    if tier_name == "tcp_add_backlog":
        return "bcc:kretprobe_tcp_add_backlog"
    return f"bcc:{tier_name}" + ("+kretprobe" if kretprobe else "")


def verdict(facts: HostFacts) -> Verdict:
    """Usable with bcc's bindings, root, kernel headers and a tier that fits the kernel."""
    if facts.bcc_python is None:
        return Verdict(False, "bcc (its python bindings) is not installed")
    problem = bpf_access_problem(facts)
    if problem:
        return Verdict(False, problem)
    if facts.kernel_headers is None:
        return Verdict(
            False,
            f"no kernel headers for {facts.kernel} (/lib/modules/{facts.kernel}/build or /sys/kernel/kheaders.tar.xz)",
        )
    chosen = tier(facts)
    if chosen is None:
        if "tcp_add_backlog" not in facts.kernel_symbols:
            why = f"no tcp_add_backlog on {facts.kernel} (sk_add_backlog is inline before 4.9)"
        else:
            why = f"no kprobes on {facts.kernel} to reach tcp_add_backlog"
        return Verdict(False, f"{kfree_skb_missing(facts)}, and {why}")
    if facts.netns is None:
        return Verdict(False, "could not read the host's network namespace")
    attach = ""
    if chosen[0] != "tcp_add_backlog":
        attach = (", kfree_skb as a raw tracepoint (per-program recursion guard)" if raw_tracepoint(facts)
                  else ", kfree_skb as a tracepoint (raw tracepoints need 4.17 and bcc 0.6)")  # fmt: skip
    return Verdict(
        True, f"bcc {facts.bcc_version} ({facts.bcc_python}), {facts.kernel_headers} headers{attach}", probe_name(chosen)
    )


def program(facts: HostFacts, window: Window) -> tuple[str, str]:
    """(probe name, the C program with this host's switches and numbers)."""
    chosen = tier(facts)
    if chosen is None:
        raise ValueError("no bcc tier fits this host")
    tier_name, kretprobe = chosen
    text = fill_template(
        probe_text(PROGRAM),
        {
            "NETNS": int(facts.netns or 0),
            "PORT": int(window.port or 0),
            "SOCKET_BACKLOG": int(facts.reason_number("SOCKET_BACKLOG") or BACKLOG_SENTINEL),
            "MAP_KEYS_MAX": MAP_KEYS_MAX,
            "TRACEPOINT": 0 if tier_name == "tcp_add_backlog" else 1,
            "RX_SK": 1 if tier_name == "kfree_skb" else 0,
            "ADD_BACKLOG": 1 if kretprobe else 0,
            # bpf_probe_read_kernel came in 5.5; older kernels only have bpf_probe_read.
            "READ_KERNEL": 1 if at_least(facts, 5, 5) else 0,
            # tcp_sock.scaling_ratio came in 6.6 (dfa2f0483360).
            "SCALING_RATIO": 1 if at_least(facts, 6, 6) else 0,
            "INTERVAL_NS": interval_for(window.duration_s) * 1_000_000_000,
            "RAW_TP": 1 if raw_tracepoint(facts) and tier_name != "tcp_add_backlog" else 0,
        },
    )
    return probe_name(chosen), text


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """The C program and its runner, run by the interpreter that imports bcc on this host."""
    probe, text = program(facts, window)
    return ProbePlan(
        tracer=name,
        probe=probe,
        files=frozen_map({"probe.c": text, "probe.py": probe_text(RUNNER)}),
        # bcc_python is one of facts.tools.BCC_PYTHONS: a fixed list, never free host text.
        # The host stops it at the window's end after reading its programs' stats; its own timer is a backstop.
        command=f"{facts.bcc_python} probe.py {int(window.duration_s) + STOP_GRACE_S}",
        attach_allowance_s=ATTACH_ALLOWANCE_S,
        reads_stats=True,
    )


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """The runner's record lines as a ProbeReport (netns 0 = unknown, see the headers tier)."""
    report = parse_records(output, facts, aliases={BACKLOG_SENTINEL: "SOCKET_BACKLOG"})
    unknown = sum(f.drops for f in report.flows if f.netns is None)
    if not unknown:
        return report
    return replace(report, notes=report.notes + (UNKNOWN_NETNS_NOTE.format(n=unknown),))
