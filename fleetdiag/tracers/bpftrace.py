"""The bpftrace backend, in three tiers chosen from the host's facts (best first).

1. ``kfree_skb``: tracepoint skb:kfree_skb with ``reason`` and ``rx_sk`` (6.11+): every
   TCP drop reason, the flow and the socket's state from the receiving socket.
2. ``kfree_skb_headers``: the tracepoint with ``reason`` but no ``rx_sk`` (5.18-6.10): every
   reason, the flow from the packet's headers; SOCKET_BACKLOG from the return of
   tcp_add_backlog when kretfunc or kretprobe can reach it (socket state, namespace).
3. ``tcp_add_backlog``: only the return of tcp_add_backlog (4.9-5.17): backlog drops with
   the socket's state.

Everything is aggregated in kernel maps; the script prints them once, as JSON, at the
end of the window, and this module turns them into a ProbeReport.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fleetdiag.model import (
    FlowDrop,
    HostFacts,
    ProbeReport,
    Verdict,
    Window,
    frozen_map,
)
from fleetdiag.timeline import interval_for
from fleetdiag.tracers.base import (
    STOP_GRACE_S,
    ProbePlan,
    at_least,
    bpf_access_problem,
    fill_template,
    insert_blocks,
    kfree_skb_missing,
    kfree_skb_tier,
    probe_text,
)

name = "bpftrace"
SCRIPT = "kfree_skb_rx_sk.bt"
PROBE_NAME = "bpftrace:kfree_skb"
# bpftrace compiles its script (LLVM) and loads BTF before its BEGIN says it watches: about 1 s
# on a server, 16-17 s in the lab's idle emulated 6.1 guest (0.17, kfree_skb_headers+kretfunc),
# past the default 10 s. The window itself stays its duration after attach (the stopper ends it).
ATTACH_ALLOWANCE_S = 60
# Cap on distinct flow keys per map: bounds kernel memory under a storm of new flows;
# totals per reason stay exact in @total, so a full map only loses the per-flow split.
MAP_KEYS_MAX = 8192
# The reason number a tcp_add_backlog drop is keyed with when the host has no reason table.
BACKLOG_SENTINEL = 65535
# Without BTF, bpftrace learns struct layouts from the kernel headers instead.
HEADER_INCLUDES = "\n".join(
    f"#include <{h}>" for h in ("linux/skbuff.h", "linux/ip.h", "linux/ipv6.h", "linux/tcp.h", "net/sock.h")
)
UNKNOWN_NETNS_NOTE = (
    "{n} drops came after the socket lookup, where this kernel leaves no device on the packet: "
    "their network namespace is unknown, so they may belong to another namespace of this host"
)


# bpftrace 0.11 (Debian 11) refuses kfunc/kretfunc on 5.10 although the kernel has them (BTF, fentry:
# bcc's support_kfunc() is True there): its own feature probe says "kfunc: no" in `bpftrace --info`, and
# a kretfunc script fails at attach with "kfunc/kretfunc not available for your kernel version".
# Measured on the lab's 5.10 guest (0.11.3); 0.17 attaches kretfunc on 6.1.
KRETFUNC_MIN_BPFTRACE = (0, 12)


def bpftrace_version(facts: HostFacts) -> tuple[int, ...] | None:
    """bpftrace's version as numbers, e.g. (0, 11, 3); None when unknown."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", facts.bpftrace_version or "")
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def kretfunc_problem(facts: HostFacts) -> str | None:
    """Why bpftrace cannot use kretfunc on tcp_add_backlog here although BTF and fentry are there (None: it can)."""
    version = bpftrace_version(facts)
    if version is not None and version < KRETFUNC_MIN_BPFTRACE:
        return f"bpftrace {facts.bpftrace_version} cannot attach kretfunc (its feature probe says kfunc: no)"
    return None


# bpftrace 0.21 added `rawtracepoint:` (BPF_PROG_TYPE_RAW_TRACEPOINT, kernel 4.17+). A raw tracepoint's
# program has a recursion guard of its own (prog->active); a tracepoint's shares one per CPU with every
# kprobe and tracepoint program on the host (bpf_prog_active), which is what skips it under a storm.
RAW_TRACEPOINT_MIN_BPFTRACE = (0, 21)
# The tracepoint script's words for kfree_skb's fields, as the raw tracepoint's arguments:
# TP_PROTO(skb, location, reason, rx_sk) (rx_sk since 6.11, with the tracepoint's field). The
# tracepoint's protocol is ntohs(skb->protocol); the skb holds it in network order.
RAW_KFREE_SKB_WORDS = {
    "tracepoint:skb:kfree_skb": "rawtracepoint:kfree_skb",
    "args->skbaddr": "arg0",
    "args->reason": "arg2",
    "args->rx_sk": "arg3",
    "args->protocol == 0x0800": "((struct sk_buff *)arg0)->protocol == 0x0008",
    "args->protocol == 0x86dd": "((struct sk_buff *)arg0)->protocol == 0xdd86",
}


