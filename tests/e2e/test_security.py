"""Security on the lab: host keys checked, hostile inventory values inert, the become password
never shown or saved, probe files private and removed, results files private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_collect import probe_windows, wait_for_windows
from tests.lab.fleet import HostSetup, LabFleet

pytestmark = pytest.mark.lab

SUDO_PASSWORD = "Correct-Horse-9!"  # a value no program prints by accident


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    """h01, h03 plain; h02 has login user ops whose sudo wants SUDO_PASSWORD."""
    with LabFleet(3, setups={"h02": HostSetup(sudo_password=SUDO_PASSWORD)}, private_tmp=True) as lab:
        yield lab


def run(
    *args: str, env: dict[str, str] | None = None, verbose: bool = False, **kwargs: object
) -> subprocess.CompletedProcess:
    """The real CLI to the end; JSON on stdout (debug logs on stderr with VERBOSE)."""
    return subprocess.run(
        [sys.executable, "-m", "fleetdiag", *(["-vv"] if verbose else []), "collect", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        **kwargs,  # type: ignore[arg-type]
    )


def collect_args(inventory: Path, known_hosts: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "-i", str(inventory), "--known-hosts", str(known_hosts), "--duration", "1",
        "--tracer", "counters", "--results-dir", str(tmp_path / "results"), "-o", "json", *extra,
    ]  # fmt: skip


def statuses(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str | None]]:
    return {h["name"]: (h["status"], h["error"]) for h in json.loads(result.stdout)["hosts"]}


# --- ciphers ---------------------------------------------------------------------------


def test_gcm_where_the_server_offers_it_and_ctr_where_it_does_not(tmp_path: Path) -> None:
    """fleetdiag offers AES-GCM first (its tag is checked in OpenSSL, not in a Python loop) and
    still talks to an sshd that only has CTR ciphers."""
    from fleetdiag.inventory import load_inventory
    from fleetdiag.transport import SshOptions
    from fleetdiag.transport.ssh import SshTransport

    ctr_only = HostSetup(sshd_config=("Ciphers aes128-ctr,aes256-ctr",))
    with LabFleet(2, setups={"h02": ctr_only}) as lab:
        hosts = load_inventory(lab.write_inventory(tmp_path / "hosts.yaml")).hosts
        options = SshOptions(known_hosts=(str(lab.known_hosts_path),))
        for spec, cipher in zip(sorted(hosts, key=lambda h: h.name), ("aes128-gcm@openssh.com", "aes128-ctr")):
            transport = SshTransport(spec, options)
            try:
                transport.open()
                negotiated = transport.connection.transport
                assert (negotiated.local_cipher, negotiated.remote_cipher) == (cipher, cipher), spec.name
                assert transport.run("echo $((6 * 7))", timeout=20).stdout == "42\n"
            finally:
                transport.close()


# --- host keys -------------------------------------------------------------------------


def test_a_changed_host_key_is_refused_unless_checking_is_off(fleet: LabFleet, tmp_path: Path) -> None:
    h01, h03 = fleet.host("h01"), fleet.host("h03")
    lines = fleet.known_hosts_path.read_text().splitlines()
    h03_key = next(line.split(" ", 1)[1] for line in lines if line.startswith(h03.address + " "))
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{h01.address} {h03_key}\n")  # h01's address, someone else's key
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[h01])
    for mode in ("strict", "accept-new"):
        result = run(*collect_args(inventory, forged, tmp_path, "--host-key-checking", mode))
        assert result.returncode == 4, result.stderr
        assert statuses(result)["h01"] == (
            "unreachable",
            f"host key for {h01.address} does not match known_hosts (if the host was rebuilt, "
            f"run ssh-keygen -R {h01.address})",
        )
    result = run(*collect_args(inventory, forged, tmp_path, "--host-key-checking", "off"))
    assert result.returncode == 0, result.stderr
    assert forged.read_text() == f"{h01.address} {h03_key}\n"  # off saves nothing


def test_accept_new_learns_unknown_keys_then_strict_accepts_them(fleet: LabFleet, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01"), fleet.host("h03")])
    refused = run(*collect_args(inventory, known, tmp_path))
    assert refused.returncode == 4
    assert {s for s, _ in statuses(refused).values()} == {"unreachable"}
    learnt = run(*collect_args(inventory, known, tmp_path, "--host-key-checking", "accept-new"))
    assert learnt.returncode == 0, learnt.stderr
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    saved = {line.split()[0] for line in known.read_text().splitlines()}
    assert saved == {fleet.host("h01").address, fleet.host("h03").address}
    assert run(*collect_args(inventory, known, tmp_path, "--host-key-checking", "strict")).returncode == 0


def test_inventory_host_key_checking_and_the_flag_that_overrides_it(fleet: LabFleet, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = fleet.write_inventory(
        tmp_path / "hosts.yaml", hosts=[fleet.host("h01")], extra_vars={"ansible_host_key_checking": False}
    )
    assert run(*collect_args(inventory, empty, tmp_path)).returncode == 0
    strict = run(*collect_args(inventory, empty, tmp_path, "--host-key-checking", "strict"))
    assert strict.returncode == 4
    assert "not in known_hosts" in statuses(strict)["h01"][1]
    assert empty.read_text() == ""


# --- hostile values --------------------------------------------------------------------


def test_hostile_names_options_and_limits_are_refused_before_any_host_is_contacted(
    fleet: LabFleet, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = f"h01;touch {marker}"
    hostile = fleet.write_inventory(tmp_path / "hostile.yaml", extra_hosts={payload: {"ansible_host": fleet.host("h01").address}})
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01")])
    known = fleet.known_hosts_path
    for argv in (
        collect_args(hostile, known, tmp_path),
        collect_args(inventory, known, tmp_path, "-u", f"root;touch {marker}"),
        collect_args(inventory, known, tmp_path, "-l", f"h01;touch {marker}"),
        collect_args(inventory, known, tmp_path, "--ssh-common-args", f"-J 'x;touch {marker}'"),
    ):
        result = run(*argv)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("fleetdiag: ") or "Error: Invalid value" in result.stderr
    assert not marker.exists()


def test_values_reach_the_host_as_data_never_as_shell(fleet: LabFleet, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    h01 = fleet.host("h01")
    inventory = fleet.write_inventory(
        tmp_path / "hosts.yaml",
        hosts=[],
        extra_hosts={
            "h01": {
                "ansible_host": h01.address,
                "ansible_become": True,
                # A valid login name (machine accounts end in $) that a shell would expand.
                "ansible_become_user": "svc$HOME",
                "note": f"$(touch {marker}); `touch {marker}`; ' \"; touch {marker}",
            }
        },
    )
    result = run(*collect_args(inventory, fleet.known_hosts_path, tmp_path))
    assert result.returncode == 4
    status, error = statuses(result)["h01"]
    assert status == "failed"
    assert "svc$HOME" in error  # sudo was handed the name itself: nothing expanded it
    assert not marker.exists()


# --- the become password ---------------------------------------------------------------


def ops_inventory(fleet: LabFleet, tmp_path: Path) -> Path:
    h02 = fleet.host("h02")
    return fleet.write_inventory(
        tmp_path / "hosts.yaml",
        hosts=[],
        extra_hosts={"h02": {"ansible_host": h02.address, "ansible_user": "ops", "ansible_become": True}},
    )


def everything_written(result: subprocess.CompletedProcess, tmp_path: Path) -> str:
    files = [p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    return "\n".join([result.stdout, result.stderr, *files])


def test_become_password_from_the_environment_is_used_and_never_shown(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = ops_inventory(fleet, tmp_path)
    args = collect_args(inventory, fleet.known_hosts_path, tmp_path)
    result = run(*args, env={"FLEETDIAG_BECOME_PASSWORD": SUDO_PASSWORD}, verbose=True)
    assert result.returncode == 0, result.stderr
    assert statuses(result)["h02"] == ("ok", None)
    assert SUDO_PASSWORD not in everything_written(result, tmp_path)
    wrong = run(*args, env={"FLEETDIAG_BECOME_PASSWORD": "not-the-Password-1"}, verbose=True)
    assert wrong.returncode == 4
    assert statuses(wrong)["h02"][1].startswith("sudo refused the become password")
    assert "not-the-Password-1" not in everything_written(wrong, tmp_path)


def test_become_password_from_the_prompt(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = ops_inventory(fleet, tmp_path)
    # No controlling terminal (new session): the prompt reads stdin, as under a pipe.
    result = run(
        "-K", *collect_args(inventory, fleet.known_hosts_path, tmp_path),
        input=SUDO_PASSWORD + "\n", start_new_session=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert statuses(result)["h02"] == ("ok", None)
    assert SUDO_PASSWORD not in everything_written(result, tmp_path)


def test_become_password_in_the_inventory_is_ignored_and_not_shown(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = fleet.write_inventory(
        tmp_path / "hosts.yaml",
        hosts=[],
        extra_hosts={
            "h02": {
                "ansible_host": fleet.host("h02").address,
                "ansible_user": "ops",
                "ansible_become": True,
                "ansible_become_password": SUDO_PASSWORD,
                "ansible_port": SUDO_PASSWORD,  # invalid: the problem line must not echo it
            }
        },
    )
    result = run(*collect_args(inventory, fleet.known_hosts_path, tmp_path))
    assert result.returncode == 2
    assert "ansible_port" in result.stderr
    assert SUDO_PASSWORD not in result.stderr + result.stdout


# --- files on the hosts and on the controller ---------------------------------------------


def test_probe_files_are_private_while_watching_and_gone_after(fleet: LabFleet, tmp_path: Path) -> None:
    h01 = fleet.host("h01")
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[h01])
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", "4",
         "--known-hosts", str(fleet.known_hosts_path), "--results-dir", str(tmp_path / "results"), "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    (tmpdir,) = wait_for_windows(1, {h01.netns_inode}, proc)
    assert tmpdir.parent == fleet.tmp_dir(h01)
    pid = min(probe_windows({h01.netns_inode}))  # timeout or bpftrace: both hold the same files
    # While the probe watches, its dir and files are off the disk already, held open only:
    # a session killed outright would leave nothing. What it held was private all along.
    deadline = time.monotonic() + 5
    while tmpdir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tmpdir.exists(), "the window keeps its temp dir on disk while it runs"
    assert stat.S_IMODE(os.stat(f"/proc/{pid}/cwd").st_mode) == 0o700  # the (unlinked) dir itself
    held = {fd: os.stat(f"/proc/{pid}/fd/{fd}") for fd in (1, 2)}  # the probe's out and err files
    assert {stat.S_IMODE(s.st_mode) for s in held.values()} == {0o600}
    assert all(s.st_nlink == 0 for s in held.values())
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert not tmpdir.exists()
    assert fleet.leftovers([h01]) == {"processes": [], "temp_files": []}


def test_results_files_are_readable_by_their_owner_only(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = fleet.write_inventory(tmp_path / "hosts.yaml", hosts=[fleet.host("h01")])
    assert run(*collect_args(inventory, fleet.known_hosts_path, tmp_path)).returncode == 0
    saved = list((tmp_path / "results").rglob("*"))
    assert any(p.suffix == ".json" for p in saved)
    for path in saved:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
