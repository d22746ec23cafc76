"""Armed sweeps: every host watches the same window at one instant, whatever ``--forks`` is.

Arm phase: ``forks`` short sessions at a time detect, set up and arm each host for one
wall-clock instant chosen for the whole fleet (``FleetInstant``: late enough that every host
can be armed before it, from the first sessions' measured time), then disconnect. The
windows then run on the hosts by themselves (``fleetdiag.arming``); the controller holds
nothing for them and sleeps. Fetch phase (``fleetdiag.armed_fetch``): ``forks`` short
sessions at a time collect each result and remove it from the host.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from fleetdiag.arming import (
    PING_REPLY,
    arm_script,
    hold_seconds,
    parse_armed_dir,
    parse_clock,
    start_reply,
)
from fleetdiag.collector import (
    DETECTION_TIMEOUT_S,
    Detection,
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
from fleetdiag.connect_ramp import DEFAULT_HANDSHAKES, ConnectRamp
from fleetdiag.errors import HostError, RemoteCommandError, UnreachableError
from fleetdiag.interrupt import StopRequest
from fleetdiag.model import HostResult, HostSpec, ModuleOrigin, Status, frozen_map
from fleetdiag.module_builds import ModuleBuilds, ModuleCache, ModuleUnavailable, default_cache_dir
from fleetdiag.sections import split_sections
from fleetdiag.sweep import ProgressCallback, SweepOptions, with_groups
from fleetdiag.tracers import systemtap
from fleetdiag.tracers.base import ProbePlan, Tracer
from fleetdiag.transport.base import ASK_MARKER, CommandResult, Transport, reply
from fleetdiag.window_script import detect_then_window_script, remote_deadline_s

log = logging.getLogger(__name__)

DEFAULT_PICKUP_S = 900  # a result nobody fetched leaves its host 15 min after its window
MIN_LEAD_S = 1.0  # the instant is never sooner than this after the estimate says all are armed
# A later wave takes longer than the first wave took to reach its question: the rest of each
# session (the keeper and the window's set-up on the host) comes after it, and shares the CPUs
# the next wave's handshakes need. Measured on the lab (hosts share the controller's 2 cores,
# forks 50), the factor the last host needed: 1.38-1.39 at 200 hosts, 1.40-1.43 at 1000
# (1.3 left the last 17 of 200 late). 1.6 leaves 12-16% over that; 2 left 11-13 s of idle
# wait before the instant at 1000 hosts.
WAVE_FACTOR = 1.6
# The Ansible collection's instants (ansible_armed, ansible_instant) keep the factor they were
# measured with: Ansible starts a batch's workers one by one, so its waves vary more.
ANSIBLE_WAVE_FACTOR = 2.0
_ANSWER_S = 15.0


@dataclass(frozen=True)
class ArmOptions:
    """What only armed sweeps need: when to start, how long a host keeps an unfetched result."""

    start_in_s: float | None = None  # None: as soon as every host can be armed
    pickup_s: float = DEFAULT_PICKUP_S
    handshakes: int = DEFAULT_HANDSHAKES


@dataclass(frozen=True)
class ArmedHost:
    """One host armed: everything a fetch needs, now or from a pending sweep's record later."""

    spec: HostSpec
    directory: str
    boot_id: str
    detection: str  # the detection script's output: the facts, read again at fetch
    tracer: str
    probe: str
    fidelity: str | None
    clock_offset_s: float
    clock_bound_s: float
    start_s: float  # when its window starts, controller clock (the fleet's instant, or later if armed late)
    deadline_s: int  # the most its window script can run after it starts
    duration_s: int = 0  # the window asked for: the probes count intervals of its length (0: a record from before)
    module: ModuleOrigin | None = None  # systemtap only: where its module came from
    fallbacks: tuple[str, ...] = ()  # the probes passed over before this one, and why (as in held mode)


def armed_document(armed: ArmedHost) -> dict[str, Any]:
    """ARMED's fields but its spec, as JSON values (a pending sweep's record, the Ansible arm task's result)."""
    doc = {f.name: getattr(armed, f.name) for f in fields(ArmedHost) if f.name != "spec"}
    doc["module"] = None if armed.module is None else asdict(armed.module)
    doc["fallbacks"] = list(armed.fallbacks)
    return doc