def raw_tracepoint(facts: HostFacts) -> bool:
    """kfree_skb (its rx_sk tier, 6.11+) attaches as a raw tracepoint: bpftrace 0.21+ on 4.17+."""
    version = bpftrace_version(facts)
    return (
        version is not None and version >= RAW_TRACEPOINT_MIN_BPFTRACE and at_least(facts, 4, 17)
        and kfree_skb_tier(facts) == "rx_sk"
    )  # fmt: skip


def raw_tracepoint_text(text: str) -> str:
    """The kfree_skb tracepoint script attached as a raw tracepoint instead (RAW_KFREE_SKB_WORDS)."""
    for word, raw in RAW_KFREE_SKB_WORDS.items():
        text = text.replace(word, raw)
    if "args->" in text or "tracepoint:skb:" in text:
        raise ValueError("the kfree_skb script reads a tracepoint field with no raw tracepoint argument")
    return text


def backlog_hook(facts: HostFacts) -> str | None:
    """How to reach tcp_add_backlog's return here: ``kretfunc`` (fexit), ``kretprobe``, or None."""
    if "tcp_add_backlog" not in facts.kernel_symbols:
        return None
    if facts.btf and facts.fentry_tcp_add_backlog and kretfunc_problem(facts) is None:
        return "kretfunc"
    if facts.kprobes:
        return "kretprobe"
    return None


def tier(facts: HostFacts) -> tuple[str, str | None] | None:
    """(tier, tcp_add_backlog hook) for this host, or None when no tier fits."""
    tracepoint = kfree_skb_tier(facts)
    hook = backlog_hook(facts)
    if tracepoint == "rx_sk":
        return "kfree_skb", None
    if tracepoint == "reason":
        return "kfree_skb_headers", hook
    if hook:
        return "tcp_add_backlog", hook
    return None


def probe_name(chosen: tuple[str, str | None]) -> str:
    """The probe's name in results, e.g. ``bpftrace:kfree_skb_headers+kretprobe``."""
    tier_name, hook = chosen
    if tier_name == "tcp_add_backlog":
        return f"bpftrace:{hook}_tcp_add_backlog"
    return f"bpftrace:{tier_name}" + (f"+{hook}" if hook else "")


def _no_tier_reason(facts: HostFacts) -> str:
    tracepoint = kfree_skb_missing(facts)
    if "tcp_add_backlog" not in facts.kernel_symbols:
        return f"{tracepoint}, and no tcp_add_backlog on {facts.kernel} (sk_add_backlog is inline before 4.9)"
    return f"{tracepoint}, and neither kretfunc nor kprobes reach tcp_add_backlog on {facts.kernel}"


def verdict(facts: HostFacts) -> Verdict:
    """Usable when bpftrace, root, struct layouts (BTF or headers) and one tier fit the host."""
    if facts.bpftrace_version is None:
        return Verdict(False, "bpftrace is not installed")
    problem = bpf_access_problem(facts)
    if problem:
        return Verdict(False, problem)
    if not facts.btf and facts.kernel_headers != "build":
        return Verdict(False, f"no BTF for {facts.kernel} (/sys/kernel/btf/vmlinux) and no kernel headers")
    chosen = tier(facts)
    if chosen is None:
        return Verdict(False, _no_tier_reason(facts))
    if facts.netns is None:
        return Verdict(False, "could not read the host's network namespace")
    types = "BTF" if facts.btf else "kernel headers"
    what = {
        "kfree_skb": "kfree_skb with rx_sk",
        "kfree_skb_headers": "kfree_skb with reason, flows from packet headers",
        "tcp_add_backlog": "tcp_add_backlog return, backlog drops only",
    }[chosen[0]]
    if chosen[0] == "kfree_skb_headers":
        what += f", SOCKET_BACKLOG from tcp_add_backlog ({chosen[1]})" if chosen[1] else ", netns of late drops unknown"
    if chosen[1] == "kretprobe" and facts.btf and facts.fentry_tcp_add_backlog and kretfunc_problem(facts):
        what += f" (kretprobe: {kretfunc_problem(facts)})"
    if chosen[0] == "kfree_skb":
        what += (", kfree_skb as a raw tracepoint (per-program recursion guard)" if raw_tracepoint(facts)
                 else ", kfree_skb as a tracepoint (raw tracepoints need bpftrace 0.21)")  # fmt: skip
    return Verdict(True, f"bpftrace {facts.bpftrace_version}, {types}, {what}", probe_name(chosen))


