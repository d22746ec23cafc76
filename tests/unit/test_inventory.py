"""The inventory: Ansible YAML in, HostSpecs out, every problem named with file and path."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from fleetdiag.errors import InventoryError, UsageError
from fleetdiag.inventory import Inventory, load_inventory, local_inventory, select_hosts
from fleetdiag.inventory.limit import select_with_warnings
from fleetdiag.model import HostSpec

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
EXAMPLE = Path(__file__).parents[2] / "inventory.example.yaml"
FORMAT_HINT = "see inventory.example.yaml for the format"


@pytest.fixture(autouse=True)
def in_fixtures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from the fixture folder, with a known home directory for '~' expansion."""
    monkeypatch.chdir(FIXTURES)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def hosts_by_name(inventory: Inventory) -> dict[str, HostSpec]:
    return {host.name: host for host in inventory.hosts}


def problems_of(path: str | Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "hosts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- merging -------------------------------------------------------------------------


def test_vars_merge_all_then_parent_then_child_then_host() -> None:
    hosts = hosts_by_name(load_inventory("good/precedence.yaml"))
    web01, web02, app01 = hosts["web01"], hosts["web02"], hosts["app01"]
    assert (web01.port, web02.port, app01.port) == (1004, 1003, 1002)
    assert web01.user == web02.user == app01.user == "from_all"
    assert web01.become_user == "from_prod"
    assert (web01.vars["site"], web02.vars["site"], app01.vars["site"]) == ("web01", "web", "prod")
    assert web02.vars["owner"] == "team-all"


def test_sibling_groups_merge_by_name_unless_a_priority_says_otherwise() -> None:
    hosts = hosts_by_name(load_inventory("good/siblings.yaml"))
    # alpha < beta < zeta: zeta's user and beta's port win over alpha's.
    assert (hosts["app01"].user, hosts["app01"].port) == ("zeta", 2202)
    # 'urgent' sorts after 'zeta' only thanks to ansible_group_priority: 10.
    assert hosts["app02"].user == "urgent"
    # A child beats its parent whatever the parent's priority.
    assert hosts["app03"].port == 3002


def test_group_priority_is_not_a_host_variable() -> None:
    hosts = hosts_by_name(load_inventory("good/siblings.yaml"))
    assert "ansible_group_priority" not in hosts["app02"].vars


def test_host_in_several_groups_is_one_host_with_merged_host_vars() -> None:
    inventory = load_inventory("good/duplicate_host.yaml")
    assert [host.name for host in inventory.hosts] == ["web01", "web02"]
    web01 = inventory.hosts[0]
    assert web01.user == "alice"
    assert web01.port == 2202  # the canary listing comes later in the file
    assert web01.groups == ("canary", "web")
    assert inventory.groups["web"] == ("web01", "web02")
    assert inventory.groups["canary"] == ("web01",)
    assert inventory.groups["ungrouped"] == ()


def test_groups_map_includes_hosts_of_child_groups_in_ansibles_order() -> None:
    inventory = load_inventory("good/precedence.yaml")
    # Ansible's Group.get_hosts: the group's own hosts first, then its children's, level by level.
    assert inventory.groups["prod"] == ("app01", "web01", "web02")
    assert inventory.groups["all"] == ("app01", "web01", "web02")
    assert hosts_by_name(inventory)["web01"].groups == ("prod", "web")


def test_structures_ansible_accepts_load() -> None:
    inventory = load_inventory("good/shapes.yaml")
    assert [host.name for host in inventory.hosts] == ["lonely", "solo01", "mon01"]
    assert inventory.groups["ungrouped"] == ("lonely",)
    assert inventory.groups["nesting"] == ("solo01",)
    assert inventory.groups["empty"] == ()
    assert inventory.groups["metrics"] == ("mon01",)
    lonely = inventory.hosts[0]
    assert (lonely.address, lonely.port, lonely.user, lonely.connection) == ("lonely", 22, None, "ssh")
    assert lonely.groups == ("ungrouped",)


# --- ranges, aliases, values ------------------------------------------------------------


def test_host_ranges_expand_inclusively_with_padding_stride_and_port() -> None:
    inventory = load_inventory("good/ranges.yaml")
    assert [host.name for host in inventory.hosts] == [
        "web01", "web02", "web03",
        "db-a", "db-b", "db-c",
        "node8", "node9", "node10",
        "odd1", "odd4", "odd7",
        "rack1-u01", "rack1-u02", "rack2-u01", "rack2-u02",
        "192.0.2.10", "192.0.2.11",
        "edge09", "edge10",
    ]  # fmt: skip
    hosts = hosts_by_name(inventory)
    assert (hosts["edge10"].port, hosts["edge10"].user) == (2222, "ops")
    assert (hosts["web01"].port, hosts["web01"].user) == (22, None)


def test_older_ssh_aliases_work_and_win_over_the_newer_names() -> None:
    hosts = hosts_by_name(load_inventory("good/aliases.yaml"))
    old01 = hosts["old01"]
    assert (old01.address, old01.port, old01.user) == ("192.0.2.31", 2231, "legacy")
    # ansible_ssh_host in all.vars beats ansible_host in host vars, as in Ansible.
    assert hosts["both01"].address == "192.0.2.33"
    # ...unless a more specific level sets it back to null.
    new01 = hosts["new01"]
    assert (new01.address, new01.port, new01.user) == ("192.0.2.34", 2234, "modern")


def test_key_files_expand_home(tmp_path: Path) -> None:
    hosts = hosts_by_name(load_inventory("good/aliases.yaml"))
    home = tmp_path / "home"
    assert hosts["old01"].private_key_file == str(home / ".ssh" / "alias_key")
    assert hosts["new01"].private_key_file == str(home / ".ssh" / "main_key")


def test_connections_and_addresses() -> None:
    hosts = hosts_by_name(load_inventory("good/connections.yaml"))
    assert {name: hosts[name].connection for name in ("plain", "para", "smart", "self")} == {
        "plain": "ssh",
        "para": "ssh",
        "smart": "ssh",
        "self": "local",
    }
    assert hosts["self"].is_local
    assert hosts["v6"].address == "2001:db8::10"
    assert hosts["2001:db8::11"].address == "2001:db8::11"
    assert (hosts["2001:db8::12"].address, hosts["2001:db8::12"].port) == ("2001:db8::12", 2212)
    assert hosts["zoned"].address == "fe80::1%eth0"
    assert hosts["jump"].ssh_common_args == "-J ops@192.0.2.1:2200 -o ServerAliveInterval=5"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("yes", True), ("no", False), ("true", True), ("false", False), ("on", True), ("off", False),
        ("1", True), ("0", False), (1, True), (0, False),
        ("'yes'", True), ("'No'", False), ("'TRUE'", True), ("'off'", False), ("'on'", True),
        ("'1'", True), ("'0'", False), ("'y'", True), ("'n'", False), ("'t'", True), ("'f'", False),
    ],
)  # fmt: skip
def test_become_takes_ansible_booleans(tmp_path: Path, written: object, expected: bool) -> None:
    path = write(tmp_path, f"all:\n  hosts:\n    web01:\n      ansible_become: {written}\n")
    assert load_inventory(path).hosts[0].become is expected


