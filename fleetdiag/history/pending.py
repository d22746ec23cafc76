"""Pending sweeps: armed windows left running (``collect --detach``) until ``fleetdiag fetch`` collects them.

Layout: ``RESULTS_DIR/pending/ID.json`` (0600): the hosts (how to reach them again, no secret),
each one's on-host directory, boot id, facts as detection printed them and clock offset, the
results of hosts that could not be armed, and when the hosts remove what nobody fetched.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetdiag.armed_sweep import ArmedFleet, ArmedHost, armed_document, armed_from_document
from fleetdiag.document import format_time, host_document, load_sweep
from fleetdiag.history.store import _ID_FORMAT, ResultsError, ResultsStore, _write_private
from fleetdiag.model import HostSpec
from fleetdiag.transport import HostKeyChecking, SshOptions

PENDING_DIR = "pending"
RECORD_VERSION = 1
# HostSpec fields a fetch needs to reach the host again, and its groups for the report (inventory
# vars may hold secrets: not kept).
_SPEC_FIELDS = ("name", "address", "port", "user", "private_key_file", "become", "become_user", "connection",
                "ssh_common_args", "host_key_checking", "groups")  # fmt: skip
_SSH_FIELDS = ("connect_timeout", "known_hosts", "default_user", "default_private_key", "default_ssh_common_args")


def pending_dir(store: ResultsStore) -> Path:
    """Where a store keeps its pending sweeps."""
    return store.root / PENDING_DIR


def save_pending(store: ResultsStore, fleet: ArmedFleet, ssh: SshOptions, wanted: str, port: int | None,
                 pickup_s: float) -> str:  # fmt: skip
    """Write a pending sweep's record (0600); its id, as ``fleetdiag fetch`` takes it."""
    directory = pending_dir(store)
    if not directory.is_dir():
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)
    base = fleet.started_at.strftime(_ID_FORMAT)
    sweep_id, n = base, 1
    while (directory / f"{sweep_id}.json").exists() or (store.sweeps_dir / f"{sweep_id}.json").exists():
        n += 1
        sweep_id = f"{base}-{n}"
    record = {
        "fleetdiag_pending": RECORD_VERSION,
        "id": sweep_id,
        "started_at": format_time(fleet.started_at),
        "launch": fleet.launch,
        "instant": fleet.instant,
        "armed_at": fleet.armed_at,
        "duration_s": fleet.duration_s,
        "window_end": fleet.window_end,
        "pickup_deadline": fleet.window_end + pickup_s,
        "tracer": wanted,
        "port": port,
        "ssh": {name: getattr(ssh, name) for name in _SSH_FIELDS}
        | {"host_key_checking": ssh.host_key_checking.value if ssh.host_key_checking else None},
        "order": fleet.order,
        "armed": [_armed_document(a) for a in fleet.armed],
        "failed": [host_document(h) for h in fleet.failed.values()],
    }
    _write_private(directory / f"{sweep_id}.json", json.dumps(record, indent=2) + "\n")
    return sweep_id


def _armed_document(armed: ArmedHost) -> dict[str, Any]:
    doc = armed_document(armed)
    doc["spec"] = {name: getattr(armed.spec, name) for name in _SPEC_FIELDS}
    return doc


def pending_ids(store: ResultsStore) -> list[str]:
    """The pending sweeps' ids, newest first."""
    directory = pending_dir(store)
    if not directory.is_dir():
        return []
    return sorted((p.stem for p in directory.glob("*.json")), reverse=True)


def find_pending(store: ResultsStore, ref: str) -> str | None:
    """The pending sweep REF names (an id or a unique prefix), or None."""
    ids = pending_ids(store)
    matches = [i for i in ids if i == ref] or [i for i in ids if i.startswith(ref)]
    return matches[0] if len(matches) == 1 else None


class PendingSweep:
    """A pending sweep read back: the armed fleet, the SSH settings, what the sweep asked for."""

    def __init__(self, sweep_id: str, record: dict[str, Any]) -> None:
        self.id = sweep_id
        self.record = record
        self.wanted: str = record["tracer"]
        self.port: int | None = record.get("port")
        self.pickup_deadline: float = float(record["pickup_deadline"])
        self.window_end: float = float(record["window_end"])

    def fleet(self) -> ArmedFleet:
        """The armed fleet, as the arm phase left it."""
        r = self.record
        started = datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
        failed_sweep = load_sweep({"schema_version": 1, "started_at": r["started_at"], "duration_s": r["duration_s"],
                                   "hosts": r["failed"]}, f"pending sweep {self.id}")  # fmt: skip
        armed = [armed_from_document(_spec(a["spec"]), a) for a in r["armed"]]
        return ArmedFleet(started, float(r["launch"]), float(r["instant"]), int(r["duration_s"]), armed=armed,
                          failed={h.name: h for h in failed_sweep.hosts}, order=list(r["order"]),
                          armed_at=float(r["armed_at"]))  # fmt: skip

    def ssh(self, become_password: str | None) -> SshOptions:
        """The sweep's SSH settings again, with the become password given now (never saved)."""
        saved = self.record["ssh"]
        mode = saved.get("host_key_checking")
        return SshOptions(
            connect_timeout=float(saved["connect_timeout"]),
            host_key_checking=HostKeyChecking(mode) if mode else None,
            known_hosts=tuple(saved["known_hosts"]),
            default_user=saved.get("default_user"),
            default_private_key=saved.get("default_private_key"),
            become_password=become_password,
            default_ssh_common_args=saved.get("default_ssh_common_args"),
        )


def load_pending(store: ResultsStore, ref: str) -> PendingSweep:
    """The pending sweep REF names; ResultsError when there is none or its hosts have removed it."""
    sweep_id = find_pending(store, ref)
    if sweep_id is None:
        known = " (saved already: see fleetdiag report)" if any(r.id == ref for r in store.records()) else ""
        raise ResultsError(f"{ref} matches no pending sweep in {store.root}{known}",
                           hint="collect --detach prints the id; see ls " + str(pending_dir(store)))  # fmt: skip
    path = pending_dir(store) / f"{sweep_id}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("fleetdiag_pending") != RECORD_VERSION:
            raise ValueError("not a fleetdiag pending sweep record")
        pending = PendingSweep(sweep_id, record)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"cannot read the pending sweep {path}: {exc}") from exc
    if time.time() > pending.pickup_deadline:
        remove_pending(store, sweep_id)
        when = format_time(datetime.fromtimestamp(pending.pickup_deadline, timezone.utc).replace(microsecond=0))
        raise ResultsError(f"sweep {sweep_id} expired: its hosts removed their results at {when} (the pickup deadline)",
                           hint="fetch sooner, or arm with a longer --pickup-timeout")  # fmt: skip
    return pending


def remove_pending(store: ResultsStore, sweep_id: str) -> None:
    """Forget a pending sweep (fetched, or expired)."""
    (pending_dir(store) / f"{sweep_id}.json").unlink(missing_ok=True)


def _spec(saved: dict[str, Any]) -> HostSpec:
    """A saved host spec (JSON turned its groups into a list; a record from before groups has none)."""
    return HostSpec(**{**saved, "groups": tuple(saved.get("groups") or ())})
