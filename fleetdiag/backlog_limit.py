"""The kernel's backlog limit for a socket, by kernel version (``tcp_add_backlog``/``tcp_v4_rcv``).

A segment is dropped with SOCKET_BACKLOG when ``sk_backlog.len + sk_rmem_alloc``
exceeds this limit while the application owns the socket.
"""

from __future__ import annotations

import re

_UINT_MAX = 2**32 - 1


def kernel_version(release: str | None) -> tuple[int, int] | None:
    """(major, minor) of a release string.

    >>> kernel_version("3.10.0-1160.el7.x86_64")
    (3, 10)
    """
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def backlog_limit(release: str | None, rcvbuf: int | None, sndbuf: int | None) -> int | None:
    """The limit ``sk_add_backlog`` was given, from the version's formula (None if unknown).

    3.10-4.8: rcvbuf + sndbuf; 4.9-6.0: + 64K; 6.1-6.9: rcvbuf + sndbuf/2 + 64K;
    6.10+: 2*rcvbuf + sndbuf/2 + 64K, capped at UINT_MAX. Stable kernels that
    backported the 6.10 change use the newer formula under an older version number.

    >>> backlog_limit("6.18.44", 8192, 46080)
    104960
    """
    version = kernel_version(release)
    if version is None or rcvbuf is None or sndbuf is None:
        return None
    if version >= (6, 10):
        return min(2 * rcvbuf + sndbuf // 2 + 64 * 1024, _UINT_MAX)
    if version >= (6, 1):
        return rcvbuf + sndbuf // 2 + 64 * 1024
    if version >= (4, 9):
        return rcvbuf + sndbuf + 64 * 1024
    return rcvbuf + sndbuf


def backlog_limit_formula(release: str | None) -> str | None:
    """The formula ``backlog_limit`` applies for a release, as people write it.

    >>> backlog_limit_formula("3.10.0-1160.el7.x86_64")
    'rcvbuf + sndbuf'
    """
    version = kernel_version(release)
    if version is None:
        return None
    if version >= (6, 10):
        return "2*rcvbuf + sndbuf/2 + 64K"
    if version >= (6, 1):
        return "rcvbuf + sndbuf/2 + 64K"
    if version >= (4, 9):
        return "rcvbuf + sndbuf + 64K"
    return "rcvbuf + sndbuf"
