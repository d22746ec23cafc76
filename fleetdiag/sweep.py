"""A sweep: collect from many hosts at once, each host's outcome a value.

Hosts go in batches of ``forks``. In a batch every host connects and detects first;
the windows then start together (``WindowGate``), so the whole batch watches the same
seconds. A stop request (SIGINT/SIGTERM) ends running windows early: hosts report what
they saw so far, and hosts that cannot report in time say they were interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from fleetdiag.collector import DETECTION_TIMEOUT_S, check_host, collect_host
from fleetdiag.connect_ramp import DEFAULT_HANDSHAKES, ConnectRamp
from fleetdiag.errors import HostError, UnreachableError
from fleetdiag.interrupt import StopRequest
from fleetdiag.live import LiveCallback
from fleetdiag.model import HostCheck, HostResult, HostSpec, Status, Sweep, Window, frozen_map
from fleetdiag.module_builds import ModuleBuilds, ModuleCache, default_cache_dir
from fleetdiag.stap_controller_build import KernelTree
from fleetdiag.transport import SshOptions, Transport, open_transport
from fleetdiag.window_gate import WindowGate

log = logging.getLogger(__name__)

# Called from worker threads as hosts move on: (host name, stage, result when done).
ProgressCallback = Callable[[str, str, "HostResult | None"], None]

# How long hosts may take, after a stop request, to end their windows and report.
STOP_GRACE_S = 10.0
_POLL_S = 0.1


class Interrupted(HostError):
    """The sweep was asked to stop before this host's window started."""


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: the window, the concurrency, the tracer, the SSH settings."""

    window: Window
    forks: int = 50
    tracer: str = "auto"
    ssh: SshOptions = field(default_factory=SshOptions)
    align_windows: bool = True  # start the windows of a batch together
    gate_timeout_s: float | None = None  # longest a batch waits for its slowest host; None: derived
    stop_grace_s: float = STOP_GRACE_S
    live: LiveCallback | None = None  # --follow: each host's drops once a second, from worker threads
    module_cache: Path | None = None  # where systemtap modules are kept between runs; None: the default
    stap_kernels: Mapping[str, KernelTree] = field(default_factory=frozen_map)  # --stap-kernel: built here

    def gate_timeout(self) -> float:
        """Connect, authenticate and detect on a slow host, at most."""
        if self.gate_timeout_s is not None:
            return self.gate_timeout_s
        return 2 * self.ssh.connect_timeout + DETECTION_TIMEOUT_S


@dataclass
class _HostRun:
    """One host's progress through a sweep, shared between its worker and the main thread."""

    spec: HostSpec
    transport: Transport | None = None
    watching_since: float | None = None  # monotonic time its window command was sent
    cut_short: bool = False  # asked to end its window early
    abandoned: bool = False  # its connection was closed when the stop grace ran out
    result: HostResult | None = None


def with_groups(result: HostResult, spec: HostSpec) -> HostResult:
    """The result with the host's inventory groups (the report sorts by them), whatever path made it."""
    if spec.groups and not result.groups:
        return replace(result, groups=tuple(spec.groups))
    return result


def collect_one(
    spec: HostSpec,
    options: SweepOptions,
    progress: ProgressCallback | None = None,
    gate: WindowGate | None = None,
    stop: StopRequest | None = None,
    run: _HostRun | None = None,
    modules: ModuleBuilds | None = None,
    ramp: ConnectRamp | None = None,
) -> HostResult:
    """Connect to one host and collect; never raises for that host's failures.

    ``ramp`` (a sweep's) keeps the handshakes in flight few and retries those that time out."""
    notify = progress or (lambda *_: None)
    run = run or _HostRun(spec)
    stop = stop or StopRequest()

    def before_window() -> None:
        if gate is not None:
            notify(spec.name, "waiting", None)
            gate.wait(spec.name)
        if stop.requested.is_set():
            raise Interrupted(f"interrupted by {stop.reason} before the window started")
        run.watching_since = time.monotonic()
        notify(spec.name, "watching", None)

    try:
        if stop.requested.is_set():
            result = _interrupted(spec, stop, "before connecting")
        else:
            result = _connect_and_collect(spec, options, run, before_window, notify, modules, ramp)
    except Exception as exc:  # a bug on one host must not cost the others their results
        log.debug("unexpected error on %s", spec.name, exc_info=True)
        result = HostResult(spec.name, spec.address, Status.FAILED, error=f"internal error: {exc!r}")
    finally:
        if gate is not None:
            gate.arrive(spec.name)  # a host that failed early must not hold the batch back
    result = with_groups(result, spec)
    notify(spec.name, "done", result)
    return result


def _connect_and_collect(
    spec: HostSpec,
    options: SweepOptions,
    run: _HostRun,
    before_window: Callable[[], None],
    notify: Callable[[str, str, HostResult | None], None],
    modules: ModuleBuilds | None = None,
    ramp: ConnectRamp | None = None,
) -> HostResult:
    notify(spec.name, "connecting", None)
    try:
        run.transport = ramp.open(spec) if ramp is not None else open_transport(spec, options.ssh)
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    try:
        notify(spec.name, "collecting", None)
        return collect_host(
            spec, run.transport, options.window, options.tracer,
            before_window=before_window, on_live=options.live, modules=modules,
        )  # fmt: skip
    except Exception as exc:  # a bug on one host must not cost the others their results
        log.debug("unexpected error on %s", spec.name, exc_info=True)
        return HostResult(spec.name, spec.address, Status.FAILED, error=f"internal error: {exc!r}")
    finally:
        run.transport.close()


