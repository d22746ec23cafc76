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
from fleetdiag.inventory.schema import HOSTSPEC_SOURCES
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


def groups_of(host: HostDraft, groups: Mapping[str, GroupDraft]) -> set[str]:
    """Every group ``host`` belongs to: where it is listed, their ancestors, and 'all'."""
    member_of = {ALL}
    pending = list(host.groups or [UNGROUPED])
    while pending:
        name = pending.pop()
        if name not in member_of:
            member_of.add(name)
            pending.extend(groups[name].parents)
    return member_of


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


def resolve_hosts(draft: InventoryDraft) -> tuple[tuple[HostSpec, ...], Mapping[str, tuple[str, ...]]]:
    """The hosts in file order, and each group's hosts (children's included) in that order."""
    depths = group_depths(draft.groups)
    members: dict[str, list[str]] = {name: [] for name in draft.groups}
    hosts = []
    for host in draft.hosts.values():
        member_of = groups_of(host, draft.groups)
        settings, other_vars = merged_variables(host, member_of, draft.groups, depths)
        hosts.append(host_spec(host.name, settings, other_vars, member_of))
        for group in member_of:
            members[group].append(host.name)
    return tuple(hosts), frozen_map({name: tuple(names) for name, names in members.items()})
