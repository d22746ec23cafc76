"""The built-in reader against ansible-core itself, in-process, on every corpus inventory and pattern.

Hosts (in Ansible's order), groups and their host order, the connection variables, and
the hosts each --limit selects (with the patterns Ansible warns about) must be identical;
where Ansible refuses an inventory or a limit, the built-in reader refuses it too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ansible.inventory.manager", reason="ansible-core is a test dependency (pip install -e .[test])")

from tests.differential.harness import cases, is_hazard, patterns_for, read, select  # noqa: E402


@pytest.mark.parametrize("case", cases(), ids=lambda path: path.name)
def test_both_readers_agree(case: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    builtin, ours = read(case, "builtin")
    ansible, theirs = read(case, "ansible")
    assert (ours.error is None) == (theirs.error is None), f"builtin: {ours.error}; ansible: {theirs.error}"
    if builtin is None or ansible is None:
        return
    assert ours.value["order"] == theirs.value["order"]
    assert ours.value["hosts"] == theirs.value["hosts"]
    assert ours.value["groups"] == theirs.value["groups"]
    differences = []
    for limit in patterns_for(case, builtin):
        if is_hazard(limit):  # '~[' and '!2001:db8::10': README says why fleetdiag differs
            continue
        mine, reference = select(builtin, limit), select(ansible, limit)
        same = (mine.error is None) == (reference.error is None) and mine.value == reference.value
        if not same or mine.warnings != reference.warnings:
            differences.append(f"{limit!r}: builtin {mine}, ansible {reference}")
    assert not differences, "\n".join(differences)