def armed_from_document(spec: HostSpec, doc: dict[str, Any]) -> ArmedHost:
    """The ArmedHost ``armed_document`` wrote (unknown keys ignored, new fields defaulted for older records)."""
    names = {f.name for f in fields(ArmedHost)} - {"spec"}
    values = {k: v for k, v in doc.items() if k in names}
    if values.get("module") is not None:
        values["module"] = ModuleOrigin(**values["module"])
    values["fallbacks"] = tuple(values.get("fallbacks") or ())
    return ArmedHost(spec=spec, **values)


@dataclass
class ArmedFleet:
    """An arm phase's outcome: the hosts armed, the results of those that could not be."""

    started_at: datetime
    launch: float  # epoch seconds, controller clock
    instant: float
    duration_s: int
    armed: list[ArmedHost] = field(default_factory=list)
    failed: dict[str, HostResult] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # inventory order
    armed_at: float = 0.0  # when the last host was armed

    @property
    def window_end(self) -> float:
        """When the last armed window ends, controller clock."""
        return max((a.start_s for a in self.armed), default=self.instant) + self.duration_s


class FleetInstant:
    """The fleet's start instant, decided once the first wave of hosts has been timed.

    The first ``forks`` hosts wait (at their last question) until all of them got there or
    failed. The time that wave took (its slowest host: the sessions share the controller's
    handshake slots and the hosts' CPUs, so the wave's throughput is what counts, not its median
    host), times the waves still to come and WAVE_FACTOR, plus a margin, says how late the
    instant must be for every host to be armed before it.
    """

    def __init__(self, total: int, forks: int, start_in_s: float | None, timeout_s: float) -> None:
        self.total, self.forks = total, max(1, forks)
        self.first_wave = min(total, self.forks)
        self.launch = time.time()
        self._began = time.monotonic()
        self.start_in_s = start_in_s
        self.timeout_s = timeout_s
        self.value: float | None = None
        self._entered = 0
        self._done = 0
        self._times: list[float] = []
        self._cond = threading.Condition()

    def enter(self) -> bool:
        """A host's session starts; whether it belongs to the first wave."""
        with self._cond:
            self._entered += 1
            return self._entered <= self.first_wave

    def leave(self) -> None:
        """A first-wave host that will never ask for the instant."""
        with self._cond:
            self._done += 1
            self._decide_if_ready()

    def wait(self, first: bool, elapsed_s: float, stop: StopRequest) -> float | None:
        """The instant (blocking until it is decided); None when the sweep is stopping."""
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            if first:
                self._done += 1
                self._times.append(elapsed_s)
                self._decide_if_ready()
            while self.value is None and not stop.requested.is_set():
                if time.monotonic() >= deadline:
                    self._decide()
                    break
                self._cond.wait(0.2)
            return None if stop.requested.is_set() else self.value

    def _decide_if_ready(self) -> None:
        if self.value is None and self._done >= self.first_wave:
            self._decide()

    def _decide(self) -> None:
        if self.value is not None:
            return
        if self.start_in_s is not None:
            self.value = self.launch + self.start_in_s
        else:
            # The slowest first-wave host that got there (not one that failed by its connect timeout).
            wave_s = max(self._times) if self._times else time.monotonic() - self._began
            waves_left = math.ceil((self.total - self.first_wave) / self.forks)
            self.value = time.time() + waves_left * wave_s * WAVE_FACTOR + max(MIN_LEAD_S, 0.5 * wave_s)
        self._cond.notify_all()


