"""The values that flow through fleetdiag: what to contact, what was found, what came back.

Plain frozen dataclasses: pydantic guards the trust boundaries (inventory, probe
output); inside, these are the only shapes passed around.
"""

from __future__ import annotations

import enum
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


class Status(str, enum.Enum):
    """How collection on one host ended."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


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


@dataclass(frozen=True)
class ProbeReport:
    """What a probe observed: exact totals per reason plus the per-flow breakdown.

    ``drops`` counts every traced drop, including those whose flow did not fit in
    the capped flow map (``flows_truncated``) or that had no flow at all.
    """

    drops: Mapping[str, int] = field(default_factory=frozen_map)
    flows: tuple[FlowDrop, ...] = ()
    flows_truncated: bool = False


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


@dataclass(frozen=True)
class Sweep:
    """One collect run over a set of hosts."""

    started_at: datetime
    duration_s: float
    hosts: tuple[HostResult, ...]


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

    def reason_number(self, name: str) -> int | None:
        """The host's number for a drop reason name (numbers differ between kernels)."""
        for number, reason in self.drop_reasons.items():
            if reason == name:
                return number
        return None
