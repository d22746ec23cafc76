"""Ansible semantics beyond the YAML file: INI inventories, group_vars/ and host_vars/, --limit
files and subscripts, become method, host key checking, bastions and become passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetdiag.errors import InventoryError
from fleetdiag.inventory import Inventory, load_inventory, select_hosts
from fleetdiag.inventory.ini_file import parse_value, read_ini
from fleetdiag.model import HostSpec

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
ANSIBLE = FIXTURES / "ansible"


@pytest.fixture(autouse=True)
def known_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def ini() -> Inventory:
    return load_inventory(ANSIBLE / "hosts.ini")


def by_name(inventory: Inventory) -> dict[str, HostSpec]:
    return {host.name: host for host in inventory.hosts}


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "hosts") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- INI ------------------------------------------------------------------------------


def test_ini_hosts_groups_ranges_and_ports(ini: Inventory) -> None:
    assert [h.name for h in ini.hosts] == [
        "bastion01", "web01", "web02", "web03", "web04", "db-a.example.org", "db-b.example.org",
    ]  # fmt: skip
    hosts = by_name(ini)
    assert hosts["bastion01"].address == "192.0.2.1"
    assert hosts["bastion01"].groups == ("ungrouped",)
    assert hosts["web02"].groups == ("prod", "web")
    assert (hosts["web02"].port, hosts["web03"].port) == (2222, 2222)
    assert hosts["web04"].address == "192.0.2.14"
    assert ini.groups["prod"] == ("web01", "web02", "web03", "web04", "db-a.example.org", "db-b.example.org")


def test_ini_values_are_python_literals_or_text_as_ansible_reads_them() -> None:
    assert parse_value("8080") == 8080
    assert parse_value("'deploy'") == "deploy"
    assert parse_value("yes") == "yes"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("$(reboot)") == "$(reboot)"
    assert parse_value("b'x'") == "b'x'"  # bytes are not a variable type


def test_ini_problems_name_the_line_and_never_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[web]\nweb01 ansible_port\n[web:bogus]\n[db:vars]\nx=1\n[all:children]\nmissing\n"
        "[web:vars]\nansible_become_password=hunter22\nansible_port=hunter22\n",
    )
    problems = problems_of(path)
    assert problems[:4] == [
        f"{path}: line 2: expected key=value after the host name, got a word without '='",
        f"{path}: line 3: section [web:bogus] has unknown type 'bogus'",
        f"{path}: line 4: [db:vars] refers to group 'db', which is never declared",
        f"{path}: line 7: [all:children] refers to group 'missing', which is never declared",
    ]
    assert not any("hunter22" in line for line in problems)


def test_ini_hosts_listed_later_in_a_group_leave_ungrouped(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "web01\n[web]\nweb01\n"))
    assert inventory.hosts[0].groups == ("web",)
    assert inventory.groups["ungrouped"] == ()


def test_read_ini_keeps_every_section_in_order() -> None:
    doc = read_ini("h1 a=1\n[g]\nh2\n[g:vars]\nv='x'\n[p:children]\ng\n")
    assert doc.problems == []
    assert list(doc.groups) == ["ungrouped", "g", "p"]
    assert doc.groups["g"]["vars"] == {"v": "x"}
    assert doc.groups["p"]["children"] == {"g": None}


# --- group_vars/ and host_vars/ ---------------------------------------------------------


def test_vars_files_follow_ansible_precedence(ini: Inventory, tmp_path: Path) -> None:
    hosts = by_name(ini)
    web01, web02, web04 = hosts["web01"], hosts["web02"], hosts["web04"]
    # group_vars/web (a directory, files in order) > group_vars/all > [web:vars] > [all:vars]
    assert (web01.user, web01.vars["http_port"]) == ("webops", 8081)
    assert web01.vars["site"] == "from_group_vars_all"
    assert (web01.vars["owner"], web01.vars["env"]) == ("sre", "prod")
    # host_vars/ > the inventory's host vars > group vars
    assert (web01.port, web02.port, web04.port) == (2201, 2222, 2204)
    assert web04.user == "deploy"
    assert web01.become and web01.become_user == "root"
    # db has no group_vars of its own: group_vars/all beats [all:vars]
    db = hosts["db-a.example.org"]
    assert (db.user, db.become, db.vars["site"]) == ("fallback", False, "from_group_vars_all")
    assert db.private_key_file == str(tmp_path / "home" / ".ssh" / "fleet")


def test_hidden_and_foreign_files_in_vars_directories_are_skipped(ini: Inventory) -> None:
    users = {host.user for host in ini.hosts}
    assert "hidden-files-are-skipped" not in users and "txt-files-are-skipped" not in users


def test_vars_files_work_beside_a_yaml_inventory_too(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  children:\n    web:\n      hosts:\n        web01:\n", "hosts.yaml")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web01.yaml").write_text("ansible_host: 192.0.2.50\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "unknown_group.yml").write_text("ansible_port: 'not read: no such group'\n")
    assert load_inventory(path).hosts[0].address == "192.0.2.50"


def test_problems_in_vars_files_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    web01:\n", "hosts.yaml")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("ansible_port: 99999\nansible_password: s3cret-value\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web01").write_text("- a list\n")
    shown = tmp_path
    assert problems_of(path) == [
        f"{shown}/group_vars/all.yml: ansible_port: Input should be less than or equal to 65535",
        f"{shown}/host_vars/web01: must be a mapping of variables, got a list",
    ]


# --- variables fleetdiag reads ----------------------------------------------------------


def test_become_method_other_than_sudo_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nweb01 ansible_become=yes ansible_become_method=su\n")
    assert problems_of(path) == [
        f"{path}: web.hosts.web01.ansible_become_method: fleetdiag becomes another user with sudo only; "
        "'su' is not supported (use sudo, or log in as root)"
    ]
    ok = write(tmp_path, "[web]\nweb01 ansible_become_method=sudo\n", "ok")
    assert load_inventory(ok).hosts[0].name == "web01"


@pytest.mark.parametrize(
    ("written", "mode"),
    [("false", "off"), ("no", "off"), ("true", "strict"), ("accept-new", "accept-new"), (None, None)],
)
def test_host_key_checking_variable(tmp_path: Path, written: str | None, mode: str | None) -> None:
    line = "web01" + (f" ansible_host_key_checking={written}" if written else "")
    assert load_inventory(write(tmp_path, f"[web]\n{line}\n")).hosts[0].host_key_checking == mode


def test_bastions_in_common_args_are_checked_like_host_names(tmp_path: Path) -> None:
    good = write(tmp_path, "all:\n  hosts:\n    web01:\n      ansible_ssh_common_args: '-J ops@192.0.2.1:2200'\n", "a.yaml")
    assert load_inventory(good).hosts[0].ssh_common_args == "-J ops@192.0.2.1:2200"
    bad = write(tmp_path, "[web]\nweb01 ansible_ssh_common_args='-J \"ops@bastion;reboot\"'\n")
    (problem,) = problems_of(bad)
    assert "web.hosts.web01.ansible_ssh_common_args: 'bastion;reboot' is not a valid jump host" in problem


def test_extra_args_follow_the_common_args(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[web]\nweb01 ansible_ssh_common_args='-o ConnectTimeout=5' ansible_ssh_extra_args='-J b1'\n",
    )
    assert load_inventory(path).hosts[0].ssh_common_args == "-o ConnectTimeout=5 -J b1"


def test_become_passwords_in_the_inventory_are_ignored_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  vars:\n    ansible_become_password: Tr0ub4dor&3\n  hosts:\n    web01:\n", "h.yaml")
    inventory = load_inventory(path)
    assert inventory.warnings == (
        f"{path}: all.vars.ansible_become_password: ignored; fleetdiag takes the become password only "
        "from the FLEETDIAG_BECOME_PASSWORD environment variable or the -K prompt",
    )
    assert "Tr0ub4dor" not in repr(inventory)


# --- --limit -------------------------------------------------------------------------


def names(hosts: tuple[HostSpec, ...]) -> list[str]:
    return [host.name for host in hosts]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("web[0]", ["web01"]),
        ("web[1:2]", ["web02", "web03"]),  # inclusive, as in Ansible
        ("web[2:]", ["web03", "web04"]),
        ("web[-1]", ["web04"]),
        ("prod[0]:db", ["web01", "db-a.example.org", "db-b.example.org"]),
        ("~web0[12]", ["web01", "web02"]),
        ("~.*example", ["db-a.example.org", "db-b.example.org"]),
    ],
)
def test_limit_subscripts_and_regexes(ini: Inventory, limit: str, expected: list[str]) -> None:
    assert names(select_hosts(ini, limit)) == expected


def test_limit_file_holds_one_pattern_a_line(ini: Inventory) -> None:
    limit_file = ANSIBLE / "limit.txt"
    assert names(select_hosts(ini, f"@{limit_file}")) == ["web01", "db-a.example.org"]
    assert names(select_hosts(ini, f"@{limit_file},bastion01")) == ["bastion01", "web01", "db-a.example.org"]


def test_missing_limit_file_is_an_error(ini: Inventory, tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        select_hosts(ini, f"@{tmp_path / 'nope'}")
    assert caught.value.problems == [f"--limit: limit file {tmp_path / 'nope'} not found"]