@pytest.mark.parametrize("written", ["maybe", "2", "'2'", "''", "[yes]"])
def test_become_rejects_what_ansible_would_not_read_as_a_boolean(tmp_path: Path, written: str) -> None:
    path = write(tmp_path, f"all:\n  hosts:\n    web01:\n      ansible_become: {written}\n")
    assert problems_of(path) == [
        f"{path}: all.hosts.web01.ansible_become: Input should be a boolean: yes/no, true/false, on/off or 1/0"
    ]


def test_port_may_be_written_as_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    web01:\n      ansible_port: '2222'\n")
    assert load_inventory(path).hosts[0].port == 2222


def test_unknown_variables_are_kept_and_understood_ones_are_not_repeated() -> None:
    web01 = load_inventory("good/other_vars.yaml").hosts[0]
    assert web01.vars["ntp_server"] == "192.0.2.123"
    assert web01.vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert web01.vars["rack"] == "r12"
    # Read-only all the way down: hosts share their groups' values.
    assert web01.vars["tags"] == ("frontend", "prod")
    assert web01.vars["limits"] == {"nofile": 65536}
    with pytest.raises(TypeError):
        web01.vars["limits"]["nofile"] = 1
    assert web01.vars["ansible_host_key"] is None
    assert "ansible_host" not in web01.vars and "ansible_user" not in web01.vars
    assert (web01.address, web01.user) == ("192.0.2.11", "ops")


