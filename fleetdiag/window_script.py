"""The shell script that runs one ProbePlan for one window on a host (``probes/run_window.sh``)."""

from __future__ import annotations

import re
import shlex
import secrets

from fleetdiag.tracers.base import ProbePlan, probe_text

# Longest a probe may take to attach before the host's own `timeout` gives up on it.
ATTACH_ALLOWANCE_S = 10
# What the run script adds after the probe: kill grace, counters, cleanup.
CLEANUP_GRACE_S = 5
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SAFE_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def probe_lifetime_s(duration_s: int) -> int:
    """The most a probe can live on a host: the window plus the attach allowance."""
    return int(duration_s) + ATTACH_ALLOWANCE_S


def remote_deadline_s(duration_s: int) -> int:
    """How long the whole window script can run on the host, at most."""
    return probe_lifetime_s(duration_s) + CLEANUP_GRACE_S


def _heredoc(filename: str, content: str) -> str:
    if not _SAFE_NAME.match(filename):
        raise ValueError(f"unsafe probe file name {filename!r}")
    delimiter = f"FLEETDIAG_EOF_{secrets.token_hex(8)}"
    # A quoted delimiter: the shell expands nothing inside the probe text.
    return f"cat > {filename} <<'{delimiter}'\n{content.rstrip()}\n{delimiter}"


def build_window_script(plan: ProbePlan, duration_s: int) -> str:
    """Fill the run script with the plan's files, environment and command.

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
        script.replace("@@FILES@@", files)
        .replace("@@ENV@@", env)
        .replace("@@LIFETIME@@", str(probe_lifetime_s(duration_s)))
        .replace("@@COMMAND@@", plan.command)
    )
