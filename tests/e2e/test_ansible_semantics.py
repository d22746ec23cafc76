"""Ansible semantics end to end: INI inventories with group_vars/ and host_vars/, --limit, -u,
--private-key, -f, bastions through ansible_ssh_common_args and ~/.ssh/config, become rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.fleet import HostSetup, LabFleet

pytestmark = pytest.mark.lab

# h03 lets root in only from h02's address (the 3rd of the subnet, .3): a host behind a bastion.
BEHIND_BASTION = HostSetup(sshd_config=("AllowUsers root@*.3",))


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    with LabFleet(3, setups={"h03": BEHIND_BASTION}) as lab:
        assert lab.host("h02").address.endswith(".3")
        yield lab


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """The real CLI to the end, with counters only (these tests are about reaching hosts)."""
    env = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run(
        [sys.executable, "-m", "fleetdiag", "collect", "--tracer", "counters", "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def hosts_of(result: subprocess.CompletedProcess) -> dict[str, dict]:
    assert result.stdout, result.stderr
    return {host["name"]: host for host in json.loads(result.stdout)["hosts"]}


def common(fleet: LabFleet, tmp_path: Path) -> list[str]:
    return ["--known-hosts", str(fleet.known_hosts_path), "--results-dir", str(tmp_path / "results"), "--duration", "1"]


def test_ini_inventory_with_group_vars_and_host_vars(fleet: LabFleet, tmp_path: Path) -> None:
    h01, h02 = fleet.host("h01"), fleet.host("h02")
    (tmp_path / "hosts.ini").write_text(
        f"[web]\nh01 ansible_host={h01.address}\nh02\n\n[prod:children]\nweb\n"
    )
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        f"ansible_user: root\nansible_ssh_private_key_file: {fleet.key_path}\n"
    )
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h02.yml").write_text(f"ansible_host: {h02.address}\n")
    result = run("-i", str(tmp_path / "hosts.ini"), "-l", "prod", *common(fleet, tmp_path))
    assert result.returncode == 0, result.stderr
    hosts = hosts_of(result)
    assert {name: h["address"] for name, h in hosts.items()} == {"h01": h01.address, "h02": h02.address}
    assert {h["status"] for h in hosts.values()} == {"ok"}


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("~h0[12]", {"h01", "h02"}), ("all:!h02", {"h01", "h03"}), ("all[1:]", {"h02", "h03"}), ("@LIMIT", {"h01", "h03"})],
)
def test_limit_patterns(fleet: LabFleet, tmp_path: Path, limit: str, expected: set[str]) -> None:
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01"), fleet.host("h02")])
    with inventory.open("a") as more:  # h03 answers only through the bastion; not contacted here
        more.write(f"    h03:\n      ansible_host: {fleet.host('h03').address}\n")
    (tmp_path / "retry").write_text("h01\nh03\n")
    limit = limit.replace("LIMIT", str(tmp_path / "retry"))
    result = run("-i", str(inventory), "-l", limit, *common(fleet, tmp_path))
    assert set(hosts_of(result)) == expected


def test_cli_user_and_key_apply_where_the_inventory_sets_none(fleet: LabFleet, tmp_path: Path) -> None:
    h01, h02 = fleet.host("h01"), fleet.host("h02")
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "all:\n  hosts:\n"
        f"    h01:\n      ansible_host: {h01.address}\n"
        f"    h02:\n      ansible_host: {h02.address}\n      ansible_user: nobody\n"
    )
    result = run("-i", str(inventory), "-u", "root", "--private-key", str(fleet.key_path), *common(fleet, tmp_path))
    hosts = hosts_of(result)
    assert hosts["h01"]["status"] == "ok", hosts["h01"]["error"]
    # As in Ansible, ansible_user in the inventory beats -u.
    assert hosts["h02"]["status"] == "unreachable"
    assert hosts["h02"]["error"].startswith("authentication failed for user nobody")
    assert result.returncode == 3


def test_forks_one_watches_hosts_one_batch_after_the_other(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01"), fleet.host("h02")])
    result = run("-i", str(inventory), "-f", "1", "--mode", "held", *common(fleet, tmp_path))
    assert result.returncode == 0, result.stderr
    first, second = hosts_of(result)["h01"], hosts_of(result)["h02"]
    assert second["window_start"] >= first["window_end"]


def test_forks_one_armed_hosts_still_watch_one_window(fleet: LabFleet, tmp_path: Path) -> None:
    # Past --forks the windows are armed on the hosts: --forks bounds the sessions, not the window.
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01"), fleet.host("h02")])
    result = run("-i", str(inventory), "-f", "1", *common(fleet, tmp_path))
    assert result.returncode == 0, result.stderr
    first, second = hosts_of(result)["h01"], hosts_of(result)["h02"]
    assert abs(second["window_start"] - first["window_start"]) < first["window_end"] - first["window_start"]


def test_bastion_from_ansible_ssh_common_args(fleet: LabFleet, tmp_path: Path) -> None:
    bastion, target = fleet.host("h02"), fleet.host("h03")
    direct = fleet.write_inventory(tmp_path / "direct.yaml", hosts=[target])
    refused = run("-i", str(direct), *common(fleet, tmp_path))
    assert hosts_of(refused)["h03"]["error"].startswith("authentication failed")  # not from here
    jumped = fleet.write_inventory(
        tmp_path / "jump.yaml", hosts=[target], extra_vars={"ansible_ssh_common_args": f"-J root@{bastion.address}"}
    )
    result = run("-i", str(jumped), *common(fleet, tmp_path))
    assert result.returncode == 0, result.stderr
    host = hosts_of(result)["h03"]
    assert (host["status"], host["netns"]) == ("ok", target.netns_inode)  # h03 itself, seen via h02


def test_unknown_bastion_key_is_refused_like_the_target_s(fleet: LabFleet, tmp_path: Path) -> None:
    bastion, target = fleet.host("h02"), fleet.host("h03")
    only_target = tmp_path / "known_hosts"
    only_target.write_text(
        "".join(line + "\n" for line in fleet.known_hosts_path.read_text().splitlines() if line.startswith(target.address + " "))
    )
    inventory = fleet.write_inventory(
        tmp_path / "jump.yaml", hosts=[target], extra_vars={"ansible_ssh_common_args": f"-o ProxyJump=root@{bastion.address}"}
    )
    result = run(
        "-i", str(inventory), "--known-hosts", str(only_target), "--results-dir", str(tmp_path / "r"), "--duration", "1"
    )  # fmt: skip
    assert result.returncode == 4
    assert hosts_of(result)["h03"]["error"].startswith(
        f"via bastion {bastion.address}: host key of {bastion.address} is not in known_hosts"
    )


def test_a_bastion_that_refuses_is_named_in_the_error(fleet: LabFleet, tmp_path: Path) -> None:
    closed = f"root@{fleet.host('h01').address}:2222"  # nothing listens there
    inventory = fleet.write_inventory(
        tmp_path / "jump.yaml", hosts=[fleet.host("h03")], extra_vars={"ansible_ssh_common_args": f"-J {closed}"}
    )
    result = run("-i", str(inventory), *common(fleet, tmp_path))
    assert result.returncode == 4
    assert hosts_of(result)["h03"]["error"] == f"via bastion {fleet.host('h01').address}: connection refused on port 2222"


def test_ssh_config_host_alias_user_key_and_proxyjump(fleet: LabFleet, tmp_path: Path) -> None:
    bastion, target = fleet.host("h02"), fleet.host("h03")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(fleet.known_hosts_path, home / ".ssh" / "known_hosts")
    (home / ".ssh" / "config").write_text(
        f"Host behind-bastion\n  HostName {target.address}\n  User root\n  IdentityFile {fleet.key_path}\n"
        f"  ProxyJump root@{bastion.address}\n"
        f"Host {bastion.address}\n  IdentityFile {fleet.key_path}\n"
    )
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("all:\n  hosts:\n    behind-bastion:\n")
    result = run("-i", str(inventory), "--results-dir", str(tmp_path / "results"), "--duration", "1", home=home)
    assert result.returncode == 0, result.stderr
    assert hosts_of(result)["behind-bastion"]["status"] == "ok"


def test_become_as_root_needs_no_sudo_and_other_methods_are_refused(fleet: LabFleet, tmp_path: Path) -> None:
    h01 = fleet.host("h01")
    root = fleet.write_inventory(tmp_path / "root.yaml", hosts=[h01], extra_vars={"ansible_become": True})
    assert run("-i", str(root), *common(fleet, tmp_path)).returncode == 0
    su = fleet.write_inventory(
        tmp_path / "su.yaml", hosts=[h01], extra_vars={"ansible_become": True, "ansible_become_method": "su"}
    )
    result = run("-i", str(su), *common(fleet, tmp_path))
    assert result.returncode == 2
    assert "ansible_become_method: fleetdiag becomes another user with sudo only; 'su' is not supported" in result.stderr
