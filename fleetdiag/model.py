"""The values that flow through fleetdiag: what to contact, what was found, what came back.

Plain frozen dataclasses: pydantic guards the trust boundaries (inventory, probe
output); inside, these are the only shapes passed around.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Mapping

LOCAL_CONNECTION = "local"


def frozen_map(items: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only mapping, so frozen dataclasses stay frozen all the way down."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class HostSpec:
    """One host to diagnose, as the inventory (or the CLI) describes it."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    private_key_file: str | None = None
    become: bool = False
    become_user: str = "root"
    connection: str = "ssh"  # "ssh" or "local" (Ansible's ansible_connection)
    ssh_common_args: str | None = None
    host_key_checking: str | None = None  # "strict", "accept-new" or "off" (ansible_host_key_checking)
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=frozen_map)

    @property
    def is_local(self) -> bool:
        return self.connection == LOCAL_CONNECTION


@dataclass(frozen=True)
class Window:
    """What every host watches: for how long, and (optionally) which traffic."""

    duration_s: int
    port: int | None = None  # only flows with this local or remote port (--port)
    follow: bool = False  # also report drop totals every second while watching (--follow)


class Status(str, enum.Enum):
    """How collection on one host ended."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


class Fidelity(str, enum.Enum):
    """How a host's drops were observed: never pass a sample off as a traced event."""

    TRACED = "traced"  # a probe counted every drop in the kernel
    SAMPLED = "sampled"  # TcpExt counters exact; flows from sampled per-socket drop counters (ss)
    COUNTERS = "counters"  # TcpExt counters only, no flow at all


@dataclass(frozen=True)
class Verdict:
    """Whether a tracer can run on a host, why (not), and the probe it would run there."""

    usable: bool
    reason: str
    probe: str | None = None


@dataclass(frozen=True)
class FlowDrop:
    """Drops of one reason on one flow, aggregated in the kernel over the window.

    Socket state fields are None where the probe could not see the socket (no
    socket at drop time, or a tier that cannot read it).
    """

    laddr: str
    lport: int
    raddr: str
    rport: int
    netns: int | None
    reason: str
    drops: int
    rcvbuf: int | None = None
    sndbuf: int | None = None
    backlog_len_max: int | None = None
    rmem_alloc_max: int | None = None
    queue_max: int | None = None  # max of backlog.len + rmem_alloc at one drop
    userlocks: int | None = None
    # The receive window at the last backlog drop (tcp_sock), and the dropped skbs' sizes
    # (max and sum over the flow's drops): what the window let the sender put in flight and
    # what that cost in memory. scaling_ratio exists from 6.6 (None before).
    rcv_wnd: int | None = None
    window_clamp: int | None = None
    rcv_ssthresh: int | None = None
    scaling_ratio: int | None = None
    skb_len_max: int | None = None
    skb_len_sum: int | None = None
    skb_truesize_max: int | None = None
    skb_truesize_sum: int | None = None
    timeline: tuple[int, ...] | None = None  # drops per interval of the host's timeline (top flows only)


@dataclass(frozen=True)
class ProbeReport:
    """What a probe observed: exact totals per reason plus the per-flow breakdown.

    ``drops`` counts every traced drop, including those whose flow did not fit in
    the capped flow map (``flows_truncated``) or that had no flow at all.
    """

    drops: Mapping[str, int] = field(default_factory=frozen_map)
    flows: tuple[FlowDrop, ...] = ()
    flows_truncated: bool = False
    notes: tuple[str, ...] = ()  # what this probe could not see, in a sentence each
    # Per interval since the window's start, as the probe counted them in the kernel (sparse);
    # ``timed``: the probe counts per interval at all (a probe without it has no timeline).
    timed: bool = False
    intervals: Mapping[str, Mapping[int, int]] = field(default_factory=frozen_map)  # reason -> {index: drops}
    flow_intervals: Mapping[tuple[Any, ...], Mapping[int, int]] = field(default_factory=frozen_map)
    counter_samples: tuple[tuple[int, Mapping[str, int]], ...] = ()  # (interval index, TcpExt at its end)
    # Drops without a socket (no per-flow series: a storm of new flows would fill that map), per
    # (reason, local port) instead: one key per second under a SYN storm.
    port_intervals: Mapping[tuple[str, int], Mapping[int, int]] = field(default_factory=frozen_map)


