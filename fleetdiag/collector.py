"""The per-host collector: facts, probe choice, one window, one HostResult.

It only needs a Transport, so the same code serves SSH (Fabric), this machine, and
later an Ansible module running on the host itself. It never raises for a host's
failure: every outcome is a HostResult.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

from fleetdiag import tracers
from fleetdiag.counters import counter_delta, parse_netstat
from fleetdiag.errors import HostError, RemoteCommandError, UnreachableError
from fleetdiag.facts import detection_script, parse_facts
from fleetdiag.live import LiveCallback, LiveDecoder
from fleetdiag.model import (
    Fidelity,
    HostCheck,
    HostFacts,
    HostResult,
    HostSpec,
    ModuleOrigin,
    Status,
    Window,
    frozen_map,
)
from fleetdiag.module_builds import ModuleBuilds, ModuleUnavailable
from fleetdiag.sections import split_sections
from fleetdiag.timeline import host_timeline
from fleetdiag.tracers import systemtap
from fleetdiag.tracers.base import ProbePlan, Tracer
from fleetdiag.tracers.counters import counter_samples
from fleetdiag.tracers.prog_stats import parse_probe_stats
from fleetdiag.transport.base import ASK_MARKER, CommandResult, Transport, reply
from fleetdiag.window_script import GO_REPLY, build_window_script, detect_then_window_script, remote_deadline_s

log = logging.getLogger(__name__)

# Milliseconds on a server; 19 s measured on an emulated Debian 13 guest (every fact: BTF dump, python
# imports), over 30 s while the machine under it was loaded.
DETECTION_TIMEOUT_S = 60
# Beyond the host's own deadline, how long the controller waits for the output to arrive.
TRANSFER_MARGIN_S = 15
# Lines tracers print that are noise, not errors (bpftrace on memcg-accounted kernels).
# `timeout`'s exit status when it had to end the command.
_TIMEOUT_EXPIRED = 124
_BENIGN_STDERR = ("RLIMIT_MEMLOCK",)


@dataclass(frozen=True)
class Detection:
    """Facts plus the tracer chosen from them, with every tracer's verdict."""

    facts: HostFacts
    tracer: Tracer | None
    verdicts: dict[str, tracers.Verdict]


# Choices the deep facts cannot change on a host where bpftrace's rx_sk tier fits.
_FIRST_FIT_CHOICES = frozenset({"auto", "bpftrace", "counters"})


def detect(transport: Transport, wanted: str = "auto", examine_all: bool = False) -> Detection:
    """Learn the host's facts in one round trip and choose its tracer."""
    # The host may stop at the first fit unless bcc or stap is forced, or `check` asks
    # for every tracer's verdict.
    result = transport.run(_detection_script(wanted, examine_all), timeout=DETECTION_TIMEOUT_S)
    _raise_for_sudo(result)
    return _detection_from(result, wanted)


def _detection_script(wanted: str, examine_all: bool = False) -> str:
    first_fit = wanted in _FIRST_FIT_CHOICES and not examine_all
    return detection_script(first_fit=first_fit, counters_only=wanted == "counters" and not examine_all)


def _detection_from(result: CommandResult, wanted: str) -> Detection:
    """Facts from the detection script's output, and the tracer chosen from them."""
    facts = parse_facts(result.stdout)
    if facts.kernel is None:
        raise RemoteCommandError(f"detection printed no kernel release ({_how_it_ended(result)})")
    tracer, verdicts = tracers.choose(facts, wanted)
    return Detection(facts, tracer, verdicts)


@dataclass
class _FirstTrip:
    """Detection, and the first window when it ran in the same round trip (``plan`` and ``result``)."""

    detection: Detection
    plan: ProbePlan | None = None
    result: CommandResult | None = None  # the window's part of the output


