"""Lab run identity: every object a fleet creates carries `fdl-<run id>-`, and a record names its owner."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

PREFIX = "fdl"
NETNS_CONFIG_ROOT = Path("/etc/netns")
# One record per live run, at a fixed place so runs with different TMPDIRs still see each other.
RECORDS_DIR = Path("/run/fdl-lab")

# Six hex digits keep the longest name (`fdl-abcdef-h200`) within Linux's 15-byte interface limit.
_RUN_NAME = re.compile(rf"^{PREFIX}-([0-9a-f]{{6}})-")


def new_run_id() -> str:
    """A short random id, e.g. `3fa9c1`, unique enough to keep parallel runs apart."""
    return secrets.token_hex(3)


def run_id_of(name: str) -> str | None:
    """The run id in a lab object's name: `fdl-3fa9c1-h03` -> `3fa9c1`; None for foreign names."""
    match = _RUN_NAME.match(name)
    return match.group(1) if match else None


def make_workdir(run_id: str) -> Path:
    """Create the run's private temp dir and record this process as the run's owner."""
    owner = str(_process_identity(os.getpid()))
    # Owner first: a concurrent cleanup_stale() must never see our temp dir without a live owner.
    _write_record(run_id, [owner])
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{run_id}-"))
    _write_record(run_id, [owner, str(workdir)])
    return workdir


def recorded_run_ids() -> list[str]:
    """Run ids that have an owner record."""
    return sorted(p.name for p in RECORDS_DIR.glob("[0-9a-f]*")) if RECORDS_DIR.is_dir() else []


def workdir_of(run_id: str) -> Path | None:
    """The run's temp dir from its record, or from a scan of this process's temp dir."""
    lines = _record_lines(run_id)
    if len(lines) > 1:
        return Path(lines[1])
    found = sorted(Path(tempfile.gettempdir()).glob(f"{PREFIX}-{run_id}-*"))
    return found[0] if found else None


def owner_is_alive(run_id: str) -> bool:
    """Whether the process that created the run still exists (same pid and start time)."""
    lines = _record_lines(run_id)
    if not lines or not lines[0].split()[0].isdigit():
        return False
    return _process_identity(int(lines[0].split()[0])) == lines[0]


def forget_run(run_id: str) -> None:
    """Drop the run's owner record (after its objects are gone)."""
    (RECORDS_DIR / run_id).unlink(missing_ok=True)


def _write_record(run_id: str, lines: list[str]) -> None:
    """Replace the run's record atomically, so readers never see it half written."""
    RECORDS_DIR.mkdir(mode=0o755, exist_ok=True)
    partial = RECORDS_DIR / f".{run_id}.tmp"
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, RECORDS_DIR / run_id)


def _record_lines(run_id: str) -> list[str]:
    """The record's lines: `pid starttime`, then the workdir; empty if there is no record."""
    try:
        return (RECORDS_DIR / run_id).read_text().splitlines()
    except OSError:
        return []


def _process_identity(pid: int) -> str | None:
    """`pid starttime`, which tells a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (start time) counted after the parenthesised command name, which may contain spaces.
    fields_after_comm = stat.rsplit(")", 1)[1].split()
    return f"{pid} {fields_after_comm[19]}"