def test_secret_variables_keep_their_value_but_never_show_it() -> None:
    web01 = load_inventory("good/other_vars.yaml").hosts[0]
    assert web01.vars["ansible_become_password"] == "s3cr3t-all-level"
    assert str(web01.vars["ansible_ssh_pass"]) == "s3cr3t-host-level"
    assert web01.vars["app"]["db_password"] == "s3cr3t-nested"
    assert "s3cr3t" not in repr(web01)
    assert "s3cr3t" not in repr(load_inventory("good/other_vars.yaml"))


def test_ansible_vault_and_unsafe_tags_load() -> None:
    web01 = load_inventory("good/tagged.yaml").hosts[0]
    vaulted = web01.vars["ansible_become_password"]
    assert vaulted.ciphertext.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert "ANSIBLE_VAULT" not in repr(web01)
    assert web01.vars["motd"] == "{{ not a template }}"


def test_yaml_anchors_and_merge_keys_work_without_duplicate_warnings() -> None:
    inventory = load_inventory("good/anchors.yaml")
    web01, web02 = inventory.hosts
    assert (web01.user, web01.port, web01.become, web01.address) == ("deploy", 2222, True, "192.0.2.11")
    assert (web02.port, web02.address) == (2202, "192.0.2.11")
    assert inventory.warnings == ()


def test_duplicate_keys_load_like_ansible_but_warn() -> None:
    inventory = load_inventory("good/duplicate_keys.yaml")
    assert [host.name for host in inventory.hosts] == ["web02"]
    assert inventory.warnings == (
        "good/duplicate_keys.yaml: line 6: duplicate key 'web'; the later one replaces the earlier one",
    )


def test_vars_directories_beside_the_inventory_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    web01:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("ansible_user: ops\n")
    web01 = load_inventory(path).hosts[0]
    assert web01.user == "ops"
    assert load_inventory(path).warnings == ()


