"""A sweep: collect from many hosts at once, each host's outcome a value."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

from fleetdiag.collector import collect_host
from fleetdiag.errors import UnreachableError
from fleetdiag.model import HostResult, HostSpec, Status, Sweep, Window
from fleetdiag.transport import SshOptions, open_transport

log = logging.getLogger(__name__)

# Called from worker threads as hosts move on: (host name, stage, result when done).
ProgressCallback = Callable[[str, str, "HostResult | None"], None]


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: the window, the concurrency, the tracer, the SSH settings."""

    window: Window
    forks: int = 50
    tracer: str = "auto"
    ssh: SshOptions = field(default_factory=SshOptions)


def collect_one(spec: HostSpec, options: SweepOptions, progress: ProgressCallback | None = None) -> HostResult:
    """Connect to one host and collect; never raises for that host's failures."""
    notify = progress or (lambda *_: None)
    notify(spec.name, "connecting", None)
    try:
        transport = open_transport(spec, options.ssh)
    except UnreachableError as exc:
        result = HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
        notify(spec.name, "done", result)
        return result
    try:
        notify(spec.name, "collecting", None)
        result = collect_host(spec, transport, options.window, options.tracer)
    except Exception as exc:  # a bug on one host must not cost the others their results
        log.debug("unexpected error on %s", spec.name, exc_info=True)
        result = HostResult(spec.name, spec.address, Status.FAILED, error=f"internal error: {exc!r}")
    finally:
        transport.close()
    notify(spec.name, "done", result)
    return result


def run_sweep(
    hosts: Sequence[HostSpec], options: SweepOptions, progress: ProgressCallback | None = None
) -> Sweep:
    """Collect from every host, ``options.forks`` at a time; results keep inventory order."""
    started = datetime.now(timezone.utc)
    results: dict[str, HostResult] = {}
    workers = max(1, min(options.forks, len(hosts)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetdiag-host") as pool:
        futures = {pool.submit(collect_one, spec, options, progress): spec for spec in hosts}
        for future in as_completed(futures):
            results[futures[future].name] = future.result()
    return Sweep(
        started_at=started,
        duration_s=options.window.duration_s,
        hosts=tuple(results[spec.name] for spec in hosts),
    )
