"""The shell script that runs one ProbePlan for one window on a host (``probes/run_window.sh``)."""

from __future__ import annotations

import re
import secrets
import shlex

from fleetdiag.tracers.base import ProbePlan, probe_text

# Longest a probe may take to attach before the host's own `timeout` gives up on it.
ATTACH_ALLOWANCE_S = 10
# What the run script adds after the probe: kill grace, counters, cleanup.
CLEANUP_GRACE_S = 5
# How long a prepare step gets after its timeout's INT before it is killed.
PREPARE_KILL_S = 5
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
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


def _heredoc(filename: str, content: str) -> str:
    if not _SAFE_NAME.match(filename):
        raise ValueError(f"unsafe probe file name {filename!r}")
    delimiter = f"FLEETDIAG_EOF_{secrets.token_hex(8)}"
    # A quoted delimiter: the shell expands nothing inside the probe text.
    return f"cat > {filename} <<'{delimiter}'\n{content.rstrip()}\n{delimiter}"


def build_window_script(plan: ProbePlan, duration_s: int, follow: bool = False) -> str:
    """Fill the run script with the plan's files, environment and command.

    ``follow`` streams ``@@live`` lines once a second while the window runs (``fleetdiag.live``).

    Every piece comes from fleetdiag's own backends (constant text and integers);
    env values are quoted all the same.
    """
    for key in plan.env:
        if not _SAFE_ENV.match(key):
            raise ValueError(f"unsafe environment name {key!r}")
    files = "\n".join(_heredoc(name, text) for name, text in plan.files.items()) or ":"
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in plan.env.items())
    script = probe_text("run_window.sh")
    return (
        script.replace("@@FOLLOW@@", "1" if follow else "0")
        .replace("@@FILES@@", files)
        .replace("@@ENV@@", env)
        .replace("@@PREPARE@@", _prepare_block(plan))
        .replace("@@LIFETIME@@", str(probe_lifetime_s(duration_s, plan.attach_allowance_s)))
        .replace("@@COMMAND@@", plan.command)
    )
