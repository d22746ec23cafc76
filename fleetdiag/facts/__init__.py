"""Detection: every fact about a host in one round trip, parsed into HostFacts.

>>> script = detection_script()   # run it on the host with any transport
>>> facts = parse_facts(stdout)   # doctest: +SKIP
"""

from __future__ import annotations

from fleetdiag.facts.base import Fact
from fleetdiag.facts.buffers import TCP_BUFFERS
from fleetdiag.facts.host import KERNEL, NETNS, OS_RELEASE, SUDO, UID
from fleetdiag.facts.kernel import (
    BUILD_ID,
    DEBUGINFO,
    FENTRY,
    KALLSYMS,
    KERNEL_HEADERS,
    LOCKDOWN,
    MODULES,
    SECURE_BOOT,
    TCP_ADD_BACKLOG_BTF,
)
from fleetdiag.facts.source import BACKLOGDROP_SOURCE, BacklogDropSource
from fleetdiag.facts.tools import BCC, SYSTEMTAP, TOOLS, Systemtap
from fleetdiag.facts.tracing import (
    BPFTRACE,
    BTF,
    KFREE_SKB_FORMAT,
    TRACEFS,
    parse_reason_table,
    parse_tracepoint_fields,
)
from fleetdiag.model import HostFacts, frozen_map
from fleetdiag.sections import section_header, split_sections

# Cheap facts every tracer choice reads (a few ms in all).
CORE_FACTS: tuple[Fact, ...] = (
    KERNEL, OS_RELEASE, UID, SUDO, NETNS, TRACEFS, BTF, BPFTRACE, KFREE_SKB_FORMAT, TOOLS,
    TCP_BUFFERS,
)  # fmt: skip
# Facts only the older tiers (bcc, systemtap, kprobe/kfunc bpftrace) need; together they cost
# ~100-250 ms of host CPU (kallsyms scan, BTF dump, stap -V, python imports).
DEEP_FACTS: tuple[Fact, ...] = (
    MODULES, LOCKDOWN, SECURE_BOOT, KALLSYMS, TCP_ADD_BACKLOG_BTF, FENTRY, KERNEL_HEADERS, DEBUGINFO,
    BACKLOGDROP_SOURCE, SYSTEMTAP, BCC, BUILD_ID,
)  # fmt: skip
FACTS: tuple[Fact, ...] = CORE_FACTS + DEEP_FACTS

# bpftrace's best tier fits: root, BTF, bpftrace, a kfree_skb with rx_sk naming SOCKET_BACKLOG.
# Then the deep facts cannot change the choice, and first-fit detection skips them.
_FIRST_FIT_GUARD = """fd_fit=""
if [ "$(id -u)" = 0 ] && [ -r /sys/kernel/btf/vmlinux ] && command -v bpftrace >/dev/null &&
  [ -n "$fd_tracefs" ] && grep -q 'rx_sk;' "$fd_tracefs/events/skb/kfree_skb/format" &&
  grep -q '"SOCKET_BACKLOG"' "$fd_tracefs/events/skb/kfree_skb/format"; then
  fd_fit=1
fi"""

# Several facts read tracefs. Find it once; if nobody mounted it and we are root, mount it
# for the length of detection only, so the host is left as it was found.
_PRELUDE = """exec 2>/dev/null
fd_tracefs=""
fd_mounted=""
for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
  if [ -d "$t/events" ]; then fd_tracefs=$t; break; fi
done
if [ -z "$fd_tracefs" ] && [ "$(id -u)" = 0 ] && [ -d /sys/kernel/tracing ] &&
  mount -t tracefs nodev /sys/kernel/tracing; then
  fd_tracefs=/sys/kernel/tracing
  fd_mounted=1
fi
trap '[ -n "$fd_mounted" ] && umount /sys/kernel/tracing' EXIT"""


def _fact_lines(facts: tuple[Fact, ...]) -> list[str]:
    # A subshell per fact (Fact.subshell): one failing command never hides the others.
    lines = []
    for fact in facts:
        opening, closing = ("(", ")") if fact.subshell else ("{", "}")
        lines += [section_header(fact.name), f"{opening} {fact.command.strip()}\n{closing}"]
    return lines


# `--tracer counters` reads only these: no tracer's tools are probed (bpftrace --version alone
# costs ~18 ms of host CPU, half of first-fit detection; a sweep pays it on every host).
COUNTERS_FACTS: tuple[Fact, ...] = (KERNEL, OS_RELEASE, UID, SUDO, NETNS, TOOLS, TCP_BUFFERS)


def detection_script(first_fit: bool = False, counters_only: bool = False) -> str:
    """One POSIX shell script that prints every fact in its own section.

    With ``first_fit`` (collect choosing automatically), the host skips the deep facts
    when bpftrace's best tier fits, and says so in an ``examined`` section. With
    ``counters_only`` (``--tracer counters``) it gathers only what that tier reads.
    """
    if counters_only:
        parts = [*_fact_lines(COUNTERS_FACTS), section_header("examined"), "echo counters"]
        return "\n".join(parts) + "\n"
    parts = [_PRELUDE, *_fact_lines(CORE_FACTS)]
    if not first_fit:
        parts += _fact_lines(DEEP_FACTS)
        return "\n".join(parts) + "\n"
    parts += [_FIRST_FIT_GUARD, 'if [ -z "$fd_fit" ]; then', *_fact_lines(DEEP_FACTS), "fi"]
    parts += [section_header("examined"), 'if [ -n "$fd_fit" ]; then echo first-fit; else echo all; fi']
    return "\n".join(parts) + "\n"


def parse_facts(output: str) -> HostFacts:
    """Turn the detection script's stdout into HostFacts (pure; tested from recorded output)."""
    sections = split_sections(output)
    values = {fact.name: fact.parse_or_none(sections.get(fact.name)) for fact in FACTS}
    kfree_skb_format = values["kfree_skb_format"] or ""
    os_release = values["os_release"] or {}
    stap = values["systemtap"] or Systemtap(None, False)
    source = values["backlogdrop_source"] or BacklogDropSource()
    bcc = values["bcc"]
    return HostFacts(
        kernel=values["kernel"],
        os_name=os_release.get("PRETTY_NAME") or None,
        os_id=os_release.get("ID") or None,
        uid=values["uid"],
        sudo=values["sudo"],
        netns=values["netns"],
        tracefs=values["tracefs"],
        btf=bool(values["btf"]),
        bpftrace_version=values["bpftrace"],
        kfree_skb_fields=parse_tracepoint_fields(kfree_skb_format),
        drop_reasons=parse_reason_table(kfree_skb_format),
        modules=values["modules"],
        lockdown=values["lockdown"],
        secure_boot=values["secure_boot"],
        kernel_symbols=values["kallsyms"] or frozenset(),
        tcp_add_backlog_params=values["tcp_add_backlog_btf"],
        fentry_tcp_add_backlog=values["fentry_tcp_add_backlog"],
        kernel_headers=values["kernel_headers"],
        debuginfo=values["debuginfo"],
        kernel_build_id=values["kernel_build_id"],
        kernel_source=source.root,
        backlogdrop_lines=source.lines,
        stap_version=stap.version,
        staprun=stap.staprun,
        bcc_python=bcc.python if bcc else None,
        bcc_version=bcc.version if bcc else None,
        tools=values["tools"] or frozenset(),
        tcp_buffers=values["tcp_buffers"] or frozen_map(),
        examined=sections.get("examined", "all").strip() or "all",
    )
