"""Both inventory readers end to end: a YAML inventory with a template in ansible_host and a
vault-encrypted variable, collected through the lab with --inventory-reader builtin and ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.fleet import LabFleet

pytestmark = pytest.mark.lab

vault = pytest.importorskip("ansible.parsing.vault", reason="ansible-core is a test dependency (pip install -e .[test])")
VAULT_PASSWORD = "lab-vault-pw-7319"


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    with LabFleet(2) as lab:
        yield lab


def encrypted(text: str) -> str:
    """``text`` as an ``!vault`` block, encrypted as ansible-vault encrypt_string does."""
    secret = vault.VaultSecret(VAULT_PASSWORD.encode())
    blob = vault.VaultLib([("default", secret)]).encrypt(text, secret).decode()
    return "!vault |\n" + "".join(f"          {line}\n" for line in blob.splitlines())


def inventory(fleet: LabFleet, path: Path, vaulted_user: bool = False) -> Path:
    """Hosts addressed through a template ('{{ lab_net }}.N'), a vaulted token, optionally a vaulted user."""
    lines = ["all:", "  vars:"]
    net = fleet.host("h01").address.rsplit(".", 1)[0]
    lines += [f"    lab_net: '{net}'", f"    ansible_ssh_private_key_file: '{fleet.key_path}'"]
    lines += [f"    ansible_user: {encrypted('root')}" if vaulted_user else "    ansible_user: root"]
    lines += [f"    probe_token: {encrypted('s3cret-token-value')}", "  hosts:"]
    for host in fleet.hosts:
        last = host.address.rsplit(".", 1)[1]
        lines += [f"    {host.name}:", f"      ansible_host: '{{{{ lab_net }}}}.{last}'", f"      ansible_port: {host.port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def collect(fleet: LabFleet, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "fleetdiag", "collect", "--tracer", "counters", "-o", "json", "--duration", "1"]
    argv += ["--known-hosts", str(fleet.known_hosts_path), "--results-dir", str(tmp_path / "results"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


def summary(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str, str | None]]:
    assert result.returncode == 0, result.stderr
    hosts = json.loads(result.stdout)["hosts"]
    return {host["name"]: (host["address"], host["status"], host["fidelity"]) for host in hosts}


def test_template_and_vault_collect_the_same_hosts_with_both_readers(fleet: LabFleet, tmp_path: Path) -> None:
    path = inventory(fleet, tmp_path / "hosts.yaml")
    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    builtin = collect(fleet, tmp_path, "-i", str(path), "--inventory-reader", "builtin")
    ansible = collect(
        fleet, tmp_path, "-i", str(path), "--inventory-reader", "ansible", "--vault-password-file", str(password_file)
    )
    assert summary(builtin) == summary(ansible)
    assert {name: value[:2] for name, value in summary(ansible).items()} == {
        host.name: (host.address, "ok") for host in fleet.hosts
    }
    for result in (builtin, ansible):
        assert "s3cret-token-value" not in result.stdout + result.stderr
        assert VAULT_PASSWORD not in result.stdout + result.stderr


def test_a_vaulted_connection_variable_needs_the_ansible_reader_and_its_password(
    fleet: LabFleet, tmp_path: Path
) -> None:
    path = inventory(fleet, tmp_path / "hosts.yaml", vaulted_user=True)
    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    opened = collect(fleet, tmp_path, "-i", str(path), "--inventory-reader", "ansible", "--vault-password-file", str(password_file))
    assert set(summary(opened)) == {host.name for host in fleet.hosts}
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    for args in (["--inventory-reader", "ansible", "--vault-password-file", str(wrong)], ["--inventory-reader", "builtin"]):
        refused = collect(fleet, tmp_path, "-i", str(path), *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == ""
        assert "ansible_user" in refused.stderr
        assert VAULT_PASSWORD not in refused.stderr and "not-the-password" not in refused.stderr


def test_a_pattern_matching_nothing_warns_and_the_sweep_goes_on_with_both_readers(fleet: LabFleet, tmp_path: Path) -> None:
    path = inventory(fleet, tmp_path / "hosts.yaml")
    for reader in ("builtin", "ansible"):
        result = collect(fleet, tmp_path, "-i", str(path), "--inventory-reader", reader, "-l", "h01,h99")
        assert set(summary(result)) == {"h01"}
        assert "fleetdiag: warning: --limit: " in result.stderr and "h99" in result.stderr
        refused = collect(fleet, tmp_path, "-i", str(path), "--inventory-reader", reader, "-l", "~[")
        assert refused.returncode == 2 and refused.stdout == "" and "unbalanced" in refused.stderr
