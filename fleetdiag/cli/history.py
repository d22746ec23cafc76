"""``fleetdiag report``, ``history`` and ``diff``: saved sweeps re-rendered, listed and compared."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from fleetdiag.cli.collect import results_dir_option
from fleetdiag.cli.environment import Environment
from fleetdiag.errors import FleetdiagError
from fleetdiag.exit_status import ExitStatus
from fleetdiag.history import ResultsStore, compare_sweeps
from fleetdiag.render import RENDERERS
from fleetdiag.render import history as history_render

_SWEEP_HELP = "an id from fleetdiag history, a unique prefix of one, latest, or latest~N (N sweeps before)"


def _store(env: Environment, results_dir: Path) -> ResultsStore:
    try:
        return ResultsStore.open(results_dir)
    except FleetdiagError as exc:
        _fail(env, exc)


def _fail(env: Environment, exc: FleetdiagError) -> NoReturn:
    click.echo(f"fleetdiag: {exc.message}", file=env.stderr)
    if exc.hint:
        click.echo(f"fleetdiag: hint: {exc.hint}", file=env.stderr)
    sys.exit(int(ExitStatus.USAGE))


@click.command(help=f"Re-render a saved SWEEP (default: the latest) exactly as collect printed it.\n\nSWEEP is {_SWEEP_HELP}.")
@click.argument("sweep", required=False)
@click.option("-o", "--output", type=click.Choice(list(RENDERERS)), default="table", show_default=True, help="Any output collect has.")
@results_dir_option
def report(sweep: str | None, output: str, results_dir: Path) -> None:
    """Re-render a saved sweep in any output format."""
    env = Environment()
    store = _store(env, results_dir)
    _refuse_pending(env, store, sweep)
    try:
        _record, saved = store.load(sweep)
    except FleetdiagError as exc:
        _fail(env, exc)
    env.stdout.write(RENDERERS[output](saved))


def _refuse_pending(env: Environment, store: ResultsStore, ref: str | None) -> None:
    """A sweep armed with --detach has no result yet: say so (exit 2), and how to collect it."""
    from fleetdiag.history.pending import find_pending, pending_ids

    pending = find_pending(store, ref) if ref and not ref.startswith("latest") else None
    if pending is None and ref in (None, "latest"):
        newest = pending_ids(store)
        saved = store.records(1)
        if newest and (not saved or newest[0] > saved[0].id):
            pending = newest[0]
    if pending is not None:
        _fail(env, FleetdiagError(f"sweep {pending} is pending: its windows were armed with --detach and not fetched yet",
                                  hint=f"collect it with fleetdiag fetch {pending}"))  # fmt: skip


@click.command()
@click.option("-n", "--last", type=click.IntRange(1), help="Only the N newest sweeps.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@results_dir_option
def history(last: int | None, output: str, results_dir: Path) -> None:
    """List saved sweeps, newest first: when, how long, hosts collected, drops, findings."""
    env = Environment()
    records = _store(env, results_dir).records(last)
    render = history_render.records_json if output == "json" else history_render.records_table
    env.stdout.write(render(records))


@click.command(
    help="Show flows and hosts that drop more in sweep B than in sweep A (default: the two latest).\n\n"
    "New means no drops of that reason in A; worse means a higher rate (drops per minute of window). "
    f"A and B are each {_SWEEP_HELP}."
)
@click.argument("a", required=False, default="latest~1")
@click.argument("b", required=False, default="latest")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@results_dir_option
def diff(a: str, b: str, output: str, results_dir: Path) -> None:
    """Compare two saved sweeps."""
    env = Environment()
    store = _store(env, results_dir)
    try:
        record_a, sweep_a = store.load(a)
        record_b, sweep_b = store.load(b)
    except FleetdiagError as exc:
        _fail(env, exc)
    changes = compare_sweeps(sweep_a, sweep_b)
    render = history_render.diff_json if output == "json" else history_render.diff_table
    env.stdout.write(render(changes, record_a, record_b))
