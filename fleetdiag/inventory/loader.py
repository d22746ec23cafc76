"""Loading an inventory: the file, then Ansible's structure, then precedence, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_yaml import ALL, read_ansible_yaml
from fleetdiag.inventory.precedence import resolve_hosts
from fleetdiag.inventory.secret_values import redact
from fleetdiag.inventory.yaml_file import FORMAT_HINT, ini_hint, parse_yaml, read_text
from fleetdiag.model import LOCAL_CONNECTION, HostSpec, frozen_map

# Ansible reads these beside the inventory; fleetdiag does not, so say so.
_VARS_DIRECTORIES = ("group_vars", "host_vars")


@dataclass(frozen=True)
class Inventory:
    """The hosts to diagnose, in file order, and each group's host names."""

    path: Path | None
    hosts: tuple[HostSpec, ...]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=frozen_map)
    warnings: tuple[str, ...] = ()  # odd but usable: duplicate keys, unread group_vars/


def load_inventory(path: str | Path) -> Inventory:
    """The inventory in an Ansible YAML file, e.g. ``load_inventory("hosts.yaml").hosts``.

    Raises InventoryError listing every problem, one line each, as
    ``hosts.yaml: all.children.web.hosts.web01.ansible_port: <message>``.
    """
    shown = str(path)  # the name as the user gave it, so messages point where they looked
    inventory_path = Path(path)
    parsed = parse_yaml(read_text(inventory_path, shown), shown)
    draft = read_ansible_yaml(parsed.document)
    if draft.problems:
        lines = [f"{shown}: {problem}" for problem in draft.problems]
        top_level_ok = isinstance(parsed.document, dict) and bool(parsed.document)
        hint = ini_hint(shown) if parsed.looks_like_ini and not top_level_ok else FORMAT_HINT
        raise InventoryError(redact(lines, draft.secrets), hint=hint)
    hosts, groups = resolve_hosts(draft)
    warnings = parsed.warnings + _unread_directories(inventory_path, shown)
    return Inventory(path=inventory_path, hosts=hosts, groups=groups, warnings=warnings)


def _unread_directories(path: Path, shown: str) -> tuple[str, ...]:
    return tuple(
        f"{shown}: {name}/ beside the inventory is not read by fleetdiag; "
        "put the variables it needs (ansible_user, ansible_port...) in the inventory file"
        for name in _VARS_DIRECTORIES
        if (path.parent / name).is_dir()
    )


def local_inventory() -> Inventory:
    """The inventory when none is given: this machine only, without ssh."""
    host = HostSpec(name="localhost", address="localhost", connection=LOCAL_CONNECTION)
    return Inventory(path=None, hosts=(host,), groups=frozen_map({ALL: (host.name,)}))