class _ArmOffer:
    """Answers the arm session's questions: the window (after detection), the ping, the instant."""

    def __init__(self, spec: HostSpec, options: SweepOptions, arm: ArmOptions, instant: FleetInstant,
                 first: bool, stop: StopRequest, began: float) -> None:  # fmt: skip
        self.spec, self.options, self.arm, self.instant = spec, options, arm, instant
        self.first, self.stop = first, stop
        self.began = began  # monotonic: when its session was asked for (connect included)
        self.stage = "detect"
        self.detected = ""
        self.detection: Detection | None = None
        self.tracer: Tracer | None = None
        self.plan: ProbePlan | None = None
        self.sent = 0.0
        self.clock = None
        self.start_s: float | None = None
        self.error: Exception | None = None
        self.asked_instant = False

    def standalone(self, tracer: Tracer, plan: ProbePlan) -> None:
        """The arm script runs as a script of its own (systemtap: its module, or a fallback, came in between)."""
        self.tracer, self.plan, self.stage = tracer, plan, "ping"

    def answer(self, stdout: str) -> tuple[bytes, float]:
        try:
            if self.stage == "detect":
                return self._after_detection(stdout)
            if self.stage == "ping":
                self.stage = "instant"
                self.sent = time.time()
                return reply(PING_REPLY), _ANSWER_S
            if self.stage == "instant":
                return self._instant(stdout, time.time())
        except Exception as exc:  # raised by the arm session once it is over
            self.error = exc
        self.stage = "over"
        return reply(b""), _ANSWER_S

    def _after_detection(self, stdout: str) -> tuple[bytes, float]:
        self.detected = stdout.split(ASK_MARKER + "\n", 1)[0]
        self.detection = _detection_from(CommandResult(self.detected, "", 0), self.options.tracer)
        tracer = self.detection.tracer
        if tracer is None or tracer is systemtap:  # systemtap's module comes in a round trip of its own
            self.stage = "over"
            return reply(b""), _ANSWER_S
        self.tracer, self.plan = tracer, tracer.plan(self.detection.facts, self.options.window)
        self.stage = "ping"
        return reply(arm_script(self.plan, self.options.window.duration_s).encode()), float(DETECTION_TIMEOUT_S)

    def _instant(self, stdout: str, received: float) -> tuple[bytes, float]:
        self.clock = parse_clock(stdout, self.sent, received)
        if self.clock is None:
            raise RemoteCommandError("the arm script printed no clock reading")
        self.asked_instant = True
        instant = self.instant.wait(self.first, time.monotonic() - self.began, self.stop)
        if instant is None:
            self.stage = "over"
            return reply(b""), _ANSWER_S
        assert self.plan is not None
        now = time.time()
        self.start_s = max(instant, now)
        start_host = instant + self.clock.offset_s
        wait_s = instant - now
        hold = hold_seconds(wait_s, self.options.window.duration_s, self.plan)
        self.stage = "armed"
        return start_reply(start_host, self.arm.pickup_s, hold), _ANSWER_S


def arm_host(
    spec: HostSpec,
    transport: Transport,
    options: SweepOptions,
    arm: ArmOptions,
    instant: FleetInstant,
    first: bool,
    stop: StopRequest,
    modules: ModuleBuilds | None = None,
    began: float | None = None,
) -> ArmedHost | HostResult:
    """Detect, set up and arm one host's window in one session (two for systemtap); never raises for the host."""
    offer = _ArmOffer(spec, options, arm, instant, first, stop, time.monotonic() if began is None else began)
    facts = None
    try:
        result = transport.run(detect_then_window_script(_detection_script(options.tracer)),
                               timeout=DETECTION_TIMEOUT_S, answer=offer.answer)  # fmt: skip
        _raise_for_sudo(result)
        if offer.error is not None:
            raise offer.error
        detection = offer.detection or _detection_from(result, options.tracer)
        offer.detected = offer.detected or result.stdout
        facts = detection.facts
        if detection.tracer is None:
            return replace(_failed(spec, facts, None, _no_tracer_sentence(options.tracer, detection)),
                           tracers=frozen_map(detection.verdicts))
        origin, fallbacks = None, []
        if detection.tracer is systemtap:
            if modules is not None:
                modules.announce(spec.name, facts)
            # As in held mode: a host that can neither build nor receive its module falls back (to counters).
            candidates = tracer_candidates(detection, options.tracer)
            try:
                tracer, plan, origin = plan_first_usable(spec, candidates, detection, options.window, transport,
                                                         modules, fallbacks)  # fmt: skip
            except ModuleUnavailable as exc:
                probe = detection.verdicts[candidates[-1].name].probe
                return _with_fallback_notes(_failed(spec, facts, probe, str(exc)), fallbacks)
            offer.standalone(tracer, plan)
            result = transport.run(arm_script(plan, options.window.duration_s), timeout=DETECTION_TIMEOUT_S,
                                   answer=offer.answer)  # fmt: skip
            _raise_for_sudo(result)
            if offer.error is not None:
                raise offer.error
        armed = _armed(spec, offer, detection, result, options)
        if isinstance(armed, ArmedHost):
            return replace(armed, module=origin, fallbacks=tuple(fallbacks))
        return _with_fallback_notes(armed, fallbacks)
    except UnreachableError as exc:
        return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
    except (HostError, ModuleUnavailable) as exc:
        return _failed(spec, facts, None, str(exc))
    finally:
        if first and not offer.asked_instant:
            instant.leave()
        if modules is not None:
            modules.withdraw(spec.name)