def script(facts: HostFacts, window: Window) -> tuple[str, str]:
    """(probe name, bpftrace script) for this host and window."""
    chosen = tier(facts)
    if chosen is None:
        raise ValueError(f"no bpftrace tier fits this host: {_no_tier_reason(facts)}")
    tier_name, hook = chosen
    main = {"kfree_skb": SCRIPT, "kfree_skb_headers": "kfree_skb_headers.bt", "tcp_add_backlog": "tcp_add_backlog.bt"}
    text = probe_text(main[tier_name])
    if raw_tracepoint(facts):
        text = raw_tracepoint_text(text)
    state = ""
    if hook:
        state = insert_blocks(probe_text(f"tcp_add_backlog_{hook}.bt"), {"RECORD": probe_text("tcp_add_backlog_record.bt")})
    text = insert_blocks(text, {"SOCKET_STATE": state, "INCLUDES": "" if facts.btf else HEADER_INCLUDES})
    # tcp_sock.scaling_ratio came in 6.6 (dfa2f0483360): older kernels would not compile it.
    text = insert_blocks(text, {"SCALING_RATIO": "$tp->scaling_ratio" if at_least(facts, 6, 6) else "-1"})
    filled = fill_template(
        text,
        {
            "NETNS": int(facts.netns or 0),
            "SOCKET_BACKLOG": int(facts.reason_number("SOCKET_BACKLOG") or BACKLOG_SENTINEL),
            "DURATION": int(window.duration_s) + STOP_GRACE_S,  # the host closes the window and stops it first
            "PORT": int(window.port or 0),
            "BACKLOG_FROM_SOCKET": 1 if hook else 0,
            "INTERVAL_NS": interval_for(window.duration_s) * 1_000_000_000,
        },
    )
    return probe_name(chosen), filled.lstrip("\n")


# --follow: the running totals once a second; fleetdiag.live reads them with parse() below.
FOLLOW_BLOCK = """
interval:s:1
{
  print(@total);
}
"""


# The window opens when this, the script's last probe, first fires. bpftrace runs BEGIN and then
# attaches the other probes one by one, in the script's order: a BEGIN that said @@attached opened
# the window before kfree_skb watched (20-50 ms here, about 1 s in the emulated 6.1 guest), and the
# drops of that gap were counted by TcpExt but neither traced nor missed. The interval probe attaches
# last, so its first run comes after every other probe watches. Its later runs (50 a second, on one
# CPU) cost a map lookup each; its program shows in probe_stats as type 7 (perf event).
ATTACHED_BLOCK = """
interval:ms:20
{
  if (@attached == 0) {
    @attached = 1;
    @t0 = nsecs;  // the timeline starts with the window: @tl and @ftl count per interval since @t0
    printf("@@attached\\n");
  }
}
"""


def map_keys_variable(facts: HostFacts) -> str:
    """The map cap's variable: bpftrace 0.19 renamed it, and 0.23 (Debian 13) warns on stderr about the old name."""
    version = bpftrace_version(facts)
    return "BPFTRACE_MAX_MAP_KEYS" if version is not None and version >= (0, 19) else "BPFTRACE_MAP_KEYS_MAX"


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """The probe script for this host: its tier, netns, SOCKET_BACKLOG number, port and window."""
    probe, text = script(facts, window)
    if window.follow:
        text += FOLLOW_BLOCK
    text += ATTACHED_BLOCK  # last: see ATTACHED_BLOCK
    return ProbePlan(
        tracer=name,
        probe=probe,
        files=frozen_map({"probe.bt": text}),
        command="bpftrace -f json probe.bt",
        env=frozen_map({map_keys_variable(facts): str(MAP_KEYS_MAX)}),
        reads_stats=True,
        attach_allowance_s=ATTACH_ALLOWANCE_S,
    )


def _maps(output: str) -> dict[str, dict[str, Any]]:
    """The maps bpftrace printed with ``-f json`` at exit: {"@drops": {"k1,k2": value}}."""
    maps: dict[str, dict[str, Any]] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("type") == "map":
            for map_name, entries in (record.get("data") or {}).items():
                if isinstance(entries, dict):
                    maps.setdefault(map_name, {}).update(entries)
    return maps


def _flow_key(key: str) -> tuple[int, str, int, str, int, int]:
    # Keys are "netns,laddr,lport,raddr,rport,reason"; IPv6 addresses hold ':' but never ','.
    ns, laddr, lport, raddr, rport, reason = key.split(",")
    return int(ns), laddr, int(lport), raddr, int(rport), int(reason)


_SIZE_MAPS = (
    ("@skblen", "skb_len_max"), ("@skblensum", "skb_len_sum"),
    ("@skbtrue", "skb_truesize_max"), ("@skbtruesum", "skb_truesize_sum"),
)  # fmt: skip


