"""Options shared by every command that contacts hosts, and turning them into hosts and SSH settings."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Callable

import click

from fleetdiag.cli.environment import Environment
from fleetdiag.errors import FleetdiagError, InventoryError, UsageError
from fleetdiag.exit_status import ExitStatus
from fleetdiag.inventory import load_inventory, local_inventory, select_hosts
from fleetdiag.model import HostSpec
from fleetdiag.transport import HostKeyChecking, SshOptions
from fleetdiag.transport.ssh import DEFAULT_KNOWN_HOSTS

_HOST_OPTIONS = [
    click.option("-i", "--inventory", type=click.Path(dir_okay=False), help="Ansible YAML inventory. Without it: this machine, no SSH."),
    click.option("-l", "--limit", help="Ansible --limit pattern: hosts or groups, globs, !exclude, &intersect."),
    click.option("-f", "--forks", type=click.IntRange(1, 2000), default=50, show_default=True, help="Hosts contacted at once."),
    click.option("-u", "--user", help="Login user where the inventory sets no ansible_user."),
    click.option("--private-key", type=click.Path(dir_okay=False), help="SSH key where the inventory sets none."),
    click.option("-b", "--become", is_flag=True, help="Use sudo -n on every host (root is needed to trace)."),
    click.option("--connect-timeout", type=click.FloatRange(0.5, 600), default=10.0, show_default=True, help="Seconds to connect and authenticate."),
    click.option(
        "--host-key-checking",
        type=click.Choice([m.value for m in HostKeyChecking]),
        default="strict",
        show_default=True,
        help="strict: known_hosts only; accept-new: learn unknown keys; off: accept any (lab only).",
    ),
    click.option("--known-hosts", multiple=True, type=click.Path(dir_okay=False), help=f"known_hosts file(s) [default: {', '.join(DEFAULT_KNOWN_HOSTS)}]."),
]


def host_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the inventory and connection options (Ansible's names where Ansible has one)."""
    for option in reversed(_HOST_OPTIONS):
        command = option(command)
    return command


def select_inventory_hosts(env: Environment, inventory: str | None, limit: str | None, become: bool) -> list[HostSpec]:
    """The hosts to contact: the inventory's (after --limit), or this machine without one."""
    if inventory is None:
        if limit:
            raise UsageError("--limit needs an inventory", hint="add -i hosts.yaml")
        chosen = list(local_inventory().hosts)
    else:
        loaded = load_inventory(inventory)
        for warning in loaded.warnings:
            click.echo(f"fleetdiag: warning: {warning}", file=env.stderr)
        chosen = list(select_hosts(loaded, limit))
    return [replace(h, become=True) for h in chosen] if become else chosen


def ssh_options(
    user: str | None, private_key: str | None, connect_timeout: float, host_key_checking: str, known_hosts: tuple[str, ...]
) -> SshOptions:
    """SSH settings shared by every host of a run."""
    return SshOptions(
        connect_timeout=connect_timeout,
        host_key_checking=HostKeyChecking(host_key_checking),
        known_hosts=known_hosts or DEFAULT_KNOWN_HOSTS,
        default_user=user,
        default_private_key=private_key,
    )


def exit_usage(env: Environment, exc: FleetdiagError) -> None:
    """Report a usage or inventory error, one line per problem, and exit 2."""
    lines = exc.problems if isinstance(exc, InventoryError) else [exc.message]
    for line in lines:
        click.echo(f"fleetdiag: {line}", file=env.stderr)
    if exc.hint:
        click.echo(f"fleetdiag: hint: {exc.hint}", file=env.stderr)
    sys.exit(int(ExitStatus.USAGE))
