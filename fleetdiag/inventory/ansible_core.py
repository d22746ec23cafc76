"""The inventory as ansible-core itself reads it, in-process: every inventory plugin, vault, templates.

``load_with_ansible("hosts.yaml", vault)`` parses through Ansible's InventoryManager and
VariableManager (group_vars/, host_vars/ and vars plugins included), renders the
connection variables fleetdiag uses with Ansible's Templar, and maps them into
HostSpecs through the same validation as the built-in reader. ``--limit`` is then
resolved by Ansible's own ``subset``/``get_hosts``. Ansible's warnings are collected,
never printed; its errors become InventoryError lines naming the file and line.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.names import host_problem
from fleetdiag.inventory.precedence import host_spec
from fleetdiag.inventory.schema import IGNORED_PASSWORDS, UNDERSTOOD_VARS, ignored_password_warning, validate_vars
from fleetdiag.inventory.secret_values import VaultEncrypted, conceal, is_secret_name, redact
from fleetdiag.model import HostSpec, frozen_map

ADVICE = "this inventory was read by ansible-core (--inventory-reader ansible)"
# Variables Ansible adds to every host's vars that no inventory wrote.
_MAGIC_VARS = frozenset(
    {
        "ansible_config_file", "ansible_facts", "ansible_playbook_python", "ansible_version", "group_names",
        "groups", "inventory_dir", "inventory_file", "inventory_hostname", "inventory_hostname_short",
        "playbook_dir", "omit", "ansible_check_mode", "ansible_diff_mode", "ansible_forks",
        "ansible_inventory_sources", "ansible_verbosity", "ansible_run_tags", "ansible_skip_tags",
        "ansible_limit",
    }
)  # fmt: skip


@dataclass(frozen=True)
class VaultOptions:
    """How to open vault-encrypted values: password files, and/or a password typed at a prompt."""

    password_files: tuple[str, ...] = ()
    password: str | None = None  # from --ask-vault-pass; never logged or saved


def ansible_core_available() -> bool:
    """Whether ansible-core can be imported here (its InventoryManager is what the reader uses)."""
    try:
        return importlib.util.find_spec("ansible.inventory.manager") is not None
    except (ImportError, ValueError):
        return False


class _Collected:
    """Ansible's warnings and errors, caught instead of printed (the library never prints)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *_args: Any, **_kwargs: Any) -> None:
        text = " ".join(str(msg).split())
        if text not in self.warnings:  # Ansible's display deduplicates too
            self.warnings.append(text)

    def error_as_warning(self, msg: str | None, exception: BaseException, *_args: Any, **_kwargs: Any) -> None:
        self.warning(f"{msg + ' ' if msg else ''}{_one_line(exception)}")

    def deprecated(self, msg: str, *_args: Any, **_kwargs: Any) -> None:
        self.warning(f"deprecated: {msg}")


@contextlib.contextmanager
def _caught_display() -> Iterator[_Collected]:
    """Route Ansible's Display warnings into a list for the duration (Display is a singleton)."""
    from ansible.utils.display import Display

    display = Display()
    collected = _Collected()
    names = ("warning", "error_as_warning", "deprecated")
    saved = {name: display.__dict__.get(name) for name in names}
    for name in names:
        setattr(display, name, getattr(collected, name))
    try:
        yield collected
    finally:
        for name, value in saved.items():
            if value is None:
                display.__dict__.pop(name, None)
            else:
                setattr(display, name, value)


def _one_line(exc: BaseException) -> str:
    """An Ansible exception's message on one line, without the source excerpt it may quote."""
    message = getattr(exc, "message", None) or str(exc)
    first = str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in first:
        first += f": {str(cause).strip().splitlines()[0]}"
    return " ".join(first.split())


_plugin_loader_ready = False


def _init_plugin_loader() -> None:
    """Ansible's collection loader, as its CLI sets it up once: plugins named ansible.builtin.* need it."""
    global _plugin_loader_ready
    if not _plugin_loader_ready:
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader()
        _plugin_loader_ready = True


def _vault_secrets(loader: Any, vault: VaultOptions | None) -> None:
    """Give the loader (and Ansible's ambient context) the vault secrets, as ansible's CLI does."""
    from ansible.parsing.vault import VaultSecret, VaultSecretsContext, get_file_vault_secret

    secrets: list[tuple[str, Any]] = []
    problems = []
    for password_file in (vault.password_files if vault else ()):
        try:
            secret = get_file_vault_secret(filename=password_file, vault_id="default", loader=loader)
            secret.load()
        except Exception as exc:  # AnsibleError, or an OSError from a password script
            problems.append(f"--vault-password-file {password_file}: {_one_line(exc)}")
            continue
        secrets.append(("default", secret))
    if vault is not None and vault.password is not None:
        secrets.append(("default", VaultSecret(vault.password.encode("utf-8"))))
    if problems:
        raise InventoryError(problems, hint="give a readable vault password file, or --ask-vault-pass")
    loader.set_vault_secrets(secrets)
    # Ansible sets this once per process in its CLI; a library may read several inventories.
    VaultSecretsContext._current = VaultSecretsContext(secrets)