def _window_fields(maps: dict[str, dict[str, Any]]) -> dict[str, dict[str, int | None]]:
    """Per flow key: the window at the last backlog drop and the dropped skbs' sizes (-1: unknown)."""
    fields: dict[str, dict[str, int | None]] = {}
    for key, value in (maps.get("@win") or {}).items():
        names = ("rcv_wnd", "window_clamp", "rcv_ssthresh", "scaling_ratio")
        fields[key] = {n: (int(v) if int(v) >= 0 else None) for n, v in zip(names, value)}
    for map_name, field_name in _SIZE_MAPS:
        for key, value in (maps.get(map_name) or {}).items():
            fields.setdefault(key, {})[field_name] = int(value)
    return fields


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """Turn bpftrace's JSON map dump into exact totals per reason and per-flow drops."""
    maps = _maps(output)
    names = dict(facts.drop_reasons)
    names.setdefault(BACKLOG_SENTINEL, "SOCKET_BACKLOG")

    def reason_name(number: int) -> str:
        return names.get(number, f"REASON_{number}")

    totals: dict[str, int] = {}
    for k, v in (maps.get("@total") or {}).items():
        totals[reason_name(int(k))] = totals.get(reason_name(int(k)), 0) + int(v)
    socks = maps.get("@sock") or {}
    backlog = maps.get("@backlog") or {}
    rmem = maps.get("@rmem") or {}
    queue = maps.get("@queue") or {}
    window = _window_fields(maps)
    flows = []
    for key, count in (maps.get("@drops") or {}).items():
        ns, laddr, lport, raddr, rport, reason = _flow_key(key)
        state = socks.get(key)
        flows.append(
            FlowDrop(
                laddr=laddr,
                lport=lport,
                raddr=raddr,
                rport=rport,
                netns=ns or None,  # 0: the packet carried no namespace (kfree_skb_headers tier)
                reason=reason_name(reason),
                drops=int(count),
                rcvbuf=int(state[0]) if state else None,
                sndbuf=int(state[1]) if state else None,
                userlocks=int(state[2]) if state else None,
                backlog_len_max=int(backlog[key]) if key in backlog else None,
                rmem_alloc_max=int(rmem[key]) if key in rmem else None,
                queue_max=int(queue[key]) if key in queue else None,
                **window.get(key, {}),
            )
        )
    flows.sort(key=lambda f: (-f.drops, f.reason, f.laddr, f.lport, f.raddr, f.rport))
    traced_in_flows = sum(f.drops for f in flows)
    unknown_ns = sum(f.drops for f in flows if f.netns is None)
    intervals, flow_intervals = _intervals(maps, reason_name)
    port_intervals = _port_intervals(maps, reason_name)
    return ProbeReport(
        drops=frozen_map(dict(sorted(totals.items()))),
        flows=tuple(flows),
        flows_truncated=traced_in_flows < sum(totals.values()),
        notes=(UNKNOWN_NETNS_NOTE.format(n=unknown_ns),) if unknown_ns else (),
        intervals=intervals,
        flow_intervals=flow_intervals,
        port_intervals=port_intervals,
        timed='"@t0"' in output,  # set in BEGIN: this script counts per interval
    )


def _port_intervals(maps: dict[str, dict[str, Any]], reason_name: Any) -> Any:
    """@ptl ("reason,lport,i"): the drops without a socket, per reason and local port."""
    per_port: dict[tuple[str, int], dict[int, int]] = {}
    for key, count in (maps.get("@ptl") or {}).items():
        reason, port, index = key.split(",")
        series = per_port.setdefault((reason_name(int(reason)), int(port)), {})
        series[int(index)] = series.get(int(index), 0) + int(count)
    return frozen_map({k: frozen_map(s) for k, s in per_port.items()})


def _intervals(maps: dict[str, dict[str, Any]], reason_name: Any) -> tuple[Any, Any]:
    """@tl ("reason,i") and @ftl ("netns,laddr,lport,raddr,rport,reason,i") as sparse series."""
    per_reason: dict[str, dict[int, int]] = {}
    for key, count in (maps.get("@tl") or {}).items():
        reason, index = key.split(",")
        series = per_reason.setdefault(reason_name(int(reason)), {})
        series[int(index)] = series.get(int(index), 0) + int(count)
    per_flow: dict[tuple[Any, ...], dict[int, int]] = {}
    for key, count in (maps.get("@ftl") or {}).items():
        flow, index = key.rsplit(",", 1)
        ns, laddr, lport, raddr, rport, reason = _flow_key(flow)
        series = per_flow.setdefault((ns, laddr, lport, raddr, rport, reason_name(reason)), {})
        series[int(index)] = series.get(int(index), 0) + int(count)
    return (frozen_map({r: frozen_map(s) for r, s in per_reason.items()}),
            frozen_map({k: frozen_map(s) for k, s in per_flow.items()}))  # fmt: skip
