"""The built-in reader against ansible-core itself, in-process, on every corpus inventory and pattern.

Hosts (in Ansible's order), groups and their host order, the connection variables, and
the hosts each --limit selects (with the patterns Ansible warns about) must be identical;
where Ansible refuses an inventory or a limit, the built-in reader refuses it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("CI") != "true":  # in CI ansible-core is installed (.ci/setup): missing, it must fail
    pytest.importorskip("ansible.inventory.manager", reason="ansible-core is a test dependency (pip install -e .[test])")

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
    assert (ours.error is None) == (theirs.error is None), f"builtin: {ours.error}; ansible: {theirs.error}"
    if builtin is None or ansible is None:
        return
    undefined = ambiguous_groups(ansible)  # where ansible-core's own order changes between runs
    ordered = sorted if "all" in undefined else list
    assert ordered(ours.value["order"]) == ordered(theirs.value["order"])
    assert ours.value["hosts"] == theirs.value["hosts"]
    for name, members in theirs.value["groups"].items():
        shown = sorted if name in undefined else list
        assert shown(ours.value["groups"].get(name, ())) == shown(members), name
    assert set(ours.value["groups"]) == set(theirs.value["groups"])
    assert ours.warnings == theirs.warnings
    differences = []
    for limit in patterns_for(case, builtin):
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
    assert not differences, "\n".join(differences)


def _sorted(outcome: Outcome) -> Outcome:
    return Outcome(value=sorted(outcome.value), error=outcome.error, warnings=outcome.warnings)
