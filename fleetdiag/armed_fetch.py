"""Armed sweeps, after the arm phase: wait for the window, fetch every result, one Sweep.

The controller sleeps through the window (one wait, nothing per host), then ``forks``
short sessions at a time fetch each host's result (retried with backoff when a host cannot
be reached for a while) and remove it. A stop request (SIGINT/SIGTERM) during the window
fetches at once, ending each window early; a second one gives up on hosts not yet fetched
(their results leave the hosts by themselves at the pickup deadline).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

from fleetdiag import tracers
from fleetdiag.armed_sweep import ArmedFleet, ArmedHost
from fleetdiag.arming import Fetched, fetch_script, lost_sentence, parse_fetch
from fleetdiag.collector import _detection_from, _raise_for_sudo, _with_fallback_notes, window_result, with_module
from fleetdiag.connect_ramp import DEFAULT_HANDSHAKES, ConnectRamp
from fleetdiag.errors import HostError, UnreachableError
from fleetdiag.interrupt import StopRequest
from fleetdiag.model import Fidelity, HostResult, Status, Sweep, Window, frozen_map
from fleetdiag.sweep import ProgressCallback, with_groups
from fleetdiag.transport import SshOptions, Transport
from fleetdiag.transport.base import CommandResult

log = logging.getLogger(__name__)

FETCH_TRIES = 5
FETCH_BACKOFF_S = 1.0  # doubled each try: 1, 2, 4, 8 s
STOP_WAIT_S = 15.0  # how long a stopped window gets on its host to end and report
CLOCK_WARNING_S = 1.0
_SETTLE_S = 0.3  # after the window's end, for the host to write its result


def wait_for_window(fleet: ArmedFleet, stop: StopRequest) -> None:
    """Sleep until the armed windows end (or a stop request comes): one wait, nothing per host."""
    remaining = fleet.window_end + _SETTLE_S - time.time()
    if remaining > 0:
        stop.requested.wait(remaining)


def finish(
    fleet: ArmedFleet,
    ssh: SshOptions,
    forks: int,
    wanted: str,
    stop: StopRequest,
    progress: ProgressCallback | None = None,
    handshakes: int = DEFAULT_HANDSHAKES,
) -> Sweep:
    """Wait for the window, fetch every armed host's result (ending windows early on a stop): the sweep."""
    wait_for_window(fleet, stop)
    notify = progress or (lambda *_: None)
    ramp = ConnectRamp(ssh, limit=min(max(1, forks), handshakes), retries=0)  # fetch_host retries
    stopping = stop.requested.is_set()

    def fetch_one(armed: ArmedHost) -> HostResult:
        if stop.abort.is_set():
            return _abandoned(armed, fleet, stop)
        cut = stopping or stop.requested.is_set()
        try:
            result = fetch_host(armed, ramp, wanted, stop=cut, abort=stop)
            if cut and result.status is Status.OK:
                result = replace(result, notes=(*result.notes, _cut_short(result, stop)))
            elif cut and result.error and result.error.startswith("interrupted before"):
                result = replace(result, error=result.error.replace("interrupted", f"interrupted by {stop.reason}", 1))
        except Exception as exc:  # a bug on one host must not cost the others their results
            log.debug("unexpected error fetching %s", armed.spec.name, exc_info=True)
            result = HostResult(armed.spec.name, armed.spec.address, Status.FAILED, error=f"internal error: {exc!r}")
        result = with_groups(result, armed.spec)
        notify(armed.spec.name, "done", result)
        return result

    workers = max(1, min(forks, len(fleet.armed) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetdiag-fetch") as pool:
        fetched = list(pool.map(fetch_one, fleet.armed))
    last_fetch = time.time()
    by_name = {**fleet.failed, **{r.name: r for r in fetched}}
    hosts = tuple(by_name[name] for name in fleet.order if name in by_name)
    return Sweep(
        started_at=fleet.started_at,
        duration_s=fleet.duration_s,
        hosts=hosts,
        interrupted=stop.reason if stop.requested.is_set() else None,
        mode="armed",
        window_instant=round(fleet.instant, 3),
        phases=frozen_map({
            "launch_to_instant_s": round(fleet.instant - fleet.launch, 3),
            "arm_s": round(fleet.armed_at - fleet.launch, 3),
            "window_end_to_last_fetch_s": round(last_fetch - fleet.window_end, 3),
        }),
    )  # fmt: skip


def fetch_host(armed: ArmedHost, ramp: ConnectRamp, wanted: str, stop: bool, abort: StopRequest | None = None) -> HostResult:
    """Fetch one armed host's result, retrying (bounded, with backoff) while it cannot be reached."""
    spec = armed.spec
    error: HostError | None = None
    for attempt in range(FETCH_TRIES):
        if attempt:
            if abort is not None and abort.abort.is_set():
                break
            time.sleep(FETCH_BACKOFF_S * 2 ** (attempt - 1))
        try:
            transport = ramp.open(spec)
        except UnreachableError as exc:
            error = exc
            continue
        try:
            return host_result(armed, _fetch(armed, transport, stop), wanted)
        except HostError as exc:  # the connection dropped mid-fetch: the result is still there
            error = exc
        finally:
            transport.close()
    assert error is not None or (abort is not None and abort.abort.is_set())
    status = Status.UNREACHABLE if isinstance(error, UnreachableError) else Status.FAILED
    return HostResult(spec.name, spec.address, status,
                      error=f"could not fetch its armed window's result in {FETCH_TRIES} tries: {error}")  # fmt: skip


def _fetch(armed: ArmedHost, transport: Transport, stop: bool) -> Fetched:
    wait_s = STOP_WAIT_S if stop else max(0.0, armed.start_s + armed.deadline_s - time.time()) + 5
    output = transport.run(fetch_script(armed.directory, armed.boot_id, wait_s, stop), timeout=wait_s + 30)
    _raise_for_sudo(output)
    return parse_fetch(output)


def host_result(armed: ArmedHost, fetched: Fetched, wanted: str) -> HostResult:
    """The host's result from what its fetch found, its window times corrected by its clock offset."""
    spec = armed.spec
    if fetched.lost is not None:
        return HostResult(spec.name, spec.address, Status.FAILED, error=lost_sentence(fetched.lost, armed.directory))
    if fetched.result is None or armed.tracer not in tracers.BY_NAME:
        return HostResult(spec.name, spec.address, Status.FAILED, error="its fetch printed nothing fleetdiag can read")
    detection = _detection_from(CommandResult(armed.detection, "", 0), wanted)
    tracer = tracers.BY_NAME[armed.tracer]
    window = Window(duration_s=armed.duration_s) if armed.duration_s else None
    host = window_result(spec, detection.facts, tracer, armed.probe, fetched.result, verdicts=detection.verdicts,
                         window=window)
    if armed.fidelity is not None:
        host = replace(host, fidelity=Fidelity(armed.fidelity))
    host = _with_fallback_notes(with_module(host, armed.module), armed.fallbacks)
    offset = armed.clock_offset_s
    notes = list(host.notes)
    if fetched.late_s is not None:
        notes.append(f"armed after the fleet's instant: its window started {fetched.late_s:.1f} s late")
    if abs(offset) > CLOCK_WARNING_S:
        side = "ahead of" if offset > 0 else "behind"
        notes.append(f"its clock is {abs(offset):.1f} s {side} the controller's (+-{armed.clock_bound_s:.3f} s): "
                     "its window times are corrected")  # fmt: skip
    timeline = host.timeline
    if timeline is not None and timeline.start is not None:  # interval 0 starts with the window: corrected alike
        timeline = replace(timeline, start=round(timeline.start - offset, 6))
    return replace(
        host,
        window_start=None if host.window_start is None else round(host.window_start - offset, 6),
        window_end=None if host.window_end is None else round(host.window_end - offset, 6),
        timeline=timeline,
        clock_offset_s=offset,
        clock_bound_s=armed.clock_bound_s,
        notes=tuple(notes),
    )


def _cut_short(host: HostResult, stop: StopRequest) -> str:
    start, end = host.window_start, host.window_end
    watched = f" after {end - start:.1f} s" if start is not None and end is not None else ""
    return f"window cut short by {stop.reason}{watched}"


def _abandoned(armed: ArmedHost, fleet: ArmedFleet, stop: StopRequest) -> HostResult:
    """A host not fetched because a second signal said stop now."""
    return HostResult(armed.spec.name, armed.spec.address, Status.FAILED,
                      error=f"interrupted by {stop.reason} before its result was fetched")  # fmt: skip


def pickup_deadline(fleet: ArmedFleet, pickup_s: float) -> datetime:
    """When the hosts remove results nobody fetched."""
    return datetime.fromtimestamp(fleet.window_end + pickup_s, timezone.utc)