class _WindowOffer:
    """Answers the detection script's questions, so detection and the window take one round trip.

    Runs in the host's worker thread while its session waits. First question (the facts are
    in): choose the tracer and reply with the window script, which sets up its temp dir and
    files at once. Second question (set up, ready to start): pass the sweep's window gate and
    reply "go", so every host starts its window together with nothing left to do but start.
    An empty reply ends the host's script instead: no tracer fits, a stop came, or the tracer
    needs a round trip of its own first (systemtap's module build). Never raises: a failure is
    kept for the collector to raise once the run is over.
    """

    def __init__(self, spec: HostSpec, window: Window, wanted: str, before_window: Callable[[], None] | None,
                 on_live: LiveCallback | None) -> None:  # fmt: skip
        self.spec, self.window, self.wanted = spec, window, wanted
        self.before_window, self.on_live = before_window, on_live
        self.detection: Detection | None = None
        self.plan: ProbePlan | None = None
        self.error: Exception | None = None
        self._live: Callable[[str], None] | None = None

    def answer(self, stdout: str) -> tuple[bytes, float]:
        no_window = (reply(b""), float(TRANSFER_MARGIN_S))
        try:
            if self.detection is None:
                return self._window_script(stdout) or no_window
            if self.before_window is not None:
                self.before_window()
            assert self.plan is not None
            return reply(GO_REPLY), float(remote_deadline_s(self.window.duration_s, self.plan) + TRANSFER_MARGIN_S)
        except Exception as exc:  # raised by the collector once the run is over
            self.plan = None
            self.error = exc
            return no_window

    def _window_script(self, stdout: str) -> tuple[bytes, float] | None:
        detected = stdout.split(ASK_MARKER + "\n", 1)[0]
        self.detection = _detection_from(CommandResult(detected, "", 0), self.wanted)
        tracer, facts = self.detection.tracer, self.detection.facts
        if tracer is None or tracer is systemtap:
            return None
        self.plan = tracer.plan(facts, self.window)
        if self.window.follow and self.on_live is not None:
            self._live = LiveDecoder(self.spec.name, tracer, facts, self.on_live).feed
        script = build_window_script(self.plan, self.window.duration_s, follow=self.window.follow, ask_before_start=True)
        return reply(script.encode()), float(DETECTION_TIMEOUT_S)  # until it is set up and asks to start

    def on_line(self, line: str) -> None:
        """--follow: the window's live lines, once it runs."""
        if self._live is not None:
            self._live(line)


def _first_trip(
    spec: HostSpec,
    transport: Transport,
    window: Window,
    wanted: str,
    before_window: Callable[[], None] | None,
    on_live: LiveCallback | None,
) -> _FirstTrip:
    """Detection, and where the transport can answer mid-run, the first window in the same session."""
    if not getattr(transport, "can_answer", False):
        return _FirstTrip(detect(transport, wanted))
    offer = _WindowOffer(spec, window, wanted, before_window, on_live)
    result = transport.run(
        detect_then_window_script(_detection_script(wanted)),
        timeout=DETECTION_TIMEOUT_S,
        on_line=offer.on_line if window.follow and on_live is not None else None,
        answer=offer.answer,
    )
    _raise_for_sudo(result)
    if offer.error is not None:
        raise offer.error
    detection = offer.detection or _detection_from(result, wanted)  # it ended before asking
    if offer.plan is None:
        return _FirstTrip(detection)
    window_part = result.stdout.split(ASK_MARKER + "\n")[-1]  # after the window's own question
    return _FirstTrip(detection, offer.plan, CommandResult(window_part, result.stderr, result.exit_code))


