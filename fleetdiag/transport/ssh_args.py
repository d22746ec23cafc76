"""``ansible_ssh_common_args`` read as OpenSSH would: bastions (-J, ProxyJump, ProxyCommand) and key checking.

Pure: the text is split with shlex, never handed to a shell. Options that only
matter to OpenSSH's own process (ControlMaster, -C, ...) are listed as ignored.

>>> parse_ssh_args("-J ops@bastion:2222").jumps
(JumpHost(host='bastion', user='ops', port=2222),)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fleetdiag.transport.host_keys import HostKeyChecking, host_key_checking_of

# Flags of ssh(1) that take a value: "-x value" or "-xvalue".
_FLAGS_WITH_VALUE = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


class SshArgsError(ValueError):
    """Common args fleetdiag cannot honour; the message is one line, without the whole value."""


@dataclass(frozen=True)
class JumpHost:
    """One ProxyJump hop: ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class SshArgs:
    """What fleetdiag takes from ansible_ssh_common_args."""

    jumps: tuple[JumpHost, ...] = ()  # first hop first, as written
    proxy_command: str | None = None  # with %h %p %r still in it
    host_key_checking: HostKeyChecking | None = None
    known_hosts: tuple[str, ...] = ()  # UserKnownHostsFile; ("/dev/null",) means none
    connect_timeout: float | None = None
    ignored: tuple[str, ...] = ()  # what OpenSSH would use and fleetdiag does not


def parse_jump(spec: str) -> tuple[JumpHost, ...]:
    """The hops of a ProxyJump value, e.g. ``a,ops@b:2222`` or ``ssh://ops@b:2222``."""
    hops = []
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ssh://"):
            part = part[len("ssh://") :].rstrip("/")
        if not part:
            raise SshArgsError("ProxyJump has an empty hop")
        user, _, hostport = part.rpartition("@")
        host, port = _split_host_port(hostport)
        hops.append(JumpHost(host=host, user=user or None, port=port))
    return tuple(hops)


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [2001:db8::1]:2222
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise SshArgsError("ProxyJump hop has no host")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SshArgsError(f"ProxyJump port {port_text!r} is not a port number")
    return host, int(port_text)


def parse_ssh_args(text: str) -> SshArgs:
    """Read ansible_ssh_common_args; raises SshArgsError for what cannot be honoured safely."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SshArgsError(f"cannot be split like a shell command line ({exc})") from None
    options: list[tuple[str, str]] = []
    ignored: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or len(word) < 2:
            raise SshArgsError(f"unexpected word {word!r}; only ssh options belong here")
        flag, attached = word[1], word[2:]
        if flag not in _FLAGS_WITH_VALUE:
            ignored.append(word)
            continue
        if attached:
            value = attached
        elif index < len(words):
            value, index = words[index], index + 1
        else:
            raise SshArgsError(f"{word} needs a value")
        if flag == "J":
            options.append(("proxyjump", value))
        elif flag == "o":
            options.append(_option(value))
        else:
            ignored.append(f"{word} {value}" if not attached else word)
    return _read_options(options, ignored)


def _option(value: str) -> tuple[str, str]:
    """``Key=Value`` or ``Key Value`` (ssh_config syntax) -> (lower-cased key, value)."""
    key, sep, rest = value.partition("=")
    if not sep:
        key, _, rest = value.strip().partition(" ")
    return key.strip().lower(), rest.strip().strip('"')


def _read_options(options: list[tuple[str, str]], ignored: list[str]) -> SshArgs:
    # OpenSSH keeps the first value it reads for each option; so do we.
    first: dict[str, str] = {}
    for key, value in options:
        first.setdefault(key, value)
        if key not in ("proxyjump", "proxycommand", "stricthostkeychecking", "userknownhostsfile", "connecttimeout"):
            ignored.append(f"-o {key}")
    jumps: tuple[JumpHost, ...] = ()
    if first.get("proxyjump", "none").lower() != "none":
        jumps = parse_jump(first["proxyjump"])
    proxy_command = first.get("proxycommand")
    if proxy_command is not None and proxy_command.lower() == "none":
        proxy_command = None
    if jumps and proxy_command:
        raise SshArgsError("ProxyJump and ProxyCommand cannot both be set")
    checking = None
    if "stricthostkeychecking" in first:
        try:
            checking = host_key_checking_of(first["stricthostkeychecking"])
        except ValueError as exc:
            raise SshArgsError(f"StrictHostKeyChecking: {exc}") from None
    known_hosts = tuple(shlex.split(first["userknownhostsfile"])) if "userknownhostsfile" in first else ()
    timeout = None
    if "connecttimeout" in first:
        if not first["connecttimeout"].isdigit():
            raise SshArgsError("ConnectTimeout must be a whole number of seconds")
        timeout = float(first["connecttimeout"])
    return SshArgs(jumps, proxy_command, checking, known_hosts, timeout, tuple(ignored))


def expand_proxy_command(command: str, host: str, port: int, user: str | None) -> str:
    """ProxyCommand with OpenSSH's %h, %p, %r and %% tokens filled in."""
    values = {"h": host, "p": str(port), "r": user or "", "%": "%"}
    out, index = [], 0
    while index < len(command):
        char = command[index]
        if char == "%" and index + 1 < len(command) and command[index + 1] in values:
            out.append(values[command[index + 1]])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
