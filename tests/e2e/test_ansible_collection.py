"""The fleetdiag.drops collection end to end: the real ansible-playbook and ansible, the real lab, real drops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdiag.window_script import ATTACH_ALLOWANCE_S
from tests.e2e.test_collect import PORT, TRAFFIC_S, assert_traced_or_flagged, wait_for_windows
from tests.lab.backlog import generate_backlog_drops
from tests.lab.fleet import LabFleet

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S = 14
ansible = pytest.importorskip("ansible", reason="ansible-core is not installed (pip install '.[test]')")


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """This tree's fleetdiag and collection on sys.path (as `pip install 'fleetdiag[ansible]'` puts them),
    Ansible's local state in the test's own dir, nothing from the user's config."""
    home = tmp_path / "ansible-home"
    home.mkdir(exist_ok=True)
    config = home / "ansible.cfg"
    config.write_text("[defaults]\n")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_COLLECTIONS_PATH": str(home / "collections"),  # empty: only sys.path can find fleetdiag.drops
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def lab_inventory(fleet: LabFleet, path: Path, **extra: object) -> Path:
    """The fleet as an Ansible inventory, host keys checked against the fleet's known_hosts."""
    ssh_args = f"-o UserKnownHostsFile={fleet.known_hosts_path} -o StrictHostKeyChecking=yes"
    return fleet.write_inventory(path, extra_vars={"ansible_ssh_common_args": ssh_args, **extra})


def playbook(tmp_path: Path, inventory: Path, *args: str) -> subprocess.Popen:
    """Start the real ansible-playbook on the collection's sweep playbook."""
    return subprocess.Popen(
        [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "fleetdiag.drops.sweep",
         "-e", f"fleetdiag_results_dir={tmp_path / 'results'}", *args],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ansible_env(tmp_path),
        cwd=tmp_path,
    )


