"""``fleetdiag collect``: watch every host for one window and report drops per host and flow."""

from __future__ import annotations

import logging
import sys

import click

from fleetdiag import tracers
from fleetdiag.cli.environment import Environment
from fleetdiag.cli.options import exit_usage, host_options, select_inventory_hosts, ssh_options
from fleetdiag.errors import FleetdiagError
from fleetdiag.exit_status import sweep_exit_status
from fleetdiag.model import HostResult, Window
from fleetdiag.render import RENDERERS
from fleetdiag.sweep import ProgressCallback, SweepOptions, run_sweep

log = logging.getLogger("fleetdiag")


def progress_reporter(env: Environment, total: int) -> ProgressCallback:
    """One line per finished host: on stderr for people, in the log otherwise."""
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


@click.command()
@host_options
@click.option("--duration", type=click.IntRange(1, 86400), default=60, show_default=True, help="Window length in seconds, the same on every host.")
@click.option("-o", "--output", type=click.Choice(sorted(RENDERERS)), default="table", show_default=True, help="table for people, json for scripts.")
@click.option("--tracer", type=click.Choice(tracers.CHOICES), default="auto", show_default=True, help="Force one probe backend.")
def collect(
    inventory: str | None,
    limit: str | None,
    forks: int,
    user: str | None,
    private_key: str | None,
    become: bool,
    connect_timeout: float,
    host_key_checking: str,
    known_hosts: tuple[str, ...],
    duration: int,
    output: str,
    tracer: str,
) -> None:
    """Watch every host for DURATION seconds and report TCP drops per host and per flow.

    \b
    Exit codes: 0 every host collected; 2 usage or inventory error (no host contacted);
    3 some hosts failed or were unreachable; 4 no host collected.
    """
    env = Environment()
    try:
        hosts = select_inventory_hosts(env, inventory, limit, become)
    except FleetdiagError as exc:
        exit_usage(env, exc)
    options = SweepOptions(
        window=Window(duration_s=duration),
        forks=forks,
        tracer=tracer,
        ssh=ssh_options(user, private_key, connect_timeout, host_key_checking, known_hosts),
    )
    if env.interactive:
        click.echo(f"fleetdiag: watching {len(hosts)} host(s) for {duration} s", file=env.stderr)
    sweep = run_sweep(hosts, options, progress=progress_reporter(env, len(hosts)))
    env.stdout.write(RENDERERS[output](sweep))
    env.stdout.flush()
    sys.exit(int(sweep_exit_status(sweep)))
