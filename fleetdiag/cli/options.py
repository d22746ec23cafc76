"""Options shared by every command that contacts hosts, and turning them into hosts and SSH settings."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import click

from fleetdiag.cli.environment import Environment
from fleetdiag.errors import FleetdiagError, InventoryError, UsageError
from fleetdiag.exit_status import ExitStatus
from fleetdiag.inventory import load_inventory, local_inventory, select_hosts
from fleetdiag.inventory.names import login_problem
from fleetdiag.inventory.schema import ssh_args_problem
from fleetdiag.inventory.secret_values import SecretText
from fleetdiag.model import HostSpec
from fleetdiag.transport import HostKeyChecking, SshOptions
from fleetdiag.transport.ssh import DEFAULT_KNOWN_HOSTS

# Where -K and the environment put the become password; never logged, never saved.
BECOME_PASSWORD_ENV = "FLEETDIAG_BECOME_PASSWORD"


def _check_user(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    problem = login_problem(value) if value is not None else None
    if problem:
        raise click.BadParameter(problem)
    return value


def _check_ssh_args(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    problem = ssh_args_problem(value) if value is not None else None
    if problem:
        raise click.BadParameter(problem)
    return value


_HOST_OPTIONS = [
    click.option("-i", "--inventory", type=click.Path(dir_okay=False), help="Ansible inventory, YAML or INI (group_vars/ and host_vars/ beside it are read). Without it: this machine, no SSH."),
    click.option("-l", "--limit", help="Ansible --limit pattern: hosts or groups, globs, ~regex, !exclude, &intersect, group[0:2], @file."),
    click.option("-f", "--forks", type=click.IntRange(1, 2000), default=50, show_default=True, help="SSH sessions open at once. Past this many hosts the windows are armed on the hosts (see --mode): every host still watches the same window."),
    click.option("-u", "--user", callback=_check_user, help="Login user where the inventory sets no ansible_user."),
    click.option("--private-key", type=click.Path(dir_okay=False), help="SSH key where the inventory sets none."),
    click.option("-b", "--become", is_flag=True, help="Use sudo on every host (root is needed to trace)."),
    click.option(
        "-K", "--ask-become-pass", is_flag=True,
        help=f"Prompt for the sudo password (or set {BECOME_PASSWORD_ENV}); without either, sudo -n.",
    ),
    click.option("--connect-timeout", type=click.FloatRange(0.5, 600), default=10.0, show_default=True, help="Seconds to connect and authenticate."),
    click.option(
        "--host-key-checking",
        type=click.Choice([m.value for m in HostKeyChecking]),
        default=None,
        help="strict: known_hosts only; accept-new: learn unknown keys; off: accept any (lab only). "
        "[default: ansible_host_key_checking, else strict]",
    ),
    click.option("--known-hosts", multiple=True, type=click.Path(dir_okay=False), help=f"known_hosts file(s) [default: {', '.join(DEFAULT_KNOWN_HOSTS)}]."),
    click.option(
        "--ssh-common-args", callback=_check_ssh_args,
        help="Like ansible_ssh_common_args, for hosts whose inventory sets none (e.g. '-J ops@bastion').",
    ),
]  # fmt: skip


@dataclass(frozen=True)
class HostArgs:
    """The inventory and connection options of one command line, as one value."""

    inventory: str | None
    limit: str | None
    forks: int
    user: str | None
    private_key: str | None
    become: bool
    ask_become_pass: bool
    connect_timeout: float
    host_key_checking: str | None
    known_hosts: tuple[str, ...]
    ssh_common_args: str | None

    def select(self, env: Environment) -> list[HostSpec]:
        """The hosts to contact: the inventory's (after --limit), or this machine without one."""
        return select_inventory_hosts(env, self.inventory, self.limit, self.become)

    def ssh(self) -> SshOptions:
        """SSH settings shared by every host of a run (asks for the become password if -K was given)."""
        return SshOptions(
            connect_timeout=self.connect_timeout,
            host_key_checking=HostKeyChecking(self.host_key_checking) if self.host_key_checking else None,
            known_hosts=self.known_hosts or DEFAULT_KNOWN_HOSTS,
            default_user=self.user,
            default_private_key=self.private_key,
            become_password=_become_password(self.ask_become_pass),
            default_ssh_common_args=self.ssh_common_args,
        )


_HOST_ARG_NAMES = tuple(HostArgs.__dataclass_fields__)


def host_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the inventory and connection options (Ansible's names); the command gets them as ``hosts: HostArgs``."""

    @functools.wraps(command)
    def with_host_args(**kwargs: Any) -> Any:
        args = HostArgs(**{name: kwargs.pop(name) for name in _HOST_ARG_NAMES})
        return command(hosts=args, **kwargs)

    for option in reversed(_HOST_OPTIONS):
        with_host_args = option(with_host_args)
    return with_host_args


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


def _become_password(ask: bool) -> str | None:
    """From -K's prompt (on the terminal, not echoed), else the environment, else None (sudo -n)."""
    if ask:
        return SecretText(click.prompt("BECOME password", hide_input=True, err=True, default="", show_default=False))
    from_env = os.environ.get(BECOME_PASSWORD_ENV)
    return SecretText(from_env) if from_env else None


def exit_usage(env: Environment, exc: FleetdiagError) -> None:
    """Report a usage or inventory error, one line per problem, and exit 2."""
    lines = exc.problems if isinstance(exc, InventoryError) else [exc.message]
    for line in lines:
        click.echo(f"fleetdiag: {line}", file=env.stderr)
    if exc.hint:
        click.echo(f"fleetdiag: hint: {exc.hint}", file=env.stderr)
    sys.exit(int(ExitStatus.USAGE))