def load_with_ansible(path: str | Path, vault: VaultOptions | None = None) -> Any:
    """The inventory as ansible-core reads ``path`` (a file, directory, script or plugin config)."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    from fleetdiag.inventory.loader import Inventory

    shown = str(path)
    if not Path(path).exists() and "," not in shown:
        raise InventoryError([f"{shown}: file not found"], hint="check the path given with -i")
    with _caught_display() as display:
        try:
            _init_plugin_loader()
            loader = DataLoader()
            _vault_secrets(loader, vault)
            manager = InventoryManager(loader=loader, sources=[shown])
            if not manager._inventory.processed_sources:
                # Ansible's own reasons first; its closing "unable to parse" lines say nothing more.
                noise = ("Unable to parse ", "No inventory was parsed")
                problems = [line for line in display.warnings if not line.startswith(noise)] or display.warnings
                problems = problems or ["not an inventory Ansible can read"]
                raise InventoryError([f"{shown}: {line.replace(shown, '').strip()}" for line in problems], hint=ADVICE)
            variables = VariableManager(loader=loader, inventory=manager)
            hosts, problems, secrets = _host_specs(manager, variables, loader, shown, display.warning)
        except AnsibleError as exc:
            raise InventoryError([f"{shown}: {_one_line(exc)}"], hint=ADVICE) from None
    if problems:
        raise InventoryError(redact(problems, secrets), hint=ADVICE)
    groups = {name: tuple(host.name for host in group.get_hosts()) for name, group in manager.groups.items()}
    if not hosts:
        display.warning("the inventory defines no hosts")  # as the built-in reader says
    warnings = tuple(f"{shown}: {warning}" for warning in display.warnings)
    return Inventory(
        path=Path(path), hosts=hosts, groups=frozen_map(groups), warnings=warnings, selector=_Selector(manager)
    )


class _Selector:
    """--limit through Ansible's own ``subset`` and ``get_hosts('all')``: its names, and its warnings."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def __call__(self, limit: str) -> tuple[list[str], list[str]]:
        from ansible.errors import AnsibleError

        with _caught_display() as display:
            try:
                self.manager.clear_caches()  # one limit per run, as on Ansible's command line
                self.manager.subset(limit)
                names = [host.name for host in self.manager.get_hosts("all")]
            except AnsibleError as exc:
                raise InventoryError([f"--limit: {_one_line(exc)}"]) from None
            finally:
                self.manager.subset(None)
        return names, [f"--limit: {warning}" for warning in display.warnings]


def _host_specs(
    manager: Any, variables: Any, loader: Any, shown: str, warn: Any
) -> tuple[tuple[HostSpec, ...], list[str], list[str]]:
    """Each host's HostSpec from its Ansible vars (templated), problems, and secret values seen."""
    from ansible.template import Templar

    specs, problems, secrets = [], [], []
    for host in manager.get_hosts("all"):
        name_problem = host_problem(host.name)  # as the built-in reader: a name may become the address
        if name_problem is not None:
            problems.append(f"{shown}: {name_problem}")
            continue
        merged = variables.get_vars(host=host, include_hostvars=False, stage="all")
        for name in sorted(IGNORED_PASSWORDS & merged.keys()):
            warn(ignored_password_warning(f"{host.name}.{name}"))
        templar = None
        understood: dict[str, Any] = {}
        where: dict[str, str] = {}
        for name in UNDERSTOOD_VARS & merged.keys():
            value = merged[name]
            where[name] = _origin(value, shown)
            try:
                if _needs_templar(value):  # most hosts have none: a Templar per host would double the time
                    templar = templar or Templar(loader=loader, variables=merged)
                    value = templar.template(value)
                understood[name] = _plain(value, decrypt=True)
                if type(merged[name]).__name__ == "EncryptedString" and isinstance(understood[name], str):
                    secrets.append(understood[name])  # it was vaulted: never in a message
            except Exception as exc:  # AnsibleUndefinedVariable, a template syntax error, a vault failure
                problems.append(f"{where[name]}: {host.name}.{name}: {_one_line(exc)}")
        for name, value in understood.items():
            if isinstance(value, str) and is_secret_name(name):
                secrets.append(value)
        found: list[str] = []
        settings = validate_vars(understood, host.name, found, defer_templates=False)
        for line in found:
            name = line[len(host.name) + 1 :].split(":", 1)[0].split(".", 1)[0]
            problems.append(f"{where.get(name, shown)}: {line}")
        other = {
            name: conceal(name, _plain(value, decrypt=False))
            for name, value in merged.items()
            if name not in UNDERSTOOD_VARS and name not in _MAGIC_VARS and name not in IGNORED_PASSWORDS
        }
        member_of = {group.name for group in host.get_groups()}
        specs.append(host_spec(host.name, settings, other, member_of | {"all"}))
    return tuple(specs), problems, secrets


def _needs_templar(value: Any) -> bool:
    """Whether Ansible would render or decrypt this value when it is used."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value or type(value).__name__ == "EncryptedString"
    return isinstance(value, (Mapping, list, tuple)) or type(value).__name__ == "EncryptedString"


def _origin(value: Any, shown: str) -> str:
    """``file: line N`` where Ansible saw the value (its data tags say), else the inventory as given."""
    try:
        from ansible._internal._datatag._tags import Origin

        origin = Origin.get_tag(value)
    except Exception:  # a private module that may move between ansible-core releases
        origin = None
    if origin is None or not origin.path:
        return shown
    return f"{origin.path}: line {origin.line_num}" if origin.line_num else str(origin.path)


def _plain(value: Any, decrypt: bool) -> Any:
    """Ansible's tagged values as plain Python ones; vault values stay opaque unless ``decrypt``."""
    from ansible.parsing.vault import EncryptedString

    if isinstance(value, EncryptedString):
        if decrypt:
            return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
        return VaultEncrypted(value._ciphertext if hasattr(value, "_ciphertext") else "")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    if isinstance(value, Mapping):
        return frozen_map({str(key): _plain(inner, decrypt) for key, inner in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item, decrypt) for item in value)
    return value
