"""``group_vars/`` and ``host_vars/`` beside the inventory, found and read as Ansible does.

Mirrors ansible-core's ``host_group_vars`` vars plugin: for a group or host NAME it reads
the first of ``group_vars/NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists,
and only that one; if it is a directory, every file in it without an extension or with
one of those (sorted, recursively into subdirectories without an extension, hidden files
and backups~ skipped). Later files win. Each mapping is validated like the inventory's own ``vars``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_yaml import InventoryDraft, describe_type, read_vars
from fleetdiag.inventory.yaml_file import parse_yaml, read_text

EXTENSIONS = ("", ".yml", ".yaml", ".json")
GROUP_VARS = "group_vars"
HOST_VARS = "host_vars"


def vars_files(directory: Path, name: str) -> list[Path]:
    """The files holding NAME's variables under DIRECTORY, in the order they apply."""
    for extension in EXTENSIONS:
        candidate = directory / f"{name}{extension}"
        if candidate.is_dir():
            return _files_below(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _files_below(folder: Path) -> list[Path]:
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir():
            if not entry.suffix:  # Ansible does not descend into conf.d/ and the like
                files.extend(_files_below(entry))
        elif entry.is_file() and entry.suffix in EXTENSIONS:
            files.append(entry)
    return files


def read_vars_dirs(draft: InventoryDraft, inventory: Path, shown: str) -> list[str]:
    """Fill the drafts' ``dir_settings``/``dir_other_vars``; returns problems, each naming its file."""
    base = inventory.parent
    shown_base = Path(shown).parent
    problems: list[str] = []
    for kind, entities in ((GROUP_VARS, draft.groups), (HOST_VARS, draft.hosts)):
        directory = base / kind
        if not directory.is_dir():
            continue
        for name, entity in entities.items():
            for path in vars_files(directory, name):
                shown_path = str(shown_base / path.relative_to(base))
                written = _read_mapping(path, shown_path, problems)
                known = len(draft.problems)
                settings, other_vars = read_vars(draft, written, shown_path) if written else ({}, {})
                # read_vars reports into the draft; these lines belong to the vars file instead.
                problems.extend(_as_file_problem(line, shown_path) for line in draft.problems[known:])
                del draft.problems[known:]
                entity.dir_settings.update(settings)
                entity.dir_other_vars.update(other_vars)
    return problems


def _as_file_problem(line: str, shown_path: str) -> str:
    """``group_vars/web.yml.ansible_port: msg`` -> ``group_vars/web.yml: ansible_port: msg``."""
    prefix = f"{shown_path}."
    return f"{shown_path}: {line[len(prefix):]}" if line.startswith(prefix) else line


def _read_mapping(path: Path, shown_path: str, problems: list[str]) -> Mapping[str, object] | None:
    try:
        parsed = parse_yaml(read_text(path, shown_path), shown_path)
    except InventoryError as exc:
        problems.extend(exc.problems)
        return None
    if parsed.document is None:
        return None
    if not isinstance(parsed.document, Mapping):
        problems.append(f"{shown_path}: must be a mapping of variables, got {describe_type(parsed.document)}")
        return None
    return {str(key): value for key, value in parsed.document.items()}
