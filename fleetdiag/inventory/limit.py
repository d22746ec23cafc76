"""Ansible ``--limit`` patterns: names, groups, globs, ``~regex``, ``&`` intersection, ``!`` exclusion,
``group[0:2]`` subscripts and ``@file``, selected as ansible-core's InventoryManager selects.

As in Ansible, a pattern that matches nothing is a warning and the rest goes on (a limit
that leaves no host at all is an error). Two of Ansible's readings are hazards and are
refused instead: a bracket left unbalanced in a ':'-separated limit (Ansible drops it, so
``~[`` becomes ``~``, every host), and ``!`` or ``&`` before an IPv6 address (Ansible splits
the address at its colons).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_yaml import ALL, UNGROUPED
from fleetdiag.inventory.host_patterns import is_ipv6
from fleetdiag.inventory.limit_address import is_one_address
from fleetdiag.inventory.loader import Inventory
from fleetdiag.model import HostSpec

log = logging.getLogger("fleetdiag.inventory")

# Ansible's PATTERN_WITH_SUBSCRIPT: a pattern followed by [index], [start:end] or the old [start-end].
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
# One pattern of a ':'-separated limit: runs of anything but whitespace, ':' and brackets, or [whole].
_OLD_RANGE = re.compile(r"\[[0-9]+-[0-9]*\]$")
_COLON_PART = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_HOST_ONLY_CHARS = (".", "?", "*", "[")  # with these, a pattern is tried against hosts even when a group matched
_LOCALHOST = ("localhost", "127.0.0.1", "::1")  # Ansible's implicit localhost: no warning, no host
_MAX_GROUPS_IN_HINT = 12


@dataclass(frozen=True)
class Selection:
    """The hosts a --limit selects, in inventory order, and what Ansible would have warned about."""

    hosts: tuple[HostSpec, ...]
    warnings: tuple[str, ...] = ()


def split_limit(limit: str) -> list[str]:
    """The patterns of a --limit as Ansible splits it, e.g. ``web:&prod:!web03`` -> web, &prod, !web03.

    With a comma, on commas only; else whole if it reads as one host (``web[01:03]``,
    ``2001:db8::10``), else on ':' and whitespace outside brackets.
    """
    if "," in limit:
        pieces = limit.split(",")
    elif is_one_address(limit.strip()) or is_ipv6(limit.strip().lstrip("!&")):
        pieces = [limit]
    else:
        pieces = _COLON_PART.findall(limit)
        kept = "".join(pieces)
        dropped = kept.count("[") != limit.count("[") or kept.count("]") != limit.count("]")
        if dropped:
            raise InventoryError(
                [f"--limit: {limit!r} has an unbalanced '[' or ']'"],
                hint="Ansible would drop it and read the rest ('~[' would select every host); "
                "close the bracket, or separate patterns with commas",
            )
    return [piece.strip() for piece in pieces if piece.strip()]


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


def _matches(pattern: str) -> Callable[[str], bool]:
    """A name test as Ansible's _match_list: ``~`` a regex matched at the start, else a glob, both case-sensitive."""
    if pattern.startswith("~"):
        regex = re.compile(pattern[1:])
        return lambda name: regex.match(name) is not None
    regex = re.compile(fnmatch.translate(pattern))
    return lambda name: regex.match(name) is not None


def matching_hosts(inventory: Inventory, pattern: str) -> tuple[list[str], bool]:
    """The hosts one bare pattern selects in Ansible's order, and whether it matched anything at all.

    A pattern naming a group selects the group's hosts; hosts are tried too when no group
    matched or the pattern is a glob or regex. ``web[0]``/``web[1:3]`` index the result.
    """
    expression, subscript = _split_subscript(pattern)
    test = _matches(expression)
    names: list[str] = []
    groups = [name for name in inventory.groups if test(name)]
    for group in groups:
        names.extend(inventory.groups[group])
    if not groups or expression.startswith("~") or any(char in expression for char in _HOST_ONLY_CHARS):
        created = inventory.creation_order or tuple(host.name for host in inventory.hosts)
        names.extend(name for name in created if test(name))
    if not names and expression in _LOCALHOST:  # Ansible's get_host: the inventory's first localhost
        names = [host.name for host in inventory.hosts if host.name in _LOCALHOST][:1]
    names = list(dict.fromkeys(names))
    matched = bool(names or groups)
    if subscript is None or not names:
        return names, matched
    start, end = subscript
    if end:  # as Ansible: an end of 0 means none, a missing end (-1) the last host
        return names[start : (len(names) if end == -1 else end + 1)], matched
    if not -len(names) <= start < len(names):
        raise InventoryError([f"--limit: no host matched the subscripted pattern {pattern!r}"])
    return [names[start]], matched


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """``web[0]`` -> (web, (0, None)); ``web[1:3]`` -> (web, (1, 3)) inclusive; ``web[1:]`` -> (web, (1, -1))."""
    match = None if pattern.startswith("~") else _SUBSCRIPT.match(pattern)
    if match is None:
        return pattern, None
    base, index, start, _separator, end = match.groups()
    if index is not None:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[HostSpec, ...]:
    """The hosts a --limit selects, in inventory order; all of them for None or "".

    Example: ``select_hosts(inv, "web:&prod:!web03")``. Warnings (a pattern matching
    nothing) go to the ``fleetdiag.inventory`` logger; see ``select_with_warnings``.
    """
    selection = select_with_warnings(inventory, limit)
    for warning in selection.warnings:
        log.warning("%s", warning)
    return selection.hosts