def collect_host(
    spec: HostSpec,
    transport: Transport,
    window: Window,
    wanted: str = "auto",
    before_window: Callable[[], None] | None = None,
    on_live: LiveCallback | None = None,
    modules: ModuleBuilds | None = None,
) -> HostResult:
    """Run detection and one probe window on a host; always returns a HostResult.

    ``modules`` (a sweep's) builds each systemtap module once per kernel release and ships it;
    without it a systemtap host compiles its own in its window (the self-contained collector).

    ``before_window`` runs between detection and the window (the sweep holds every host
    there until all are ready, so they watch the same seconds); a HostError it raises
    becomes this host's result. With ``window.follow`` and ``on_live``, the host's drops
    reach ``on_live`` once a second while the window runs (``fleetdiag.live``).
    """
    facts: HostFacts | None = None
    probe: str | None = None
    try:
        trip = _first_trip(spec, transport, window, wanted, before_window, on_live)
        detection = trip.detection
        facts = detection.facts
        if modules is not None and detection.tracer is systemtap:
            modules.announce(spec.name, facts)
        if detection.tracer is None:
            return replace(
                _failed(spec, facts, None, _no_tracer_sentence(wanted, detection)),
                tracers=frozen_map(detection.verdicts),
            )
        # auto: a probe that fails to start (a compile error, a kernel that refuses it)
        # hands over to the next usable tracer, down to counters, and the result says so.
        candidates = tracer_candidates(detection, wanted)
        failures: list[str] = []
        while candidates:
            origin: ModuleOrigin | None = None
            if trip.plan is not None and trip.result is not None and candidates[0] is detection.tracer:
                tracer, plan, result = detection.tracer, trip.plan, trip.result  # it ran in the detection's round trip
            else:
                if before_window is not None:
                    before_window()  # the gate is open after the first time; a stop request still ends here
                try:
                    tracer, plan, origin = plan_first_usable(spec, candidates, detection, window, transport, modules,
                                                             failures)  # fmt: skip
                except ModuleUnavailable as exc:
                    probe = detection.verdicts[candidates[-1].name].probe
                    return _with_fallback_notes(_failed(spec, facts, probe, str(exc)), failures)
                result = _run_window(spec, transport, tracer, facts, plan, window, on_live)
            candidates = candidates[candidates.index(tracer) + 1 :]
            probe = plan.probe
            host = window_result(spec, facts, tracer, plan.probe, result, plan=plan, verdicts=detection.verdicts,
                                 window=window)  # fmt: skip
            host = with_module(host, origin)
            if host.status is Status.OK or _probe_started(result) or not candidates:
                return _with_fallback_notes(host, failures)
            failures.append(f"{plan.probe}: {host.error}")
        raise AssertionError("the last candidate always returns")
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    except HostError as exc:
        return _failed(spec, facts, probe, str(exc))
    finally:
        if modules is not None:
            modules.withdraw(spec.name)  # nobody may wait for a build from a host that is done


def _run_window(
    spec: HostSpec,
    transport: Transport,
    tracer: Tracer,
    facts: HostFacts,
    plan: ProbePlan,
    window: Window,
    on_live: LiveCallback | None,
) -> CommandResult:
    """The window script for PLAN, in a round trip of its own."""
    log.debug("%s: running %s for %s s", spec.name, plan.probe, window.duration_s)
    streaming = {}
    if window.follow and on_live is not None:
        streaming["on_line"] = LiveDecoder(spec.name, tracer, facts, on_live).feed
    result = transport.run(
        build_window_script(plan, window.duration_s, follow=window.follow),
        timeout=remote_deadline_s(window.duration_s, plan) + TRANSFER_MARGIN_S,
        **streaming,
    )
    _raise_for_sudo(result)
    return result


def _plan(
    spec: HostSpec,
    tracer: Tracer,
    facts: HostFacts,
    window: Window,
    transport: Transport,
    modules: ModuleBuilds | None,
) -> tuple[ProbePlan, ModuleOrigin | None]:
    """The tracer's plan for this host; for systemtap, with the module and where it came from."""
    if tracer is not systemtap:
        return tracer.plan(facts, window), None
    if modules is not None:
        module, origin = modules.module_for(spec.name, facts, transport)
        return systemtap.plan(facts, window, module), origin
    problem = systemtap.build_problem(facts)
    if problem is not None:
        raise ModuleUnavailable(f"this host cannot compile a systemtap module ({problem}) and none was shipped to it")
    return systemtap.plan(facts, window), ModuleOrigin("compiled here", spec.name)


def tracer_candidates(detection: Detection, wanted: str) -> list[Tracer]:
    """The tracers a host may use, in order: the chosen one, then (with ``auto``) every usable one after it."""
    if detection.tracer is None:
        return []
    return [detection.tracer, *(_fallbacks(detection) if wanted == "auto" else [])]


