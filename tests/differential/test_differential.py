"""The built-in reader against ansible-core itself, in-process, on every corpus inventory and pattern.

Hosts (in Ansible's order), groups and their host order, the connection variables, and
the hosts each --limit selects (with the patterns Ansible warns about) must be identical;
where Ansible refuses an inventory or a limit, the built-in reader refuses it too. The
corpus first, then seeded generated inventories (generated.py) with generated limits.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

if os.environ.get("CI") != "true":  # in CI ansible-core is installed (.ci/setup): missing, it must fail
    pytest.importorskip("ansible.inventory.manager", reason="ansible-core is a test dependency (pip install -e .[test])")

from tests.differential.generated import ini_inventory, limits, yaml_inventory  # noqa: E402
from tests.differential.harness import (  # noqa: E402
    Outcome,
    ambiguous_groups,
    cases,
    is_hazard,
    patterns_for,
    read,
    select,
)


@pytest.mark.parametrize("case", cases(), ids=lambda path: path.name)
def test_both_readers_agree(case: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    builtin, ours = read(case, "builtin")
    ansible, theirs = read(case, "ansible")
    refusal = case / "builtin_refuses.txt"
    if refusal.exists():  # beyond what the built-in reader can do faithfully: it says so, Ansible reads it
        assert theirs.error is None and ours.error is not None
        assert refusal.read_text().strip() in ours.error
        return
    assert_same(case, builtin, ours, ansible, theirs, patterns_for(case, builtin) if builtin else [])


@pytest.mark.parametrize("seed", range(40))
def test_both_readers_agree_on_generated_inventories(seed: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    rnd = random.Random(seed)
    case = tmp_path / "case"
    case.mkdir()
    (ini_inventory if seed % 2 else yaml_inventory)(rnd, case)
    builtin, ours = read(case, "builtin")
    ansible, theirs = read(case, "ansible")
    names = ["all", "ungrouped", "nope", *(builtin.groups if builtin else ()), *(h.name for h in (builtin.hosts if builtin else ()))]
    assert_same(case, builtin, ours, ansible, theirs, limits(rnd, names, 25))


def assert_same(case: Path, builtin, ours: Outcome, ansible, theirs: Outcome, patterns: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Both readers accepted or refused ``case`` alike, and agree on it and on every limit of ``patterns``."""
    text = "".join(path.read_text() for path in case.glob("hosts*") if path.is_file())
    assert (ours.error is None) == (theirs.error is None), f"builtin: {ours.error}; ansible: {theirs.error}\n{text}"
    if builtin is None or ansible is None:
        return
    undefined = ambiguous_groups(ansible)  # where ansible-core's own order changes between runs
    ordered = sorted if "all" in undefined else list
    assert ordered(ours.value["order"]) == ordered(theirs.value["order"]), text
    assert ours.value["hosts"] == theirs.value["hosts"], text
    for name, members in theirs.value["groups"].items():
        shown = sorted if name in undefined else list
        assert shown(ours.value["groups"].get(name, ())) == shown(members), f"{name}\n{text}"
    assert set(ours.value["groups"]) == set(theirs.value["groups"])
    assert ours.warnings == theirs.warnings
    differences = []
    for limit in patterns:
        if is_hazard(limit):  # '~[' and '!2001:db8::10': README says why fleetdiag differs
            continue
        if undefined and "[" in limit:  # a subscript of an order ansible-core does not define
            continue
        mine, reference = select(builtin, limit), select(ansible, limit)
        if ordered is sorted and mine.value is not None and reference.value is not None:
            mine, reference = _sorted(mine), _sorted(reference)
        same = (mine.error is None) == (reference.error is None) and mine.value == reference.value
        if not same or mine.warnings != reference.warnings:
            differences.append(f"{limit!r}: builtin {mine}, ansible {reference}")
    assert not differences, "\n".join(differences) + "\n" + text


def _sorted(outcome: Outcome) -> Outcome:
    return Outcome(value=sorted(outcome.value), error=outcome.error, warnings=outcome.warnings)
