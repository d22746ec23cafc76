"""SSH to a host through Fabric, with host keys verified (Fabric's default accepts any key).

Fabric opens the connection (ssh_config, gateways); commands run on plain paramiko
channels (``channel.py``). What every host of a run shares (the parsed ssh_config
and known_hosts files) is built once per run, not once per host.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import threading
from dataclasses import dataclass, field

import paramiko
from fabric import Config, Connection

from fleetdiag.errors import RemoteCommandError, UnreachableError
from fleetdiag.model import HostSpec
from fleetdiag.transport.base import SESSION_ARGS, Answer, CommandResult, LineCallback
from fleetdiag.transport.channel import ChannelCommand, SudoPrompt
from fleetdiag.transport.host_keys import (
    DEFAULT_KNOWN_HOSTS,
    HostKeyChecking,
    KnownHosts,
    apply_host_key_checking,
    host_key_checking_of,
)
from fleetdiag.transport.ssh_args import SshArgs, expand_proxy_command, parse_ssh_args

__all__ = ["DEFAULT_KNOWN_HOSTS", "HostKeyChecking", "SshOptions", "SshTransport"]

# Seconds between keepalives, and how long sent data may stay unacknowledged before the
# kernel drops the connection: a host whose network died is noticed in about 20 s, not
# after TCP's 15 minutes of retries.
KEEPALIVE_S = 5
TCP_USER_TIMEOUT_S = 15


@dataclass(frozen=True)
class SshOptions:
    """Connection settings shared by every host of a sweep (the CLI's flags).

    ``host_key_checking`` None means "as the inventory says, strict by default".
    """

    connect_timeout: float = 10.0
    host_key_checking: HostKeyChecking | None = None
    known_hosts: tuple[str, ...] = DEFAULT_KNOWN_HOSTS
    default_user: str | None = None
    default_private_key: str | None = None
    become_password: str | None = field(default=None, repr=False)  # from env or prompt, never logged
    default_ssh_common_args: str | None = None  # --ssh-common-args, where the inventory sets none


# AES-GCM first wherever the server has it (OpenSSH 6.2 on: RHEL 7 has it), then paramiko's own
# order. With AES-CTR and HMAC-SHA2, paramiko checks every received packet's tag with a Python
# loop over its bytes (util.constant_time_bytes_eq) and drives the HMAC from Python: on a
# 200-host sweep that was about 20% of the controller's CPU (yappi, CPU clock). GCM is an AEAD
# cipher, as strong, and its tag is checked inside OpenSSL.
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def transport_preferring_aead(sock: object, **kwargs: object) -> paramiko.Transport:
    """A paramiko Transport (``SSHClient.connect``'s ``transport_factory``) offering GCM first."""
    transport = paramiko.Transport(sock, **kwargs)  # type: ignore[arg-type]
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in AEAD_CIPHERS if c in offered) + tuple(c for c in offered if c not in AEAD_CIPHERS)
    return transport


_shared_lock = threading.Lock()
_known_hosts_by_files: dict[tuple[str, ...], KnownHosts] = {}
_ssh_configs: list[paramiko.SSHConfig] = []


def _known_hosts(files: tuple[str, ...]) -> KnownHosts:
    """The parsed known_hosts files, shared by every connection of the process."""
    with _shared_lock:
        if files not in _known_hosts_by_files:
            _known_hosts_by_files[files] = KnownHosts(files)
        return _known_hosts_by_files[files]


def _fabric_config() -> Config:
    """A Fabric Config of its own for each connection, over ssh_config files parsed once.

    One Config cannot be shared: a Connection writes attributes into its Config, and each
    write re-merges the whole Config under the other threads' feet.
    """
    with _shared_lock:
        if not _ssh_configs:
            _ssh_configs.append(Config().base_ssh_config)  # ~/.ssh/config, /etc/ssh/ssh_config
        parsed = _ssh_configs[0]
    return Config(ssh_config=parsed)


class SshTransport:
    """Runs scripts on one host over one SSH connection (``sudo`` when become)."""

    def __init__(self, spec: HostSpec, options: SshOptions) -> None:
        self.spec = spec
        self.options = options
        self.args: SshArgs = parse_ssh_args(spec.ssh_common_args or options.default_ssh_common_args or "")
        self.connect_timeout = self.args.connect_timeout or options.connect_timeout
        key_file = spec.private_key_file or options.default_private_key
        self._key_files = [os.path.expanduser(key_file)] if key_file else []
        # Port 22 is HostSpec's default: leave it to ~/.ssh/config (Port) as OpenSSH would.
        port = None if spec.port == 22 else spec.port
        self.connection = self._connection(spec.address, spec.user or options.default_user, port)
        self.connection.gateway = self._gateway()
        self.user = self.connection.user
        self._sudo = spec.become and self.user != spec.become_user
        self._running: ChannelCommand | None = None

    def _connection(self, host: str, user: str | None, port: int | None) -> Connection:
        connection = Connection(
            host=host,
            user=user,
            port=port,
            config=_fabric_config(),
            connect_timeout=self.connect_timeout,
            connect_kwargs={
                "banner_timeout": self.connect_timeout,
                "auth_timeout": self.connect_timeout,
                "key_filename": list(self._key_files),
                "transport_factory": transport_preferring_aead,
            },
        )
        mode, files = self.host_key_policy()
        apply_host_key_checking(connection.client, mode, _known_hosts(files))
        return connection

    def host_key_policy(self) -> tuple[HostKeyChecking, tuple[str, ...]]:
        """The CLI flag, else the inventory's variable, else the common args', else strict."""
        mode = self.options.host_key_checking
        if mode is None and self.spec.host_key_checking is not None:
            mode = host_key_checking_of(self.spec.host_key_checking)
        mode = mode or self.args.host_key_checking or HostKeyChecking.STRICT
        return mode, self.args.known_hosts or self.options.known_hosts

    def _gateway(self) -> Connection | str | bool:
        """The jump hosts of the common args (each checked like the target), else ssh_config's."""
        if self.args.proxy_command:
            return expand_proxy_command(self.args.proxy_command, self.connection.host, self.connection.port, self.connection.user)
        gateway: Connection | bool = False
        for hop in self.args.jumps:
            previous = gateway
            gateway = self._connection(hop.host, hop.user, hop.port)
            gateway.gateway = previous
        if gateway is False and "proxyjump" in self.connection.ssh_config:
            # Fabric would build these hops itself with a client that accepts any key.
            for hop in reversed(self.connection.ssh_config["proxyjump"].split(",")):
                hop_connection = Connection(hop, config=_fabric_config())
                checked = self._connection(hop_connection.original_host, hop_connection.user, hop_connection.port)
                checked.gateway = gateway
                gateway = checked
        if gateway is False and "proxycommand" in self.connection.ssh_config:
            return str(self.connection.ssh_config["proxycommand"])
        return gateway

    def open(self) -> None:
        """Connect and authenticate now, turning every failure into one UnreachableError sentence."""
        try:
            self.connection.open()
        except (paramiko.SSHException, OSError, EOFError, UnicodeError) as exc:
            failed = self._failed_hop()
            error = self._unreachable(exc, failed)
            if failed is not self.connection:  # say which bastion, not the target, failed
                error = UnreachableError(f"via bastion {failed.host}: {error.message}", hint=error.hint)
            raise error from exc
        for hop in self._hops():
            _watch_liveness(hop.transport)

    def _failed_hop(self) -> Connection:
        """The hop nearest the controller that is not connected (the target when there is none)."""
        for hop in reversed(self._hops()):
            if not hop.is_connected:
                return hop
        return self.connection

    def _unreachable(self, exc: BaseException, hop: Connection) -> UnreachableError:
        """One sentence for a failed connect to HOP, with a hint where there is something to do."""
        name, port = hop.host, hop.port
        if isinstance(exc, paramiko.BadHostKeyException):
            return UnreachableError(
                f"host key for {exc.hostname} does not match known_hosts",
                hint=f"if the host was rebuilt, run ssh-keygen -R {exc.hostname}",
            )
        if isinstance(exc, paramiko.AuthenticationException) and "timeout" in str(exc).lower():
            # paramiko raises the same class when the server's answer did not come in time
            # (a loaded host or controller): that is no refused key.
            return UnreachableError(f"authentication did not finish within {self.connect_timeout:.0f} s (timed out, not refused)")
        if isinstance(exc, paramiko.AuthenticationException):
            return UnreachableError(
                f"authentication failed for user {hop.user or 'default'}",
                hint="check ansible_user and ansible_ssh_private_key_file",
            )
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return UnreachableError(f"connection refused on port {port}")
        if isinstance(exc, socket.gaierror):
            return UnreachableError(f"cannot resolve {name}: {exc.strerror}")
        if isinstance(exc, UnicodeError):  # the IDNA codec refuses the name before any lookup
            return UnreachableError(f"cannot resolve {name}: not a valid host name")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return UnreachableError(f"no connection within {self.connect_timeout:.0f} s on port {port}")
        if isinstance(exc, paramiko.SSHException):
            return UnreachableError(self._handshake_sentence(str(exc), hop))
        if isinstance(exc, EOFError):
            return UnreachableError("the host closed the connection during the SSH handshake")
        return UnreachableError(f"cannot connect: {getattr(exc, 'strerror', None) or exc}")

    def _handshake_sentence(self, message: str, hop: Connection) -> str:
        # paramiko's handshake wait can end before its banner timeout fires: then auth
        # fails with "No existing session", and only the missing banner tells what happened.
        transport = hop.client.get_transport()
        if transport is not None and not transport.is_authenticated() and "No existing session" in message:
            if not getattr(transport, "remote_version", None):
                return "the port accepted TCP but never spoke SSH"
            return f"the SSH handshake did not finish within {self.connect_timeout:.0f} s"
        return _ssh_sentence(message, hop.host)

    def _hops(self) -> list[Connection]:
        """This connection and its gateway connections, target first."""
        hops, current = [], self.connection
        while isinstance(current, Connection):
            hops.append(current)
            current = current.gateway
        return hops

    def command_line(self, script: str) -> tuple[str, SudoPrompt | None]:
        """The exact remote command: every piece one shell word (``shlex.join``)."""
        argv = ["sh", "-c", script, *SESSION_ARGS]
        prompt = None
        if self._sudo:
            if self.options.become_password is not None:
                prompt = SudoPrompt(f"[fleetdiag sudo {secrets.token_hex(8)}]", self.options.become_password)
                argv = ["sudo", "-S", "-p", prompt.marker, "-u", self.spec.become_user, "--", *argv]
            else:
                argv = ["sudo", "-n", "-u", self.spec.become_user, "--", *argv]
        return shlex.join(argv), prompt

    can_answer = True  # see Transport

    def run(
        self, script: str, timeout: float, on_line: LineCallback | None = None, answer: Answer | None = None
    ) -> CommandResult:
        """Run ``sh -c SCRIPT`` (through sudo when become); stdin stays open until it ends."""
        if not self.connection.is_connected:
            self.open()
        command, prompt = self.command_line(script)
        running = ChannelCommand(self.connection.transport, command, prompt)
        self._running = running
        try:
            result = running.wait(timeout, on_line, answer)
        finally:
            self._running = None
        if self._sudo:
            _raise_for_sudo_refusal(result, asked_password=prompt is None)
        return result

    def request_stop(self) -> None:
        """Ask the running script to wrap up now (EOF on its stdin); a no-op between commands."""
        running = self._running
        if running is not None:
            running.request_stop()

    def close(self) -> None:
        """Close the SSH connection and its gateway hops (Fabric leaves those open)."""
        for hop in self._hops():
            hop.close()


def _watch_liveness(transport: paramiko.Transport | None) -> None:
    """Keepalives plus TCP_USER_TIMEOUT: a silent network ends the connection, not the wait."""
    if transport is None:
        return
    transport.set_keepalive(KEEPALIVE_S)
    sock = transport.sock
    if isinstance(sock, socket.socket) and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_S * 1000)


def _raise_for_sudo_refusal(result: CommandResult, asked_password: bool) -> None:
    """sudo itself refused (exit 1, only sudo's own lines on stderr): say what it said first."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code != 1 or not lines or not all(line.startswith("sudo:") for line in lines):
        return
    if asked_password and any("password" in line for line in lines):
        raise RemoteCommandError(
            "sudo asked for a password",
            hint="set FLEETDIAG_BECOME_PASSWORD or use -K, or allow passwordless sudo",
        )
    raise RemoteCommandError(
        f"sudo refused to run the command: {lines[0].removeprefix('sudo:').strip()}",
        hint="check ansible_become_user and the sudoers rules for the login user",
    )


def _ssh_sentence(message: str, address: str) -> str:
    if "not found in known_hosts" in message:
        return (
            f"host key of {address} is not in known_hosts "
            "(add it with ssh-keyscan, or use --host-key-checking accept-new)"
        )
    if "banner" in message.lower():
        return "the port accepted TCP but never spoke SSH"
    return f"SSH failed: {message}"