def plan_first_usable(
    spec: HostSpec,
    candidates: list[Tracer],
    detection: Detection,
    window: Window,
    transport: Transport,
    modules: ModuleBuilds | None,
    failures: list[str],
) -> tuple[Tracer, ProbePlan, ModuleOrigin | None]:
    """The first candidate a plan can be made for; held and armed windows both fall back through it.

    A systemtap host that can neither build its module nor receive one hands over to the next
    candidate (down to counters); each one passed over adds a sentence to ``failures``. Raises
    the last candidate's ModuleUnavailable when none is left.
    """
    for tracer in candidates:
        try:
            plan, origin = _plan(spec, tracer, detection.facts, window, transport, modules)
            return tracer, plan, origin
        except ModuleUnavailable as exc:
            if tracer is candidates[-1]:
                raise
            failures.append(f"{detection.verdicts[tracer.name].probe}: {exc}")
    raise ModuleUnavailable("no tracer to plan for")


def with_module(host: HostResult, origin: ModuleOrigin | None) -> HostResult:
    """The host with where its systemtap module came from, for people (a note) and for JSON."""
    if origin is None:
        return host
    return replace(host, module=origin, notes=(*host.notes, origin.sentence()))


def _fallbacks(detection: Detection) -> list[Tracer]:
    """The usable tracers after the chosen one, in preference order."""
    names = list(detection.verdicts)
    chosen = names.index(detection.tracer.name) if detection.tracer else len(names)
    return [tracers.BY_NAME[n] for n in names[chosen + 1 :] if detection.verdicts[n].usable]


def _with_fallback_notes(host: HostResult, failures: list[str] | tuple[str, ...]) -> HostResult:
    """Say which probes failed before this one; a host that failed on them all keeps every reason."""
    if not failures:
        return host
    if host.status is Status.OK:
        return replace(host, notes=(*(f"{f}; fell back to {host.probe}" for f in failures), *host.notes))
    return replace(host, error=f"{host.error} (before it: {'; '.join(failures)})")


def _probe_started(result: CommandResult) -> bool:
    """Whether the probe got as far as watching (it printed @@attached)."""
    return "@@attached" in split_sections(result.stdout).get("probe_out", "")


