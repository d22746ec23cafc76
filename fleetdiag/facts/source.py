"""Where the kernel counts TCPBacklogDrop, read from the kernel's own source on the host.

Kernels before 4.9 (RHEL 7's 3.10) inline ``sk_add_backlog`` into ``tcp_v4_rcv``: the only
place to probe a backlog drop is the source line that bumps LINUX_MIB_TCPBACKLOGDROP.
That line differs between builds, so it is read from the host's source of exactly this
kernel, never hard-coded: the tree kernel-debuginfo-common installs (RHEL, named by release), or
Debian's and Ubuntu's linux-source unpacked under /usr/src, used only when its Makefile's version
is the running kernel's (``uname -rv`` or Ubuntu's /proc/version_signature names it). On 4.9+ the
line sits in ``tcp_add_backlog``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from fleetdiag.facts.base import Fact

SOURCE_FILES = ("net/ipv4/tcp_ipv4.c", "net/ipv6/tcp_ipv6.c")
MIB = "LINUX_MIB_TCPBACKLOGDROP"

# Function definitions start in column 0 with a type; the MIB lines are what we look for.
# FLEETDIAG_SOURCE_ROOT only exists so tests can point the command at a tree of their own.
# RHEL: /usr/src/debug/kernel-3.10.0-1160.el7/linux-3.10.0-1160.el7.x86_64/net/ipv4/tcp_ipv4.c
BACKLOGDROP_SOURCE_COMMAND = (
    """
r=$(uname -r)
running=" $r $(uname -v) $(cat /proc/version_signature 2>/dev/null) "
src=${FLEETDIAG_SOURCE_ROOT:-/usr/src/debug}
unpacked=${FLEETDIAG_SOURCE_ROOT:-/usr/src}
for dir in "$src"/*/linux-"$r" "$src"/linux-"$r" "$unpacked"/linux-source-*; do
  [ -f "$dir/net/ipv4/tcp_ipv4.c" ] || continue
  case $dir in
  */linux-source-*)
    v=$(awk '$2 == "=" && $1 == "VERSION" {a = $3} $1 == "PATCHLEVEL" {b = $3} $1 == "SUBLEVEL" {c = $3}
      END {if (a != "") print a "." b "." c}' "$dir/Makefile" 2>/dev/null)
    case $running in *[!0-9.]"$v"[!0-9.]*) [ -n "$v" ] || continue ;; *) continue ;; esac ;;
  esac
  echo "source $dir"
  for f in """
    + " ".join(SOURCE_FILES)
    + """; do
    [ -f "$dir/$f" ] && grep -n -E '^[A-Za-z_][A-Za-z0-9_ *]*[ *][A-Za-z0-9_]+\\(|"""
    + MIB
    + """' "$dir/$f" | sed "s|^|$f:|"
  done
  exit 0
done
"""
)

_GREP_LINE = re.compile(r"^(?P<file>[\w/.-]+\.c):(?P<line>\d+):(?P<text>.*)$")
_DEFINITION = re.compile(r"^[A-Za-z_][\w \t*]*?\b(?P<name>[A-Za-z_]\w*)\s*\(")
_NOT_FUNCTIONS = {"EXPORT_SYMBOL", "EXPORT_SYMBOL_GPL", "EXPORT_IPV6_MOD", "EXPORT_IPV6_MOD_GPL", "module_init", "module_exit"}


@dataclass(frozen=True)
class BacklogDropSource:
    """The source tree found for this release and, per function, the lines that count TCPBacklogDrop."""

    root: str | None = None
    lines: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))


def parse_backlogdrop_source(out: str) -> BacklogDropSource:
    """Map each LINUX_MIB_TCPBACKLOGDROP line to the function it sits in (the last definition above it).

    >>> src = parse_backlogdrop_source("source /s\\nnet/ipv4/tcp_ipv4.c:1690:int tcp_v4_rcv(struct sk_buff *skb)\\n"
    ...                                "net/ipv4/tcp_ipv4.c:1746:\\t\\tNET_INC_STATS_BH(net, LINUX_MIB_TCPBACKLOGDROP);\\n")
    >>> src.root, dict(src.lines)
    ('/s', {'tcp_v4_rcv': (1746,)})
    """
    root = None
    lines: dict[str, list[int]] = {}
    current: dict[str, str] = {}  # file -> function being read
    for raw in out.splitlines():
        if raw.startswith("source "):
            root = raw.split(" ", 1)[1].strip() or None
            continue
        match = _GREP_LINE.match(raw)
        if not match:
            continue
        path, number, text = match.group("file"), int(match.group("line")), match.group("text")
        if MIB in text:
            function = current.get(path)
            if function:
                lines.setdefault(function, []).append(number)
            continue
        definition = _DEFINITION.match(text)
        if definition and not text.rstrip().endswith(";") and definition.group("name") not in _NOT_FUNCTIONS:
            current[path] = definition.group("name")
    return BacklogDropSource(root, MappingProxyType({k: tuple(v) for k, v in lines.items()}))


BACKLOGDROP_SOURCE = Fact("backlogdrop_source", BACKLOGDROP_SOURCE_COMMAND, parse_backlogdrop_source)
