"""Armed windows over an Ansible connection: arm in one task, fetch in a later one (fleetdiag.drops.arm/fetch).

Ansible runs a task on at most ``forks`` hosts at a time, so a held window cannot span its
batches; an armed one can: every host is armed for the play's one instant (a short task), the
windows run on the hosts by themselves, and a later task fetches each result. The scripts,
clock reading, keeper and result are fleetdiag's armed windows (``fleetdiag.arming``,
``fleetdiag.armed_fetch``); what differs is that Ansible's exec cannot answer a script mid-run,
so the clock is read in a round trip of its own and both replies go on the arm script's stdin.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from fleetdiag.armed_fetch import _SETTLE_S, _fetch, host_result
from fleetdiag.armed_sweep import (
    ANSIBLE_WAVE_FACTOR,
    DEFAULT_PICKUP_S,
    MIN_LEAD_S,
    ArmedHost,
    armed_from_document,
)
from fleetdiag.armed_sweep import armed_document as armed_fields
from fleetdiag.arming import PING_REPLY, arm_script, hold_seconds, parse_armed_dir, parse_clock, start_reply
from fleetdiag.collector import (
    DETECTION_TIMEOUT_S,
    _detection_from,
    _detection_script,
    _failed,
    _how_it_ended,
    _no_tracer_sentence,
    _raise_for_sudo,
    _with_fallback_notes,
    plan_first_usable,
    tracer_candidates,
)
from fleetdiag.errors import HostError, RemoteCommandError, UnreachableError
from fleetdiag.model import HostResult, HostSpec, Status, Window, frozen_map
from fleetdiag.module_builds import ModuleUnavailable
from fleetdiag.sections import split_sections
from fleetdiag.sweep import with_groups
from fleetdiag.transport.ansible_connection import AnsibleTransport
from fleetdiag.transport.base import reply
from fleetdiag.window_script import remote_deadline_s

# The host's clock and boot id, read in a round trip of its own (the arm script's own reading
# comes after its replies are written, too late for them).
CLOCK_SCRIPT = """case ${EPOCHREALTIME:-} in
  [0-9]*[.,]*) now="${EPOCHREALTIME%[.,]*}.${EPOCHREALTIME#*[.,]}" ;;
  *) now=$(date +%s.%N) ;;
esac
echo "@@fleetdiag clock $now $(cat /proc/sys/kernel/random/boot_id 2>/dev/null)\""""
_SPEC_FIELDS = ("name", "address", "port", "user", "become", "connection", "groups")


# Before a second host has reached the task, how long Ansible is taken to need per host to start the
# next one (its linear strategy starts workers one by one: about this on a busy 2-core controller).
DEFAULT_STAGGER_S = 0.1


def arm_lead_s(elapsed_s: float, hosts: int, forks: int, arrivals: list[float] | None = None,
               now: float | None = None) -> float:  # fmt: skip
    """How far ahead of now the play's instant lies, from the first host's detection and clock trips.

    Its arm trip is left (half as long again); the rest of the first forks batch is still being
    started by Ansible (at the rate ARRIVALS show, the times hosts reached the task so far); each
    further batch takes about the three trips. ANSIBLE_WAVE_FACTOR leaves room for slower hosts, as
    collect's armed sweeps do.
    """
    waves = max(1, math.ceil(max(1, hosts) / max(1, forks)))
    first_wave = min(max(1, hosts), max(1, forks))
    arrivals = sorted(arrivals or [])
    now = time.time() if now is None else now
    if len(arrivals) >= 2 and arrivals[-1] > arrivals[0]:
        per_host = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    else:
        per_host = DEFAULT_STAGGER_S
    still_starting = max(0, first_wave - len(arrivals)) * per_host
    if arrivals:  # the last arrival's own trips are not done either
        still_starting += max(0.0, arrivals[-1] + elapsed_s - now)
    return MIN_LEAD_S + (elapsed_s * (0.5 + 1.5 * (waves - 1)) + still_starting) * ANSIBLE_WAVE_FACTOR