@dataclass(frozen=True)
class Timeline:
    """A host's drops over its window, one count per interval (interval 0 starts at ``start``).

    ``drops`` sums to the host's drops per reason, ``counters`` to its TcpExt deltas (only
    where the probe sampled them: the counters tier).
    """

    interval_s: int
    start: float | None  # epoch seconds on the host (its window_start)
    drops: Mapping[str, tuple[int, ...]] = field(default_factory=frozen_map)
    counters: Mapping[str, tuple[int, ...]] = field(default_factory=frozen_map)
    intervals: int = 0  # how many the window holds (a quiet host has no series to tell)
    # Drops without a socket, per reason and local port: {REASON: {port: series}} (bpftrace tiers).
    ports: Mapping[str, Mapping[int, tuple[int, ...]]] = field(default_factory=frozen_map)

    @property
    def length(self) -> int:
        """How many intervals the window holds."""
        return max((len(v) for v in (*self.drops.values(), *self.counters.values())), default=self.intervals)


@dataclass(frozen=True)
class ProgramStats:
    """One BPF program of a probe, as the kernel counted it (fdinfo), read while it was loaded."""

    prog_id: int
    prog_type: int | None
    recursion_misses: int
    run_cnt: int | None = None  # None: kernel.bpf_stats_enabled was 0 (the kernel did not count runs)
    run_time_ns: int | None = None


@dataclass(frozen=True)
class ProbeStats:
    """A BPF probe's programs at the window's end: how often the kernel skipped them.

    ``recursion_misses`` is the kernel's own count of runs it skipped (another BPF program was
    already running on that CPU); a skipped run's drop reason is unknown, so it bounds the
    shortfall of every reason. ``events`` is what the programs recorded (TCP drops in the
    host's namespace); ``run_cnt`` is every run, any namespace, when the kernel counted runs.
    """

    programs: tuple[ProgramStats, ...] = ()
    events: int = 0
    bpf_stats_enabled: bool = False

    @property
    def recursion_misses(self) -> int:
        return sum(p.recursion_misses for p in self.programs)

    @property
    def run_cnt(self) -> int | None:
        runs = [p.run_cnt for p in self.programs if p.run_cnt is not None]
        return sum(runs) if runs else None

    @property
    def run_time_ns(self) -> int | None:
        times = [p.run_time_ns for p in self.programs if p.run_time_ns is not None]
        return sum(times) if times else None


@dataclass(frozen=True)
class HostResult:
    """The outcome for one host: always a value, whether it worked or not."""

    name: str
    address: str
    status: Status
    error: str | None = None
    kernel: str | None = None
    probe: str | None = None
    drops: Mapping[str, int] = field(default_factory=frozen_map)
    counters: Mapping[str, int] = field(default_factory=frozen_map)
    flows: tuple[FlowDrop, ...] = ()
    netns: int | None = None
    window_start: float | None = None  # epoch seconds on the host, when the probe was attached
    window_end: float | None = None
    notes: tuple[str, ...] = ()
    fidelity: Fidelity | None = None
    tracers: Mapping[str, Verdict] = field(default_factory=frozen_map)  # every tracer's verdict
    module: ModuleOrigin | None = None  # systemtap only: where its module came from
    probe_stats: ProbeStats | None = None  # BPF tiers: the programs' recursion misses, read at the window's end
    flows_truncated: bool = False  # the flow map was full (or drops had no flow): flows[] holds what fit
    # The host's receive-buffer sysctls (facts/buffers.py): tcp_rmem (3 values), rmem_max,
    # tcp_adv_win_scale, tcp_moderate_rcvbuf; what the backlog window verdict computes with.
    tcp_buffers: Mapping[str, tuple[int, ...]] = field(default_factory=frozen_map)
    timeline: Timeline | None = None  # drops and counters per interval of the window
    groups: tuple[str, ...] = ()  # the inventory's groups of this host (the report sorts by them)
    # Armed windows (issue 13): host clock minus the controller's, measured at arm time within
    # +-clock_bound_s (half the round trip); window_start/window_end are then corrected by it.
    clock_offset_s: float | None = None
    clock_bound_s: float | None = None


@dataclass(frozen=True)
class StapModule:
    """A systemtap module built once for a kernel release, to ship to every host running it."""

    gzip_data: bytes  # the .ko, gzipped
    kernel: str  # the release it was built for (`uname -r`)
    tier: str  # which probe it holds, e.g. tcp_add_backlog_statement
    built_on: str  # the host that compiled it
    build_seconds: float
    built_at: str = ""  # ISO time, for modules read from the controller's cache
    build_id: str | None = None  # GNU build id of the kernel build it was compiled against, if known

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.gzip_data).hexdigest()

    def encoded(self) -> str:
        """The gzipped module in base64, wrapped at 76 columns like base64(1)."""
        text = base64.b64encode(self.gzip_data).decode()
        return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


