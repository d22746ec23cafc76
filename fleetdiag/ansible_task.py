"""The fleetdiag.drops.window task's work, on the controller: options, one host's window or check, its result.

The collection's action plugin is a thin shell around this: it hands in an AnsibleTransport
(the task's own connection and become) and returns what ``window_task_result`` builds. The
collector, detection, tracer choice, window script and parsers are fleetdiag's own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetdiag import tracers
from fleetdiag.ansible_instant import play_instant
from fleetdiag.collector import check_host, collect_host
from fleetdiag.document import check_document, flow_document, host_document
from fleetdiag.errors import UsageError
from fleetdiag.model import HostCheck, HostResult, HostSpec, Status, Window
from fleetdiag.sweep import with_groups

MAX_DURATION_S = 3600


@dataclass(frozen=True)
class WindowOptions:
    """The task's options, checked before any host is contacted."""

    duration: int
    tracer: str = "auto"
    port: int | None = None
    start_at: float | None = None


def window_options(args: Mapping[str, Any]) -> WindowOptions:
    """The task's arguments as WindowOptions; raises UsageError naming the option and what to do."""
    unknown = sorted(set(args) - {"duration", "tracer", "port", "start_at"})
    if unknown:
        raise UsageError(f"unsupported option(s) {', '.join(unknown)}", hint="use duration, start_at, tracer, port")
    duration = _integer(args.get("duration", 60), "duration", 1, MAX_DURATION_S)
    tracer = str(args.get("tracer") or "auto")
    if tracer not in tracers.CHOICES:
        raise UsageError(f"tracer: {tracer!r} is not one of {', '.join(tracers.CHOICES)}")
    port = args.get("port")
    port = None if port in (None, "", 0, "0") else _integer(port, "port", 1, 65535)
    start_at = args.get("start_at")
    if start_at in (None, ""):
        start = None
    else:
        try:
            start = float(start_at)
        except (TypeError, ValueError):
            raise UsageError(f"start_at: {start_at!r} is not a Unix time (seconds since the epoch)") from None
        if not math.isfinite(start) or start <= 0:
            raise UsageError(f"start_at: {start_at!r} is not a Unix time (seconds since the epoch)")
    return WindowOptions(duration, tracer, port, start)


def _integer(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise UsageError(f"{name}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise UsageError(f"{name}: {number} is outside {low}..{high}")
    return number


def host_spec(task_vars: Mapping[str, Any], become: bool) -> HostSpec:
    """The host as fleetdiag's result names it: inventory name and address (connection details stay Ansible's)."""
    name = str(task_vars.get("inventory_hostname", "localhost"))
    address = str(task_vars.get("ansible_host") or name)
    connection = "local" if task_vars.get("ansible_connection") == "local" else "ssh"
    groups = tuple(str(g) for g in task_vars.get("group_names") or ())  # the report sorts hosts by them
    return HostSpec(name=name, address=address, become=become, connection=connection, groups=groups)


def wait_until(start_at: float | None, clock: Callable[[], float] = time.time) -> Callable[[], None] | None:
    """The collector's ``before_window`` that holds a host until START_AT (controller clock)."""
    if start_at is None:
        return None

    def hold() -> None:
        delay = start_at - clock()
        if delay > 0:
            time.sleep(delay)

    return hold


def play_hold(play_id: str, hosts: int, forks: int, instants: list[float] | None = None,
              began: float | None = None) -> Callable[[], None]:  # fmt: skip
    """The collector's ``before_window`` for a held window at the play's instant.

    The first host past detection sets the instant (``play_instant``) as an armed play does, from
    its own trip and the rate Ansible is starting the play's hosts at; each host holds there until
    it, and appends it to INSTANTS.
    """
    from fleetdiag.ansible_armed import arm_lead_s

    started = time.monotonic() if began is None else began

    def hold() -> None:
        elapsed = time.monotonic() - started

        def choose(arrivals: list[float]) -> float:
            now = time.time()
            return now + arm_lead_s(elapsed, hosts, forks, arrivals, now)

        start_at = play_instant(play_id, choose)
        if instants is not None:
            instants.append(start_at)
        wait_until(start_at)()  # type: ignore[misc]

    return hold


def run_window(spec: HostSpec, transport: Any, options: WindowOptions,
               start_at: float | Callable[[], None] | None) -> HostResult:  # fmt: skip
    """One window on one host with fleetdiag's collector, starting at START_AT (a time, or a hold) when given."""
    window = Window(duration_s=options.duration, port=options.port)
    hold = start_at if callable(start_at) else wait_until(start_at)
    return with_groups(collect_host(spec, transport, window, options.tracer, before_window=hold), spec)


def run_check(spec: HostSpec, transport: Any, options: WindowOptions) -> HostCheck:
    """Check mode: ``fleetdiag check`` on one host (detection, every tracer's verdict, no probe)."""
    return check_host(spec, transport, options.tracer)


def window_task_result(host: HostResult, port: int | None = None) -> dict[str, Any]:
    """What the task returns: the host record and its flows in fleetdiag's schema, failed/unreachable with one sentence."""
    result: dict[str, Any] = {
        "changed": False,
        "host": host_document(host, port),
        "flows": [flow_document(host, flow) for flow in host.flows],
        "port": port,
    }
    if host.status is Status.UNREACHABLE:
        result.update(unreachable=True, msg=host.error)
    elif host.status is Status.FAILED:
        result.update(failed=True, msg=host.error)
    else:
        drops = sum(host.drops.values())
        result["msg"] = f"{host.probe}: {drops} drop(s) in {_window_words(host)}"
    return result


def _window_words(host: HostResult) -> str:
    """The window's length as the host measured it, for the task's one-line message."""
    if host.window_start is None or host.window_end is None:
        return "its window"
    return f"{host.window_end - host.window_start:.1f} s from {host.window_start:.3f}"


def check_task_result(check: HostCheck) -> dict[str, Any]:
    """Check mode's result: the host's entry of ``fleetdiag check -o json``."""
    (entry,) = check_document([check])["hosts"]
    result: dict[str, Any] = {"changed": False, "check": entry}
    if check.status is Status.UNREACHABLE:
        result.update(unreachable=True, msg=check.error)
    elif check.status is Status.FAILED:
        result.update(failed=True, msg=check.error)
    else:
        result["msg"] = f"collect would run {check.probe} ({check.tracer})"
    return result