def check_host(spec: HostSpec, transport: Transport, wanted: str = "auto") -> HostCheck:
    """Detection only (``fleetdiag check``): the host's kernel, every tracer's verdict, the probe collect would run."""
    try:
        detection = detect(transport, wanted, examine_all=True)
    except UnreachableError as exc:
        return HostCheck(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    except HostError as exc:
        return HostCheck(spec.name, spec.address, Status.FAILED, error=str(exc))
    facts, tracer = detection.facts, detection.tracer
    return HostCheck(
        name=spec.name,
        address=spec.address,
        status=Status.OK if tracer else Status.FAILED,
        error=None if tracer else _no_tracer_sentence(wanted, detection),
        kernel=facts.kernel,
        os_name=facts.os_name,
        tracers=frozen_map(detection.verdicts),
        tracer=tracer.name if tracer else None,
        probe=detection.verdicts[tracer.name].probe if tracer else None,
    )


def window_result(
    spec: HostSpec,
    facts: HostFacts,
    tracer: Tracer,
    probe: str,
    result: CommandResult,
    *,
    plan: ProbePlan | None = None,
    verdicts: dict[str, tracers.Verdict] | None = None,
    window: Window | None = None,
) -> HostResult:
    """Interpret the window script's output (pure: tested from recorded output).

    WINDOW gives the timeline's interval (without it, the window's length as the host measured it).
    """
    sections = split_sections(result.stdout)
    if "error" in sections:
        return _failed(spec, facts, probe, sections["error"].strip())
    if "window" not in sections:
        return _failed(spec, facts, probe, f"the window script ended early ({_how_it_ended(result)})")
    start, end, rc = _window_line(sections["window"])
    end = _closed_at(sections.get("counters_after", "")) or end
    probe_out = sections.get("probe_out", "")
    probe_err = sections.get("probe_err", "")
    if "@@attached" not in probe_out:
        why = _tracer_error(probe_err) or f"exit code {rc}"
        return _failed(spec, facts, probe, f"{tracer.name} did not start: {why}")
    report = tracer.parse(probe_out, facts)
    if not report.counter_samples and sections.get("tcpext_samples"):
        # A traced tier's TcpExt, sampled beside the probe by the window script.
        report = replace(report, counter_samples=counter_samples(sections["tcpext_samples"]))
    before, after = parse_netstat(sections.get("counters_before", "")), parse_netstat(sections.get("counters_after", ""))
    counters = counter_delta(before, after)
    duration = window.duration_s if window else round(end - start) if start is not None and end is not None else 1
    timeline, flows, timeline_notes = host_timeline(report, duration, start, before, after, list(counters))
    notes = []
    # The stopper ends a BPF probe at the host's limit itself, a second early, to read its programs first.
    stopped_at_limit = "stopped_by limit" in (sections.get("probe_stats") or "")
    if (rc == _TIMEOUT_EXPIRED or stopped_at_limit) and start is not None and end is not None:
        # The probe was slow to attach (e.g. a compile on a slow host), so the host's own limit
        # (window + attach allowance) ended it before its timer: the results stand, the window is shorter.
        notes.append(f"{tracer.name} was slow to attach and the host's time limit ended it: it watched {end - start:.1f} s")
    elif rc not in (0, None):
        notes.append(f"{tracer.name} exited with code {rc}: {_tracer_error(probe_err) or 'no message'}")
    if report.flows_truncated:
        notes.append("some drops are counted per reason only: no flow or the flow map was full")
    notes += report.notes  # what this probe could not see (diagnosis reconciles traced vs counted)
    stats = parse_probe_stats(sections.get("probe_stats"), sum(report.drops.values()))
    if stats is None and "prog " in (sections.get("probe_stats") or ""):
        notes.append("this kernel does not count BPF recursion misses (5.12+ does): misses unknown")
    elif stats is None and plan is not None and plan.reads_stats:
        notes.append("the probe's programs were not read before they unloaded (the window was stopped early): "
                     "recursion misses unknown")  # fmt: skip
    notes += timeline_notes
    fidelity = plan.fidelity if plan else Fidelity.TRACED
    return HostResult(
        name=spec.name,
        address=spec.address,
        status=Status.OK,
        kernel=facts.kernel,
        probe=probe,
        drops=report.drops,
        counters=frozen_map(counters),
        flows=flows,
        netns=facts.netns,
        window_start=start,
        window_end=end,
        notes=tuple(notes),
        fidelity=fidelity,
        tracers=frozen_map(verdicts or {}),
        probe_stats=stats,
        flows_truncated=report.flows_truncated,
        tcp_buffers=facts.tcp_buffers,
        timeline=timeline,
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
        return f"tracer {wanted} cannot run here: {detection.verdicts[wanted].reason}"
    return f"no usable tracer ({reasons})"


def _window_line(text: str) -> tuple[float | None, float | None, int | None]:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None, None, None


def _closed_at(counters_after: str) -> float | None:
    """When the stopper read the closing counters ("closed_at EPOCH"), while the probe still watched:
    the window's end. (The window line's end comes after the probe had stopped and printed.)"""
    for line in counters_after.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "closed_at":
            try:
                return float(words[1])
            except ValueError:
                return None
    return None


def _tracer_error(stderr: str) -> str | None:
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not any(noise in line for noise in _BENIGN_STDERR)
    ]
    errors = [line for line in lines if "ERROR" in line or "error" in line]
    found = errors or lines
    return found[0] if found else None


def _how_it_ended(result: CommandResult) -> str:
    """A script's exit code and its last word on stderr, for a script whose output is missing.
    The exit code tells a killed script from one whose report went missing on the way."""
    code = f"exit code {result.exit_code}" if result.exit_code >= 0 else ""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return ": ".join(part for part in (code, lines[-1] if lines else "") if part) or "no exit code"


def _raise_for_sudo(result: CommandResult) -> None:
    if "sudo:" in result.stderr and "password" in result.stderr:
        raise RemoteCommandError(
            "sudo asked for a password",
            hint="allow passwordless sudo for fleetdiag's commands, or log in as root",
        )