@dataclass(frozen=True)
class ModuleOrigin:
    """Where a host's systemtap module came from: compiled in its own window, built for the
    release on a host of this run (itself or another), or the controller's cache."""

    how: str  # "compiled here", "built here", "shipped", "cache", "built on controller"
    built_on: str | None = None
    sha256: str | None = None
    build_seconds: float | None = None

    def sentence(self) -> str:
        """E.g. "module built on g01 in 212 s and shipped"."""
        if self.how == "compiled here":
            return "module compiled on this host in its window"
        took = f" in {self.build_seconds:.0f} s" if self.build_seconds else ""
        if self.how == "built here":
            return f"module built on this host{took} for every host of its kernel release"
        if self.how == "built on controller":
            return f"module built on the controller{took} from the kernel tree given with --stap-kernel"
        if self.how == "shipped":
            return f"module built on {self.built_on}{took} and shipped (compiled once per kernel release)"
        return f"module from the controller's cache (built on {self.built_on})"


@dataclass(frozen=True)
class HostCheck:
    """What ``fleetdiag check`` learnt about one host; no probe ran."""

    name: str
    address: str
    status: Status
    error: str | None = None
    kernel: str | None = None
    os_name: str | None = None
    tracers: Mapping[str, Verdict] = field(default_factory=frozen_map)
    tracer: str | None = None  # the tracer collect would use
    probe: str | None = None  # and the probe it would run


@dataclass(frozen=True)
class Sweep:
    """One collect run over a set of hosts."""

    started_at: datetime
    duration_s: float
    hosts: tuple[HostResult, ...]
    interrupted: str | None = None  # the signal that cut the run short ("SIGINT"), else None
    port: int | None = None  # the --port every host traced, if any (counters stay namespace-wide)
    mode: str | None = None  # "armed" (windows run on the hosts alone) or "held" (a session per window)
    window_instant: float | None = None  # armed: the fleet's start instant, epoch s on the controller
    phases: Mapping[str, float] = field(default_factory=frozen_map)  # armed: launch_to_instant_s, ...


@dataclass(frozen=True)
class HostFacts:
    """What detection found on a host; tracers and the collector only read this."""

    kernel: str | None = None
    os_name: str | None = None
    uid: int | None = None
    netns: int | None = None
    btf: bool = False
    bpftrace_version: str | None = None
    kfree_skb_fields: tuple[str, ...] = ()
    drop_reasons: Mapping[int, str] = field(default_factory=frozen_map)
    # False when detection stopped at the first fit (collect --tracer auto): the facts only
    # bcc and systemtap need were not gathered, because bpftrace's best tier already fits.
    examined: str = "all"  # "all"; "first-fit" (bpftrace's best tier fit, deep facts skipped); "counters"
    # Added for the probe library (issue 3); every field defaults to "not found".
    os_id: str | None = None  # os-release ID: rhel, centos, debian, ubuntu...
    sudo: str | None = None  # "root", "passwordless" (sudo -n works) or "password"
    tracefs: str | None = None  # where it is mounted, "unmounted" (fleetdiag mounts it) or "absent"
    modules: str | None = None  # "yes", "disabled" (modules_disabled=1) or "unsupported"
    lockdown: str | None = None  # "none", "integrity" or "confidentiality"
    secure_boot: bool | None = None
    kernel_symbols: frozenset[str] = frozenset()  # the few /proc/kallsyms names probes care about
    tcp_add_backlog_params: tuple[str, ...] | None = None  # from BTF, e.g. ("sk", "skb", "reason")
    fentry_tcp_add_backlog: bool | None = None  # listed in available_filter_functions (None: unreadable)
    kernel_headers: str | None = None  # "build" (/lib/modules/R/build) or "kheaders"
    debuginfo: str | None = None  # path of the vmlinux with DWARF for this release
    kernel_source: str | None = None  # source tree installed by kernel-debuginfo-common
    backlogdrop_lines: Mapping[str, tuple[int, ...]] = field(default_factory=frozen_map)  # function -> lines
    stap_version: str | None = None
    staprun: bool = False
    bcc_python: str | None = None  # interpreter that imports bcc
    bcc_version: str | None = None
    tools: frozenset[str] = frozenset()  # ss, bpftool, timeout...
    tcp_buffers: Mapping[str, tuple[int, ...]] = field(default_factory=frozen_map)  # facts/buffers.py
    kernel_build_id: str | None = None  # GNU build id of the running kernel (/sys/kernel/notes), hex

    @property
    def examined_all(self) -> bool:
        """Every fact was gathered (``fleetdiag check``, or first-fit fell through)."""
        return self.examined == "all"

    @property
    def kprobes(self) -> bool:
        """The kernel was built with kprobes (``register_kprobe`` is in kallsyms)."""
        return "register_kprobe" in self.kernel_symbols

    def reason_number(self, name: str) -> int | None:
        """The host's number for a drop reason name (numbers differ between kernels)."""
        for number, reason in self.drop_reasons.items():
            if reason == name:
                return number
        return None
