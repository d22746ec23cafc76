"""Transports without a network: command lines, ssh args, host key policy, stdin as the stop signal."""

from __future__ import annotations

import shlex
import stat
import threading
import time
from pathlib import Path

import paramiko
import pytest

from fleetdiag.interrupt import StopRequest
from fleetdiag.model import HostSpec
from fleetdiag.transport import LocalTransport, SshOptions, SshTransport
from fleetdiag.transport.base import SESSION_ARGS
from fleetdiag.transport.channel import SudoPrompt
from fleetdiag.transport.host_keys import (
    HostKeyChecking,
    KnownHosts,
    host_key_checking_of,
)
from fleetdiag.transport.ssh_args import (
    JumpHost,
    SshArgsError,
    expand_proxy_command,
    parse_ssh_args,
)
from fleetdiag.window_gate import WindowGate


@pytest.fixture(autouse=True)
def empty_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ~/.ssh/config of the machine's own leaks into these tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def spec(**fields: object) -> HostSpec:
    return HostSpec(name="web01", address="192.0.2.10", **fields)  # type: ignore[arg-type]


# --- ansible_ssh_common_args -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "jumps"),
    [
        ("-J ops@bastion", (JumpHost("bastion", "ops"),)),
        ("-Jbastion:2222", (JumpHost("bastion", None, 2222),)),
        ("-o ProxyJump=a,ops@b:2200", (JumpHost("a"), JumpHost("b", "ops", 2200))),
        ("-oProxyJump=ssh://ops@[2001:db8::1]:22", (JumpHost("2001:db8::1", "ops", 22),)),
        ("-o 'ProxyJump none'", ()),
    ],
)
def test_jump_hosts(args: str, jumps: tuple[JumpHost, ...]) -> None:
    assert parse_ssh_args(args).jumps == jumps


def test_what_ansible_users_put_in_common_args() -> None:
    parsed = parse_ssh_args(
        "-C -o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=7 "
        "-o ProxyCommand=\"ssh -W %h:%p -q ops@bastion\""
    )
    assert parsed.host_key_checking is HostKeyChecking.OFF
    assert parsed.known_hosts == ("/dev/null",)
    assert parsed.connect_timeout == 7
    assert parsed.proxy_command == "ssh -W %h:%p -q ops@bastion"
    assert parsed.ignored == ("-C", "-o controlmaster", "-o controlpersist")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("-J", "-J needs a value"),
        ("bastion", "unexpected word 'bastion'; only ssh options belong here"),
        ("-o 'unclosed", "cannot be split like a shell command line (No closing quotation)"),
        ("-J a -o ProxyCommand=nc", "ProxyJump and ProxyCommand cannot both be set"),
        ("-J a:99999", "ProxyJump port '99999' is not a port number"),
        ("-o StrictHostKeyChecking=maybe", "StrictHostKeyChecking: host key checking must be one of"),
    ],
)
def test_common_args_problems(args: str, problem: str) -> None:
    with pytest.raises(SshArgsError) as caught:
        parse_ssh_args(args)
    assert str(caught.value).startswith(problem)


def test_proxy_command_tokens() -> None:
    assert expand_proxy_command("nc %h %p # %r %% %x", "192.0.2.1", 2222, "ops") == "nc 192.0.2.1 2222 # ops % %x"


# --- the remote command line -------------------------------------------------------------


def argv_of(transport: SshTransport, script: str = "echo hi") -> list[str]:
    command, _prompt = transport.command_line(script)
    return shlex.split(command)


def test_every_value_reaches_the_remote_shell_as_one_word() -> None:
    script = "echo \"$HOME\" '$(id)'; `reboot`"
    hostile = SshTransport(spec(user="ops", become=True, become_user="svc$HOME"), SshOptions())
    assert argv_of(hostile, script) == ["sudo", "-n", "-u", "svc$HOME", "--", "sh", "-c", script, *SESSION_ARGS]


def test_no_sudo_when_the_login_user_is_already_the_become_user() -> None:
    transport = SshTransport(spec(user="root", become=True), SshOptions())
    assert argv_of(transport) == ["sh", "-c", "echo hi", *SESSION_ARGS]


def test_become_password_goes_to_sudo_s_prompt_never_to_the_command_line() -> None:
    transport = SshTransport(spec(user="ops", become=True), SshOptions(become_password="s3cret-Pw"))
    command, prompt = transport.command_line("true")
    assert prompt is not None and prompt.password == "s3cret-Pw"
    assert "s3cret-Pw" not in command
    argv = shlex.split(command)
    assert argv[:4] == ["sudo", "-S", "-p", prompt.marker]
    assert "s3cret-Pw" not in repr(prompt) and "s3cret-Pw" not in repr(SshOptions(become_password="s3cret-Pw"))


def test_sudo_prompt_marker_is_new_for_every_command() -> None:
    transport = SshTransport(spec(user="ops", become=True), SshOptions(become_password="pw"))
    first, second = transport.command_line("true")[1], transport.command_line("true")[1]
    assert isinstance(first, SudoPrompt) and isinstance(second, SudoPrompt)
    assert first.marker != second.marker


