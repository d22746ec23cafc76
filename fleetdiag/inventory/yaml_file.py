"""Reading the inventory file: its text, YAML with Ansible's tags, and one-line errors.

YAML errors are rebuilt from their position and problem only: PyYAML's own message
quotes the offending line, which may hold a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.secret_values import VaultEncrypted

FORMAT_HINT = "see inventory.example.yaml for the format"
INI_SECTION = re.compile(r"^\s*\[[^\]\n]+\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed inventory file: the document, and what was odd but not wrong."""

    document: Any
    warnings: tuple[str, ...]
    looks_like_ini: bool


class _InventoryLoader(yaml.SafeLoader):
    """SafeLoader that knows Ansible's ``!vault`` and ``!unsafe`` tags and notes duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable; the base class reports it
                continue
            if duplicate:
                # Ansible warns and keeps the later value; so do we, loudly.
                self.duplicate_keys.append(
                    f"line {key_node.start_mark.line + 1}: duplicate key {str(key)!r}; "
                    "the later one replaces the earlier one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultEncrypted:
    return VaultEncrypted(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # Ansible's "do not template this" marker; fleetdiag never templates, so it is plain data.
    if isinstance(node, yaml.ScalarNode):
        return str(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_InventoryLoader.add_constructor("!vault", _construct_vault)
_InventoryLoader.add_constructor("!unsafe", _construct_unsafe)


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _FastInventoryLoader(CParser, _InventoryLoader):  # type: ignore[misc]
        """The same loader on libyaml's parser: a 200-host inventory in 2 ms instead of 15."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self.duplicate_keys = []

    _LOADERS: tuple[type, ...] = (_FastInventoryLoader, _InventoryLoader)
else:  # PyYAML built without libyaml
    _LOADERS = (_InventoryLoader,)


def read_text(path: Path, shown: str) -> str:
    """The file's text; an InventoryError saying what to do if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem, hint = "file not found", f"check the path given with -i; {FORMAT_HINT}"
    except IsADirectoryError:
        problem = "is a directory, not an inventory file"
        hint = "pass the YAML inventory file itself, e.g. -i inventory/hosts.yaml"
    except PermissionError:
        problem, hint = "permission denied", "make the file readable by the user running fleetdiag"
    except UnicodeDecodeError:
        problem, hint = "not UTF-8 text", "save the inventory as UTF-8 YAML"
    except OSError as exc:
        problem, hint = f"cannot be read: {exc.strerror or type(exc).__name__}", FORMAT_HINT
    raise InventoryError([f"{shown}: {problem}"], hint=hint)


def parse_yaml(text: str, shown: str) -> YamlDocument:
    """The YAML document in ``text``; an InventoryError with the line number if it is not YAML."""
    looks_like_ini = bool(INI_SECTION.search(text))
    try:
        document, duplicate_keys = _load(_LOADERS[0], text)
    except yaml.YAMLError as exc:
        # libyaml words its errors differently from PyYAML: PyYAML's own parser says what is
        # wrong, the same on every machine (if it somehow accepts the text, libyaml's word stands).
        error = exc
        for loader_class in _LOADERS[1:]:
            try:
                _load(loader_class, text)
            except yaml.YAMLError as again:
                error = again
        raise InventoryError([f"{shown}: {_describe_yaml_error(error)}"], hint=FORMAT_HINT) from None
    warnings = tuple(f"{shown}: {warning}" for warning in duplicate_keys)
    return YamlDocument(document, warnings, looks_like_ini)


def _load(loader_class: type, text: str) -> tuple[Any, list[str]]:
    loader = loader_class(text)
    try:
        return loader.get_single_data(), loader.duplicate_keys
    finally:
        loader.dispose()


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """``line 7, column 3: YAML syntax error: ...`` without the quoted source line."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return "YAML syntax error"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" started on line {exc.context_mark.line + 1}"
        what = f"{what} ({context})"
    return f"{where}YAML syntax error: {what}"
