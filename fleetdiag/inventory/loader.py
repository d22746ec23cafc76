"""Loading an inventory: the file (YAML or INI), Ansible's structure, group_vars/ and host_vars/,
then precedence; or every problem at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_yaml import ALL, InventoryDraft, read_ansible_yaml
from fleetdiag.inventory.host_patterns import is_ipv6
from fleetdiag.inventory.ini_file import as_yaml_document, read_ini
from fleetdiag.inventory.precedence import resolve_hosts
from fleetdiag.inventory.secret_values import redact
from fleetdiag.inventory.templates import ANSIBLE_READER_ADVICE
from fleetdiag.inventory.vars_dirs import read_vars_dirs
from fleetdiag.inventory.yaml_file import (
    FORMAT_HINT,
    INI_SECTION,
    YamlDocument,
    parse_yaml,
    read_text,
)
from fleetdiag.model import LOCAL_CONNECTION, HostSpec, frozen_map

YAML_EXTENSIONS = ("", ".yaml", ".yml", ".json")  # Ansible's yaml plugin reads no other file


@dataclass(frozen=True)
class Inventory:
    """The hosts to diagnose, in file order, and each group's host names."""

    path: Path | None
    hosts: tuple[HostSpec, ...]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=frozen_map)
    warnings: tuple[str, ...] = ()  # odd but usable: duplicate keys, ignored passwords
    # Set when ansible-core read the inventory: --limit -> (selected names, warnings), as Ansible selects.
    # Host names in the order first written: Ansible matches host globs in this order, not 'all''s.
    creation_order: tuple[str, ...] = ()
    selector: Callable[[str], tuple[list[str], list[str]]] | None = field(default=None, compare=False, repr=False)


def load_inventory(path: str | Path) -> Inventory:
    """The inventory in an Ansible YAML or INI file, e.g. ``load_inventory("hosts.yaml").hosts``.

    Raises InventoryError listing every problem, one line each, as
    ``hosts.yaml: all.children.web.hosts.web01.ansible_port: <message>``.
    """
    shown = str(path)  # the name as the user gave it, so messages point where they looked
    inventory_path = Path(path)
    text = read_text(inventory_path, shown)
    draft, warnings = _read_draft(text, inventory_path, shown)
    vars_problems = read_vars_dirs(draft, inventory_path, shown)
    if draft.problems or vars_problems:
        lines = [f"{shown}: {problem}" for problem in draft.problems] + vars_problems
        raise InventoryError(redact(lines, draft.secrets), hint=FORMAT_HINT)
    hosts, groups = resolve_hosts(draft)
    draft.warnings.extend(ansible_warnings(draft))
    if draft.problems:  # templates that could not be rendered, per host
        lines = [f"{shown}: {problem}" for problem in draft.problems]
        raise InventoryError(redact(lines, draft.secrets), hint=ANSIBLE_READER_ADVICE)
    warnings += tuple(f"{shown}: {warning}" for warning in draft.warnings)
    return Inventory(
        path=inventory_path, hosts=hosts, groups=groups, warnings=warnings, creation_order=tuple(draft.hosts)
    )


_INVALID_GROUP_CHARS = re.compile(r"^[\d\W]|[^\w]")  # Ansible's INVALID_VARIABLE_NAMES


def ansible_warnings(draft: InventoryDraft) -> list[str]:
    """The warnings ansible-core gives for this inventory once read (it reads it all the same)."""
    warnings = []
    invalid = [name for name in draft.groups if _INVALID_GROUP_CHARS.search(name)]
    if invalid:
        warnings.append(f"Invalid characters were found in group names but not replaced: {', '.join(invalid)}")
    warnings.extend(f"Found both group and host with same name: {name}" for name in draft.groups if name in draft.hosts)
    return warnings


def _read_draft(text: str, path: Path, shown: str) -> tuple[InventoryDraft, tuple[str, ...]]:
    """YAML when the text is a YAML mapping of groups, INI when it looks like INI (Ansible tries both)."""
    try:
        parsed: YamlDocument | None = parse_yaml(text, shown)
        yaml_error = None
    except InventoryError as exc:
        parsed, yaml_error = None, exc
    if parsed is not None and isinstance(parsed.document, dict) and not _looks_like_ini(text):
        if path.suffix not in YAML_EXTENSIONS:
            draft = InventoryDraft()
            draft.problems.append(
                f"Ansible reads a YAML inventory only from a file ending in {', '.join(YAML_EXTENSIONS[1:])} "
                "or without an extension; rename it"
            )
            return draft, ()
        return read_ansible_yaml(parsed.document), parsed.warnings
    if _looks_like_ini(text) or (parsed is not None and parsed.document is None):
        ini = read_ini(text)
        draft = read_ansible_yaml(as_yaml_document(ini), from_ini=True)
        draft.problems[:0] = ini.problems
        return draft, ()
    if yaml_error is not None:
        raise yaml_error
    assert parsed is not None
    return read_ansible_yaml(parsed.document), parsed.warnings  # the walker says what is wrong


def _looks_like_ini(text: str) -> bool:
    """A [section] line, or a first line that is a host (key=value, an IPv6 address): no YAML reads like that."""
    if INI_SECTION.search(text):
        return True
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", ";"))]
    if not lines:
        return True  # empty, or comments only: Ansible's INI plugin reads it as no hosts
    first = lines[0].split()[0]
    if is_ipv6(first) or parse_host_key_safe(first):
        return True
    return ":" not in lines[0].split("=")[0] and not lines[0].startswith(("-", "{", "---"))


def parse_host_key_safe(word: str) -> bool:
    """Whether ``word`` is a bracketed IPv6 host such as ``[2001:db8::10]:2222``."""
    return word.startswith("[") and "]" in word and is_ipv6(word[1 : word.index("]")])


def local_inventory() -> Inventory:
    """The inventory when none is given: this machine only, without ssh."""
    host = HostSpec(name="localhost", address="localhost", connection=LOCAL_CONNECTION)
    return Inventory(path=None, hosts=(host,), groups=frozen_map({ALL: (host.name,)}))
