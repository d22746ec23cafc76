"""``fleetdiag check``: preflight for runbooks. Detect on every host, run no probe, say what collect would do."""

from __future__ import annotations

import json
import sys
from typing import Sequence

import click

from fleetdiag import tracers
from fleetdiag.cli.environment import Environment
from fleetdiag.cli.options import HostArgs, exit_usage, host_options
from fleetdiag.document import check_document
from fleetdiag.errors import FleetdiagError
from fleetdiag.exit_status import check_exit_status
from fleetdiag.model import HostCheck, Window
from fleetdiag.sweep import SweepOptions, run_checks

EXIT_CODES_HELP = """\b
Exit codes:
  0  every host reachable, with a tracer collect can use
  2  usage or inventory error; no host contacted
  3  some hosts unreachable, or without a usable (or the forced) tracer
  4  no host ready"""


def check_table(checks: Sequence[HostCheck]) -> str:
    """One block per host: its kernel and chosen probe, then each tracer's verdict and why."""
    from tabulate import tabulate  # when a table is drawn: `collect -o json` starts without it

    rows = []
    for c in checks:
        rows.append([c.name, c.kernel or "-", c.status.value, c.probe or "-", c.error or ""])
        for name, verdict in c.tracers.items():
            mark = "chosen" if name == c.tracer else ("usable" if verdict.usable else "no")
            rows.append(["", f"  {name}", mark, verdict.probe or "", verdict.reason])
    headers = ["host", "kernel / tracer", "status", "probe", "error / reason"]
    # disable_numparse: tabulate would print a kernel "5.10" as 5.1.
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True) + "\n"


@click.command(epilog=EXIT_CODES_HELP)
@host_options
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True, help="table for people, json for scripts.")
@click.option("--tracer", type=click.Choice(tracers.CHOICES), default="auto", show_default=True, help="Check that this probe backend can run.")
def check(
    hosts: HostArgs,
    output: str,
    tracer: str,
) -> None:
    """Contact every host, run no probe, and show per host the kernel, each tracer's verdict and the probe collect would run."""
    env = Environment()
    try:
        chosen = hosts.select(env)
    except FleetdiagError as exc:
        exit_usage(env, exc)
    options = SweepOptions(
        window=Window(duration_s=0),  # nothing is watched
        forks=hosts.forks,
        tracer=tracer,
        ssh=hosts.ssh(),
    )
    checks = run_checks(chosen, options)
    if output == "json":
        env.stdout.write(json.dumps(check_document(checks), indent=2) + "\n")
    else:
        env.stdout.write(check_table(checks))
    env.stdout.flush()
    sys.exit(int(check_exit_status([c.status for c in checks])))
