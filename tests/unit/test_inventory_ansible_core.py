"""The ansible-core reader: vault, templates, every source Ansible reads (directories, scripts,
constructed), errors worded like the built-in reader's, and --limit as Ansible selects."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

vault = pytest.importorskip("ansible.parsing.vault", reason="ansible-core is a test dependency (pip install -e .[test])")

from fleetdiag.errors import InventoryError, UsageError  # noqa: E402
from fleetdiag.inventory.ansible_core import VaultOptions, load_with_ansible  # noqa: E402
from fleetdiag.inventory.limit import select_with_warnings  # noqa: E402
from fleetdiag.inventory.readers import chosen_reader, read_inventory  # noqa: E402
from fleetdiag.inventory.secret_values import SecretText, VaultEncrypted  # noqa: E402

PASSWORD = "unit-vault-pw-4410"


@pytest.fixture(autouse=True)
def known_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def encrypted(text: str, password: str = PASSWORD) -> str:
    secret = vault.VaultSecret(password.encode())
    blob = vault.VaultLib([("default", secret)]).encrypt(text, secret).decode()
    return "!vault |\n" + "".join(f"        {line}\n" for line in blob.splitlines())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def password_file(tmp_path: Path, password: str = PASSWORD) -> VaultOptions:
    return VaultOptions(password_files=(str(write(tmp_path / "pw", password + "\n")),))


def vaulted(tmp_path: Path) -> Path:
    return write(
        tmp_path / "hosts.yaml",
        "all:\n  vars:\n    domain: example.net\n  hosts:\n    web01:\n"
        "      ansible_host: '{{ inventory_hostname }}.{{ domain }}'\n"
        f"      ansible_user: {encrypted('deploy')}"
        f"      app_secret: {encrypted('s3cr3t-value')}"
        "      api_password: plain-but-secret\n",
    )


def test_vault_values_open_with_the_password_file_and_templates_render(tmp_path: Path) -> None:
    inventory = load_with_ansible(vaulted(tmp_path), password_file(tmp_path))
    (host,) = inventory.hosts
    assert (host.name, host.address, host.user) == ("web01", "web01.example.net", "deploy")
    # Only connection variables are opened; others stay ciphertext, secrets stay masked.
    assert isinstance(host.vars["app_secret"], VaultEncrypted)
    assert isinstance(host.vars["api_password"], SecretText) and "plain-but-secret" not in repr(host)


def test_a_vaulted_connection_variable_without_its_password_names_file_line_and_variable(tmp_path: Path) -> None:
    for options in (None, password_file(tmp_path, "wrong-password")):
        with pytest.raises(InventoryError) as caught:
            load_with_ansible(vaulted(tmp_path), options)
        (line,) = caught.value.problems
        assert line.startswith(f"{tmp_path / 'hosts.yaml'}: line 7: web01.ansible_user: ")
        assert PASSWORD not in line and "deploy" not in line


def test_a_missing_password_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="--vault-password-file .*missing"):
        load_with_ansible(vaulted(tmp_path), VaultOptions(password_files=(str(tmp_path / "missing"),)))


def test_a_prompted_password_opens_the_vault(tmp_path: Path) -> None:
    inventory = read_inventory(vaulted(tmp_path), "ansible", VaultOptions(password=PASSWORD))
    assert inventory.hosts[0].user == "deploy"


def test_values_are_validated_as_the_built_in_reader_validates_them(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "[web]\nweb01 ansible_port=99999\nweb02 ansible_become_method=su\n")
    with pytest.raises(InventoryError) as caught:
        load_with_ansible(path)
    assert caught.value.problems == [
        f"{path}: line 2: web01.ansible_port: Input should be less than or equal to 65535",
        f"{path}: line 3: web02.ansible_become_method: fleetdiag becomes another user with sudo only; "
        "'su' is not supported (use sudo, or log in as root)",
    ]


def test_an_unreadable_inventory_is_an_inventory_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.yaml", "all:\n  hosts:\n    web01:\n      ansible_host: '{{ nowhere }}'\n")
    with pytest.raises(InventoryError, match=r"hosts.yaml: line 4: web01.ansible_host: .*nowhere"):
        load_with_ansible(path)
    with pytest.raises(InventoryError, match="file not found"):
        load_with_ansible(tmp_path / "absent.yaml")
    broken = write(tmp_path / "broken.ini", "[web\nweb01\n")
    with pytest.raises(InventoryError) as caught:
        load_with_ansible(broken)
    assert all(line.startswith(f"{broken}: ") for line in caught.value.problems)


def test_directories_scripts_and_constructed_groups_read_as_ansible_reads_them(tmp_path: Path) -> None:
    source = tmp_path / "inventory"
    write(source / "01-static.ini", "[app]\nweb01 ansible_host=192.0.2.10\ndb01 ansible_host=192.0.2.20\n")
    script = write(
        source / "02-script.sh",
        "#!/bin/sh\necho '{\"cache\": {\"hosts\": [\"cache01\"], \"vars\": {\"ansible_port\": 2201}}, "
        "\"_meta\": {\"hostvars\": {}}}'\n",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    write(
        source / "03-constructed.yml",
        "plugin: ansible.builtin.constructed\ngroups:\n  webservers: inventory_hostname.startswith('web')\n",
    )
    inventory = load_with_ansible(source)
    assert {host.name for host in inventory.hosts} == {"web01", "db01", "cache01"}
    assert inventory.groups["webservers"] == ("web01",)
    assert {host.name: host.port for host in inventory.hosts}["cache01"] == 2201
    assert [host.name for host in select_with_warnings(inventory, "webservers:cache").hosts] == ["web01", "cache01"]


def test_limit_is_selected_by_ansible_with_its_warnings(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "[b]\nh1\nh2\n[a]\nh2\nh1\n")
    inventory = load_with_ansible(path)
    assert [h.name for h in select_with_warnings(inventory, "a[0]").hosts] == ["h2"]
    selection = select_with_warnings(inventory, "a,nothing")
    assert [h.name for h in selection.hosts] == ["h1", "h2"]
    assert selection.warnings == ("--limit: Could not match supplied host pattern, ignoring: nothing",)
    with pytest.raises(InventoryError, match="No hosts matched the subscripted pattern"):
        select_with_warnings(inventory, "a[5]")
    with pytest.raises(InventoryError, match="leaves no host to diagnose"):
        select_with_warnings(inventory, "nothing")


def test_the_two_hazards_are_read_as_fleetdiag_reads_them_with_ansible_too(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "[web]\nweb01\n2001:db8::10\n")
    inventory = load_with_ansible(path)
    with pytest.raises(InventoryError, match="unbalanced"):
        select_with_warnings(inventory, "~[")  # Ansible: '~', every host
    assert [h.name for h in select_with_warnings(inventory, "!2001:db8::10").hosts] == ["web01"]
    assert [h.name for h in select_with_warnings(inventory, "web,!2001:db8::10").hosts] == ["web01"]


def test_the_reader_is_chosen_by_what_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen_reader("auto") == "ansible"
    assert chosen_reader("builtin") == "builtin"
    with pytest.raises(UsageError, match="vault passwords need the ansible reader"):
        read_inventory(vaulted(tmp_path), "builtin", password_file(tmp_path))
    monkeypatch.setattr("fleetdiag.inventory.readers.ansible_core_available", lambda: False)
    monkeypatch.setattr("fleetdiag.inventory.readers.ansible_inventory_command", lambda: "/usr/bin/ansible-inventory")
    assert chosen_reader("auto") == chosen_reader("ansible") == "ansible-cli"
    monkeypatch.setattr("fleetdiag.inventory.readers.ansible_inventory_command", lambda: None)
    assert chosen_reader("auto") == "builtin"
    with pytest.raises(UsageError, match="ansible-core is not installed"):
        chosen_reader("ansible")



def test_the_built_in_reader_says_a_vaulted_connection_variable_needs_ansible(tmp_path: Path) -> None:
    from fleetdiag.inventory.loader import load_inventory

    with pytest.raises(InventoryError) as caught:
        load_inventory(vaulted(tmp_path))
    assert caught.value.problems == [
        f"{tmp_path / 'hosts.yaml'}: all.hosts.web01.ansible_user: a vault-encrypted value; the built-in reader "
        "cannot open it: install ansible-core and pass --vault-password-file or --ask-vault-pass"
    ]
