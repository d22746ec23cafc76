"""The one instant every host of an Ansible play starts its window at, agreed on the controller.

Ansible's forks are processes and share nothing, so the hosts of one play agree through a
small file under the controller's temp dir, keyed by the play's uuid and locked for each
read-modify-write: when each host reached the task (``note_arrival``), which hosts are ready
to be armed or gave up (``wave_instant``, ``leave``), and the instant once it is set.

Ansible's linear strategy starts a task's workers one by one (about 0.05-0.1 s each at 200
hosts on the lab's 2 cores, slower as the batch grows), so an instant extrapolated from the
first hosts' pace comes too early for the last ones (measured: 16-53 of 200 hosts late, starts
spread 2.9-6.7 s). So the instant is set only once every host of the first forks batch is
ready, as ``collect``'s armed sweeps do (``armed_sweep.FleetInstant``).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetdiag.armed_sweep import ANSIBLE_WAVE_FACTOR, MIN_LEAD_S

# Once the first batch is ready, all of its hosts run their arm trip at once (a burst of short
# sessions on the controller's CPUs): this much per waiting host, beyond MIN_LEAD_S.
HERD_S_PER_HOST = 0.02
# No arrival, ready or departure for this long: the hosts still missing never got to the task
# (Ansible failed them before it, or their detection hangs); set the instant without them.
QUIET_S = 30.0
POLL_S = 0.25


def wave_lead_s(ready: int, first_wave: int, hosts: int, forks: int, wave_s: float) -> float:
    """How far ahead of now the instant lies once the first batch is ready.

    The READY hosts arm at once; each later forks batch takes about as long as the first took
    to get ready (WAVE_SECONDS), with ANSIBLE_WAVE_FACTOR's room for slower hosts.
    """
    waves_left = math.ceil(max(0, hosts - first_wave) / max(1, forks))
    return MIN_LEAD_S + HERD_S_PER_HOST * max(0, ready) + waves_left * (wave_s + MIN_LEAD_S) * ANSIBLE_WAVE_FACTOR


def wave_instant(play_id: str, hosts: int, forks: int, root: Path | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> float:  # fmt: skip
    """Mark this host ready to be armed; the play's instant, once the first batch is ready (blocks till then).

    HOSTS is the play's batch size, FORKS Ansible's. The host that completes the first batch (or
    finds it quiet for QUIET_S) sets the instant (``wave_lead_s``); a host of a later batch reads it.
    """
    first_wave = max(1, min(hosts, forks))
    path = _play_file(play_id, root)
    _update(play_id, root, lambda state: state.update(ready=int(state.get("ready", 0)) + 1, changed=clock()))
    while True:
        # Waiting hosts only read (a shared lock): 200 of them polling must not queue behind each other's writes.
        with open(path, encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_SH)
            state = _read_state(file)
        if not isinstance(state.get("start_at"), (int, float)) and _batch_done(state, first_wave, clock()):
            with open(path, "a+", encoding="utf-8") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                state = _read_state(file)
                now = clock()
                if not isinstance(state.get("start_at"), (int, float)) and _batch_done(state, first_wave, now):
                    ready, gone = int(state.get("ready", 0)), int(state.get("gone", 0))
                    wave_s = now - min((float(t) for t in state.get("arrivals", [])), default=now)
                    state["start_at"] = now + wave_lead_s(ready, first_wave, hosts, forks, wave_s)
                    state["decided"] = {"ready": ready, "gone": gone, "at": now, "wave_s": round(wave_s, 3)}
                    _write_state(file, state)
        if isinstance(state.get("start_at"), (int, float)):
            _forget_old_instants(path.parent, keep=path)
            return float(state["start_at"])
        sleep(POLL_S)


def _batch_done(state: dict[str, Any], first_wave: int, now: float) -> bool:
    """Every host of the first batch is ready or gone, or nothing has happened for QUIET_S."""
    settled = int(state.get("ready", 0)) + int(state.get("gone", 0)) >= first_wave
    return settled or now - float(state.get("changed", now)) >= QUIET_S


def leave(play_id: str, root: Path | None = None, clock: Callable[[], float] = time.time) -> None:
    """A host that reached the task but will never be ready (it failed first): the batch does not wait for it."""
    _update(play_id, root, lambda state: state.update(gone=int(state.get("gone", 0)) + 1, changed=clock()))


def note_arrival(play_id: str, root: Path | None = None, clock: Callable[[], float] = time.time) -> None:
    """Record that one more host reached the task (before the instant is set; a few bytes per host)."""

    def arrive(state: dict[str, Any]) -> None:
        now = clock()
        state.setdefault("arrivals", []).append(now)
        state["changed"] = now

    _update(play_id, root, arrive)


def play_instant(play_id: str, choose: Callable[[list[float]], float], root: Path | None = None) -> float:
    """The play's instant for held windows (fleetdiag.drops.window): the first host to ask sets it.

    ``choose(arrivals)`` gets when each host so far reached the task (``note_arrival``: how fast
    Ansible is starting them); the others read what it chose.
    """
    path = _play_file(play_id, root)
    with open(path, "a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        state = _read_state(file)
        if isinstance(state.get("start_at"), (int, float)):
            return float(state["start_at"])
        state["start_at"] = choose(sorted(float(t) for t in state.get("arrivals", [])))
        _write_state(file, state)
    _forget_old_instants(path.parent, keep=path)
    return float(state["start_at"])


def _update(play_id: str, root: Path | None, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply CHANGE to the play's state under its lock, unless the instant is already set."""
    with open(_play_file(play_id, root), "a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        state = _read_state(file)
        if "start_at" not in state:
            change(state)
            _write_state(file, state)


def states_dir() -> Path:
    """Where the plays' files are (the controller's temp dir, one per user)."""
    return Path(tempfile.gettempdir()) / f"fleetdiag-ansible-{os.getuid()}"


def _play_file(play_id: str, root: Path | None) -> Path:
    directory = root or states_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    safe = "".join(c for c in play_id if c.isalnum() or c in "-_") or "play"
    return directory / f"{safe}.instant"


def _read_state(file: Any) -> dict[str, Any]:
    file.seek(0)
    try:
        state = json.loads(file.read() or "{}")
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(file: Any, state: dict[str, Any]) -> None:
    file.seek(0)
    file.truncate()
    file.write(json.dumps(state))
    file.flush()


def _forget_old_instants(directory: Path, keep: Path, max_age_s: float = 86400) -> None:
    """Plays long over leave their instant files; the next play removes them."""
    for old in directory.glob("*.instant"):
        try:
            if old != keep and time.time() - old.stat().st_mtime > max_age_s:
                old.unlink()
        except OSError:
            pass  # another play's fork got there first