def saved_document(tmp_path: Path) -> dict:
    """The one sweep the playbook saved, through `fleetdiag report -o json` (which must load it)."""
    report = subprocess.run(
        [sys.executable, "-m", "fleetdiag", "report", "-o", "json", "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    files = list((tmp_path / "results" / "sweeps").glob("*.json"))
    assert len(files) == 1, files
    saved = json.loads(files[0].read_text())
    assert json.loads(report.stdout)["hosts"] == saved["hosts"]
    return saved


def test_sweep_playbook_finds_real_backlog_drops(lab_fleet, lab_roles, unreachable_lab_host, tmp_path):
    inventory = lab_inventory(lab_fleet, tmp_path / "hosts.yml")
    for _attempt in range(3):
        proc = playbook(tmp_path, inventory, "-e", f"fleetdiag_duration={WINDOW_S}", "-f", "4")
        tmpdirs = wait_for_windows(3, {h.netns_inode for h in lab_fleet.hosts}, proc, timeout=60)
        generated = generate_backlog_drops(lab_fleet, lab_roles.receiver, lab_roles.sender, port=PORT, seconds=TRAFFIC_S)
        out, err = proc.communicate(timeout=WINDOW_S + 90)
        if generated > 0:
            break
        for old in (tmp_path / "results" / "sweeps").glob("*"):
            old.unlink()
    else:
        pytest.fail("the lab produced no TCPBacklogDrop in 3 runs of the generator")

    assert proc.returncode != 0, out  # h04 is unreachable, and the run says so
    assert "fatal: [h04]: UNREACHABLE!" in out, out
    doc = saved_document(tmp_path)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert list(hosts) == ["h01", "h02", "h03", "h04"]

    receiver = hosts["h01"]
    assert receiver["status"] == "ok", receiver["error"]
    assert receiver["probe"] == "bpftrace:kfree_skb"
    assert receiver["netns"] == lab_roles.receiver.netns_inode
    assert receiver["counters"]["TCPBacklogDrop"] == generated
    backlog_flows = [f for f in doc["flows"] if f["reason"] == "SOCKET_BACKLOG"]
    assert {f["host"] for f in backlog_flows} == {"h01"}, doc["flows"]
    for flow in backlog_flows:
        assert (flow["laddr"], flow["lport"], flow["raddr"]) == (lab_roles.receiver.address, PORT, lab_roles.sender.address)
    traced = sum(f["drops"] for f in backlog_flows)
    (reconciled,) = [r for r in receiver["reconciliation"] if r["reason"] == "SOCKET_BACKLOG"]
    assert reconciled["counted"] == generated
    flagged = [v for v in receiver["verdicts"] if v["code"] == "untraced_drops"]
    assert_traced_or_flagged(traced, generated, reconciled["missed"] if flagged else None)

    for quiet in ("h02", "h03"):
        assert hosts[quiet]["status"] == "ok", hosts[quiet]["error"]
        assert hosts[quiet]["counters"]["TCPBacklogDrop"] == 0
        assert "SOCKET_BACKLOG" not in hosts[quiet]["drops"]
    # One window, armed for one instant: each opens once its probe watches, after the instant by
    # bpftrace's attach time (three attaching at once on the lab's 2 shared cores: up to seconds).
    assert doc["mode"] == "armed"
    starts = [hosts[n]["window_start"] for n in ("h01", "h02", "h03")]
    assert doc["window_instant"] - 0.2 <= min(starts) and max(starts) <= doc["window_instant"] + ATTACH_ALLOWANCE_S + 5

    down = hosts["h04"]
    assert down["status"] == "unreachable"
    assert "Connection refused" in down["error"]
    assert down["error"] in out  # Ansible's own words, as its run printed them
    assert down["address"] == lab_roles.unreachable.address

    assert len(tmpdirs) == 3
    assert not [d for d in tmpdirs if d.exists()]
    assert lab_fleet.leftovers()["processes"] == []


def test_check_mode_runs_no_probe_and_reports_every_tracer(lab_fleet, lab_roles, tmp_path):
    inventory = lab_inventory(lab_fleet, tmp_path / "hosts.yml")
    tree = tmp_path / "tree"
    adhoc = subprocess.run(
        [sys.executable, "-m", "ansible", "adhoc", "-i", str(inventory), "h01:h03", "-m", "fleetdiag.drops.window",
         "-a", "duration=30", "--check", "-t", str(tree)],  # fmt: skip
        capture_output=True, text=True, timeout=120, env=ansible_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
    for name in ("h01", "h03"):
        result = json.loads((tree / name).read_text())
        assert "host" not in result and result["changed"] is False  # no window was watched
        check = result["check"]
        assert (check["status"], check["tracer"], check["probe"]) == ("ok", "bpftrace", "bpftrace:kfree_skb")
        assert set(check["tracers"]) == {"bpftrace", "bcc", "stap", "counters"}
        # Every tracer examined, as fleetdiag check does (not collect's first fit).
        assert not [t for t in check["tracers"].values() if t["reason"].startswith("not examined")], check["tracers"]
    assert not (tmp_path / "results").exists()
    assert lab_fleet.leftovers()["processes"] == []


def test_local_connection_sweeps_the_controller(tmp_path):
    inventory = tmp_path / "local.yml"
    inventory.write_text("all:\n  hosts:\n    controller:\n      ansible_connection: local\n")
    proc = playbook(tmp_path, inventory, "-e", "fleetdiag_duration=2", "-e", "fleetdiag_port=5999")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    doc = saved_document(tmp_path)
    (host,) = doc["hosts"]
    assert (host["name"], host["status"]) == ("controller", "ok"), host["error"]
    assert host["probe"].startswith("bpftrace:")
    assert host["netns"] == int(os.readlink("/proc/self/ns/net").split("[")[1].rstrip("]"))
    assert doc["port"] == 5999
    assert 1.5 < host["window_end"] - host["window_start"] < 4

    # fleetdiag.drops.window on its own: a held window in the task, the same record.
    tree = tmp_path / "tree"
    adhoc = subprocess.run(
        [sys.executable, "-m", "ansible", "adhoc", "-i", str(inventory), "controller", "-m", "fleetdiag.drops.window",
         "-a", "duration=2 tracer=counters", "-t", str(tree)],  # fmt: skip
        capture_output=True, text=True, timeout=120, env=ansible_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
    result = json.loads((tree / "controller").read_text())
    assert result["changed"] is False and result["flows"] == []
    assert (result["host"]["status"], result["host"]["probe"]) == ("ok", "counters+ss")
    assert result["host"]["counters"]["TCPBacklogDrop"] >= 0


def test_more_hosts_than_forks_watch_one_armed_window(tmp_path):
    with LabFleet(6, private_tmp=True) as fleet:
        inventory = lab_inventory(fleet, tmp_path / "hosts.yml")
        # counters: a window that opens at the instant itself (no probe to attach), so the spread
        # measured is the arming's alone.
        proc = playbook(tmp_path, inventory, "-e", "fleetdiag_duration=6", "-e", "fleetdiag_tracer=counters", "-f", "2",
                        "-l", "all:!h06")  # fmt: skip
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
        doc = saved_document(tmp_path)
        hosts = {h["name"]: h for h in doc["hosts"]}
        assert sorted(hosts) == ["h01", "h02", "h03", "h04", "h05"], hosts  # --limit as Ansible reads it
        assert {h["status"] for h in hosts.values()} == {"ok"}, hosts
        # Three forks batches, one window: every host's (clock-corrected) start within 1 s.
        starts = [h["window_start"] for h in hosts.values()]
        assert max(starts) - min(starts) <= 1.0, starts
        # The lab's hosts share this machine's clock: on their own clocks too (an offset mis-measured
        # through Ansible's connection would hide here, corrected away in the starts above).
        own = [h["window_start"] + h["clock_offset_s"] for h in hosts.values()]
        assert max(own) - min(own) <= 1.0, own
        assert not [h["name"] for h in hosts.values() if any("late" in note for note in h["notes"])], hosts
        assert doc["window_instant"] - 0.2 <= min(starts) <= doc["window_instant"] + 1.0
        for host in hosts.values():
            assert host["probe"] == "counters+ss"
            assert host["window_end"] - host["window_start"] == pytest.approx(6, abs=1.0)
            assert host["clock_offset_s"] is not None and host["clock_bound_s"] < 1.0
        leftovers = fleet.leftovers()
        assert leftovers == {"processes": [], "temp_files": []}, leftovers


def test_become_with_a_vault_encrypted_password(tmp_path):
    from tests.lab.host_setup import SUDO_USER, HostSetup

    password = "s3cret-Become-pw"
    with LabFleet(1, setups={"h01": HostSetup(sudo_password=password)}) as fleet:
        vault_file = tmp_path / "vault-pass"
        vault_file.write_text("vault-pass-for-the-test\n")
        encrypted = subprocess.run(
            [sys.executable, "-m", "ansible", "vault", "encrypt_string", "--vault-password-file", str(vault_file),
             password, "--name", "ansible_become_password"],  # fmt: skip
            capture_output=True, text=True, timeout=60, env=ansible_env(tmp_path), check=True,
        ).stdout  # fmt: skip
        inventory = lab_inventory(fleet, tmp_path / "hosts.yml", ansible_user=SUDO_USER)
        (tmp_path / "group_vars").mkdir()
        (tmp_path / "group_vars" / "all.yml").write_text(encrypted)
        proc = playbook(tmp_path, inventory, "-e", "fleetdiag_duration=2", "-b", "--vault-password-file", str(vault_file))
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        (host,) = saved_document(tmp_path)["hosts"]
        # bpftrace runs only as root: the login user is ops, so become (sudo, its password) worked.
        assert (host["status"], host["probe"]) == ("ok", "bpftrace:kfree_skb"), host["error"]
        saved = next((tmp_path / "results" / "sweeps").glob("*.json")).read_text()
        assert password not in out + err + saved
        assert fleet.leftovers()["processes"] == []


def test_become_password_typed_at_the_K_prompt(tmp_path):
    """-K: ansible-playbook asks for the become password on its terminal; the sweep's scripts run with it."""
    import pty

    from tests.lab.host_setup import SUDO_USER, HostSetup

    password = "typed-Become-pw"
    with LabFleet(1, setups={"h01": HostSetup(sudo_password=password)}) as fleet:
        inventory = lab_inventory(fleet, tmp_path / "hosts.yml", ansible_user=SUDO_USER)
        argv = [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "fleetdiag.drops.sweep",
                "-e", f"fleetdiag_results_dir={tmp_path / 'results'}", "-e", "fleetdiag_duration=2", "-b", "-K"]  # fmt: skip
        pid, terminal = pty.fork()
        if pid == 0:  # the child: ansible-playbook on the pty, as a person at a terminal runs it
            os.chdir(tmp_path)
            os.execve(argv[0], argv, ansible_env(tmp_path))
        out = _answer_prompt(terminal, b"BECOME password:", password.encode() + b"\n", timeout=180)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        (host,) = saved_document(tmp_path)["hosts"]
        assert (host["status"], host["probe"]) == ("ok", "bpftrace:kfree_skb"), host["error"]  # root: become worked
        saved = next((tmp_path / "results" / "sweeps").glob("*.json")).read_text()
        assert password not in out + saved
        assert fleet.leftovers()["processes"] == []


def _answer_prompt(terminal: int, prompt: bytes, answer: bytes, timeout: float) -> str:
    """Everything the program wrote on its terminal; ANSWER typed once PROMPT appears."""
    import select
    import time

    seen, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the program ended and closed its terminal
            break
        if not chunk:
            break
        seen += chunk
        if not answered and prompt in seen:
            os.write(terminal, answer)
            answered = True
    assert answered, seen.decode(errors="replace")
    return seen.decode(errors="replace")