def arm(
    spec: HostSpec,
    transport: AnsibleTransport,
    window: Window,
    wanted: str,
    instant: Callable[[float], float],
    pickup_s: float = DEFAULT_PICKUP_S,
) -> ArmedHost | HostResult:
    """Detect, read the clock and arm one host for the play's instant; never raises for the host.

    ``instant`` gets the seconds this host's trips took so far and returns the play's instant
    (set once the first forks batch is ready, see ``ansible_instant.wave_instant``).
    """
    began = time.monotonic()
    facts = None
    try:
        detected = transport.run(_detection_script(wanted), timeout=DETECTION_TIMEOUT_S)
        _raise_for_sudo(detected)
        detection = _detection_from(detected, wanted)
        facts = detection.facts
        if detection.tracer is None:
            return replace(_failed(spec, facts, None, _no_tracer_sentence(wanted, detection)),
                           tracers=frozen_map(detection.verdicts))
        # As in held mode: a systemtap host that cannot build its module (none is shipped here) falls back.
        candidates, fallbacks = tracer_candidates(detection, wanted), []
        try:
            tracer, plan, origin = plan_first_usable(spec, candidates, detection, window, transport, None, fallbacks)
        except ModuleUnavailable as exc:
            probe = detection.verdicts[candidates[-1].name].probe
            return _with_fallback_notes(_failed(spec, facts, probe, str(exc)), fallbacks)
        sent = time.time()
        clock_out = transport.run(CLOCK_SCRIPT, timeout=DETECTION_TIMEOUT_S)
        clock = parse_clock(clock_out.stdout, sent, time.time())
        if clock is None:
            raise RemoteCommandError(f"the host printed no clock reading ({_how_it_ended(clock_out)})")
        start = instant(time.monotonic() - began)
        now = time.time()
        hold = hold_seconds(start - now, window.duration_s, plan)
        replies = reply(PING_REPLY) + start_reply(start + clock.offset_s, pickup_s, hold)
        result = transport.run_with_input(arm_script(plan, window.duration_s), replies)
        _raise_for_sudo(result)
        directory = parse_armed_dir(result.stdout)
        if directory is None:
            error = split_sections(result.stdout).get("error", "").strip()
            failed = _failed(spec, facts, None, error or f"the arm script ended early ({_how_it_ended(result)})")
            return _with_fallback_notes(failed, fallbacks)
        return ArmedHost(
            spec=spec,
            directory=directory,
            boot_id=clock.boot_id,
            detection=detected.stdout,
            tracer=tracer.name,
            probe=plan.probe,
            fidelity=getattr(plan.fidelity, "value", None),
            clock_offset_s=round(clock.offset_s, 4),
            clock_bound_s=round(clock.bound_s, 4),
            start_s=max(start, now),
            deadline_s=remote_deadline_s(window.duration_s, plan),
            duration_s=window.duration_s,
            module=origin,
            fallbacks=tuple(fallbacks),
        )
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    except (HostError, ModuleUnavailable) as exc:
        return _failed(spec, facts, None, str(exc))


def armed_document(armed: ArmedHost, duration_s: int, wanted: str = "auto", port: int | None = None,
                   instant: float | None = None) -> dict[str, Any]:  # fmt: skip
    """What the arm task returns for the fetch task (JSON: Ansible registers it)."""
    doc = armed_fields(armed)
    doc["spec"] = {name: getattr(armed.spec, name) for name in _SPEC_FIELDS}
    doc.update(duration_s=duration_s, wanted=wanted, port=port, instant=armed.start_s if instant is None else instant)
    return doc


def arm_task_result(armed: ArmedHost, options: Any, instant: float | None = None) -> dict[str, Any]:
    """The arm task's result: ``armed`` for the fetch task, the instant, one sentence."""
    end = armed.start_s + options.duration
    when = datetime.fromtimestamp(armed.start_s, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    return {
        "changed": False,
        "armed": armed_document(armed, options.duration, options.tracer, options.port, instant),
        "start_at": armed.start_s,
        "window_end": end,
        "msg": f"{armed.probe} armed for {when} UTC, {options.duration} s (fetch after {end:.3f})",
    }


def armed_from(document: Mapping[str, Any]) -> tuple[ArmedHost, int, str, int | None]:
    """The ArmedHost, window length, tracer asked for and port an arm task returned; ValueError if not one.
    (Its ``instant`` is the play's: ``fetch_task_result`` reports it.)"""
    try:
        saved = {k: v for k, v in dict(document["spec"]).items() if k in _SPEC_FIELDS}
        spec = HostSpec(**{**saved, "groups": tuple(saved.get("groups") or ())})
        armed = armed_from_document(spec, dict(document))
        port = document.get("port")
        return armed, int(document["duration_s"]), str(document.get("wanted") or "auto"), None if port is None else int(port)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not what fleetdiag.drops.arm returned ({exc})") from None


def not_armed_result(registered: Mapping[str, Any]) -> dict[str, Any]:
    """The fetch task's result for a host the arm task did not arm: its failure (or check) as it was."""
    keep = ("host", "flows", "port", "check", "failed", "unreachable", "skipped", "msg")
    result = {"changed": False, **{k: registered[k] for k in keep if k in registered}}
    if not any(k in registered for k in ("host", "check", "failed", "unreachable", "skipped")):
        result.update(failed=True, msg="the arm task armed nothing here: " + str(registered.get("msg") or "no result"))
    return result


def fetch(armed: ArmedHost, duration_s: int, transport: AnsibleTransport, wanted: str,
          clock: Callable[[], float] = time.time) -> HostResult:  # fmt: skip
    """Wait for the armed window to end (controller clock), fetch its result, leave nothing behind."""
    delay = armed.start_s + duration_s + _SETTLE_S - clock()
    if delay > 0:
        time.sleep(delay)
    spec = armed.spec
    try:
        return with_groups(host_result(armed, _fetch(armed, transport, stop=False), wanted), spec)
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE,
                          error=f"could not fetch its armed window's result: {exc}")  # fmt: skip
    except HostError as exc:
        return HostResult(spec.name, spec.address, Status.FAILED,
                          error=f"could not fetch its armed window's result: {exc}")  # fmt: skip


def fetch_task_result(host: HostResult, document: Mapping[str, Any]) -> dict[str, Any]:
    """The fetch task's result: the window task's, plus the mode and the play's instant for the saved sweep."""
    from fleetdiag.ansible_task import window_task_result

    port = document.get("port")
    result = window_task_result(host, None if port is None else int(port))
    instant = document.get("instant")
    result.update(mode="armed", window_instant=float(instant) if isinstance(instant, (int, float)) else None)
    return result