def run_sweep(
    hosts: Sequence[HostSpec],
    options: SweepOptions,
    progress: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> Sweep:
    """Collect from every host, ``options.forks`` at a time; results keep inventory order."""
    started = datetime.now(timezone.utc)
    stop = stop or StopRequest()
    runs = [_HostRun(spec) for spec in hosts]
    forks = max(1, options.forks)
    # One systemtap build per kernel release for the whole sweep, kept for the next one.
    modules = ModuleBuilds(ModuleCache(options.module_cache or default_cache_dir()), trees=dict(options.stap_kernels))
    ramp = ConnectRamp(options.ssh, limit=min(forks, DEFAULT_HANDSHAKES))
    for first in range(0, len(runs), forks):
        if stop.requested.is_set():
            break
        _run_batch(runs[first : first + forks], options, progress, stop, modules, ramp)
    results = tuple(_final_result(run, stop) for run in runs)
    return Sweep(
        started_at=started,
        duration_s=options.window.duration_s,
        hosts=results,
        interrupted=stop.reason if stop.requested.is_set() else None,
    )


def _run_batch(
    batch: list[_HostRun],
    options: SweepOptions,
    progress: ProgressCallback | None,
    stop: StopRequest,
    modules: ModuleBuilds | None = None,
    ramp: ConnectRamp | None = None,
) -> None:
    """Run one batch to the end, or until a stop request and its grace period are over."""
    gate = WindowGate(len(batch), options.gate_timeout()) if options.align_windows else None

    finished = 0
    all_done = threading.Event()
    lock = threading.Lock()
    # Every thread waits for this before its first byte: started one by one while earlier
    # ones already hold the GIL doing handshakes, 200 threads took 4-5 s just to start.
    go = threading.Event()

    def work(run: _HostRun) -> None:
        nonlocal finished
        go.wait()
        try:
            run.result = collect_one(run.spec, options, progress, gate, stop, run, modules, ramp)
        finally:
            with lock:
                finished += 1
                if finished == len(batch):
                    all_done.set()

    for run in batch:
        # Daemon threads: a host stuck in connect must not keep an interrupted run alive.
        threading.Thread(target=work, args=(run,), name=f"fleetdiag-{run.spec.name}", daemon=True).start()
    go.set()
    give_up_at: float | None = None
    while not all_done.wait(_POLL_S):
        if stop.requested.is_set() and give_up_at is None:
            give_up_at = time.monotonic() + options.stop_grace_s
            if gate is not None:
                gate.release()
            for run in batch:
                if run.result is None and run.transport is not None:
                    run.cut_short = run.watching_since is not None
                    run.transport.request_stop()
        if give_up_at is not None and (stop.abort.is_set() or time.monotonic() >= give_up_at):
            for run in batch:
                if run.result is None:
                    run.abandoned = True
                    if run.transport is not None:
                        run.transport.close()
            return


def _final_result(run: _HostRun, stop: StopRequest) -> HostResult:
    """The host's result; a stop request shows as an error or a note, never silently."""
    if run.result is None or run.abandoned:
        if run.watching_since is not None:
            stage = "while its window was running"
        else:
            stage = "before its window started" if run.transport is not None else "before it was contacted"
        return _interrupted(run.spec, stop, stage)
    if not run.cut_short or run.result.status is not Status.OK:
        return run.result
    start, end = run.result.window_start, run.result.window_end
    watched = f" after {end - start:.1f} s" if start is not None and end is not None else ""
    return replace(run.result, notes=(*run.result.notes, f"window cut short by {stop.reason}{watched}"))


def _interrupted(spec: HostSpec, stop: StopRequest, stage: str) -> HostResult:
    return HostResult(
        spec.name, spec.address, Status.FAILED, error=f"interrupted by {stop.reason or 'a signal'} {stage}"
    )


def check_one(spec: HostSpec, options: SweepOptions) -> HostCheck:
    """Connect and detect only (``fleetdiag check``, no probe); never raises for that host's failures."""
    try:
        transport = open_transport(spec, options.ssh)
    except UnreachableError as exc:
        return HostCheck(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    try:
        return check_host(spec, transport, options.tracer)
    except Exception as exc:  # a bug on one host must not cost the others their results
        log.debug("unexpected error on %s", spec.name, exc_info=True)
        return HostCheck(spec.name, spec.address, Status.FAILED, error=f"internal error: {exc!r}")
    finally:
        transport.close()


def run_checks(hosts: Sequence[HostSpec], options: SweepOptions) -> tuple[HostCheck, ...]:
    """Detect on every host, ``options.forks`` at a time, running no probe; results keep inventory order."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(options.forks, len(hosts)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetdiag-check") as pool:
        return tuple(pool.map(lambda spec: check_one(spec, options), hosts))
