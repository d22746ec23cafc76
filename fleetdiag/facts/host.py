"""Facts about the host itself: kernel, distribution, privileges, network namespace."""

from __future__ import annotations

import re

from fleetdiag.facts.base import Fact


def _first_line(out: str) -> str | None:
    line = out.strip().splitlines()[0].strip() if out.strip() else ""
    return line or None


def parse_os_release(out: str) -> str | None:
    """PRETTY_NAME from /etc/os-release, unquoted.

    >>> parse_os_release('NAME="Debian"\\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\\n')
    'Debian GNU/Linux 12 (bookworm)'
    """
    for line in out.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


def parse_uid(out: str) -> int | None:
    """The effective uid printed by ``id -u``."""
    line = _first_line(out)
    return int(line) if line and line.isdigit() else None


def parse_netns(out: str) -> int | None:
    """The network namespace inode from ``readlink /proc/self/ns/net``.

    >>> parse_netns("net:[4026531840]\\n")
    4026531840
    """
    match = re.search(r"net:\[(\d+)\]", out)
    return int(match.group(1)) if match else None


KERNEL = Fact("kernel", "uname -r", _first_line)
OS_RELEASE = Fact("os_release", "cat /etc/os-release", parse_os_release)
UID = Fact("uid", "id -u", parse_uid)
NETNS = Fact("netns", "readlink /proc/self/ns/net", parse_netns)
