"""Facts about the tracers and tools installed on the host: systemtap, bcc, ss."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetdiag.facts.base import Fact

# Interpreters that may hold bcc's bindings: Debian/Ubuntu python3, RHEL 8 platform-python,
# RHEL 7's python2 (python-bcc). Only these exact names are ever run by the bcc tier.
BCC_PYTHONS = ("/usr/bin/python3", "python3", "/usr/libexec/platform-python", "/usr/bin/python2", "python2", "python")
OTHER_TOOLS = ("ss", "bpftool", "timeout", "mokutil", "gcc", "make")

# stap -V writes to stderr; staprun alone is enough to run a module compiled elsewhere.
# stap creates its cache dir ($SYSTEMTAP_DIR, else ~/.systemtap) even for -V: keep it in a
# temp dir that goes away, so detection leaves nothing behind.
SYSTEMTAP_COMMAND = """
if command -v stap >/dev/null; then
  d=$(mktemp -d) && SYSTEMTAP_DIR="$d" stap -V 2>&1 | head -n 1
  rm -rf "$d"
fi
command -v staprun >/dev/null && echo staprun
exit 0
"""

# Starting interpreters costs ~30 ms each: only when some python has a bcc package at all.
BCC_COMMAND = (
    """ls -d /usr/lib*/python*/*-packages/bcc /usr/local/lib*/python*/*-packages/bcc | grep -q . || exit 0
for py in """
    + " ".join(BCC_PYTHONS)
    + """; do
  v=$("$py" -c 'import bcc; print(getattr(bcc, "__version__", "unknown"))' </dev/null) && { echo "$py $v"; exit 0; }
done
exit 0
"""
)

TOOLS_COMMAND = (
    "for c in "
    + " ".join(OTHER_TOOLS)
    + """; do command -v "$c" >/dev/null && echo "$c"; done
"""
)


@dataclass(frozen=True)
class Systemtap:
    """The stap translator's version (None: absent) and whether staprun is there."""

    version: str | None
    staprun: bool


@dataclass(frozen=True)
class Bcc:
    """The interpreter that imports bcc and bcc's version."""

    python: str
    version: str


def parse_systemtap(out: str) -> Systemtap:
    """``Systemtap translator/driver (version 4.8/0.188, ...)`` and ``staprun`` lines.

    >>> parse_systemtap("Systemtap translator/driver (version 4.0/0.176, rpm 4.0-13.el7)\\nstaprun\\n")
    Systemtap(version='4.0', staprun=True)
    """
    match = re.search(r"\(version (\d+\.\d+(?:\.\d+)?)", out)
    return Systemtap(match.group(1) if match else None, "staprun" in out.split())


def parse_bcc(out: str) -> Bcc | None:
    """``/usr/bin/python3 0.26.0`` -> Bcc; only interpreters from BCC_PYTHONS are accepted."""
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in BCC_PYTHONS:
            return Bcc(python=words[0], version=words[1])
    return None


def parse_tools(out: str) -> frozenset[str]:
    """The names of the tools found on PATH."""
    return frozenset(line.strip() for line in out.splitlines() if line.strip() in OTHER_TOOLS)


SYSTEMTAP = Fact("systemtap", SYSTEMTAP_COMMAND, parse_systemtap)
BCC = Fact("bcc", BCC_COMMAND, parse_bcc)
TOOLS = Fact("tools", TOOLS_COMMAND, parse_tools, subshell=False)
