"""Which reader reads ``-i``: ansible-core's own when it is installed, else fleetdiag's built-in one."""

from __future__ import annotations

from pathlib import Path

from fleetdiag.errors import UsageError
from fleetdiag.inventory.ansible_core import VaultOptions, ansible_core_available, load_with_ansible
from fleetdiag.inventory.loader import Inventory, load_inventory

READERS = ("auto", "builtin", "ansible")
INSTALL_HINT = "pip install ansible-core (or fleetdiag[ansible]), or use --inventory-reader builtin"


def chosen_reader(reader: str = "auto") -> str:
    """``builtin`` or ``ansible``: auto means ansible-core when it can be imported."""
    if reader not in READERS:
        raise UsageError(f"--inventory-reader: unknown reader {reader!r}", hint="use auto, builtin or ansible")
    if reader == "auto":
        return "ansible" if ansible_core_available() else "builtin"
    if reader == "ansible" and not ansible_core_available():
        raise UsageError("--inventory-reader ansible: ansible-core is not installed", hint=INSTALL_HINT)
    return reader


def read_inventory(path: str | Path, reader: str = "auto", vault: VaultOptions | None = None) -> Inventory:
    """The inventory at ``path`` through the chosen reader, e.g. ``read_inventory("hosts.yaml", "ansible")``."""
    if chosen_reader(reader) == "ansible":
        return load_with_ansible(path, vault)
    if vault is not None and (vault.password_files or vault.password is not None):
        raise UsageError(
            "vault passwords need the ansible reader: the built-in reader keeps vault values encrypted",
            hint=INSTALL_HINT.split(", or")[0],
        )
    return load_inventory(path)
