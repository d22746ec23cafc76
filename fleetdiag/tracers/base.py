"""What every probe backend provides: a verdict on a host, a plan to run, a parser of its output."""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping, Protocol

from fleetdiag.backlog_limit import kernel_version
from fleetdiag.model import (
    Fidelity,
    HostFacts,
    ProbeReport,
    Verdict,
    Window,
    frozen_map,
)

__all__ = [
    "ProbePlan", "Tracer", "Verdict", "bpf_access_problem", "fill_template", "write_file_command", "insert_blocks", "privilege_problem", "probe_text",
]  # fmt: skip

_PLACEHOLDER = re.compile(r"@@[A-Z_]+@@")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Seconds a probe may take to attach after it starts (bpftrace parses and loads in ~1-3 s).
DEFAULT_ATTACH_S = 10
# A tracer's own timer runs this much past the window: the host closes the window first, at its
# end, while the probe still watches (the counters, then a BPF probe's programs), and only then
# stops it (run_window.sh, close_window and stop_at_window_end).
STOP_GRACE_S = 2


@dataclass(frozen=True)
class ProbePlan:
    """Everything the host needs to watch one window.

    ``files`` are written into a private temp dir on the host; ``prepare`` (optional)
    runs there first and must finish within ``prepare_timeout_s`` (systemtap compiles
    its module there; a later version may ship a module built once per kernel release
    instead); ``command`` then runs, prints ``@@attached`` on stdout once it is
    watching, and ends by itself when the window is over.

    A TRACED plan runs a kernel tracer: its window opens when it prints ``@@attached``, and the
    host mounts tracefs for it if nobody has. The counters tier (SAMPLED, COUNTERS) reads what
    the kernel counts anyway, so its window opens when the TcpExt counters are read; its
    sampler starts then and keeps to the window's end, read from ``FLEETDIAG_WINDOW_START_CS``
    (the host's uptime in centiseconds when the window opened).
    """

    tracer: str
    probe: str
    files: Mapping[str, str] = field(default_factory=frozen_map)
    command: str = ""
    env: Mapping[str, str] = field(default_factory=frozen_map)
    prepare: str = ""
    prepare_timeout_s: int = 0
    attach_allowance_s: int = DEFAULT_ATTACH_S
    fidelity: Fidelity = Fidelity.TRACED
    # A BPF tracer: the host reads its programs' run counts and recursion misses at the window's
    # end, while they are still loaded, then stops it (its own timer is STOP_GRACE_S later).
    reads_stats: bool = False

    @property
    def traces(self) -> bool:
        """Whether the command is a kernel tracer (see the class docstring)."""
        return self.fidelity is Fidelity.TRACED


class Tracer(Protocol):
    """One probe backend (one module each: bpftrace, bcc, systemtap, counters)."""

    name: str

    def verdict(self, facts: HostFacts) -> Verdict: ...

    def plan(self, facts: HostFacts, window: Window) -> ProbePlan: ...

    def parse(self, output: str, facts: HostFacts) -> ProbeReport: ...


@functools.cache  # read once per run: every host's window script is built from the same files
def probe_text(filename: str) -> str:
    """The text of a probe script shipped in the package (``probes/`` in the source tree)."""
    return resources.files("fleetdiag.probes").joinpath(filename).read_text(encoding="utf-8")


def write_file_command(filename: str, content: str) -> str:
    """Shell that writes CONTENT (and a newline) to FILENAME in the current dir, expanding nothing.

    printf is a shell builtin: on a sweep every host runs this at once, and a `cat` per file
    would be one process more each (a heredoc needs one).
    """
    if not _SAFE_NAME.match(filename):
        raise ValueError(f"unsafe probe file name {filename!r}")
    return f"printf '%s\\n' {shlex.quote(content.rstrip())} > {filename}"


def insert_blocks(template: str, blocks: Mapping[str, str]) -> str:
    """Replace ``@@NAME@@`` with blocks of probe text chosen by the backend (never host output)."""
    text = template
    for name, block in blocks.items():
        text = text.replace(f"@@{name}@@", block.rstrip("\n"))
    return text


def fill_template(template: str, values: Mapping[str, int]) -> str:
    """Replace ``@@NAME@@`` placeholders with integers, refusing anything left unfilled."""
    text = template
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"probe placeholder {name} takes an integer, not {value!r}")
        text = text.replace(f"@@{name}@@", str(value))
    left = _PLACEHOLDER.findall(text)
    if left:
        raise ValueError(f"probe template has unfilled placeholders: {', '.join(sorted(set(left)))}")
    return text


def privilege_problem(facts: HostFacts) -> str | None:
    """Why a kernel tracer cannot run for lack of root, or None when it is root."""
    if facts.uid == 0:
        return None
    if facts.sudo == "passwordless":
        return "not root, but passwordless sudo works: add -b/--become or ansible_become"
    return "not root (log in as root, or set ansible_become with passwordless sudo)"


def bpf_access_problem(facts: HostFacts) -> str | None:
    """Why a BPF tracer (bpftrace, bcc) may not read kernel memory here, or None."""
    problem = privilege_problem(facts)
    if problem:
        return problem
    if facts.lockdown == "confidentiality":
        return "kernel lockdown=confidentiality forbids BPF reading kernel memory"
    return None


def at_least(facts: HostFacts, major: int, minor: int) -> bool:
    """The host's kernel is at least MAJOR.MINOR (False when unknown)."""
    version = kernel_version(facts.kernel)
    return version is not None and version >= (major, minor)


def kfree_skb_tier(facts: HostFacts) -> str | None:
    """``rx_sk`` (6.11+), ``reason`` with SOCKET_BACKLOG in the table (5.18-6.10), or None."""
    fields = facts.kfree_skb_fields
    if not {"reason", "skbaddr", "protocol"} <= set(fields) or facts.reason_number("SOCKET_BACKLOG") is None:
        return None
    return "rx_sk" if "rx_sk" in fields else "reason"


def kfree_skb_missing(facts: HostFacts) -> str:
    """Why the kfree_skb tiers do not fit, in words."""
    if not facts.kfree_skb_fields:
        if facts.tracefs in ("absent", None) and facts.kernel_symbols:
            return "no tracefs to read tracepoint skb:kfree_skb from"
        return "no tracepoint skb:kfree_skb"
    if "reason" not in facts.kfree_skb_fields:
        return f"skb:kfree_skb has no drop reason on {facts.kernel} (reasons came in 5.17)"
    return "the host's drop-reason table has no SOCKET_BACKLOG"
