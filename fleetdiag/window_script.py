"""The shell script that runs one ProbePlan for one window on a host (``probes/run_window.sh``)."""

from __future__ import annotations

import re
import shlex

from fleetdiag.timeline import interval_for
from fleetdiag.tracers.base import ProbePlan, probe_text, write_file_command
from fleetdiag.transport.base import ASK_MARKER

# Longest a probe may take to attach before the host's own `timeout` gives up on it.
ATTACH_ALLOWANCE_S = 10
# What the run script adds after the probe: kill grace, counters, cleanup.
CLEANUP_GRACE_S = 5
# How long a prepare step gets after its timeout's INT before it is killed.
PREPARE_KILL_S = 5
_SAFE_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def probe_lifetime_s(duration_s: int, attach_s: int = ATTACH_ALLOWANCE_S) -> int:
    """The most a probe can live on a host: the window plus the attach allowance."""
    return int(duration_s) + int(attach_s)


def remote_deadline_s(duration_s: int, plan: ProbePlan | None = None) -> int:
    """How long the whole window script can run on the host, at most (a plan's prepare step included)."""
    if plan is None:
        return probe_lifetime_s(duration_s) + CLEANUP_GRACE_S
    prepare = plan.prepare_timeout_s + PREPARE_KILL_S if plan.prepare else 0
    return prepare + probe_lifetime_s(duration_s, plan.attach_allowance_s) + CLEANUP_GRACE_S


def _prepare_block(plan: ProbePlan) -> str:
    # A compile step (systemtap) bounded by its own timeout. The host's error is the first
    # lines that say what went wrong ("semantic error: ...", "does not build"), else the last
    # lines: a compiler's last words ("Pass 2: analysis failed") rarely say why.
    if not plan.prepare:
        return ":"
    return (
        f'if ! timeout -s INT -k {PREPARE_KILL_S} {int(plan.prepare_timeout_s)} {plan.prepare} '
        '>"$d/prepare_out" 2>"$d/prepare_err" </dev/null; then\n'
        '  why=$(grep -v \'^Tip: \' "$d/prepare_err" | grep -i -m 2 -E \'error|does not build|finds no\' | tr \'\\n\' \' \')\n'
        '  [ -n "$why" ] || why=$(grep -v \'^Tip: \' "$d/prepare_err" | tail -n 3 | tr \'\\n\' \' \')\n'
        '  fail "probe preparation failed: $why"\n'
        "fi"
    )


# The window script's question before its probe starts (``ask_before_start``): any reply but
# GO_REPLY (an empty one: the sweep is stopping) ends it with nothing started. Two builtin
# reads take the reply: nothing is forked in the moment every host starts its window.
GO_REPLY = b"\n"
READY_QUESTION = f"""echo '{ASK_MARKER}'
IFS= read -r fd_length || exit 0
[ "$fd_length" = {len(GO_REPLY)} ] || exit 0
IFS= read -r _ || exit 0"""


def build_window_script(
    plan: ProbePlan, duration_s: int, follow: bool = False, ask_before_start: bool = False, ready: str | None = None
) -> str:
    """Fill the run script with the plan's files, environment and command.

    ``follow`` streams ``@@live`` lines once a second while the window runs (``fleetdiag.live``).
    ``ask_before_start``: set up, then ask the controller (ASK_MARKER) and start on GO_REPLY.
    ``ready``: shell run there instead (an armed window waits for its instant: ``fleetdiag.arming``).

    Every piece comes from fleetdiag's own backends (constant text and integers);
    env values are quoted all the same.
    """
    for key in plan.env:
        if not _SAFE_ENV.match(key):
            raise ValueError(f"unsafe environment name {key!r}")
    files = "\n".join(write_file_command(name, text) for name, text in plan.files.items()) or ":"
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in plan.env.items())
    script = probe_text("run_window.sh")
    return (
        script.replace("@@SESSION@@", probe_text("host_session.sh").rstrip())
        .replace("@@FOLLOW@@", "1" if follow else "0")
        .replace("@@FILES@@", files)
        .replace("@@ENV@@", env)
        .replace("@@PREPARE@@", _prepare_block(plan))
        .replace("@@READY@@", ready if ready is not None else READY_QUESTION if ask_before_start else ":")
        .replace("@@TRACES@@", "1" if plan.traces else "0")
        .replace("@@STATS@@", "1" if plan.reads_stats else "0")
        .replace("@@STOP_AFTER@@", str(int(duration_s)))
        .replace("@@TL_INTERVAL@@", str(interval_for(duration_s)))  # the timeline's, as the probes count it
        .replace("@@LIFETIME@@", str(probe_lifetime_s(duration_s, plan.attach_allowance_s)))
        .replace("@@COMMAND@@", plan.command)
    )


def detect_then_window_script(detection: str) -> str:
    """Detection and the window in one round trip: the facts, then one question (ASK_MARKER).

    The controller chooses the tracer from the facts, waits at the sweep's window gate, and
    replies with the window script (``build_window_script``), which runs in this same shell
    and session. An empty reply (no tracer fits, a stop, a tracer that needs another round
    trip first) ends the script having done nothing else.
    """
    return (
        f"(\n{detection.rstrip()}\n)\n"
        f"echo '{ASK_MARKER}'\n"
        "IFS= read -r fd_length || exit 0\n"
        "case $fd_length in ''|0|*[!0-9]*) exit 0 ;; esac\n"
        # head -c reads exactly the reply; stdin stays the session's, for the stop-on-EOF watcher.
        'fd_window=$(head -c "$fd_length"; echo x)\n'
        'eval "${fd_window%x}"\n'
    )
