"""The ansible-inventory fallback against ansible-core in-process: real ``ansible-inventory`` and
``ansible --list-hosts`` subprocesses (seconds each), on corpus inventories and vault files."""

from __future__ import annotations

from pathlib import Path

import pytest

vault = pytest.importorskip("ansible.parsing.vault", reason="ansible-core is a test dependency (pip install -e .[test])")

from fleetdiag.errors import InventoryError  # noqa: E402
from fleetdiag.inventory.ansible_cli import ansible_inventory_command, load_with_ansible_cli  # noqa: E402
from fleetdiag.inventory.ansible_core import VaultOptions, load_with_ansible  # noqa: E402
from fleetdiag.inventory.limit import select_with_warnings  # noqa: E402
from tests.differential.harness import CORPUS, source_of  # noqa: E402
from tests.unit.test_inventory_ansible_core import PASSWORD, vaulted, write  # noqa: E402

pytestmark = pytest.mark.skipif(ansible_inventory_command() is None, reason="ansible-inventory is not on PATH")


@pytest.fixture(autouse=True)
def known_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


CLI_CASES = ["children_level_order_yaml", "host_and_group_same_name"]  # a subprocess each: a few only


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_ansible_inventory_command_reads_as_ansible_core_in_process(case: str) -> None:
    path = source_of(CORPUS / case)
    by_cli, in_process = load_with_ansible_cli(path), load_with_ansible(path)
    assert by_cli.hosts == in_process.hosts
    assert {name: hosts for name, hosts in by_cli.groups.items() if hosts} == {
        name: hosts for name, hosts in in_process.groups.items() if hosts
    }
    for limit in ("all[-1]:!nothing", f"{in_process.hosts[0].name},nothing"):
        assert select_with_warnings(by_cli, limit) == select_with_warnings(in_process, limit)


def test_the_ansible_inventory_command_gets_vault_passwords_and_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    path = vaulted(tmp_path)
    with pytest.raises(InventoryError) as caught:
        load_with_ansible_cli(path, VaultOptions(password=PASSWORD))
    assert caught.value.problems == [
        f"{path}: web01.ansible_user: a vault-encrypted value; read with ansible-inventory; "
        "install ansible-core in fleetdiag's Python for vault values and any template"
    ]
    whole = write(tmp_path / "whole.yaml", "all:\n  hosts:\n    web01:\n      ansible_host: 192.0.2.9\n")
    whole.write_text(vault.VaultLib([("default", vault.VaultSecret(PASSWORD.encode()))]).encrypt(whole.read_text()).decode())
    assert [h.address for h in load_with_ansible_cli(whole, VaultOptions(password=PASSWORD)).hosts] == ["192.0.2.9"]
    with pytest.raises(InventoryError):
        load_with_ansible_cli(whole)
