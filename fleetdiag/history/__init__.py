"""Sweep history: saved documents, their SQLite index, retention, the lock, and comparing two sweeps."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from fleetdiag.history.compare import SweepDiff, compare_sweeps
from fleetdiag.history.lock import SweepLock, SweepLocked
from fleetdiag.history.store import ResultsError, ResultsStore, SweepRecord

__all__ = [
    "ResultsError",
    "ResultsStore",
    "SweepDiff",
    "SweepLock",
    "SweepLocked",
    "SweepRecord",
    "compare_sweeps",
    "default_results_dir",
]


def default_results_dir() -> Path:
    """Where sweeps are saved unless told otherwise: the user's data dir (~/.local/share/fleetdiag)."""
    return platformdirs.user_data_path("fleetdiag")
