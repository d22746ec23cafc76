"""The results directory: every sweep's JSON document, plus an SQLite index to list and find them.

Layout (dirs 0700, files 0600)::

    RESULTS_DIR/sweeps/20261126T080000Z.json   the schema_version 1 document, as ``-o json`` prints it
    RESULTS_DIR/index.sqlite3                  one row per sweep: when, how long, outcomes, drops
    RESULTS_DIR/lock                           held by the sweep running now

The documents are the truth; the index is rebuilt from them whenever the two disagree
(a crash between the two writes, a file deleted by hand, a corrupt index).
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Iterator

from fleetdiag.diagnosis import drops_seen, flow_verdicts, host_verdicts
from fleetdiag.document import DocumentError, format_time, load_sweep
from fleetdiag.errors import FleetdiagError
from fleetdiag.history.lock import SweepLock
from fleetdiag.model import Status, Sweep
from fleetdiag.render import json_doc

INDEX_NAME = "index.sqlite3"
SWEEPS_DIR = "sweeps"
_ID_FORMAT = "%Y%m%dT%H%M%SZ"


class ResultsError(FleetdiagError):
    """The results directory cannot be used, or a sweep asked for is not in it."""


@dataclass(frozen=True)
class SweepRecord:
    """One saved sweep as the index lists it."""

    id: str
    started_at: str
    duration_s: float
    port: int | None
    hosts: int
    ok: int
    unreachable: int
    failed: int
    drops: int  # traced drops of every reason (drop counters on untraced hosts)
    backlog_drops: int  # TcpExt TCPBacklogDrop over the window, all hosts
    findings: int  # verdicts other than plain reason explanations
    interrupted: str | None
    document: str  # file name under sweeps/


_COLUMNS = [f.name for f in fields(SweepRecord)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, started_at TEXT NOT NULL, duration_s REAL, port INTEGER,
    hosts INTEGER, ok INTEGER, unreachable INTEGER, failed INTEGER,
    drops INTEGER, backlog_drops INTEGER, findings INTEGER, interrupted TEXT, document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sweeps_started ON sweeps (started_at);
PRAGMA user_version = 1;
"""


def summarize(sweep_id: str, sweep: Sweep, document: str) -> SweepRecord:
    """The index row of a sweep."""
    port = getattr(sweep, "port", None)
    findings = sum(
        1
        for host in sweep.hosts
        for verdict in (*host_verdicts(host, port), *(v for f in host.flows for v in flow_verdicts(host, f)))
        if verdict.code != "drop_reason"
    )
    return SweepRecord(
        id=sweep_id,
        started_at=format_time(sweep.started_at),
        duration_s=float(sweep.duration_s),
        port=port,
        hosts=len(sweep.hosts),
        ok=sum(1 for h in sweep.hosts if h.status is Status.OK),
        unreachable=sum(1 for h in sweep.hosts if h.status is Status.UNREACHABLE),
        failed=sum(1 for h in sweep.hosts if h.status is Status.FAILED),
        drops=sum(drops_seen(h) for h in sweep.hosts),
        backlog_drops=sum(int(h.counters.get("TCPBacklogDrop", 0)) for h in sweep.hosts),
        findings=findings,
        interrupted=getattr(sweep, "interrupted", None),
        document=document,
    )


