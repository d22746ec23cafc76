"""The command line: the only place that writes to the terminal or decides an exit code."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field, replace
from typing import TextIO

import click

from fleetdiag import __version__, tracers
from fleetdiag.errors import FleetdiagError, InventoryError, UsageError
from fleetdiag.exit_status import ExitStatus, sweep_exit_status
from fleetdiag.inventory import load_inventory, local_inventory, select_hosts
from fleetdiag.model import HostResult, HostSpec
from fleetdiag.render import RENDERERS
from fleetdiag.sweep import SweepOptions, run_sweep
from fleetdiag.transport import HostKeyChecking, SshOptions
from fleetdiag.transport.ssh import DEFAULT_KNOWN_HOSTS

log = logging.getLogger("fleetdiag")


@dataclass
class Environment:
    """Streams and terminal facts, injected so tests and cron runs see the same code paths."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def interactive(self) -> bool:
        """Progress is for people: a TTY on stderr and no NO_COLOR."""
        return self.stderr.isatty() and "NO_COLOR" not in os.environ


def _progress(env: Environment, total: int):
    done = 0

    def report(host: str, stage: str, result: HostResult | None) -> None:
        nonlocal done
        if stage != "done" or result is None:
            log.debug("%s: %s", host, stage)
            return
        done += 1
        detail = result.error or f"{sum(result.drops.values())} drops traced"
        line = f"[{done}/{total}] {host}: {result.status.value} ({detail})"
        if env.interactive:
            click.echo(line, file=env.stderr)
        else:
            log.info(line)

    return report


def _hosts(env: Environment, inventory: str | None, limit: str | None, become: bool) -> list[HostSpec]:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetdiag")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Find where TCP packets vanish across a fleet of Linux servers."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="fleetdiag: %(message)s")
    if verbose < 2:
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


@main.command()
@click.option("-i", "--inventory", type=click.Path(dir_okay=False), help="Ansible YAML inventory. Without it: this machine, no SSH.")
@click.option("--duration", type=click.IntRange(1, 86400), default=60, show_default=True, help="Window length in seconds, the same on every host.")
@click.option("-f", "--forks", type=click.IntRange(1, 2000), default=50, show_default=True, help="Hosts contacted at once.")
@click.option("-o", "--output", type=click.Choice(sorted(RENDERERS)), default="table", show_default=True, help="table for people, json for scripts.")
@click.option("--tracer", type=click.Choice(tracers.CHOICES), default="auto", show_default=True, help="Force one probe backend.")
@click.option("-l", "--limit", help="Ansible --limit pattern: hosts or groups, globs, !exclude, &intersect.")
@click.option("-u", "--user", help="Login user where the inventory sets no ansible_user.")
@click.option("--private-key", type=click.Path(dir_okay=False), help="SSH key where the inventory sets none.")
@click.option("-b", "--become", is_flag=True, help="Use sudo -n on every host (root is needed to trace).")
@click.option("--connect-timeout", type=click.FloatRange(0.5, 600), default=10.0, show_default=True, help="Seconds to connect and authenticate.")
@click.option("--host-key-checking", type=click.Choice([m.value for m in HostKeyChecking]), default="strict", show_default=True, help="strict: known_hosts only; accept-new: learn unknown keys; off: accept any (lab only).")
@click.option("--known-hosts", multiple=True, type=click.Path(dir_okay=False), help=f"known_hosts file(s) [default: {', '.join(DEFAULT_KNOWN_HOSTS)}].")
def collect(
    inventory: str | None,
    duration: int,
    forks: int,
    output: str,
    tracer: str,
    limit: str | None,
    user: str | None,
    private_key: str | None,
    become: bool,
    connect_timeout: float,
    host_key_checking: str,
    known_hosts: tuple[str, ...],
) -> None:
    """Watch every host for DURATION seconds and report TCP drops per host and per flow.

    \b
    Exit codes: 0 every host collected; 2 usage or inventory error (no host contacted);
    3 some hosts failed or were unreachable; 4 no host collected.
    """
    env = Environment()
    try:
        hosts = _hosts(env, inventory, limit, become)
    except FleetdiagError as exc:
        _exit_usage(env, exc)
    options = SweepOptions(
        duration_s=duration,
        forks=forks,
        tracer=tracer,
        ssh=SshOptions(
            connect_timeout=connect_timeout,
            host_key_checking=HostKeyChecking(host_key_checking),
            known_hosts=known_hosts or DEFAULT_KNOWN_HOSTS,
            default_user=user,
            default_private_key=private_key,
        ),
    )
    if env.interactive:
        click.echo(f"fleetdiag: watching {len(hosts)} host(s) for {duration} s", file=env.stderr)
    sweep = run_sweep(hosts, options, progress=_progress(env, len(hosts)))
    env.stdout.write(RENDERERS[output](sweep))
    env.stdout.flush()
    sys.exit(int(sweep_exit_status(sweep)))


def _exit_usage(env: Environment, exc: FleetdiagError) -> None:
    lines = exc.problems if isinstance(exc, InventoryError) else [exc.message]
    for line in lines:
        click.echo(f"fleetdiag: {line}", file=env.stderr)
    if exc.hint:
        click.echo(f"fleetdiag: hint: {exc.hint}", file=env.stderr)
    sys.exit(int(ExitStatus.USAGE))
