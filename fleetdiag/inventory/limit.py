"""Ansible ``--limit`` patterns: names, groups, globs, ``~regex``, ``&`` intersection, ``!`` exclusion,
``group[0:2]`` subscripts and ``@file``.

Unlike Ansible, a pattern that matches nothing is an error rather than a warning:
a typo in ``!db01`` would otherwise quietly include the host it meant to spare.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_yaml import ALL, UNGROUPED
from fleetdiag.inventory.host_patterns import is_ipv6
from fleetdiag.inventory.loader import Inventory
from fleetdiag.model import HostSpec

_GLOB_CHARS = frozenset("*?[")
# Ansible's PATTERN_WITH_SUBSCRIPT: a pattern followed by [index] or [start:end].
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]+)?)\]$")
_MAX_GROUPS_IN_HINT = 12


def split_limit(limit: str) -> list[str]:
    """The patterns of a --limit, e.g. ``web:&prod,!web03`` -> web, &prod, !web03."""
    patterns: list[str] = []
    for piece in limit.split(","):
        piece = piece.strip()
        # An IPv6 address is one pattern even though it is full of colons.
        patterns.extend([piece] if is_ipv6(piece.lstrip("!&")) else _split_colons(piece))
    return [pattern.strip() for pattern in patterns if pattern.strip()]


def _split_colons(piece: str) -> list[str]:
    parts, current, depth = [], "", 0
    for char in piece:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def expand_limit_files(patterns: list[str]) -> list[str]:
    """Replace each ``@file`` by the patterns in the file, one a line (Ansible's retry files)."""
    expanded: list[str] = []
    for pattern in patterns:
        if not pattern.startswith("@"):
            expanded.append(pattern)
            continue
        path = Path(pattern[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InventoryError([f"--limit: limit file {pattern[1:]} not found"]) from None
        except IsADirectoryError:
            raise InventoryError([f"--limit: {pattern!r} must name a file, not a directory"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InventoryError([f"--limit: cannot read limit file {pattern[1:]}: {exc}"]) from None
        expanded.extend(line.strip() for line in lines if line.strip())
    return expanded


def matching_hosts(inventory: Inventory, pattern: str) -> set[str]:
    """Names of the hosts one bare pattern selects: a group, a host, a glob, ``~regex``, ``web[0:2]``."""
    pattern, subscript = _split_subscript(pattern)
    if pattern.startswith("~"):
        regex = re.compile(pattern[1:])
        names = _hosts_of_matches(inventory, lambda name: regex.match(name) is not None)
    elif _GLOB_CHARS & set(pattern):
        names = _hosts_of_matches(inventory, lambda name: fnmatch.fnmatchcase(name, pattern))
    else:
        names = _hosts_of_matches(inventory, lambda name: name == pattern)
    if subscript is None:
        return names
    ordered = [host.name for host in inventory.hosts if host.name in names]
    start, end = subscript
    if end is None:
        return {ordered[start]} if -len(ordered) <= start < len(ordered) else set()
    return set(ordered[start : (len(ordered) if end == -1 else end + 1)])


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """``web[0]`` -> (web, (0, None)); ``web[1:3]`` -> (web, (1, 3)) inclusive, as in Ansible."""
    match = None if pattern.startswith("~") else _SUBSCRIPT.match(pattern)
    if match is None:
        return pattern, None
    base, index, start, end = match.groups()
    if index is not None:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


def _hosts_of_matches(inventory: Inventory, matches: Callable[[str], bool]) -> set[str]:
    selected = {host.name for host in inventory.hosts if matches(host.name)}
    for group, names in inventory.groups.items():
        if matches(group):
            selected.update(names)
    return selected


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[HostSpec, ...]:
    """The hosts a --limit selects, in inventory order; all of them for None or "".

    Example: ``select_hosts(inv, "web:&prod:!web03")``. Raises InventoryError if a
    pattern matches nothing or the whole limit selects no host.
    """
    if limit is None or not limit.strip():
        return inventory.hosts
    included: set[str] | None = None
    required: list[set[str]] = []
    excluded: set[str] = set()
    problems = []
    for pattern in expand_limit_files(split_limit(limit)):
        operator, body = (pattern[0], pattern[1:].strip()) if pattern[0] in "!&" else ("", pattern)
        if not body:
            problems.append(f"--limit: {pattern!r} needs a host or group name after {operator!r}")
            continue
        try:
            names = matching_hosts(inventory, body)
        except re.error as exc:
            problems.append(f"--limit: {pattern!r} is not a valid regular expression: {exc}")
            continue
        if not names:
            problems.append(f"--limit: {pattern!r} matches no host or group in {_source(inventory)}")
        elif operator == "!":
            excluded |= names
        elif operator == "&":
            required.append(names)
        else:
            included = names if included is None else included | names
    if problems:
        raise InventoryError(problems, hint=_known_groups_hint(inventory))
    # Only '&' and '!' patterns: they act on every host, as in Ansible.
    selected = {host.name for host in inventory.hosts} if included is None else included
    for names in required:
        selected &= names
    selected -= excluded
    chosen = tuple(host for host in inventory.hosts if host.name in selected)
    if not chosen:
        raise InventoryError(
            [f"--limit: {limit!r} leaves no host to diagnose"], hint=_known_groups_hint(inventory)
        )
    return chosen


def _source(inventory: Inventory) -> str:
    return str(inventory.path) if inventory.path is not None else "the inventory"


def _known_groups_hint(inventory: Inventory) -> str:
    groups = [name for name, names in inventory.groups.items() if name not in (ALL, UNGROUPED) and names]
    if not groups:
        return "patterns are host names, globs like 'web*', '&group' and '!group'"
    shown = ", ".join(groups[:_MAX_GROUPS_IN_HINT]) + (", ..." if len(groups) > _MAX_GROUPS_IN_HINT else "")
    return f"groups in {_source(inventory)}: {shown}"
