"""The per-host collector: facts, probe choice, one window, one HostResult.

It only needs a Transport, so the same code serves SSH (Fabric), this machine, and
later an Ansible module running on the host itself. It never raises for a host's
failure: every outcome is a HostResult.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleetdiag import tracers
from fleetdiag.counters import counter_delta, parse_netstat
from fleetdiag.errors import HostError, RemoteCommandError, UnreachableError
from fleetdiag.facts import detection_script, parse_facts
from fleetdiag.model import HostFacts, HostResult, HostSpec, Status, Window, frozen_map
from fleetdiag.sections import split_sections
from fleetdiag.tracers.base import Tracer
from fleetdiag.transport.base import CommandResult, Transport
from fleetdiag.window_script import build_window_script, remote_deadline_s

log = logging.getLogger(__name__)

DETECTION_TIMEOUT_S = 30
# Beyond the host's own deadline, how long the controller waits for the output to arrive.
TRANSFER_MARGIN_S = 15
# Lines tracers print that are noise, not errors (bpftrace on memcg-accounted kernels).
_BENIGN_STDERR = ("RLIMIT_MEMLOCK",)


@dataclass(frozen=True)
class Detection:
    """Facts plus the tracer chosen from them, with every tracer's verdict."""

    facts: HostFacts
    tracer: Tracer | None
    verdicts: dict[str, tracers.Verdict]


def detect(transport: Transport, wanted: str = "auto") -> Detection:
    """Learn the host's facts in one round trip and choose its tracer."""
    result = transport.run(detection_script(), timeout=DETECTION_TIMEOUT_S)
    _raise_for_sudo(result)
    facts = parse_facts(result.stdout)
    if facts.kernel is None:
        detail = _last_line(result.stderr) or f"exit code {result.exit_code}"
        raise RemoteCommandError(f"detection printed no kernel release ({detail})")
    tracer, verdicts = tracers.choose(facts, wanted)
    return Detection(facts, tracer, verdicts)


def collect_host(spec: HostSpec, transport: Transport, window: Window, wanted: str = "auto") -> HostResult:
    """Run detection and one probe window on a host; always returns a HostResult."""
    facts: HostFacts | None = None
    probe: str | None = None
    try:
        detection = detect(transport, wanted)
        facts = detection.facts
        if detection.tracer is None:
            return _failed(spec, facts, None, _no_tracer_sentence(wanted, detection))
        plan = detection.tracer.plan(facts, window)
        probe = plan.probe
        log.debug("%s: running %s for %s s", spec.name, plan.probe, window.duration_s)
        result = transport.run(
            build_window_script(plan, window.duration_s),
            timeout=remote_deadline_s(window.duration_s) + TRANSFER_MARGIN_S,
        )
        _raise_for_sudo(result)
        return window_result(spec, facts, detection.tracer, plan.probe, result)
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    except HostError as exc:
        return _failed(spec, facts, probe, str(exc))


def window_result(
    spec: HostSpec, facts: HostFacts, tracer: Tracer, probe: str, result: CommandResult
) -> HostResult:
    """Interpret the window script's output (pure: tested from recorded output)."""
    sections = split_sections(result.stdout)
    if "error" in sections:
        return _failed(spec, facts, probe, sections["error"].strip())
    if "window" not in sections:
        detail = _last_line(result.stderr) or f"exit code {result.exit_code}"
        return _failed(spec, facts, probe, f"the window script ended early ({detail})")
    start, end, rc = _window_line(sections["window"])
    probe_out = sections.get("probe_out", "")
    probe_err = sections.get("probe_err", "")
    if "@@attached" not in probe_out:
        why = _tracer_error(probe_err) or f"exit code {rc}"
        return _failed(spec, facts, probe, f"{tracer.name} did not start: {why}")
    report = tracer.parse(probe_out, facts)
    counters = counter_delta(
        parse_netstat(sections.get("counters_before", "")),
        parse_netstat(sections.get("counters_after", "")),
    )
    notes = []
    if rc not in (0, None):
        notes.append(f"{tracer.name} exited with code {rc}: {_tracer_error(probe_err) or 'no message'}")
    if report.flows_truncated:
        notes.append("some drops are counted per reason only: no flow or the flow map was full")
    return HostResult(
        name=spec.name,
        address=spec.address,
        status=Status.OK,
        kernel=facts.kernel,
        probe=probe,
        drops=report.drops,
        counters=frozen_map(counters),
        flows=report.flows,
        netns=facts.netns,
        window_start=start,
        window_end=end,
        notes=tuple(notes),
    )


def _failed(spec: HostSpec, facts: HostFacts | None, probe: str | None, error: str) -> HostResult:
    return HostResult(
        spec.name,
        spec.address,
        Status.FAILED,
        error=error,
        kernel=facts.kernel if facts else None,
        probe=probe,
        netns=facts.netns if facts else None,
    )


def _no_tracer_sentence(wanted: str, detection: Detection) -> str:
    reasons = "; ".join(f"{name}: {v.reason}" for name, v in detection.verdicts.items() if not v.usable)
    if wanted != "auto":
        return f"tracer {wanted} cannot run here ({reasons})"
    return f"no usable tracer ({reasons})"


def _window_line(text: str) -> tuple[float | None, float | None, int | None]:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None, None, None


def _tracer_error(stderr: str) -> str | None:
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not any(noise in line for noise in _BENIGN_STDERR)
    ]
    errors = [line for line in lines if "ERROR" in line or "error" in line]
    return (errors or lines or [None])[0]


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _raise_for_sudo(result: CommandResult) -> None:
    if "sudo:" in result.stderr and "password" in result.stderr:
        raise RemoteCommandError(
            "sudo asked for a password",
            hint="allow passwordless sudo for fleetdiag's commands, or log in as root",
        )