def select_with_warnings(inventory: Inventory, limit: str | None) -> Selection:
    """The hosts a --limit selects and Ansible's warnings; InventoryError if it leaves no host."""
    if limit is None or not limit.strip():
        return Selection(inventory.hosts)
    patterns = split_limit(limit)  # refuses '~[' whichever reader selects
    for pattern in patterns:
        if pattern in ("!", "&"):  # ansible-core fails on these with a traceback
            raise InventoryError([f"--limit: {pattern!r} needs a host or group name after {pattern!r}"])
    if inventory.selector is not None:
        # Rejoined with commas, Ansible splits it exactly so: '!2001:db8::10' stays one pattern.
        names, warnings = inventory.selector(",".join(patterns) + ("," if len(patterns) == 1 else ""))
    else:
        names, warnings = _evaluate(inventory, expand_limit_files(patterns))
    chosen_names = set(names)
    chosen = tuple(host for host in inventory.hosts if host.name in chosen_names)
    if not chosen:
        lines = [*warnings, f"--limit: {limit!r} leaves no host to diagnose"]
        raise InventoryError(lines, hint=_known_groups_hint(inventory))
    return Selection(chosen, tuple(warnings))


def _evaluate(inventory: Inventory, patterns: list[str]) -> tuple[list[str], list[str]]:
    """Ansible's _evaluate_patterns: plain patterns, then every '&', then every '!'."""
    plain = [p for p in patterns if p[0] not in "!&"] or [ALL]
    ordered = plain + [p for p in patterns if p[0] == "&"] + [p for p in patterns if p[0] == "!"]
    known = {host.name for host in inventory.hosts}
    selected: dict[str, None] = {}  # ordered, and fast to test
    warnings: list[str] = []
    for pattern in ordered:
        if pattern in known:  # a plain host name is that host, even where a group has its name
            selected.setdefault(pattern)
            continue
        operator, body = (pattern[0], pattern[1:]) if pattern[0] in "!&" else ("", pattern)
        if not body:
            raise InventoryError([f"--limit: {pattern!r} needs a host or group name after {operator!r}"])
        try:
            names, matched = matching_hosts(inventory, body)
        except re.error as exc:
            raise InventoryError([f"--limit: {pattern!r} is not a valid regular expression: {exc}"]) from None
        if _OLD_RANGE.search(body) and not body.startswith("~"):
            warnings.append(f"--limit: {body!r}: use [x:y] inclusive subscripts instead of [x-y], which Ansible removed")
        if not matched and body != ALL:
            expression = _split_subscript(body)[0]
            if expression not in _LOCALHOST:
                warnings.append(f"--limit: could not match supplied host pattern, ignoring: {expression}")
        if operator == "!":
            drop = set(names)
            selected = {name: None for name in selected if name not in drop}
        elif operator == "&":
            keep = set(names)
            selected = {name: None for name in selected if name in keep}
        else:
            for name in names:
                selected.setdefault(name)
    return list(selected), list(dict.fromkeys(warnings))  # Ansible's display says each once


def _source(inventory: Inventory) -> str:
    return str(inventory.path) if inventory.path is not None else "the inventory"


def _known_groups_hint(inventory: Inventory) -> str:
    groups = [name for name, names in inventory.groups.items() if name not in (ALL, UNGROUPED) and names]
    if not groups:
        return "patterns are host names, globs like 'web*', '&group' and '!group'"
    shown = ", ".join(groups[:_MAX_GROUPS_IN_HINT]) + (", ..." if len(groups) > _MAX_GROUPS_IN_HINT else "")
    return f"groups in {_source(inventory)}: {shown}"
