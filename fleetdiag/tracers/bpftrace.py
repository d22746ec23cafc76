"""The bpftrace backend: tracepoint:skb:kfree_skb with `reason` and `rx_sk` (kernels 6.11+).

Everything is aggregated in kernel maps; the script prints them once, as JSON, at the
end of the window, and this module turns them into a ProbeReport.
"""

from __future__ import annotations

import json
from typing import Any

from fleetdiag.model import FlowDrop, HostFacts, ProbeReport, Window, frozen_map
from fleetdiag.tracers.base import ProbePlan, Verdict, fill_template, probe_text

name = "bpftrace"
SCRIPT = "kfree_skb_rx_sk.bt"
PROBE_NAME = "bpftrace:kfree_skb"
# Cap on distinct flow keys per map: bounds kernel memory under a storm of new flows;
# totals per reason stay exact in @total, so a full map only loses the per-flow split.
MAP_KEYS_MAX = 8192
_NEEDED_FIELDS = ("reason", "rx_sk", "skbaddr", "protocol")


def verdict(facts: HostFacts) -> Verdict:
    """Usable when bpftrace, BTF, root and a kfree_skb tracepoint with reason and rx_sk are there."""
    if facts.bpftrace_version is None:
        return Verdict(False, "bpftrace is not installed")
    if facts.uid != 0:
        return Verdict(False, "not root (set ansible_become or log in as root)")
    if not facts.btf:
        return Verdict(False, f"no BTF for {facts.kernel} (/sys/kernel/btf/vmlinux)")
    missing = [f for f in _NEEDED_FIELDS if f not in facts.kfree_skb_fields]
    if missing:
        return Verdict(False, f"tracepoint skb:kfree_skb lacks {', '.join(missing)} on {facts.kernel}")
    if facts.reason_number("SOCKET_BACKLOG") is None:
        return Verdict(False, "the host's drop-reason table has no SOCKET_BACKLOG")
    if facts.netns is None:
        return Verdict(False, "could not read the host's network namespace")
    return Verdict(True, f"bpftrace {facts.bpftrace_version}, BTF, kfree_skb with rx_sk")


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """The probe script for this host: its netns, its SOCKET_BACKLOG number, the window."""
    script = fill_template(
        probe_text(SCRIPT),
        {
            "NETNS": int(facts.netns or 0),
            "SOCKET_BACKLOG": int(facts.reason_number("SOCKET_BACKLOG") or 0),
            "DURATION": int(window.duration_s),
        },
    )
    return ProbePlan(
        tracer=name,
        probe=PROBE_NAME,
        files=frozen_map({"probe.bt": script}),
        command="bpftrace -f json probe.bt",
        env=frozen_map({"BPFTRACE_MAP_KEYS_MAX": str(MAP_KEYS_MAX)}),
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
            maps.update(record.get("data") or {})
    return maps


def _flow_key(key: str) -> tuple[int, str, int, str, int, int]:
    # Keys are "netns,laddr,lport,raddr,rport,reason"; IPv6 addresses hold ':' but never ','.
    ns, laddr, lport, raddr, rport, reason = key.split(",")
    return int(ns), laddr, int(lport), raddr, int(rport), int(reason)


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """Turn bpftrace's JSON map dump into exact totals per reason and per-flow drops."""
    maps = _maps(output)
    names = facts.drop_reasons

    def reason_name(number: int) -> str:
        return names.get(number, f"REASON_{number}")

    totals = {reason_name(int(k)): int(v) for k, v in (maps.get("@total") or {}).items()}
    socks = maps.get("@sock") or {}
    backlog = maps.get("@backlog") or {}
    rmem = maps.get("@rmem") or {}
    queue = maps.get("@queue") or {}
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
                netns=ns,
                reason=reason_name(reason),
                drops=int(count),
                rcvbuf=int(state[0]) if state else None,
                sndbuf=int(state[1]) if state else None,
                userlocks=int(state[2]) if state else None,
                backlog_len_max=int(backlog[key]) if key in backlog else None,
                rmem_alloc_max=int(rmem[key]) if key in rmem else None,
                queue_max=int(queue[key]) if key in queue else None,
            )
        )
    flows.sort(key=lambda f: (-f.drops, f.reason, f.laddr, f.lport, f.raddr, f.rport))
    traced_in_flows = sum(f.drops for f in flows)
    return ProbeReport(
        drops=frozen_map(dict(sorted(totals.items()))),
        flows=tuple(flows),
        flows_truncated=traced_in_flows < sum(totals.values()),
    )
