"""Facts about the host's receive buffers: the sysctls that size rcvbuf and its advertised window.

``tcp_rmem`` (min, default, max: autotuning grows rcvbuf up to max), ``rmem_max`` (the cap on
``SO_RCVBUF``), ``tcp_adv_win_scale`` (the window's share of rcvbuf before 6.6) and
``tcp_moderate_rcvbuf`` (autotuning on or off). The tcp_* ones are per network namespace:
detection reads them in the namespace the probe watches.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from fleetdiag.facts.base import Fact

BUFFER_SYSCTLS = (
    ("tcp_rmem", "/proc/sys/net/ipv4/tcp_rmem"),
    ("rmem_max", "/proc/sys/net/core/rmem_max"),
    ("tcp_adv_win_scale", "/proc/sys/net/ipv4/tcp_adv_win_scale"),
    ("tcp_moderate_rcvbuf", "/proc/sys/net/ipv4/tcp_moderate_rcvbuf"),
)

# One grep for all four: the shell's `read` cannot be used, it reads a byte at a time and the
# kernel's integer-vector sysctls answer EOF to any read past offset 0 (proc_dointvec).
TCP_BUFFERS_COMMAND = "grep -H . " + " ".join(path for _, path in BUFFER_SYSCTLS)


def parse_tcp_buffers(out: str) -> Mapping[str, tuple[int, ...]]:
    """``path:v1 [v2 v3]`` lines (grep -H) -> {name: (v1, ...)}; a line not all integers is skipped.

    >>> dict(parse_tcp_buffers("/proc/sys/net/ipv4/tcp_rmem:4096\t131072\t6291456\n/proc/sys/net/core/rmem_max:212992\n"))
    {'tcp_rmem': (4096, 131072, 6291456), 'rmem_max': (212992,)}
    """
    names = {path: name for name, path in BUFFER_SYSCTLS}
    values: dict[str, tuple[int, ...]] = {}
    for line in out.splitlines():
        path, sep, rest = line.partition(":")
        if not sep or path not in names:
            continue
        try:
            numbers = tuple(int(w) for w in rest.split())
        except ValueError:
            continue
        if numbers:
            values[names[path]] = numbers
    return MappingProxyType(values)


TCP_BUFFERS = Fact("tcp_buffers", TCP_BUFFERS_COMMAND, parse_tcp_buffers, subshell=False)
