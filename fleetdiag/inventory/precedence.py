"""Variable precedence as Ansible applies it, turning drafts into HostSpecs.

A host's variables are its groups' variables merged from the least to the most
specific (Ansible's ``sort_groups``: by depth below 'all', then
``ansible_group_priority``, then name; later wins), then the same groups' files in
``group_vars/``, with its own host variables and ``host_vars/`` on top. Among aliases of one setting the newer name loses to the older one
(``ansible_ssh_host`` beats ``ansible_host``), as in Ansible's ssh plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetdiag.inventory.ansible_yaml import (
    ALL,
    UNGROUPED,
    GroupDraft,
    HostDraft,
    InventoryDraft,
)
from fleetdiag.inventory.schema import HOSTSPEC_SOURCES, validate_vars
from fleetdiag.inventory.templates import Template, TemplateProblem, magic_vars, render
from fleetdiag.model import HostSpec, frozen_map

DEFAULT_GROUP_PRIORITY = 1  # Ansible's default for ansible_group_priority


def group_depths(groups: Mapping[str, GroupDraft]) -> dict[str, int]:
    """Each group's depth: 0 for 'all', else one more than its deepest parent."""
    depths: dict[str, int] = {ALL: 0}

    def depth(name: str) -> int:
        if name not in depths:
            # A group written without a parent hangs from 'all', as Ansible's reconcile does.
            parents = groups[name].parents or [ALL]
            depths[name] = 1 + max(depth(parent) for parent in parents)
        return depths[name]

    for name in groups:
        depth(name)
    return depths


def direct_groups(host: HostDraft) -> list[str]:
    """Where the host is listed, after Ansible's reconcile: 'ungrouped' only if it is in no other group."""
    listed = [name for name in host.groups if name not in (ALL, UNGROUPED)]
    return listed or [UNGROUPED]


def groups_of(host: HostDraft, groups: Mapping[str, GroupDraft]) -> set[str]:
    """Every group ``host`` belongs to: where it is listed, their ancestors, and 'all'."""
    member_of = {ALL}
    pending = direct_groups(host)
    while pending:
        name = pending.pop()
        if name not in member_of:
            member_of.add(name)
            pending.extend(groups[name].parents)
    return member_of


def reconcile(draft: InventoryDraft) -> None:
    """Ansible's reconcile_inventory: parentless groups hang from 'all' (after 'ungrouped' and 'all''s
    own children), and 'ungrouped' holds exactly the hosts listed in no other group."""
    top = draft.groups[ALL]
    if UNGROUPED not in top.children:
        top.children.insert(0, UNGROUPED)
        draft.groups[UNGROUPED].parents.insert(0, ALL)
    for name, group in draft.groups.items():
        if name not in (ALL, UNGROUPED) and not group.parents:
            group.parents.append(ALL)
            top.children.append(name)
    ungrouped = draft.groups[UNGROUPED]
    ungrouped.hosts = [name for name in ungrouped.hosts if direct_groups(draft.hosts[name]) == [UNGROUPED]]
    for name, host in draft.hosts.items():
        if direct_groups(host) == [UNGROUPED] and name not in ungrouped.hosts:
            ungrouped.hosts.append(name)


def group_hosts(name: str, groups: Mapping[str, GroupDraft]) -> list[str]:
    """A group's hosts in Ansible's order: its own listing, then its children's, level by level.

    Below the first level Ansible walks a set, so its order among cousins is not defined;
    here it is the order of their parents.
    """
    ordered, seen, level = [name], {name}, [name]
    while level:
        below = []
        for group in level:
            for child in groups[group].children:
                if child not in seen:
                    seen.add(child)
                    below.append(child)
        ordered.extend(below)
        level = below
    hosts: list[str] = []
    listed: set[str] = set()
    for group in ordered:
        for host in groups[group].hosts:
            if host not in listed:
                listed.add(host)
                hosts.append(host)
    return hosts


