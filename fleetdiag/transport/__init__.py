"""Ways of reaching a host. Each implements ``Transport``: run(script, timeout), request_stop(), close()."""

from __future__ import annotations

import os

from fleetdiag.model import HostSpec
from fleetdiag.transport.base import CommandResult, Transport
from fleetdiag.transport.host_keys import HostKeyChecking
from fleetdiag.transport.local import LocalTransport
from fleetdiag.transport.ssh import SshOptions, SshTransport

__all__ = [
    "CommandResult",
    "HostKeyChecking",
    "LocalTransport",
    "SshOptions",
    "SshTransport",
    "Transport",
    "open_transport",
]


def open_transport(spec: HostSpec, ssh: SshOptions) -> Transport:
    """The transport for a host, connected (SSH errors raise UnreachableError)."""
    if spec.is_local:
        # Already root locally: sudo would only add a way to fail.
        return LocalTransport(become=spec.become and spec.become_user == "root" and os.geteuid() != 0)
    transport = SshTransport(spec, ssh)
    try:
        transport.open()
    except BaseException:
        transport.close()
        raise
    return transport

