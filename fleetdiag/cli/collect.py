"""``fleetdiag collect``: watch every host for one window, report drops per host and flow, save the sweep."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from fleetdiag import tracers
from fleetdiag.armed_sweep import ArmOptions
from fleetdiag.cli.armed import MODES, choose_mode, parse_duration, run_armed
from fleetdiag.cli.environment import Environment
from fleetdiag.cli.options import HostArgs, exit_usage, host_options
from fleetdiag.cli.progress import SweepProgress
from fleetdiag.errors import FleetdiagError, UsageError
from fleetdiag.exit_status import ExitStatus, sweep_exit_status
from fleetdiag.history import ResultsStore, SweepLocked, default_results_dir
from fleetdiag.interrupt import stop_on_signals
from fleetdiag.live import describe
from fleetdiag.model import HostResult, HostSpec, Sweep, Window, frozen_map
from fleetdiag.render import RENDERERS, jsonl, rendered
from fleetdiag.stap_controller_build import parse_stap_kernels
from fleetdiag.sweep import ProgressCallback, SweepOptions, run_sweep

log = logging.getLogger("fleetdiag")

EXIT_CODES_HELP = """\b
Exit codes:
  0  every host collected (and, with --fail-on-drops, fewer drops than N)
  1  fleetdiag itself failed unexpectedly
  2  usage, inventory or results-dir error; no host contacted
  3  some hosts failed or were unreachable (the others' results are printed and saved)
  4  no host collected
  5  --fail-on-drops N: N or more drops on the collected hosts (wins over 3)
  6  another sweep holds the results dir's lock; no host contacted
  130  interrupted (SIGINT/SIGTERM); partial results printed and saved"""


def results_dir_option(command):  # type: ignore[no-untyped-def]
    """--results-dir, shared by collect, report, history and diff."""
    return click.option(
        "--results-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="FLEETDIAG_RESULTS_DIR",
        default=default_results_dir,
        show_default=str(default_results_dir()),
        help="Where sweeps are saved (env FLEETDIAG_RESULTS_DIR): JSON documents plus an SQLite index.",
    )(command)


class JsonlStream:
    """Writes each host's records to stdout the moment the host is done (jsonl output)."""

    def __init__(self, env: Environment, port: int | None, then: ProgressCallback) -> None:
        self.env, self.port, self.then = env, port, then
        self._lock = threading.Lock()

    def __call__(self, host: str, stage: str, result: HostResult | None) -> None:
        """A ProgressCallback: on "done", the host's and its flows' records; always passed on."""
        if stage == "done" and result is not None:
            text = "".join(jsonl.line(r) for r in jsonl.host_records(result, self.port))
            with self._lock:
                self.env.stdout.write(text)
                self.env.stdout.flush()
        self.then(host, stage, result)


@click.command(epilog=EXIT_CODES_HELP)
@host_options
@click.option("--duration", type=click.IntRange(1, 86400), default=60, show_default=True, help="Window length in seconds, the same on every host.")
@click.option("--port", type=click.IntRange(1, 65535), help="Trace only flows with this local or remote port (one service).")
@click.option("-o", "--output", type=click.Choice(list(RENDERERS)), default="table", show_default=True, help="table for people; json (one document), jsonl (one record per host and flow, as hosts finish) or prom for machines.")
@click.option("--follow", is_flag=True, help="Print drops on stderr as they happen, once a second per host.")
@click.option("--tracer", type=click.Choice(tracers.CHOICES), default="auto", show_default=True, help="Force one probe backend.")
@click.option("--prom-file", type=click.Path(dir_okay=False), help="Also write Prometheus textfile-collector metrics here (atomically).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="Also write the self-contained HTML report here (heatmap, timelines, flows, diagnosis).")
@results_dir_option
@click.option("--keep", type=click.IntRange(1), help="Keep only the N newest sweeps in the results dir.")
@click.option("--fail-on-drops", type=click.IntRange(1), metavar="N", help="Exit 5 when the collected hosts dropped N or more segments in the window.")
@click.option("--stap-kernel", "stap_kernels", multiple=True, metavar="RELEASE=DIR", help="Build systemtap modules for kernel RELEASE on this machine from DIR (a kernel build tree, or a root filesystem of that release with stap, headers and debug symbols): its hosts need only systemtap-runtime. Repeatable.")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True, help="armed: each host is armed for one instant and runs its window by itself (any fleet size, one window); held: a session per host for the whole window. auto: held for --follow or a fleet within --forks, else armed.")
@click.option("--start-in", metavar="DURATION", help="Armed: open the window this long after launch (90s, 2m), not as soon as every host is armed.")
@click.option("--detach", is_flag=True, help="Armed: print the sweep's id once every host is armed and exit 0; fleetdiag fetch ID collects it.")
@click.option("--pickup-timeout", metavar="DURATION", default="15m", show_default=True, help="Armed: a host removes a result nobody fetched this long after its window.")
def collect(
    hosts: HostArgs,
    duration: int,
    port: int | None,
    output: str,
    follow: bool,
    tracer: str,
    prom_file: str | None,
    html_file: str | None,
    results_dir: Path,
    keep: int | None,
    fail_on_drops: int | None,
    stap_kernels: tuple[str, ...],
    mode: str = "auto",
    start_in: str | None = None,
    detach: bool = False,
    pickup_timeout: str = "15m",
) -> None:
    """Watch every host for DURATION seconds and report TCP drops per host and per flow, with verdicts.

    Every sweep is saved in the results dir (see fleetdiag history / report / diff);
    only one sweep runs at a time per results dir. "Drops" for --fail-on-drops are the
    traced drops of every reason (on hosts without a tracer: the TcpExt drop counters
    TCPBacklogDrop, TCPRcvQDrop, TCPZeroWindowDrop, ListenDrops, PFMemallocDrop).
    """
    env = Environment()
    try:
        if detach:  # they act on the result, which a detached sweep does not have yet (fleetdiag fetch does)
            given = [name for name, value in (("--html", html_file), ("--prom-file", prom_file), ("--keep", keep),
                                              ("--fail-on-drops", fail_on_drops)) if value]  # fmt: skip
            if given:
                raise UsageError(f"{', '.join(given)} cannot go with --detach: there is no result until fleetdiag "
                                 "fetch collects it (then use fleetdiag report)")  # fmt: skip
        if html_file:
            _check_html_target(html_file)
        chosen = hosts.select(env)
        trees = parse_stap_kernels(stap_kernels)
        start_in_s = parse_duration(start_in, "--start-in") if start_in is not None else None
        arm = ArmOptions(start_in_s=start_in_s, pickup_s=parse_duration(pickup_timeout, "--pickup-timeout"))
        mode = choose_mode(mode, len(chosen), hosts.forks, follow, start_in_s, detach)
        store = ResultsStore.open(results_dir)
    except FleetdiagError as exc:
        exit_usage(env, exc)
    lock = store.lock()
    try:
        lock.acquire()
    except SweepLocked as exc:
        _error(env, exc)
        sys.exit(int(ExitStatus.LOCKED))
    options = SweepOptions(
        window=Window(duration_s=duration, port=port, follow=follow),
        forks=hosts.forks,
        tracer=tracer,
        ssh=hosts.ssh(),
        stap_kernels=frozen_map(trees),
    )
    try:
        sweep = _run(env, chosen, options, output, arm if mode == "armed" else None, store if detach else None)
        if isinstance(sweep, str):  # --detach: armed and saved as pending
            env.stdout.write(sweep + "\n")
            env.stdout.flush()
            sys.exit(int(ExitStatus.OK))
        _save(env, store, sweep, keep)
        if output == "jsonl":
            env.stdout.write(jsonl.line(jsonl.sweep_record(sweep)))  # the hosts' records are out already
        else:
            env.stdout.write(rendered(output, sweep, env.sparkline_style))
        env.stdout.flush()
        if prom_file:
            _write_prom(env, sweep, prom_file)
        if html_file:
            _write_html(env, sweep, html_file)
    finally:
        lock.release()
    sys.exit(int(sweep_exit_status(sweep, fail_on_drops)))


def _run(env: Environment, hosts: list[HostSpec], options: SweepOptions, output: str,
         arm: ArmOptions | None = None, detach_to: ResultsStore | None = None) -> Sweep | str:  # fmt: skip
    """The sweep itself (armed with ``arm``, else held), with progress, --follow lines and jsonl streaming wired in."""
    window = options.window
    with SweepProgress(env, len(hosts), window.duration_s) as progress:
        callback: ProgressCallback = progress
        if output == "jsonl":
            callback = JsonlStream(env, window.port, progress)
        if window.follow:
            options = replace(options, live=lambda drops: progress.print(describe(drops)))
        if env.interactive:
            progress.print(f"fleetdiag: watching {len(hosts)} host(s) for {window.duration_s} s")
        if arm is not None:
            armed = run_armed(env, hosts, options, arm, callback, progress, detach_to)
            if isinstance(armed, str):
                return armed
            sweep = armed
        else:
            with stop_on_signals() as stop:
                sweep = replace(run_sweep(hosts, options, progress=callback, stop=stop), mode="held")
    return replace(sweep, port=window.port) if window.port is not None else sweep


def _save(env: Environment, store: ResultsStore, sweep: Sweep, keep: int | None) -> None:
    """Save the sweep and apply --keep; a failure is reported, the results still print."""
    try:
        record = store.save(sweep)
        log.info("saved sweep %s in %s", record.id, store.root)
        if keep:
            for gone in store.prune(keep):
                log.info("removed sweep %s (--keep %d)", gone, keep)
    except (OSError, sqlite3.Error, FleetdiagError) as exc:
        _error(env, f"could not save the sweep in {store.root}: {exc}")


def _write_prom(env: Environment, sweep: Sweep, path: str) -> None:
    from fleetdiag.render.prom import write_prom_file  # prometheus_client only when asked for

    try:
        write_prom_file(sweep, path)
    except OSError as exc:
        _error(env, f"could not write {path}: {exc.strerror or exc}")


def _check_html_target(path: str) -> None:
    """--html names a file whose directory exists and is writable: checked before any host is contacted."""
    import os

    folder = Path(path).parent
    if not folder.is_dir():
        raise FleetdiagError(f"--html {path}: the directory {folder} does not exist", hint="create it, or write the report elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FleetdiagError(f"--html {path}: the directory {folder} is not writable", hint="write the report elsewhere")


def _write_html(env: Environment, sweep: Sweep, path: str) -> None:
    """The HTML report, written whole or not at all (a temp file renamed over PATH)."""
    import os
    import tempfile

    target = Path(path)
    try:
        text = RENDERERS["html"](sweep)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fleetdiag-", suffix=".html")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        log.info("wrote the HTML report to %s", target)
    except OSError as exc:
        _error(env, f"could not write {path}: {exc.strerror or exc}")


def _error(env: Environment, problem: object) -> None:
    message = problem.message if isinstance(problem, FleetdiagError) else str(problem)
    click.echo(f"fleetdiag: {message}", file=env.stderr)
    hint = getattr(problem, "hint", None)
    if hint:
        click.echo(f"fleetdiag: hint: {hint}", file=env.stderr)