class ResultsStore:
    """Saved sweeps under one directory; ``ResultsStore.open(path)`` creates it if needed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sweeps_dir = root / SWEEPS_DIR
        self.index_path = root / INDEX_NAME

    @classmethod
    def open(cls, root: str | Path) -> ResultsStore:
        """The store at ROOT, its directories created (0700) and its index in step with the files."""
        store = cls(Path(root).expanduser())
        try:
            for directory in (store.root, store.sweeps_dir):
                if not directory.is_dir():
                    directory.mkdir(mode=0o700, parents=True)
                    directory.chmod(0o700)  # mkdir's mode is filtered by the umask
            store._sync_index()
        except (OSError, sqlite3.Error) as exc:
            raise ResultsError(
                f"cannot use the results directory {store.root}: {getattr(exc, 'strerror', None) or exc}",
                hint="pass a writable --results-dir (or set FLEETDIAG_RESULTS_DIR)",
            ) from exc
        return store

    def lock(self) -> SweepLock:
        """The lock that keeps two sweeps from overlapping on this directory."""
        return SweepLock(self.root)

    # -- writing -------------------------------------------------------------------------------

    def save(self, sweep: Sweep) -> SweepRecord:
        """Write the sweep's document (atomically, 0600) and index it; returns its record."""
        sweep_id = self._new_id(sweep)
        name = f"{sweep_id}.json"
        _write_private(self.sweeps_dir / name, json_doc.render(sweep))
        record = summarize(sweep_id, sweep, name)
        with self._index() as db:
            db.execute(f"INSERT OR REPLACE INTO sweeps VALUES ({', '.join('?' * len(_COLUMNS))})", astuple(record))
        return record

    def prune(self, keep: int) -> list[str]:
        """Delete all but the KEEP newest sweeps (documents and index rows); the ids removed."""
        doomed = self.records()[keep:]
        for record in doomed:
            (self.sweeps_dir / record.document).unlink(missing_ok=True)
        with self._index() as db:
            db.executemany("DELETE FROM sweeps WHERE id = ?", [(r.id,) for r in doomed])
        return [r.id for r in doomed]

    # -- reading -------------------------------------------------------------------------------

    def records(self, limit: int | None = None) -> list[SweepRecord]:
        """Saved sweeps, newest first."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM sweeps ORDER BY started_at DESC, id DESC"
        with self._index() as db:
            rows = db.execute(query + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [SweepRecord(*row) for row in rows]

    def resolve(self, ref: str | None = None) -> SweepRecord:
        """The sweep REF names: an id, a unique id prefix, ``latest`` (default) or ``latest~N``."""
        records = self.records()
        if not records:
            raise ResultsError(f"no sweep is saved in {self.root} yet", hint="run fleetdiag collect first")
        ref = ref or "latest"
        if ref == "latest" or ref.startswith("latest~"):
            back = ref.partition("~")[2] or "0"
            if not back.isdigit() or int(back) >= len(records):
                raise ResultsError(f"{ref}: only {len(records)} sweep(s) are saved", hint="see fleetdiag history")
            return records[int(back)]
        matches = [r for r in records if r.id == ref] or [r for r in records if r.id.startswith(ref)]
        if len(matches) != 1:
            problem = "matches no saved sweep" if not matches else f"matches {len(matches)} sweeps"
            raise ResultsError(f"{ref} {problem}", hint="see fleetdiag history for the ids")
        return matches[0]

    def load(self, ref: str | None = None) -> tuple[SweepRecord, Sweep]:
        """The record and the Sweep of a saved sweep (see ``resolve`` for REF)."""
        record = self.resolve(ref)
        path = self.sweeps_dir / record.document
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResultsError(f"cannot read {path}: {exc}") from exc
        return record, load_sweep(document, source=str(path))

    # -- internals -----------------------------------------------------------------------------

    def _new_id(self, sweep: Sweep) -> str:
        base = sweep.started_at.strftime(_ID_FORMAT)
        candidate, n = base, 1
        while (self.sweeps_dir / f"{candidate}.json").exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    @contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index whose writes commit together at the end of the block."""
        if not self.index_path.exists():
            os.close(os.open(self.index_path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.index_path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _sync_index(self) -> None:
        """Index every document not yet indexed; forget rows whose document is gone."""
        try:
            with self._index() as db:
                db.executescript(_SCHEMA)
                indexed = dict(db.execute("SELECT document, id FROM sweeps").fetchall())
        except sqlite3.DatabaseError:
            self.index_path.unlink()  # corrupt: the documents are the truth, rebuild from them
            indexed = {}
            with self._index() as db:
                db.executescript(_SCHEMA)
        on_disk = {p.name for p in self.sweeps_dir.glob("*.json")}
        missing = sorted(on_disk - set(indexed))
        gone = [indexed[name] for name in set(indexed) - on_disk]
        rows = []
        for name in missing:
            try:
                sweep = load_sweep(json.loads((self.sweeps_dir / name).read_text(encoding="utf-8")), name)
            except (OSError, ValueError, DocumentError):
                continue  # not ours, or damaged: left alone, never listed
            rows.append(astuple(summarize(name.removesuffix(".json"), sweep, name)))
        if rows or gone:
            with self._index() as db:
                db.executemany(f"INSERT OR REPLACE INTO sweeps VALUES ({', '.join('?' * len(_COLUMNS))})", rows)
                db.executemany("DELETE FROM sweeps WHERE id = ?", [(i,) for i in gone])


def _write_private(path: Path, text: str) -> None:
    """Write TEXT to PATH atomically, readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
