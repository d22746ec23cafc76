"""Reading one corpus case through both readers, and the --limit patterns to try on it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_core import load_with_ansible
from fleetdiag.inventory.limit import select_with_warnings
from fleetdiag.inventory.loader import Inventory, load_inventory

CORPUS = Path(__file__).parent / "corpus"
# The HostSpec fields fleetdiag connects with: both readers must agree on every one.
CONNECTION_FIELDS = (
    "address", "port", "user", "private_key_file", "become", "become_user",
    "connection", "ssh_common_args", "host_key_checking", "groups",
)  # fmt: skip
UNMATCHED = "could not match supplied host pattern"
# Warnings ansible-core gives while reading an inventory, which the built-in reader must give too.
LOAD_WARNINGS = (
    "found both group and host with same name",
    "invalid characters were found in group names",
    "the inventory defines no hosts",
)


def is_hazard(limit: str) -> bool:
    """The two readings README documents as hazards: fleetdiag keeps its own there."""
    from fleetdiag.inventory.host_patterns import is_ipv6

    return "~[" in limit or any(part[:1] in "!&" and is_ipv6(part[1:]) for part in limit.split(":!")[-1:] + [limit])


@dataclass(frozen=True)
class Outcome:
    """What a reader made of an inventory, or of a --limit: a value to compare, or an error."""

    value: object = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def cases() -> list[Path]:
    """Every case directory; its inventory is the one file or directory named ``hosts*``."""
    return sorted(path for path in CORPUS.iterdir() if path.is_dir())


def source_of(case: Path) -> Path:
    sources = sorted(case.glob("hosts*"))
    assert len(sources) == 1, f"{case.name}: one hosts* source expected, found {sources}"
    return sources[0]


def read(case: Path, reader: str) -> tuple[Inventory | None, Outcome]:
    """The inventory through ``reader`` (builtin or ansible) and its comparable outcome."""
    try:
        inventory = load_inventory(source_of(case)) if reader == "builtin" else load_with_ansible(source_of(case))
    except InventoryError as exc:
        return None, Outcome(error=exc.problems[0])
    warnings = tuple(sorted(kind for kind in LOAD_WARNINGS if any(kind in w.casefold() for w in inventory.warnings)))
    hosts = {host.name: {name: getattr(host, name) for name in CONNECTION_FIELDS} for host in inventory.hosts}
    groups = {name: members for name, members in inventory.groups.items()}
    value = {"order": [h.name for h in inventory.hosts], "hosts": hosts, "groups": groups}
    return inventory, Outcome(value=value, warnings=warnings)


def select(inventory: Inventory, limit: str) -> Outcome:
    """The hosts ``limit`` selects, in order, with the patterns warned about as matching nothing."""
    logging.disable(logging.WARNING)
    try:
        selection = select_with_warnings(inventory, limit)
    except InventoryError as exc:
        return Outcome(error=exc.problems[-1], warnings=_unmatched(exc.problems))
    finally:
        logging.disable(logging.NOTSET)
    return Outcome(value=[host.name for host in selection.hosts], warnings=_unmatched(selection.warnings))


def _unmatched(lines: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(line.split(": ")[-1] for line in lines if UNMATCHED in line.casefold()))


def patterns_for(case: Path, inventory: Inventory) -> list[str]:
    """The case's own patterns (patterns.txt, one a line), then ones made from its groups and hosts."""
    written = case / "patterns.txt"
    own = [line.rstrip("\n") for line in written.read_text().splitlines()] if written.exists() else []
    own = [line for line in own if line and not line.startswith("#")]
    groups = [name for name in inventory.groups if name != "all"]
    hosts = [host.name for host in inventory.hosts]
    made = ["all", "*", "all[0]", "all[-1]", "all[1:]", "all[0:1]", "nosuchhost", "all,nosuchhost"]
    for group in groups[:8]:
        made += [group, f"{group}[0]", f"{group}[-1]", f"{group}[1:]", f"!{group}", f"&{group}", f"all:!{group}"]
    for host in hosts[:6]:
        made += [host, f"!{host}", f"{host}*"]
    if len(groups) >= 2:
        made += [f"{groups[0]}:{groups[1]}", f"{groups[0]}:&{groups[1]}", f"{groups[0]},{groups[1]}", f"{groups[1]}:!{groups[0]}"]
    return list(dict.fromkeys(own + made))


def ambiguous_groups(inventory: Inventory) -> set[str]:
    """Groups whose host order ansible-core leaves undefined (ansible-core read ``inventory``).

    Group.get_hosts walks descendants level by level, but below the first level it iterates
    a set of groups: when two groups of that set bring new children, their order (and so
    ``group[0]``) changes from one run to the next. Those groups are compared as sets.
    """
    assert inventory.selector is not None
    groups = inventory.selector.manager.groups
    ambiguous = set()
    for name, group in groups.items():
        seen = {group, *group.child_groups}
        unprocessed = set(seen)
        while unprocessed:
            bringing = [g for g in unprocessed if set(g.child_groups) - seen]
            brought = {child for g in bringing for child in g.child_groups} - seen
            if len(bringing) > 1 and len(brought) > 1:
                ambiguous.add(name)
                break
            new = {child for g in unprocessed for child in g.child_groups} - seen
            seen |= new
            unprocessed = new
    return ambiguous
