"""Walking Ansible's YAML inventory structure (all/children/hosts/vars) into groups and hosts.

Mirrors ansible-core's ``plugins/inventory/yaml.py``: top-level keys are groups, a
group may repeat anywhere and is one group, a host listed in several groups is one
host, and keys are read in the order written. Where Ansible only warns (a typo'd
group key, a list instead of a mapping) this walker records a problem instead,
and it never stops at the first one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetdiag.inventory.host_patterns import HostPatternError, parse_host_key
from fleetdiag.inventory.names import group_problem, host_problem
from fleetdiag.inventory.schema import (
    IGNORED_PASSWORDS,
    UNDERSTOOD_VARS,
    ignored_password_warning,
    validate_port,
    validate_vars,
)
from fleetdiag.inventory.secret_values import conceal, is_secret_name
from fleetdiag.model import frozen_map

GROUP_KEYS = ("hosts", "children", "vars")
ALL = "all"
UNGROUPED = "ungrouped"


@dataclass
class GroupDraft:
    """One group as written so far; ``settings`` are validated understood variables."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    other_vars: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # in the order linked, as Ansible walks them
    hosts: list[str] = field(default_factory=list)  # listed directly here, in listing order
    # From group_vars/<name> beside the inventory: they outrank every group's file vars.
    dir_settings: dict[str, Any] = field(default_factory=dict)
    dir_other_vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostDraft:
    """One host as written so far, merged over every place it is listed."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    other_vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # where listed directly, 'all' excluded
    # From host_vars/<name> beside the inventory: the most specific of all.
    dir_settings: dict[str, Any] = field(default_factory=dict)
    dir_other_vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class InventoryDraft:
    """Groups and hosts in the order first written, the problems found, and secret values seen."""

    groups: dict[str, GroupDraft] = field(default_factory=dict)
    hosts: dict[str, HostDraft] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def group(self, name: str) -> GroupDraft:
        """The group called ``name``, created on first mention."""
        return self.groups.setdefault(name, GroupDraft(name))

    def host(self, name: str) -> HostDraft:
        """The host called ``name``, created on first mention."""
        return self.hosts.setdefault(name, HostDraft(name))


def describe_type(value: Any) -> str:
    """How a YAML value's type is named in a message; never the value itself (it may be secret)."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def path_part(key: Any) -> str:
    """A key as it appears in a dotted path, escaped so the problem stays on one line."""
    text = str(key)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def read_ansible_yaml(document: Any, from_ini: bool = False) -> InventoryDraft:
    """The groups and hosts of a parsed YAML inventory (or of an INI one in that shape); problems collected."""
    draft = InventoryDraft()
    draft.group(ALL)
    draft.group(UNGROUPED)
    if document is None or (from_ini and not document):
        # As Ansible: an empty inventory (or one of comments only) is read, with no host in it.
        draft.warnings.append("the inventory defines no hosts")
        return draft
    if from_ini:  # (group, body) pairs, line by line
        for name, body in document:
            _read_group(draft, name, body, path=path_part(name), parent=None)
        if not draft.hosts and not draft.problems:
            draft.warnings.append("the inventory defines no hosts")
        return draft
    if not isinstance(document, Mapping):
        draft.problems.append(
            f"the top level must be a mapping of groups such as 'all:', got {describe_type(document)}"
        )
        return draft
    if not document:
        draft.problems.append("no groups: the top level must hold 'all:' or group names")
        return draft
    if "plugin" in document:
        draft.problems.append(
            "this is an inventory plugin configuration, not a YAML inventory; "
            "export one with 'ansible-inventory --list --yaml'"
        )
        return draft
    for key, body in document.items():
        name = str(key)
        if name in GROUP_KEYS and not from_ini:  # INI sections [hosts], [vars] are groups in Ansible
            draft.problems.append(f"{name}: '{name}' is not a group at the top level; put it under 'all:'")
            continue
        _read_group(draft, name, body, path=path_part(name), parent=None)
    if not draft.hosts and not draft.problems:
        draft.warnings.append("the inventory defines no hosts")
    return draft


def _read_group(draft: InventoryDraft, name: str, body: Any, path: str, parent: str | None) -> None:
    problem = group_problem(name)
    if problem is None and name == ALL and parent is not None:
        problem = f"'all' holds every group, so it cannot be a child of '{parent}'"
    if problem is not None:
        draft.problems.append(f"{path}: {problem}")
        return
    draft.group(name)
    if parent is not None:
        _link(draft, parent, name, path)
    if body is None:
        return
    if not isinstance(body, Mapping):
        draft.problems.append(
            f"{path}: a group must be a mapping of hosts, children and vars, got {describe_type(body)}"
        )
        return
    for key, section in body.items():
        _read_section(draft, name, str(key), section, f"{path}.{path_part(key)}")


