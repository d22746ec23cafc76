"""What the lab needs from the machine, and whether a missing piece means skip or fail."""

from __future__ import annotations

import functools
import os
import shutil

# Root's PATH normally has the sbin dirs; a plain user's may not, and sshd/ip live there.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)
REQUIRED_PROGRAMS = ("ip", "sshd", "bpftrace", "ssh", "ssh-keygen")


def find_program(name: str) -> str | None:
    """Absolute path of NAME on PATH or the sbin dirs, e.g. find_program("sshd") -> "/usr/sbin/sshd"."""
    return shutil.which(name, path=_SEARCH_PATH)


@functools.cache
def program(name: str) -> str:
    """Absolute path of a program the lab runs; raises FileNotFoundError naming it when absent."""
    path = find_program(name)
    if path is None:
        raise FileNotFoundError(f"lab needs `{name}`, not found on PATH or sbin")
    return path


def missing_lab_requirements() -> list[str]:
    """Human-readable list of what stops the lab from running here; empty when it can run."""
    missing = []
    if os.geteuid() != 0:
        missing.append(f"root (running as uid {os.geteuid()}; namespaces and sshd need root)")
    absent = [name for name in REQUIRED_PROGRAMS if not find_program(name)]
    missing += [f"`{name}` (not found on PATH or sbin)" for name in absent]
    return missing


def running_in_ci() -> bool:
    """CI=true (GitHub, GitLab and most others set it): missing lab pieces must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(kind: str, missing: list[str]) -> None:
    """Skip a test naming exactly what is missing; under CI=true, fail instead (CI must run it)."""
    if not missing:
        return
    import pytest  # only the pytest side of the lab needs it

    reason = f"{kind} tests need " + "; ".join(missing)
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)
