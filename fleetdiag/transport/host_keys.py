"""Host key checking as OpenSSH does it, with known_hosts parsed once per run, not once per host.

Fabric's default accepts any key (AutoAddPolicy); here every connection checks the
server's key against one shared ``paramiko.HostKeys`` built from the known_hosts files.
"""

from __future__ import annotations

import enum
import os
import threading
from pathlib import Path

import paramiko

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


class HostKeyChecking(str, enum.Enum):
    """OpenSSH's StrictHostKeyChecking, as Ansible users set it."""

    STRICT = "strict"  # unknown or changed keys are refused
    ACCEPT_NEW = "accept-new"  # unknown keys are learnt and saved; changed keys refused
    OFF = "off"  # any key accepted, nothing saved (lab use only)


# ansible_host_key_checking is a boolean; OpenSSH's StrictHostKeyChecking words map too.
_WORDS = {
    "strict": HostKeyChecking.STRICT,
    "yes": HostKeyChecking.STRICT,
    "true": HostKeyChecking.STRICT,
    "accept-new": HostKeyChecking.ACCEPT_NEW,
    "off": HostKeyChecking.OFF,
    "no": HostKeyChecking.OFF,
    "false": HostKeyChecking.OFF,
}


def host_key_checking_of(value: bool | str) -> HostKeyChecking:
    """The mode an Ansible boolean or an OpenSSH word stands for, e.g. ``False`` -> OFF."""
    if isinstance(value, bool):
        return HostKeyChecking.STRICT if value else HostKeyChecking.OFF
    try:
        return _WORDS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"host key checking must be one of {', '.join(_WORDS)}, not {value!r}") from None


class IndexedHostKeys(paramiko.HostKeys):
    """paramiko's HostKeys, looked up through an index of plain host names.

    paramiko compares the name with every entry of every file, twice per connection: a
    fleet of N hosts with an N-line known_hosts costs N*N comparisons (5,000 hosts: 50
    million, over a minute of CPU). Plain names are found in a dict here; hashed entries
    (``|1|salt|hash``, HashKnownHosts) can only be tried one by one, as OpenSSH does.
    Every candidate is still matched by paramiko itself, so a stale index can only miss
    a key (the host is then refused), never match a wrong one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._index_lock = threading.Lock()  # one table serves every host's thread
        self._indexed: tuple[list | None, int] = (None, 0)  # which entries list, how many of it
        self._by_name: dict[str, list[int]] = {}
        self._hashed: list[int] = []

    def _candidates(self, hostname: str) -> list[paramiko.hostkeys.HostKeyEntry]:
        with self._index_lock:
            entries = self._entries
            indexed_list, count = self._indexed
            if indexed_list is not entries or count > len(entries):  # cleared, replaced or shrunk
                self._by_name, self._hashed, count = {}, [], 0
            for position in range(count, len(entries)):  # entries added since (keys learnt)
                for name in entries[position].hostnames:
                    if name.startswith("|1|"):
                        self._hashed.append(position)
                    else:
                        self._by_name.setdefault(name, []).append(position)
            self._indexed = (entries, len(entries))
            positions = sorted({*self._by_name.get(hostname, ()), *self._hashed})  # the files' order
            return [entries[i] for i in positions]

    def lookup(self, hostname: str):  # type: ignore[no-untyped-def]
        # paramiko's own lookup over just the candidates (it builds its SubDict inside).
        view = paramiko.HostKeys()
        view._entries = self._candidates(hostname)
        found = view.lookup(hostname)
        if found is not None:
            found._hostkeys = self  # a key set through the answer lands in the whole table
        return found


class KnownHosts:
    """Every key of a set of known_hosts files, loaded once; new keys appended to the first file."""

    def __init__(self, files: tuple[str, ...]) -> None:
        self.paths = tuple(Path(os.path.expanduser(p)) for p in files)
        self.keys = IndexedHostKeys()
        self._lock = threading.Lock()
        for path in self.paths:
            if path.is_file():
                self.keys.load(str(path))

    def learn(self, hostname: str, key: paramiko.PKey) -> None:
        """Trust a first-seen key from now on, and save it as OpenSSH's accept-new does."""
        with self._lock:
            self.keys.add(hostname, key.get_name(), key)
            if not self.paths:
                return
            path = self.paths[0]
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as out:
                out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")


class _LearnUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known: KnownHosts) -> None:
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known.learn(hostname, key)


class _AcceptAny(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None  # nothing saved: "off" must leave no trace in known_hosts


def apply_host_key_checking(client: paramiko.SSHClient, mode: HostKeyChecking, known: KnownHosts) -> None:
    """Make ``client`` check server keys the way ``mode`` says, against the shared ``known``."""
    if mode is HostKeyChecking.OFF:
        # No keys at all, so a changed key is not an error either: that is what off means.
        client.set_missing_host_key_policy(_AcceptAny())
        return
    # paramiko checks its "system" keys first and never writes them back; sharing one
    # parsed HostKeys between all clients saves re-reading known_hosts for every host.
    client._system_host_keys = known.keys
    if mode is HostKeyChecking.ACCEPT_NEW:
        client.set_missing_host_key_policy(_LearnUnknown(known))
    else:
        client.set_missing_host_key_policy(_RefuseUnknown())