def _read_section(draft: InventoryDraft, group: str, key: str, section: Any, path: str) -> None:
    if key not in GROUP_KEYS:
        draft.problems.append(f"{path}: {_unknown_key_problem(key)}")
        return
    if section is None:
        return
    if isinstance(section, str) and key != "vars":
        section = {section: None}  # Ansible reads "hosts: web01" as one host
    if not isinstance(section, Mapping):
        example = {"hosts": "web01:", "children": "web:", "vars": "ansible_user: ops"}[key]
        draft.problems.append(
            f"{path}: must be a mapping, got {describe_type(section)}; "
            f"write one entry per line as '{example}'"
        )
        return
    if key == "vars":
        settings, other_vars = read_vars(draft, section, path)
        target = draft.group(group)
        target.settings.update(settings)
        target.other_vars.update(other_vars)
    elif key == "children":
        for child, child_body in section.items():
            _read_group(draft, str(child), child_body, f"{path}.{path_part(child)}", parent=group)
    else:
        for host_key, host_body in section.items():
            if not isinstance(host_key, str):  # Ansible's YAML plugin refuses 1234: as a host name
                draft.problems.append(f"{path}.{path_part(host_key)}: a host name must be text; quote it")
                continue
            _read_host(draft, host_key, host_body, f"{path}.{path_part(host_key)}", group)


def _unknown_key_problem(key: str) -> str:
    allowed = "a group may only hold 'hosts', 'children' and 'vars'"
    if key.startswith("ansible_"):
        return f"unknown key; {allowed}: variables go under 'vars:'"
    close = difflib.get_close_matches(key, GROUP_KEYS, n=1, cutoff=0.6)
    suggestion = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key; {allowed}{suggestion}"


def _link(draft: InventoryDraft, parent: str, child: str, path: str) -> None:
    """Make ``child`` a child of ``parent``, refusing a loop (Ansible refuses it too)."""
    if child == parent:
        draft.problems.append(f"{path}: a group cannot contain itself")
        return
    if child in _ancestors(draft, parent):
        draft.problems.append(f"{path}: '{child}' already contains '{parent}', so this would make a loop")
        return
    parents = draft.group(child).parents
    if parent not in parents:
        parents.append(parent)
        draft.group(parent).children.append(child)


def _ancestors(draft: InventoryDraft, name: str) -> set[str]:
    found: set[str] = set()
    pending = list(draft.group(name).parents)
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(draft.group(current).parents)
    return found


def _read_host(draft: InventoryDraft, key: str, body: Any, path: str, group: str) -> None:
    try:
        pattern = parse_host_key(key)
    except HostPatternError as exc:
        draft.problems.append(f"{path}: {exc}")
        return
    name_problem = next(filter(None, (host_problem(name) for name in pattern.names)), None)
    if name_problem is not None:
        draft.problems.append(f"{path}: {name_problem}")
    port = validate_port(pattern.port, path, draft.problems) if pattern.port is not None else None
    if body is not None and not isinstance(body, Mapping):
        draft.problems.append(
            f"{path}: host variables must be a mapping (e.g. 'ansible_host: 192.0.2.10'), "
            f"got {describe_type(body)}"
        )
        return
    settings, other_vars = read_vars(draft, body or {}, path)
    if name_problem is not None:
        return
    for name in pattern.names:
        created = name not in draft.hosts
        host = draft.host(name)
        if group != ALL and group not in host.groups:
            host.groups.append(group)
        if name not in draft.groups[group].hosts:
            draft.groups[group].hosts.append(name)
        if port is not None and created:
            # As Ansible: a port counts where the host is first created; its vars may override it.
            host.settings["ansible_port"] = port
        host.settings.update(settings)
        host.other_vars.update(other_vars)


def read_vars(
    draft: InventoryDraft, written: Mapping[Any, Any], path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The understood (validated) and the other variables of one mapping, secrets noted."""
    variables = {str(name): value for name, value in written.items()}
    for name, value in variables.items():
        _note_secrets(draft, name, value)
        if name in IGNORED_PASSWORDS:
            draft.warnings.append(ignored_password_warning(f"{path}.{name}"))
    settings = validate_vars(variables, path, draft.problems)
    other_vars = {
        name: _kept_value(name, value) for name, value in variables.items() if name not in UNDERSTOOD_VARS
    }
    return settings, other_vars


def _kept_value(name: str, value: Any) -> Any:
    """A variable as HostSpec keeps it: read-only all the way down (hosts share it), secrets masked."""
    if isinstance(value, Mapping):
        return frozen_map({key: _kept_value(str(key), inner) for key, inner in value.items()})
    if isinstance(value, list):
        return tuple(_kept_value(name, item) for item in value)
    return conceal(name, value)


def _note_secrets(draft: InventoryDraft, name: str, value: Any) -> None:
    """Remember secret string values, nested ones too, so no message can show them."""
    if isinstance(value, Mapping):
        for inner_name, inner_value in value.items():
            _note_secrets(draft, str(inner_name), inner_value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _note_secrets(draft, name, item)
    elif isinstance(value, str) and is_secret_name(name):
        draft.secrets.append(value)