def _armed(spec: HostSpec, offer: _ArmOffer, detection: Detection, result: CommandResult,
           options: SweepOptions) -> ArmedHost | HostResult:  # fmt: skip
    """The armed host, or why the arm script did not arm it."""
    directory = parse_armed_dir(result.stdout)
    plan, clock, tracer = offer.plan, offer.clock, offer.tracer
    if directory is None or plan is None or clock is None or offer.start_s is None or tracer is None:
        if offer.stop.requested.is_set():
            return HostResult(spec.name, spec.address, Status.FAILED,
                              error=f"interrupted by {offer.stop.reason} before its window started")  # fmt: skip
        own = result.stdout.split(ASK_MARKER + "\n")[-1]
        error = split_sections(own).get("error", "").strip()
        return _failed(spec, detection.facts, None, error or f"the arm script ended early ({_how_it_ended(result)})")
    return ArmedHost(
        spec=spec,
        directory=directory,
        boot_id=clock.boot_id,
        detection=offer.detected,
        tracer=tracer.name,
        probe=plan.probe,
        fidelity=getattr(plan.fidelity, "value", None),
        clock_offset_s=round(clock.offset_s, 4),
        clock_bound_s=round(clock.bound_s, 4),
        start_s=offer.start_s,
        deadline_s=remote_deadline_s(options.window.duration_s, plan),
        duration_s=options.window.duration_s,
    )


def arm_fleet(
    hosts: Sequence[HostSpec],
    options: SweepOptions,
    arm: ArmOptions,
    progress: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> ArmedFleet:
    """Arm every host, ``options.forks`` sessions at a time, for one instant; returns what was armed."""
    stop = stop or StopRequest()
    notify = progress or (lambda *_: None)
    started = datetime.now(timezone.utc)
    forks = max(1, min(options.forks, len(hosts) or 1))
    instant = FleetInstant(len(hosts), forks, arm.start_in_s, options.gate_timeout())
    ramp = ConnectRamp(options.ssh, limit=min(forks, arm.handshakes))
    modules = ModuleBuilds(ModuleCache(options.module_cache or default_cache_dir()), trees=dict(options.stap_kernels))

    def arm_one(spec: HostSpec) -> ArmedHost | HostResult:
        first = instant.enter()
        if stop.requested.is_set():
            if first:
                instant.leave()
            return HostResult(spec.name, spec.address, Status.FAILED,
                              error=f"interrupted by {stop.reason} before it was contacted")  # fmt: skip
        notify(spec.name, "connecting", None)
        began = time.monotonic()
        try:
            transport = ramp.open(spec, stop.requested.is_set)
        except UnreachableError as exc:
            if first:
                instant.leave()
            return HostResult(spec.name, spec.address, Status.UNREACHABLE, error=str(exc))
        try:
            notify(spec.name, "collecting", None)
            return arm_host(spec, transport, options, arm, instant, first, stop, modules, began)
        except Exception as exc:  # a bug on one host must not cost the others their results
            log.debug("unexpected error arming %s", spec.name, exc_info=True)
            return HostResult(spec.name, spec.address, Status.FAILED, error=f"internal error: {exc!r}")
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=forks, thread_name_prefix="fleetdiag-arm") as pool:
        outcomes = list(pool.map(arm_one, hosts))
    fleet = ArmedFleet(started, instant.launch, instant.value or time.time(), options.window.duration_s,
                       order=[h.name for h in hosts], armed_at=time.time())  # fmt: skip
    for spec, outcome in zip(hosts, outcomes):
        if isinstance(outcome, ArmedHost):
            fleet.armed.append(outcome)
            notify(outcome.spec.name, "watching", None)
        else:
            outcome = with_groups(outcome, spec)
            fleet.failed[outcome.name] = outcome
            notify(outcome.name, "done", outcome)
    return fleet
