"""Ansible INI inventories, read into the same document shape as a YAML inventory.

Mirrors ansible-core's ``plugins/inventory/ini.py``: ``[group]``, ``[group:vars]`` and
``[group:children]`` sections, hosts before any section are ungrouped, a host line is
``name[:port] key=value ...`` split like a shell line with ``#`` comments, and every
value goes through ``ast.literal_eval`` (``ansible_port=22`` is a number, ``'x'`` a
string, anything it cannot read stays the text as written). The result is handed
to the YAML walker, so both formats share one set of checks and one precedence.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

_COMMENT = (";", "#")
# As Ansible's INI plugin: only a '#' comment may follow a section header ('; x' there is refused).
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
# A host line, not a section: Ansible reads "[2001:db8::10]:2222 ansible_user=x" as an IPv6 host and port.
_BRACKETED_HOST = re.compile(r"^\[[0-9A-Fa-f:.%]*:[0-9A-Fa-f:.%]*\]:[0-9]+(?:\s|$)")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:[#;].*)?$")


@dataclass
class IniDocument:
    """The inventory as ``{group: {"hosts": ..., "vars": ..., "children": ...}}``, plus problems."""

    groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Every header and line as (group, section, entries), in file order: Ansible applies them so.
    lines: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    # Groups named in a [parent:children] section before their own: parents waiting for them.
    waiting: dict[str, list[str]] = field(default_factory=dict)

    def group(self, name: str) -> dict[str, dict[str, Any]]:
        """The named group's body, created on first mention."""
        return self.groups.setdefault(name, {"hosts": {}, "vars": {}, "children": {}})

    def add(self, group: str, section: str | None, entries: dict[str, Any]) -> None:
        """Record one line's entries (or, with no section, a header) in both views."""
        body = self.group(group)
        if section is not None:
            for key, value in entries.items():
                if section == "hosts" and body["hosts"].get(key):
                    body["hosts"][key] = {**body["hosts"][key], **(value or {})} or None
                else:
                    body[section][key] = value
        self.lines.append((group, section, entries))


def parse_value(text: str) -> Any:
    """A value as Ansible's INI plugin reads it: a Python literal if it is one, else the text.

    >>> parse_value("2222"), parse_value("'x y'"), parse_value("yes")
    (2222, 'x y', 'yes')
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(value, (bytes, complex, set)) or value is Ellipsis:
        return text
    return value


def read_ini(text: str) -> IniDocument:
    """Parse INI inventory text; problems name the line and never quote a value."""
    doc = IniDocument()
    declared: set[str] = {"all", "ungrouped"}
    pending: dict[str, tuple[int, str]] = {}  # group -> (line, how it was referred to)
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT):
            continue
        section = None if _BRACKETED_HOST.match(line) else _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "vars", "children"):
                doc.problems.append(f"line {number}: section [{group}:{state}] has unknown type {state!r}")
                state = "skip"
                continue
            if state != "vars":
                declared.add(group)
                pending.pop(group, None)
            elif group not in declared:
                pending.setdefault(group, (number, f"[{group}:vars]"))
            doc.add(group, None, {})
            if state != "vars":  # as Ansible: a child named before its own section joins its parents now
                for parent in doc.waiting.pop(group, []):
                    doc.add(parent, "children", {group: None})
            continue
        if line.startswith("[") and not _BRACKETED_HOST.match(line):
            doc.problems.append(f"line {number}: invalid section header; write [group], [group:vars] or [group:children]")
            state = "skip"
            continue
        if state == "hosts":
            _read_host_line(doc, group, line, number)
        elif state == "vars":
            _read_var_line(doc, group, line, number)
        elif state == "children":
            _read_child_line(doc, group, line, number, declared, pending)
    for name, (number, where) in pending.items():
        doc.problems.append(f"line {number}: {where} refers to group {name!r}, which is never declared")
    return doc


def _read_host_line(doc: IniDocument, group: str, line: str, number: int) -> None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        doc.problems.append(f"line {number}: host line cannot be split ({exc})")
        return
    if not words:
        return
    host, variables = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            doc.problems.append(f"line {number}: expected key=value after the host name, got a word without '='")
            return
        variables[key] = parse_value(value)
    doc.add(group, "hosts", {host: variables or None})


def _read_var_line(doc: IniDocument, group: str, line: str, number: int) -> None:
    key, sep, value = line.partition("=")
    if not sep or not key.strip():
        doc.problems.append(f"line {number}: expected key=value in [{group}:vars]")
        return
    doc.add(group, "vars", {key.strip(): parse_value(value.strip())})


def _read_child_line(
    doc: IniDocument, group: str, line: str, number: int, declared: set[str], pending: dict[str, tuple[int, str]]
) -> None:
    child = _GROUP_NAME.match(line)
    if child is None:
        doc.problems.append(f"line {number}: expected a group name in [{group}:children]")
        return
    name = child.group(1)
    if name in doc.groups or name in ("all", "ungrouped"):
        doc.add(group, "children", {name: None})
    else:
        doc.waiting.setdefault(name, []).append(group)
    if name not in declared:
        pending.setdefault(name, (number, f"[{group}:children]"))


def as_yaml_document(doc: IniDocument) -> list[tuple[str, Any]]:
    """The lines as (group, body) pairs in file order, the shape the YAML walker reads one at a time.

    Hosts before any section go to 'ungrouped', as Ansible's INI plugin puts them; a host's
    variables from a later line override an earlier line's, whichever groups they are under.
    """
    return [(group, {section: entries} if section else None) for group, section, entries in doc.lines]
