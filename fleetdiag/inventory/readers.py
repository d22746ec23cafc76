"""Which reader reads ``-i``: ansible-core's own when it is installed, else fleetdiag's built-in one.

ansible-core is used in-process when fleetdiag's Python can import it, else through
``ansible-inventory`` when that is on PATH (a pipx install, a distribution package).
"""

from __future__ import annotations

from pathlib import Path

from fleetdiag.errors import UsageError
from fleetdiag.inventory.ansible_cli import ansible_inventory_command, load_with_ansible_cli
from fleetdiag.inventory.ansible_core import VaultOptions, ansible_core_available, load_with_ansible
from fleetdiag.inventory.loader import Inventory, load_inventory

READERS = ("auto", "builtin", "ansible")
INSTALL_HINT = "pip install ansible-core (or fleetdiag[ansible]), or use --inventory-reader builtin"


def chosen_reader(reader: str = "auto") -> str:
    """``builtin``, ``ansible`` (in-process) or ``ansible-cli``: auto means ansible-core wherever it is found."""
    if reader not in READERS:
        raise UsageError(f"--inventory-reader: unknown reader {reader!r}", hint="use auto, builtin or ansible")
    if reader == "builtin":
        return reader
    if ansible_core_available():
        return "ansible"
    if ansible_inventory_command() is not None:
        return "ansible-cli"
    if reader == "ansible":
        raise UsageError("--inventory-reader ansible: ansible-core is not installed", hint=INSTALL_HINT)
    return "builtin"


def read_inventory(path: str | Path, reader: str = "auto", vault: VaultOptions | None = None) -> Inventory:
    """The inventory at ``path`` through the chosen reader, e.g. ``read_inventory("hosts.yaml", "ansible")``."""
    chosen = chosen_reader(reader)
    if chosen == "ansible":
        return load_with_ansible(path, vault)
    if chosen == "ansible-cli":
        return load_with_ansible_cli(path, vault)
    if vault is not None and (vault.password_files or vault.password is not None):
        raise UsageError(
            "vault passwords need the ansible reader: the built-in reader keeps vault values encrypted",
            hint=INSTALL_HINT.split(", or")[0],
        )
    return load_inventory(path)