def test_inventory_is_frozen() -> None:
    inventory = load_inventory("good/duplicate_host.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        inventory.hosts = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        inventory.groups["web"] = ()  # type: ignore[index]
    assert inventory.path == Path("good/duplicate_host.yaml")


# --- the example and the local mode ------------------------------------------------------


def test_example_inventory_loads_and_shows_every_feature(tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE)
    hosts = hosts_by_name(inventory)
    assert list(hosts) == [  # Ansible's order for 'all': all's own hosts first, then its groups'
        "bastion01", "web01", "web02", "web03", "db01", "db02", "db03", "lb-a", "lb-b",
    ]  # fmt: skip
    assert (hosts["web02"].user, hosts["web02"].become) == ("ops", True)
    assert (hosts["lb-a"].user, hosts["lb-a"].become) == ("root", False)
    assert (hosts["db02"].address, hosts["db02"].port) == ("192.0.2.22", 2222)
    assert hosts["db03"].address == "2001:db8::23"
    assert hosts["web01"].groups == ("canary", "prod", "web")
    assert hosts["web01"].ssh_common_args == "-J ops@192.0.2.1:2200"
    assert hosts["db01"].private_key_file == str(tmp_path / "home" / ".ssh" / "fleetdiag_ed25519")
    assert inventory.warnings == ()


def test_example_uses_documentation_addresses_only() -> None:
    for host in load_inventory(EXAMPLE).hosts:
        try:
            address = ipaddress.ip_address(host.address)
        except ValueError:
            continue  # a DNS name
        assert address in ipaddress.ip_network("192.0.2.0/24") or address in ipaddress.ip_network(
            "2001:db8::/32"
        )


def test_local_inventory_is_this_machine_without_ssh() -> None:
    inventory = local_inventory()
    assert inventory.hosts == (HostSpec(name="localhost", address="localhost", connection="local"),)
    assert inventory.hosts[0].is_local
    assert inventory.path is None
    assert select_hosts(inventory, "localhost") == inventory.hosts


# --- problems, one line each -------------------------------------------------------------

BAD_CASES = {
    "port_not_int": [
        ("all.children.web.hosts.web01.ansible_port: Input should be a valid integer, "
        "unable to parse string as an integer"),
    ],
    "port_in_group_vars": [
        "all.children.web.vars.ansible_port: Input should be less than or equal to 65535",
        "all.children.db.hosts.db01.ansible_ssh_port: Input should be greater than or equal to 1",
        "all.children.db.hosts.db02.ansible_port: Input should be a valid integer",
    ],
    "syntax_error": [
        ("line 5, column 6: YAML syntax error: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping started on line 3)"),
    ],
    "top_level_list": ["the top level must be a mapping of groups such as 'all:', got a list"],
    "top_level_empty_mapping": ["no groups: the top level must hold 'all:' or group names"],
    "top_level_sections": [
        "hosts: 'hosts' is not a group at the top level; put it under 'all:'",
        "vars: 'vars' is not a group at the top level; put it under 'all:'",
    ],
    "plugin_config": [
        ("this is an inventory plugin configuration, not a YAML inventory; "
        "export one with 'ansible-inventory --list --yaml'"),
    ],
    "sections_not_mappings": [
        "all.children.web.hosts: must be a mapping, got a list; write one entry per line as 'web01:'",
        "all.children.db.children: must be a mapping, got a list; write one entry per line as 'web:'",
        ("all.children.cache.vars: must be a mapping, got a string; "
        "write one entry per line as 'ansible_user: ops'"),
    ],
    "group_not_mapping": [
        "all.children.web: a group must be a mapping of hosts, children and vars, got a list",
        "all.children.db: a group must be a mapping of hosts, children and vars, got a string",
    ],
    "host_vars_not_mapping": [
        "all.hosts.web01: host variables must be a mapping (e.g. 'ansible_host: 192.0.2.10'), got a string",
        "all.hosts.web02: host variables must be a mapping (e.g. 'ansible_host: 192.0.2.10'), got a list",
    ],
    "unknown_group_keys": [
        ("all.children.web.host: unknown key; a group may only hold 'hosts', 'children' and 'vars' "
        "(did you mean 'hosts'?)"),
        ("all.children.web.var: unknown key; a group may only hold 'hosts', 'children' and 'vars' "
        "(did you mean 'vars'?)"),
        ("all.children.web.ansible_port: unknown key; a group may only hold 'hosts', 'children' and 'vars': "
        "variables go under 'vars:'"),
        "all.children.web.members: unknown key; a group may only hold 'hosts', 'children' and 'vars'",
    ],
    "values": [
        "all.hosts.web01.ansible_become: Input should be a boolean: yes/no, true/false, on/off or 1/0",
        "all.hosts.web01.ansible_connection: Input should be 'ssh', 'local', 'paramiko', 'paramiko_ssh' or 'smart'",
        "all.hosts.web01.ansible_ssh_private_key_file: key file path must not be empty",
        ("all.hosts.web01.ansible_group_priority: Input should be a valid integer, "
        "unable to parse string as an integer"),
        "all.hosts.web01.ansible_ssh_common_args: Input should be a valid string",
    ],
    "bad_ranges": [
        "all.hosts.web[3:1]: host range [3:1] starts after its end",
        "all.hosts.web[01:3]: host range [01:3] is zero-padded, so its start and end need the same number of digits",
        "all.hosts.web[1:3:0]: host range [1:3:0] step must be a whole number above 0",
        "all.hosts.web[a:3]: host range [a:3] must run between two numbers or two single letters",
        "all.hosts.web[1:]: host range [1:] has no end value",
        "all.hosts.web[1:2:3:4]: host range [1:2:3:4] must read [start:end] or [start:end:step]",
        "all.hosts.web[1:100000]: host range expands to more than 65536 hosts; split it up",
        "all.hosts.web01:99999: port 99999: Input should be less than or equal to 65535",
    ],
    "group_loops": [
        "all.children.a.children.b.children.a: 'a' already contains 'b', so this would make a loop",
        "all.children.c.children.c: a group cannot contain itself",
        "all.children.c.children.all: 'all' holds every group, so it cannot be a child of 'c'",
        ("all.children.web servers: 'web servers' is not a valid group name: it contains a space; "
        "use letters, digits, '_', '-' and '.'"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", ["empty", "comments_only", "no_hosts"])
def test_an_inventory_without_hosts_loads_empty_with_a_warning_as_in_ansible(case: str) -> None:
    inventory = load_inventory(f"bad/{case}.yaml")
    assert inventory.hosts == ()
    assert inventory.warnings == (f"bad/{case}.yaml: the inventory defines no hosts",)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_every_problem_is_listed_with_file_and_path(case: str) -> None:
    name = f"bad/{case}.yaml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(name)
    assert caught.value.problems == [f"{name}: {line}" for line in BAD_CASES[case]]
    assert caught.value.hint == FORMAT_HINT
    assert all("\n" not in line for line in caught.value.problems)


def test_inventory_error_is_a_usage_error_whose_message_is_the_problems() -> None:
    with pytest.raises(UsageError) as caught:
        load_inventory("bad/port_in_group_vars.yaml")
    assert caught.value.message == "\n".join(caught.value.problems)  # type: ignore[attr-defined]
    assert str(caught.value).endswith(f"({FORMAT_HINT})")


def test_hostile_host_names_and_addresses_are_rejected() -> None:
    name = "bad/hostile_names.yaml"
    dns = "use a DNS name, an IPv4 or an IPv6 address"
    option = "it starts with '-', which ssh would read as an option"
    assert problems_of(name) == [
        (
            f"{name}: all.hosts.web01 -oProxyCommand=sh: 'web01 -oProxyCommand=sh' is not a valid host name: "
            f"it contains a space; {dns}"
        ),
        (
            f"{name}: all.hosts.-oProxyCommand=touch /tmp/pwned: '-oProxyCommand=touch /tmp/pwned' "
            f"is not a valid host name: {option}"
        ),
        f"{name}: all.hosts.web02;reboot: 'web02;reboot' is not a valid host name: it contains ';'; {dns}",
        f"{name}: all.hosts.web03$(id): 'web03$(id)' is not a valid host name: it contains '$'; {dns}",
        f"{name}: all.hosts.web04`id`: 'web04`id`' is not a valid host name: it contains '`'; {dns}",
        f"{name}: all.hosts.web05|nc: 'web05|nc' is not a valid host name: it contains '|'; {dns}",
        f"{name}: all.hosts.web06\\n: 'web06\\n' is not a valid host name: it contains a line break; {dns}",
        f"{name}: all.hosts.fine01.ansible_host: '-oProxyCommand=sh' is not a valid host address: {option}",
        (
            f"{name}: all.hosts.fine02.ansible_host: '192.0.2.12 -p 2222' is not a valid host address: "
            f"it contains a space; {dns}"
        ),
        (
            f"{name}: all.hosts.fine03.ansible_host: '192.0.2.13&' is not a valid host address: "
            f"it contains '&'; {dns}"
        ),
        (
            f"{name}: all.hosts.fine04.ansible_ssh_host: 'host:name' is not a valid host address: "
            "':' and '%' are only allowed in an IPv6 address"
        ),
        f"{name}: all.hosts.fine05.ansible_user: '-lroot' is not a valid user name: {option}",
        (
            f"{name}: all.hosts.fine06.ansible_become_user: 'root; rm' is not a valid user name: "
            "it contains ';'; use letters, digits, '.', '_', '-', '@' and '$'"
        ),
    ]


@pytest.mark.parametrize(
    "address", ["web01.example.net", "192.0.2.10", "2001:db8::1", "fe80::1%eth0", "db_primary", "WEB-01."]
)
def test_ordinary_names_and_addresses_are_accepted(tmp_path: Path, address: str) -> None:
    path = write(tmp_path, f"all:\n  hosts:\n    '{address}':\n      ansible_host: '{address}'\n")
    assert load_inventory(path).hosts[0].address == address


def test_problems_use_the_file_name_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "all:\n  hosts:\n    web01:\n      ansible_port: 0\n")
    monkeypatch.chdir(tmp_path)
    assert problems_of("hosts.yaml") == [
        "hosts.yaml: all.hosts.web01.ansible_port: Input should be greater than or equal to 1"
    ]
    assert problems_of("./hosts.yaml")[0].startswith("./hosts.yaml: all.hosts")
    assert problems_of(tmp_path / "hosts.yaml")[0].startswith(f"{tmp_path / 'hosts.yaml'}: all.hosts")


# --- unreadable files ------------------------------------------------------------------


def test_missing_file_says_what_to_do() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("nosuch.yaml")
    assert caught.value.problems == ["nosuch.yaml: file not found"]
    assert caught.value.hint == f"check the path given with -i; {FORMAT_HINT}"


def test_directory_is_not_an_inventory() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("good")
    assert caught.value.problems == ["good: is a directory, not an inventory file"]
    assert caught.value.hint == "pass the YAML inventory file itself, e.g. -i inventory/hosts.yaml"


def test_unreadable_file_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, which reads any file: simulate the refusal instead of chmod.
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(InventoryError) as caught:
        load_inventory("good/ranges.yaml")
    assert caught.value.problems == ["good/ranges.yaml: permission denied"]
    assert caught.value.hint == "make the file readable by the user running fleetdiag"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("all:\n  hosts:\n    caf\xe9:\n".encode("latin-1"))
    assert problems_of(path) == [f"{path}: not UTF-8 text"]


def test_ini_content_is_read_as_ini_whatever_the_file_is_called() -> None:
    # Ansible tries its INI plugin when YAML cannot read a file, whatever its name.
    (web01,) = load_inventory("good/ini_named_yaml.yaml").hosts
    assert (web01.address, web01.user, web01.groups) == ("192.0.2.11", "ops", ("web",))


# --- secrets -------------------------------------------------------------------------


def test_secret_values_never_appear_in_problems() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("bad/secrets.yaml")
    name = "bad/secrets.yaml"
    assert caught.value.problems == [
        f"{name}: all.vars.ansible_port: Input should be a valid integer, unable to parse string as an integer",
        # The address equals a password: the redaction pass masks it even in a name check.
        (
            f"{name}: all.hosts.web01.ansible_host: '********' is not a valid host address: it contains a space; "
            "use a DNS name, an IPv4 or an IPv6 address"
        ),
        f"{name}: all.hosts.web01.ansible_become: Input should be a boolean: yes/no, true/false, on/off or 1/0",
        (
            f"{name}: all.hosts.web02: host variables must be a mapping (e.g. 'ansible_host: 192.0.2.10'), "
            "got a string"
        ),
        (
            f"{name}: all.children.web.ansible_become_pass: unknown key; a group may only hold 'hosts', "
            "'children' and 'vars': variables go under 'vars:'"
        ),
        f"{name}: all.children.web.vars.ansible_connection: Input should be 'ssh', 'local', 'paramiko', 'paramiko_ssh' or 'smart'",
    ]
    assert "Tr0ub4dor" not in str(caught.value)
    assert "Tr0ub4dor" not in repr(caught.value.args)


def test_secret_is_not_quoted_from_a_yaml_syntax_error() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("bad/secret_syntax_error.yaml")
    assert caught.value.problems == [
        (
            "bad/secret_syntax_error.yaml: line 6, column 1: YAML syntax error: found unexpected end of stream "
            "(while scanning a quoted scalar started on line 3)"
        )
    ]
    assert "Tr0ub4dor" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- --limit -----------------------------------------------------------------------------


@pytest.fixture
def example() -> Inventory:
    return load_inventory(EXAMPLE)


def names(hosts: tuple[HostSpec, ...]) -> list[str]:
    return [host.name for host in hosts]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("web", ["web01", "web02", "web03"]),
        ("db02", ["db02"]),
        ("lb,db01", ["db01", "lb-a", "lb-b"]),  # always in inventory order
        ("lb:db01", ["db01", "lb-a", "lb-b"]),
        ("web*", ["web01", "web02", "web03"]),
        ("*-b", ["lb-b"]),
        ("db0?", ["db01", "db02", "db03"]),
        ("~db0[12]", ["db01", "db02"]),
        ("prod:!web", ["db01", "db02", "db03", "lb-a", "lb-b"]),
        ("prod:&canary", ["web01"]),
        ("web:!web02", ["web01", "web03"]),
        ("!prod", ["bastion01"]),
        ("&db", ["db01", "db02", "db03"]),
        # With a comma Ansible splits on commas only: 'bastion01:!canary' is one pattern matching nothing.
        ("web,bastion01:!canary", ["web01", "web02", "web03"]),
        ("web:&prod:!canary, bastion01", ["bastion01"]),
        # Intersections apply after every plain pattern, wherever they are written.
        ("web:&prod:!canary:bastion01", ["web02", "web03"]),
        ("all:!prod", ["bastion01"]),
        ("*", ["bastion01", "web01", "web02", "web03", "db01", "db02", "db03", "lb-a", "lb-b"]),
    ],
)
def test_limit_patterns_select_like_ansible(example: Inventory, limit: str, expected: list[str]) -> None:
    assert names(select_hosts(example, limit)) == expected


@pytest.mark.parametrize("limit", [None, "", "  "])
def test_no_limit_selects_every_host(example: Inventory, limit: str | None) -> None:
    assert select_hosts(example, limit) == example.hosts


def test_limit_accepts_an_ipv6_host_name() -> None:
    inventory = load_inventory("good/connections.yaml")
    assert names(select_hosts(inventory, "2001:db8::11")) == ["2001:db8::11"]
    # With IPv6 in a list, separate patterns with commas, as in Ansible.
    assert "2001:db8::11" not in names(select_hosts(inventory, "all,!2001:db8::11"))
    assert len(select_hosts(inventory, "all,!2001:db8::11")) == len(inventory.hosts) - 1


def test_limit_warns_about_every_pattern_that_matches_nothing_and_goes_on(example: Inventory) -> None:
    selection = select_with_warnings(example, "web:webb:!dbx:&canary")
    assert names(selection.hosts) == ["web01"]
    assert selection.warnings == (
        "--limit: could not match supplied host pattern, ignoring: webb",
        "--limit: could not match supplied host pattern, ignoring: dbx",
    )
    with pytest.raises(InventoryError) as caught:
        select_hosts(example, "webb:!dbx")
    assert caught.value.problems == [
        "--limit: could not match supplied host pattern, ignoring: webb",
        "--limit: could not match supplied host pattern, ignoring: dbx",
        "--limit: 'webb:!dbx' leaves no host to diagnose",
    ]
    assert caught.value.hint == f"groups in {EXAMPLE}: prod, web, db, lb, bastion, canary"
    with pytest.raises(InventoryError, match="needs a host or group name after '&'"):
        select_hosts(example, "web:&")


def test_limit_that_leaves_nothing_is_an_error(example: Inventory) -> None:
    with pytest.raises(InventoryError) as caught:
        select_hosts(example, "web:&db")
    assert caught.value.problems == ["--limit: 'web:&db' leaves no host to diagnose"]


def test_limit_with_a_broken_regex(example: Inventory) -> None:
    with pytest.raises(InventoryError) as caught:
        select_hosts(example, "~web(")
    assert caught.value.problems[0].startswith("--limit: '~web(' is not a valid regular expression: ")


def test_limit_is_case_sensitive_like_ansible(example: Inventory) -> None:
    with pytest.raises(InventoryError):
        select_hosts(example, "WEB")


def test_libyaml_and_pyyaml_read_every_inventory_alike() -> None:
    """The fast libyaml loader (where PyYAML has it) gives the same data and warnings as PyYAML's own."""
    import yaml

    from fleetdiag.inventory import yaml_file

    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml: only its own parser is used")
    fast, pure = yaml_file._LOADERS
    example = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
    texts = [p.read_text() for p in [*sorted(FIXTURES.rglob("*.yaml")), example]]
    texts.append("a: 1\na: 2\nsecret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3132\nraw: !unsafe '{{ x }}'\n")
    compared = 0
    for text in texts:
        try:
            expected = yaml_file._load(pure, text)
        except yaml.YAMLError:
            with pytest.raises(yaml.YAMLError):
                yaml_file._load(fast, text)
            continue
        assert repr(yaml_file._load(fast, text)) == repr(expected)
        compared += 1
    assert compared >= 5
