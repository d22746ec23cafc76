"""Secret inventory values (passwords, vault blobs): kept usable, never shown.

Passwords stay in ``HostSpec.vars`` for whoever needs them, wrapped so that a repr
(logs, tracebacks, a dataclass printed while debugging) shows a mask instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "********"

# Ansible's own names (ansible_password, ansible_ssh_pass, ansible_become_pass(word),
# ansible_sudo_pass...) plus the usual suspects in users' own variables.
_SECRET_NAME = re.compile(r"pass|secret|token|credential|api_?key|private_key(?!_file)", re.IGNORECASE)


class SecretText(str):
    """A string that masks itself in repr(); str() and comparisons still give the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


class VaultEncrypted:
    """An ``!vault`` value: ciphertext fleetdiag cannot decrypt, kept opaque."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "VaultEncrypted(...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VaultEncrypted) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


def is_secret_name(name: str) -> bool:
    """Whether a variable name looks like it holds a secret, e.g. ``ansible_become_password``."""
    return bool(_SECRET_NAME.search(name))


def conceal(name: str, value: Any) -> Any:
    """The value to keep for variable ``name``: masked in repr() if the name is secret."""
    if isinstance(value, str) and is_secret_name(name):
        return SecretText(value)
    return value


def redact(lines: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """``lines`` with every occurrence of a secret value replaced by the mask."""
    # Longest first, so a secret containing another is masked whole; values of a
    # few characters would mask ordinary words, and messages never echo values anyway.
    ordered = sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True)
    redacted = []
    for line in lines:
        for secret in ordered:
            line = line.replace(secret, MASK)
        redacted.append(line)
    return redacted
