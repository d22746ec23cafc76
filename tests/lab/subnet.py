"""Pick a private subnet (a /24, or bigger for a big fleet) for a lab fleet that overlaps nothing on the machine."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

from tests.lab.requirements import program

# 10.213.0.0/16 is arbitrary; each fleet takes the first free /24 in it.
CANDIDATE_POOL = IPv4Network("10.213.0.0/16")
LOCK_PATH = Path("/run/fdl-lab.lock")


@contextlib.contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialise subnet choice across processes until the chosen subnet's route exists."""
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prefix_for(addresses: int) -> int:
    """The longest prefix whose subnet holds ADDRESSES host addresses (network and broadcast aside)."""
    prefix = 24
    while (1 << (32 - prefix)) - 2 < addresses:
        prefix -= 1
    return prefix


def choose_free_subnet(prefix: int = 24) -> IPv4Network:
    """The first subnet of that size in the pool that overlaps no route and no address on this machine."""
    in_use = networks_in_use()
    for candidate in CANDIDATE_POOL.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(net) for net in in_use):
            return candidate
    raise RuntimeError(f"no free /{prefix} left in {CANDIDATE_POOL}; run cleanup_stale()")


def networks_in_use() -> list[IPv4Network]:
    """Every IPv4 route destination (all tables, default routes aside) and every interface network."""
    routes = _ip_json(["-4", "route", "show", "table", "all"])
    nets = [
        ipaddress.ip_network(route["dst"], strict=False)
        for route in routes
        if route.get("dst") not in (None, "default")
    ]
    for link in _ip_json(["-4", "addr", "show"]):
        for addr in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return [net for net in nets if isinstance(net, IPv4Network)]


def _ip_json(args: list[str]) -> list[dict]:
    """`ip -j ARGS` parsed."""
    out = subprocess.run([program("ip"), "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")