# --- host keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "variable", "args", "expected"),
    [
        (None, None, "", HostKeyChecking.STRICT),
        (None, "off", "", HostKeyChecking.OFF),
        (None, None, "-o StrictHostKeyChecking=accept-new", HostKeyChecking.ACCEPT_NEW),
        (None, "strict", "-o StrictHostKeyChecking=no", HostKeyChecking.STRICT),  # the variable wins
        (HostKeyChecking.STRICT, "off", "-o StrictHostKeyChecking=no", HostKeyChecking.STRICT),  # the flag wins
    ],
)
def test_host_key_checking_precedence(
    flag: HostKeyChecking | None, variable: str | None, args: str, expected: HostKeyChecking
) -> None:
    transport = SshTransport(spec(host_key_checking=variable, ssh_common_args=args), SshOptions(host_key_checking=flag))
    assert transport.host_key_policy()[0] is expected


@pytest.mark.parametrize(("value", "mode"), [(True, "strict"), (False, "off"), ("yes", "strict"), ("accept-new", "accept-new")])
def test_host_key_checking_words(value: bool | str, mode: str) -> None:
    assert host_key_checking_of(value).value == mode


def test_user_known_hosts_file_in_common_args_replaces_the_default_files() -> None:
    transport = SshTransport(spec(ssh_common_args="-o UserKnownHostsFile=/etc/fleet_keys"), SshOptions())
    assert transport.host_key_policy()[1] == ("/etc/fleet_keys",)


def test_accept_new_appends_to_the_first_file_private_to_its_owner(tmp_path: Path) -> None:
    first, second = tmp_path / "ssh" / "known_hosts", tmp_path / "other"
    known = KnownHosts((str(first), str(second)))
    key = paramiko.Ed25519Key.from_private_key_file(str(_ed25519(tmp_path)))
    known.learn("192.0.2.10", key)
    assert first.read_text() == f"192.0.2.10 ssh-ed25519 {key.get_base64()}\n"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert known.keys.lookup("192.0.2.10")["ssh-ed25519"] == key
    assert KnownHosts((str(first),)).keys.lookup("192.0.2.10") is not None


def _ed25519(tmp_path: Path) -> Path:
    import subprocess

    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


# --- bastions --------------------------------------------------------------------------


def test_jump_hops_become_a_chain_of_gateway_connections() -> None:
    transport = SshTransport(spec(user="root", ssh_common_args="-J a@192.0.2.1,b@192.0.2.2:2200"), SshOptions())
    hops = [(c.host, c.user, c.port) for c in transport._hops()]
    assert hops == [("192.0.2.10", "root", 22), ("192.0.2.2", "b", 2200), ("192.0.2.1", "a", 22)]


def test_ssh_config_supplies_hostname_user_and_jump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "cfg-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host web01\n  HostName 192.0.2.77\n  User deploy\n  ProxyJump jump@192.0.2.1\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr("fleetdiag.transport.ssh._ssh_configs", [])
    transport = SshTransport(HostSpec(name="web01", address="web01"), SshOptions())
    hops = [(c.host, c.user) for c in transport._hops()]
    assert hops == [("192.0.2.77", "deploy"), ("192.0.2.1", "jump")]
    # Fabric's own hop would accept any key; ours checks it like the target's.
    gateway = transport._hops()[1]
    assert not isinstance(gateway.client._policy, paramiko.AutoAddPolicy)


# --- stopping ---------------------------------------------------------------------------


def test_local_script_sees_the_session_flag_and_stops_at_eof_on_stdin() -> None:
    transport = LocalTransport()
    script = 'echo "$1"; while read -r _; do :; done; echo stopped'
    results = []
    worker = threading.Thread(target=lambda: results.append(transport.run(script, timeout=20)))
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive()  # stdin stays open: the script waits
    transport.request_stop()
    worker.join(timeout=5)
    assert results and results[0].stdout == f"{SESSION_ARGS[1]}\nstopped\n"


def test_a_second_signal_asks_to_stop_now() -> None:
    stop = StopRequest()
    stop.stop("SIGINT")
    assert stop.requested.is_set() and not stop.abort.is_set() and stop.reason == "SIGINT"
    stop.stop("SIGTERM")
    assert stop.abort.is_set() and stop.reason == "SIGINT"


def test_window_gate_opens_when_every_host_arrived_or_the_deadline_passed() -> None:
    gate = WindowGate(parties=2, timeout_s=30)
    waited: list[float] = []
    worker = threading.Thread(target=lambda: waited.append(gate.wait("a")))
    worker.start()
    time.sleep(0.2)
    assert not gate.is_open
    gate.arrive("b")  # b failed before its window: it still counts
    worker.join(timeout=5)
    assert waited and gate.is_open
    late = WindowGate(parties=5, timeout_s=0.2)
    assert late.wait("a") < 2
    released = WindowGate(parties=5, timeout_s=30)
    released.release()
    assert released.is_open