def merged_variables(
    host: HostDraft, member_of: set[str], groups: Mapping[str, GroupDraft], depths: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host's understood and other variables after Ansible's precedence."""

    def rank(name: str) -> tuple[int, int, str]:
        priority = groups[name].settings.get("ansible_group_priority")
        return (depths[name], DEFAULT_GROUP_PRIORITY if priority is None else priority, name)

    settings: dict[str, Any] = {}
    other_vars: dict[str, Any] = {}
    ordered = sorted(member_of, key=rank)
    # Ansible's VARIABLE_PRECEDENCE: every group's inventory-file vars, then group_vars/
    # ('all' first, being least deep), then the host's file vars, then host_vars/.
    for name in ordered:
        settings.update(groups[name].settings)
        other_vars.update(groups[name].other_vars)
    for name in ordered:
        settings.update(groups[name].dir_settings)
        other_vars.update(groups[name].dir_other_vars)
    for source_settings, source_vars in ((host.settings, host.other_vars), (host.dir_settings, host.dir_other_vars)):
        settings.update(source_settings)
        other_vars.update(source_vars)
    return settings, other_vars


def host_spec(
    name: str, settings: Mapping[str, Any], other_vars: Mapping[str, Any], member_of: set[str]
) -> HostSpec:
    """The HostSpec for merged variables; unset settings keep HostSpec's defaults."""
    fields: dict[str, Any] = {"address": name}
    for field_name, variables in HOSTSPEC_SOURCES.items():
        for variable in variables:  # later names win; null means unset
            if settings.get(variable) is not None:
                fields[field_name] = settings[variable]
    extra = settings.get("ansible_ssh_extra_args")
    if extra:  # Ansible puts the extra args after the common ones on ssh's command line
        fields["ssh_common_args"] = f"{fields.get('ssh_common_args') or ''} {extra}".strip()
    return HostSpec(
        name=name,
        groups=tuple(sorted(member_of - {ALL})),
        vars=frozen_map(other_vars),
        **fields,
    )


def _rendered(
    name: str, settings: dict[str, Any], other_vars: Mapping[str, Any], member_of: set[str], problems: list[str]
) -> dict[str, Any] | None:
    """The host's settings with their templates rendered and validated; None (problems noted) if one fails."""
    variables = {**other_vars, **settings, **magic_vars(name, tuple(sorted(member_of - {ALL})))}
    rendered: dict[str, Any] = {}
    failed = False
    for variable, value in settings.items():
        try:
            rendered[variable] = render(value, variables) if isinstance(value, Template) else value
        except TemplateProblem as exc:
            problems.append(f"host {name}: {variable}: {exc}")
            failed = True
    if failed:
        return None
    templated = {variable: rendered[variable] for variable, value in settings.items() if isinstance(value, Template)}
    found: list[str] = []
    checked = validate_vars(templated, f"host {name}", found, defer_templates=False)
    problems.extend(found)
    return None if found else {**rendered, **checked}


def resolve_hosts(draft: InventoryDraft) -> tuple[tuple[HostSpec, ...], Mapping[str, tuple[str, ...]]]:
    """The hosts in Ansible's order for 'all', and each group's hosts (children's included) in its order."""
    reconcile(draft)
    depths = group_depths(draft.groups)
    specs = {}
    for host in draft.hosts.values():
        member_of = groups_of(host, draft.groups)
        settings, other_vars = merged_variables(host, member_of, draft.groups, depths)
        if any(isinstance(value, Template) for value in settings.values()):
            settings = _rendered(host.name, settings, other_vars, member_of, draft.problems)
            if settings is None:
                continue
        specs[host.name] = host_spec(host.name, settings, other_vars, member_of)
    if draft.problems:
        return (), frozen_map()
    members = {name: tuple(group_hosts(name, draft.groups)) for name in draft.groups}
    return tuple(specs[name] for name in members[ALL]), frozen_map(members)
