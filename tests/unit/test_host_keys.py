"""The indexed known_hosts table answers exactly as paramiko's own, without a scan per lookup."""

from __future__ import annotations

import threading
from pathlib import Path

import paramiko
import pytest

from fleetdiag.transport.host_keys import IndexedHostKeys, KnownHosts


def _keys(n: int) -> list[paramiko.PKey]:
    # Real keys (ed25519 generation is not in paramiko; ECDSA is, and fast).
    return [paramiko.ECDSAKey.generate(bits=256) for _ in range(n)]


def _line(names: str, key: paramiko.PKey) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture(scope="module")
def known_hosts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """A known_hosts of plain, multi-name, hashed and [host]:port lines; name -> expected base64 keys."""
    keys = _keys(8)
    hashed_name = "hashed.example"
    lines = [
        _line("web01.example,10.0.0.1", keys[0]),
        _line("[10.0.0.1]:2222", keys[1]),
        _line(paramiko.HostKeys.hash_host(hashed_name), keys[2]),
        "# a comment, then a blank line\n\n",
        _line("db01.example", keys[3]),
        _line("web01.example", keys[4]),  # the same host and type again: the first line wins
    ]
    lines += [_line(f"filler{i}.example", keys[5]) for i in range(300)]
    path = tmp_path_factory.mktemp("kh") / "known_hosts"
    path.write_text("".join(lines))
    expected = {
        "web01.example": [keys[0].get_base64()],  # paramiko keeps the first key of a type
        "10.0.0.1": [keys[0].get_base64()],
        "[10.0.0.1]:2222": [keys[1].get_base64()],
        hashed_name: [keys[2].get_base64()],
        "db01.example": [keys[3].get_base64()],
        "filler299.example": [keys[5].get_base64()],
        "unknown.example": [],
    }
    return path, expected


def _answer(table: paramiko.HostKeys, name: str) -> list[str]:
    found = table.lookup(name)
    return [] if found is None else [found[t].get_base64() for t in found.keys()]


def test_answers_as_paramikos_own_table(known_hosts: tuple[Path, dict[str, list[str]]]) -> None:
    path, expected = known_hosts
    reference = paramiko.HostKeys(str(path))
    indexed = IndexedHostKeys()
    indexed.load(str(path))
    for name, keys in expected.items():
        assert _answer(indexed, name) == _answer(reference, name), name
        assert _answer(indexed, name)[:1] == keys[:1], name


def test_a_lookup_tries_only_the_named_and_the_hashed_entries(known_hosts, monkeypatch) -> None:
    path, _ = known_hosts
    indexed = IndexedHostKeys()
    indexed.load(str(path))
    tried = []
    original = paramiko.HostKeys._hostname_matches
    monkeypatch.setattr(paramiko.HostKeys, "_hostname_matches", lambda self, h, e: tried.append(e) or original(self, h, e))
    assert indexed.lookup("db01.example") is not None
    assert len(tried) == 2  # db01's own line and the one hashed line, not 300 fillers


def test_keys_learnt_later_are_found_and_checked(known_hosts) -> None:
    path, _ = known_hosts
    known = KnownHosts((str(path),))
    assert known.keys.lookup("new.example") is None
    key, other = _keys(2)
    known.keys.add("new.example", key.get_name(), key)
    assert known.keys.check("new.example", key)
    assert not known.keys.check("new.example", other)
    known.keys.clear()
    assert known.keys.lookup("db01.example") is None  # a cleared table is indexed again


def test_many_threads_at_once_each_get_their_own_hosts_key(tmp_path: Path) -> None:
    keys = _keys(4)
    names = [f"h{i:03d}" for i in range(200)]
    path = tmp_path / "known_hosts"
    path.write_text("".join(_line(n, keys[i % 4]) for i, n in enumerate(names)))
    indexed = IndexedHostKeys()
    indexed.load(str(path))
    wrong: list[str] = []
    start = threading.Barrier(20)

    def look(part: list[str]) -> None:
        start.wait()
        for _ in range(5):
            for name in part:
                if _answer(indexed, name) != [keys[names.index(name) % 4].get_base64()]:
                    wrong.append(name)

    threads = [threading.Thread(target=look, args=(names[i::20],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
