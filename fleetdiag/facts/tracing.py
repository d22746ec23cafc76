"""Facts about tracing: tracefs, the kfree_skb tracepoint and its reason table, BTF, bpftrace."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

from fleetdiag.facts.base import Fact

_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]+);", re.MULTILINE)
_SYMBOL = re.compile(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*\"([A-Za-z0-9_]+)\"\s*\}")

# The detection prelude has set $fd_tracefs (mounting tracefs for detection only if needed).
KFREE_SKB_FORMAT_COMMAND = """
[ -n "$fd_tracefs" ] && cat "$fd_tracefs/events/skb/kfree_skb/format"
"""

# What the host had before detection touched anything: fleetdiag mounts an unmounted tracefs itself.
TRACEFS_COMMAND = """
if [ -n "$fd_mounted" ]; then echo unmounted
elif [ -n "$fd_tracefs" ]; then echo "$fd_tracefs"
elif [ -d /sys/kernel/tracing ]; then echo unmounted
else echo absent
fi
"""


def parse_tracepoint_fields(format_text: str) -> tuple[str, ...]:
    """The tracepoint's own field names (``common_*`` left out), in order.

    >>> parse_tracepoint_fields("\\tfield:void * rx_sk;\\toffset:24;\\n\\tfield:int common_pid;\\n")
    ('rx_sk',)
    """
    names = []
    for match in _FIELD.finditer(format_text):
        name = match.group("decl").split()[-1].lstrip("*").split("[")[0]
        if not name.startswith("common_"):
            names.append(name)
    return tuple(names)


def parse_reason_table(format_text: str) -> Mapping[int, str]:
    """The host's drop-reason numbers, from ``__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)``.

    Numbers differ between kernels (SOCKET_BACKLOG is 20, 21, 26 or 29), so they are
    only ever read from the host itself.
    """
    start = format_text.find("__print_symbolic(REC->reason")
    if start < 0:
        return MappingProxyType({})
    table = {int(number, 0): name for number, name in _SYMBOL.findall(format_text[start:])}
    return MappingProxyType(table)


def parse_bpftrace_version(out: str) -> str | None:
    """The version from ``bpftrace --version`` (``bpftrace v0.17.0`` -> ``0.17.0``)."""
    match = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", out)
    return match.group(1) if match else None


def parse_tracefs(out: str) -> str | None:
    """Where tracefs is mounted, ``unmounted`` or ``absent``."""
    word = out.strip()
    return word if word in ("unmounted", "absent") or word.startswith("/") else None


def parse_yes(out: str) -> bool:
    """True when the command printed ``yes``."""
    return out.strip() == "yes"


TRACEFS = Fact("tracefs", TRACEFS_COMMAND, parse_tracefs, subshell=False)
KFREE_SKB_FORMAT = Fact("kfree_skb_format", KFREE_SKB_FORMAT_COMMAND, lambda out: out, subshell=False)
BTF = Fact("btf", "[ -r /sys/kernel/btf/vmlinux ] && echo yes || echo no", parse_yes, subshell=False)
BPFTRACE = Fact(
    "bpftrace",
    "command -v bpftrace >/dev/null 2>&1 && bpftrace --version 2>/dev/null",
    parse_bpftrace_version,
    subshell=False,
)
