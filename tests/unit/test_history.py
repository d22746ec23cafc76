"""The results directory: documents, index, retention, the lock, and comparing two sweeps."""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from fleetdiag.history import (
    ResultsError,
    ResultsStore,
    SweepLock,
    SweepLocked,
    compare_sweeps,
)
from fleetdiag.model import FlowDrop, HostResult, Status, Sweep, frozen_map
from fleetdiag.render import RENDERERS

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)


def host(name: str, drops: dict[str, int], flows: tuple[FlowDrop, ...] = (), status: Status = Status.OK) -> HostResult:
    counters = {"TCPBacklogDrop": drops.get("SOCKET_BACKLOG", 0)}
    return HostResult(name, f"10.0.0.{name[-1]}", status, kernel="6.18.0", probe="bpftrace:kfree_skb",
                      drops=frozen_map(drops), counters=frozen_map(counters), flows=flows)


def flow(reason: str, drops: int, rport: int = 40000) -> FlowDrop:
    return FlowDrop("10.0.0.1", 5201, "10.0.0.2", rport, 1, reason, drops)


def a_sweep(minutes: int = 0, backlog: int = 5, duration: int = 60) -> Sweep:
    h01 = host("h01", {"SOCKET_BACKLOG": backlog}, (flow("SOCKET_BACKLOG", backlog),))
    return Sweep(T0 + timedelta(minutes=minutes), duration, (h01, host("h02", {})))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_sweeps_are_private_listed_and_reloaded(tmp_path):
    store = ResultsStore.open(tmp_path / "results")
    first = store.save(a_sweep(0))
    second = store.save(a_sweep(5, backlog=9))
    assert mode(store.root) == mode(store.sweeps_dir) == 0o700
    assert {mode(p) for p in [store.index_path, *store.sweeps_dir.iterdir()]} == {0o600}
    assert [r.id for r in store.records()] == [second.id, first.id] == ["20261126T080500Z", "20261126T080000Z"]
    assert (second.hosts, second.ok, second.drops, second.backlog_drops) == (2, 2, 9, 9)
    record, sweep = store.load()
    assert record == second and RENDERERS["json"](sweep) == (store.sweeps_dir / second.document).read_text()
    assert store.resolve("latest~1") == first and store.resolve("20261126T0800") == first
    with pytest.raises(ResultsError, match="matches 2 sweeps"):
        store.resolve("2026")
    with pytest.raises(ResultsError, match="only 2 sweep"):
        store.resolve("latest~2")


def test_same_second_sweeps_get_distinct_ids(tmp_path):
    store = ResultsStore.open(tmp_path)
    ids = [store.save(a_sweep()).id for _ in range(3)]
    assert ids == ["20261126T080000Z", "20261126T080000Z-2", "20261126T080000Z-3"]


def test_keep_removes_the_oldest_documents_and_rows(tmp_path):
    store = ResultsStore.open(tmp_path)
    for minute in range(5):
        store.save(a_sweep(minute))
    removed = store.prune(2)
    assert removed == ["20261126T080200Z", "20261126T080100Z", "20261126T080000Z"]
    assert [r.id for r in store.records()] == ["20261126T080400Z", "20261126T080300Z"]
    assert sorted(p.name for p in store.sweeps_dir.iterdir()) == ["20261126T080300Z.json", "20261126T080400Z.json"]


def test_index_is_rebuilt_from_the_documents(tmp_path):
    store = ResultsStore.open(tmp_path)
    saved = [store.save(a_sweep(m)).id for m in range(3)]
    store.index_path.write_bytes(b"this is not a database")
    assert [r.id for r in ResultsStore.open(tmp_path).records()] == saved[::-1]
    (tmp_path / "sweeps" / f"{saved[0]}.json").unlink()
    (tmp_path / "sweeps" / "stray.json").write_text("{}")  # not ours: never listed
    assert [r.id for r in ResultsStore.open(tmp_path).records()] == saved[:0:-1]
    with sqlite3.connect(store.index_path) as db:
        assert db.execute("SELECT count(*) FROM sweeps").fetchone() == (2,)


def test_unusable_results_dir_says_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResultsError, match="cannot use the results directory") as info:
        ResultsStore.open(blocker / "results")
    assert "--results-dir" in info.value.hint
    with pytest.raises(ResultsError, match="no sweep is saved"):
        ResultsStore.open(tmp_path / "empty").resolve()


def test_lock_admits_one_sweep_at_a_time(tmp_path):
    with SweepLock(tmp_path), pytest.raises(SweepLocked, match=f"pid {os.getpid()}"):
        SweepLock(tmp_path).acquire()
    with SweepLock(tmp_path):  # released: the next one gets it
        pass


def test_diff_names_new_and_worse_flows_and_hosts():
    before = a_sweep(0, backlog=5)
    h01 = host("h01", {"SOCKET_BACKLOG": 9, "NO_SOCKET": 2},
               (flow("SOCKET_BACKLOG", 9), flow("NO_SOCKET", 2, rport=41000)))
    after = Sweep(T0, 60, (h01, host("h02", {}), host("h03", {"NO_SOCKET": 1})))
    diff = compare_sweeps(before, after)
    assert [(c.kind, c.host, c.reason, c.before, c.after) for c in diff.hosts] == [
        ("new", "h01", "NO_SOCKET", 0, 2),
        ("worse", "h01", "SOCKET_BACKLOG", 5, 9),
    ]
    assert [(c.kind, c.reason, c.flow) for c in diff.flows] == [
        ("new", "NO_SOCKET", ("10.0.0.1", 5201, "10.0.0.2", 41000)),
        ("worse", "SOCKET_BACKLOG", ("10.0.0.1", 5201, "10.0.0.2", 40000)),
    ]
    assert diff.status_changes == (("h03", "absent", "ok"),)  # new host: listed, not compared


def test_diff_compares_rates_across_window_lengths():
    long_quiet = a_sweep(0, backlog=60, duration=60)  # 60 per minute
    short_busy = a_sweep(1, backlog=20, duration=10)  # 120 per minute, fewer drops
    (change,) = compare_sweeps(long_quiet, short_busy).hosts
    assert (change.kind, change.before_per_min, change.after_per_min) == ("worse", 60.0, 120.0)
    down = replace(short_busy, hosts=(replace(short_busy.hosts[0], status=Status.UNREACHABLE), short_busy.hosts[1]))
    diff = compare_sweeps(long_quiet, down)
    assert diff.hosts == () and diff.status_changes == (("h01", "ok", "unreachable"),)
