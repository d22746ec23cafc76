"""SSH to a host through Fabric, with host keys verified (Fabric's default accepts any key)."""

from __future__ import annotations

import enum
import os
import shlex
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection
from invoke.exceptions import CommandTimedOut

from fleetdiag.errors import RemoteCommandError, UnreachableError
from fleetdiag.model import HostSpec
from fleetdiag.transport.base import CommandResult

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


class HostKeyChecking(str, enum.Enum):
    """OpenSSH's StrictHostKeyChecking, as Ansible users set it."""

    STRICT = "strict"  # unknown or changed keys are refused
    ACCEPT_NEW = "accept-new"  # unknown keys are learnt and saved; changed keys refused
    OFF = "off"  # any key accepted, nothing saved (lab use only)


@dataclass(frozen=True)
class SshOptions:
    """Connection settings shared by every host of a sweep (the CLI's flags)."""

    connect_timeout: float = 10.0
    host_key_checking: HostKeyChecking = HostKeyChecking.STRICT
    known_hosts: tuple[str, ...] = DEFAULT_KNOWN_HOSTS
    default_user: str | None = None
    default_private_key: str | None = None


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Trust a first-seen key and append it to the first known_hosts file (OpenSSH accept-new)."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as out:
                out.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


class SshTransport:
    """Runs scripts on one host over one SSH connection (``sudo -n`` when become)."""

    def __init__(self, spec: HostSpec, options: SshOptions) -> None:
        self.spec = spec
        self.options = options
        key_file = spec.private_key_file or options.default_private_key
        connect_kwargs: dict[str, object] = {
            "banner_timeout": options.connect_timeout,
            "auth_timeout": options.connect_timeout,
        }
        if key_file:
            connect_kwargs["key_filename"] = [os.path.expanduser(key_file)]
        self.user = spec.user or options.default_user
        self.connection = Connection(
            host=spec.address,
            user=self.user,
            port=spec.port,
            connect_timeout=options.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        self._verify_host_keys(self.connection.client)
        self._sudo = spec.become and self.user != spec.become_user

    def _verify_host_keys(self, client: paramiko.SSHClient) -> None:
        mode = self.options.host_key_checking
        files = [Path(os.path.expanduser(p)) for p in self.options.known_hosts]
        for path in files:
            if path.is_file():
                client.load_host_keys(str(path))
        if mode is HostKeyChecking.OFF:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        elif mode is HostKeyChecking.ACCEPT_NEW:
            client.set_missing_host_key_policy(_AcceptNewPolicy(files[0]))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def open(self) -> None:
        """Connect and authenticate now, turning every failure into one UnreachableError sentence."""
        try:
            self.connection.open()
        except paramiko.BadHostKeyException as exc:
            raise UnreachableError(
                f"host key for {self.spec.address} does not match known_hosts",
                hint=f"if the host was rebuilt, run ssh-keygen -R {self.spec.address}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise UnreachableError(
                f"authentication failed for user {self.user or 'default'}",
                hint="check ansible_user and ansible_ssh_private_key_file",
            ) from exc
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            raise UnreachableError(f"connection refused on port {self.spec.port}") from exc
        except socket.gaierror as exc:
            raise UnreachableError(f"cannot resolve {self.spec.address}: {exc.strerror}") from exc
        except (socket.timeout, TimeoutError) as exc:
            raise UnreachableError(
                f"no connection within {self.options.connect_timeout:.0f} s on port {self.spec.port}"
            ) from exc
        except paramiko.SSHException as exc:
            raise UnreachableError(_ssh_sentence(str(exc), self.spec.address)) from exc
        except OSError as exc:
            raise UnreachableError(f"cannot connect: {exc.strerror or exc}") from exc

    def run(self, script: str, timeout: float) -> CommandResult:
        """Run ``sh -c SCRIPT`` (as root through sudo -n when become); the script is one quoted word."""
        if not self.connection.is_connected:
            self.open()
        argv = ["sh", "-c", script]
        if self._sudo:
            argv = ["sudo", "-n", "-u", self.spec.become_user, "--", *argv]
        try:
            result = self.connection.run(
                shlex.join(argv), hide=True, warn=True, in_stream=False, timeout=timeout
            )
        except CommandTimedOut as exc:
            raise RemoteCommandError(f"no answer from the host within {timeout:.0f} s") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise UnreachableError(f"SSH connection lost: {exc}") from exc
        return CommandResult(result.stdout, result.stderr, result.exited)

    def close(self) -> None:
        """Close the SSH connection."""
        self.connection.close()


def _ssh_sentence(message: str, address: str) -> str:
    if "not found in known_hosts" in message:
        return (
            f"host key of {address} is not in known_hosts "
            "(add it with ssh-keyscan, or use --host-key-checking accept-new)"
        )
    if "banner" in message.lower():
        return "the port accepted TCP but never spoke SSH"
    return f"SSH failed: {message}"
