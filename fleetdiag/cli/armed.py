"""Armed sweeps on the command line: ``collect``'s armed path and ``--detach``, and ``fleetdiag fetch``."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import click

from fleetdiag.armed_fetch import finish
from fleetdiag.armed_sweep import ArmOptions, arm_fleet
from fleetdiag.cli.environment import Environment
from fleetdiag.cli.progress import SweepProgress
from fleetdiag.errors import FleetdiagError, UsageError
from fleetdiag.exit_status import ExitStatus, sweep_exit_status
from fleetdiag.history import ResultsStore, SweepLocked
from fleetdiag.history.pending import load_pending, remove_pending, save_pending
from fleetdiag.interrupt import stop_on_signals
from fleetdiag.model import HostSpec, Sweep
from fleetdiag.render import RENDERERS, rendered
from fleetdiag.sweep import ProgressCallback, SweepOptions

_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")
MODES = ("auto", "armed", "held")


def parse_duration(text: str, what: str) -> float:
    """Seconds from "90", "90s", "2m", "1h", "1m30s"; UsageError naming WHAT otherwise."""
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise UsageError(f"{what}: {text!r} is not a duration", hint="write it as 90, 90s, 2m, 1h or 1m30s")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def choose_mode(mode: str, hosts: int, forks: int, follow: bool, start_in: float | None, detach: bool) -> str:
    """armed or held for this sweep: held where a session per host serves (--follow, a fleet within --forks)."""
    if mode == "held" and (detach or start_in is not None):
        raise UsageError("--detach and --start-in arm the windows on the hosts: they cannot go with --mode held")
    if follow and (mode == "armed" or detach or start_in is not None):
        raise UsageError("--follow streams from held sessions: it cannot go with --mode armed, --detach or --start-in")
    if mode != "auto":
        return mode
    if detach or start_in is not None:
        return "armed"
    return "held" if follow or hosts <= forks else "armed"


def run_armed(
    env: Environment,
    hosts: list[HostSpec],
    options: SweepOptions,
    arm: ArmOptions,
    callback: ProgressCallback,
    progress: SweepProgress,
    detach_to: ResultsStore | None = None,
) -> Sweep | str:
    """Arm every host, then wait and fetch (the sweep); with ``detach_to``, save it as pending (its id)."""
    with stop_on_signals() as stop:
        fleet = arm_fleet(hosts, options, arm, progress=callback, stop=stop)
        instant = _clock_text(fleet.instant)
        if detach_to is not None and not stop.requested.is_set():
            sweep_id = save_pending(detach_to, fleet, options.ssh, options.tracer, options.window.port, arm.pickup_s)
            progress.print(f"fleetdiag: {len(fleet.armed)} of {len(hosts)} host(s) armed for {instant}; "
                           f"collect the results with: fleetdiag fetch {sweep_id}")  # fmt: skip
            return sweep_id
        progress.print(f"fleetdiag: {len(fleet.armed)} of {len(hosts)} host(s) armed; the window opens at {instant} "
                       f"(in {max(0.0, fleet.instant - time.time()):.1f} s)")  # fmt: skip
        return finish(fleet, options.ssh, options.forks, options.tracer, stop, callback, arm.handshakes)


def _clock_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%H:%M:%S UTC")


@click.command()
@click.argument("sweep")
@click.option("-o", "--output", type=click.Choice(list(RENDERERS)), default="table", show_default=True, help="Any output collect has.")
@click.option("-f", "--forks", type=click.IntRange(1, 2000), default=50, show_default=True, help="Hosts fetched at once.")
@click.option("-K", "--ask-become-pass", is_flag=True, help="Prompt for the sudo password (or set FLEETDIAG_BECOME_PASSWORD).")
@click.option("--fail-on-drops", type=click.IntRange(1), metavar="N", help="Exit 5 when the collected hosts dropped N or more segments.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FLEETDIAG_RESULTS_DIR",
              default=None, help="Where the sweep was armed (env FLEETDIAG_RESULTS_DIR).")  # fmt: skip
def fetch(sweep: str, output: str, forks: int, ask_become_pass: bool, fail_on_drops: int | None,
          results_dir: Path | None) -> None:  # fmt: skip
    """Collect a sweep armed with collect --detach: wait for its window to end, fetch every host, save it.

    Exit codes as collect's; 2 when SWEEP is no pending sweep or has expired (its hosts removed
    their results at the pickup deadline).
    """
    from fleetdiag.cli.collect import _save
    from fleetdiag.cli.options import _become_password
    from fleetdiag.history import default_results_dir

    env = Environment()
    try:
        store = ResultsStore.open(results_dir or default_results_dir())
        pending = load_pending(store, sweep)
    except FleetdiagError as exc:
        _usage(env, exc)
    lock = store.lock()
    try:
        lock.acquire()
    except SweepLocked as exc:
        click.echo(f"fleetdiag: {exc}", file=env.stderr)
        sys.exit(int(ExitStatus.LOCKED))
    try:
        fleet = pending.fleet()
        left = pending.window_end - time.time()
        with SweepProgress(env, len(fleet.order), fleet.duration_s) as progress:
            if left > 0:
                progress.print(f"fleetdiag: sweep {pending.id}: its window ends at {_clock_text(pending.window_end)}; waiting {left:.0f} s")
            with stop_on_signals() as stop:
                result = finish(fleet, pending.ssh(_become_password(ask_become_pass)), forks, pending.wanted, stop, progress)
        result = replace(result, port=pending.port) if pending.port is not None else result
        _save(env, store, result, None)
        remove_pending(store, pending.id)
        env.stdout.write(rendered(output, result, env.sparkline_style))
        env.stdout.flush()
    finally:
        lock.release()
    sys.exit(int(sweep_exit_status(result, fail_on_drops)))


def _usage(env: Environment, exc: FleetdiagError) -> None:
    click.echo(f"fleetdiag: {exc.message}", file=env.stderr)
    if exc.hint:
        click.echo(f"fleetdiag: hint: {exc.hint}", file=env.stderr)
    sys.exit(int(ExitStatus.USAGE))
