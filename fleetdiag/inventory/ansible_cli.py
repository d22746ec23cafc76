"""The inventory through ansible's own commands, when ansible-core is on PATH but not importable here.

``ansible-inventory -i INV --list`` gives the hosts, groups and merged variables (every
plugin, vars files, whole vault-encrypted files opened with the vault options); ``ansible
-i INV all --limit PATTERN --list-hosts`` selects as Ansible does. ``--list`` does not
render templates or open ``!vault`` values: templates of plain references are rendered
as the built-in reader does, and anything beyond (or a vaulted connection variable) is
refused with the advice to install ansible-core beside fleetdiag.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fleetdiag.errors import InventoryError
from fleetdiag.inventory.ansible_core import VaultOptions
from fleetdiag.inventory.ansible_yaml import ALL, GroupDraft
from fleetdiag.inventory.names import host_problem
from fleetdiag.inventory.precedence import group_hosts, host_spec
from fleetdiag.inventory.schema import IGNORED_PASSWORDS, UNDERSTOOD_VARS, ignored_password_warning, validate_vars
from fleetdiag.inventory.secret_values import VaultEncrypted, conceal, redact
from fleetdiag.inventory.templates import TemplateProblem, magic_vars, render
from fleetdiag.model import frozen_map

ADVICE = "read with ansible-inventory; install ansible-core in fleetdiag's Python for vault values and any template"
TIMEOUT_S = 600  # a cloud inventory may take minutes; a hung script must not hang fleetdiag forever
_VAULT = "__ansible_vault"


def ansible_inventory_command() -> str | None:
    """The ansible-inventory on PATH, if there is one."""
    return shutil.which("ansible-inventory")


@contextlib.contextmanager
def _vault_args(vault: VaultOptions | None) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """Ansible's vault options; a prompted password goes through a pipe, never argv or a file."""
    args = [arg for path in (vault.password_files if vault else ()) for arg in ("--vault-password-file", path)]
    if vault is None or vault.password is None:
        yield args, ()
        return
    read_end, write_end = os.pipe()
    os.write(write_end, vault.password.encode("utf-8") + b"\n")
    os.close(write_end)
    try:
        yield [*args, "--vault-password-file", f"/dev/fd/{read_end}"], (read_end,)
    finally:
        os.close(read_end)


def _run(argv: list[str], vault: VaultOptions | None, what: str) -> subprocess.CompletedProcess:
    with _vault_args(vault) as (args, fds):
        try:
            return subprocess.run(
                [*argv, *args], capture_output=True, text=True, timeout=TIMEOUT_S, pass_fds=fds,
                env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InventoryError([f"{what}: {argv[0]} did not finish: {exc}"], hint=ADVICE) from None


def _messages(stderr: str, kind: str) -> list[str]:
    """Ansible's ``[WARNING]: x`` / ``[ERROR]: x`` (or ``ERROR! x``) lines, as text."""
    found = []
    for line in stderr.splitlines():
        text = line.strip()
        for prefix in (f"[{kind}]:", f"{kind}!"):
            if text.upper().startswith(prefix):
                found.append(text[len(prefix) :].strip())
    return found


def load_with_ansible_cli(path: str | Path, vault: VaultOptions | None = None) -> Any:
    """The inventory as ``ansible-inventory --list`` reads ``path``."""
    from fleetdiag.inventory.loader import Inventory

    shown = str(path)
    command = ansible_inventory_command()
    if command is None:
        raise InventoryError([f"{shown}: ansible-inventory is not on PATH"], hint=ADVICE)
    done = _run([command, "-i", shown, "--list"], vault, shown)
    warnings = _messages(done.stderr, "WARNING")
    if done.returncode != 0:
        errors = _messages(done.stderr, "ERROR") or done.stderr.strip().splitlines()[-1:] or ["ansible-inventory failed"]
        raise InventoryError([f"{shown}: {line}" for line in errors], hint=ADVICE)
    noise = ("Unable to parse ", "No inventory was parsed")
    if any(line.startswith(noise) for line in warnings) and '"hosts"' not in done.stdout:
        reasons = [line for line in warnings if not line.startswith(noise)] or warnings
        raise InventoryError([f"{shown}: {line.replace(shown, '').strip()}" for line in reasons], hint=ADVICE)
    listed = json.loads(done.stdout)
    hostvars: Mapping[str, Mapping[str, Any]] = listed.get("_meta", {}).get("hostvars", {})
    groups = _groups(listed)
    members = {name: tuple(group_hosts(name, groups)) for name in groups}
    specs, problems, secrets = [], [], []
    for name in members[ALL]:
        host_groups = {group for group, hosts in members.items() if name in hosts}
        spec = _host(name, hostvars.get(name, {}), host_groups, shown, problems, secrets, warnings)
        if spec is not None:
            specs.append(spec)
    if problems:
        raise InventoryError(redact(problems, secrets), hint=ADVICE)
    if not specs:
        warnings.append("the inventory defines no hosts")
    return Inventory(
        path=Path(path), hosts=tuple(specs), groups=frozen_map(members),
        warnings=tuple(f"{shown}: {line}" for line in warnings), selector=_Selector(command, shown, vault, warnings),
    )  # fmt: skip


def _groups(listed: Mapping[str, Any]) -> dict[str, GroupDraft]:
    """The --list groups as drafts holding what Ansible's host order needs: own hosts and children in order."""
    groups = {ALL: GroupDraft(ALL), "ungrouped": GroupDraft("ungrouped")}
    for name, body in listed.items():
        if name == "_meta" or not isinstance(body, Mapping):
            continue
        group = groups.setdefault(name, GroupDraft(name))
        group.hosts = list(body.get("hosts", []))
        group.children = list(body.get("children", []))
        for child in group.children:
            groups.setdefault(child, GroupDraft(child)).parents.append(name)
    return groups


def _host(
    name: str, variables: Mapping[str, Any], member_of: set[str], shown: str,
    problems: list[str], secrets: list[str], warnings: list[str],
) -> Any:  # fmt: skip
    """One host's HostSpec from its merged --list variables; None (problems noted) if it cannot be used."""
    if (problem := host_problem(name)) is not None:
        problems.append(f"{shown}: {problem}")
        return None
    for password in sorted(IGNORED_PASSWORDS & variables.keys()):
        warnings.append(ignored_password_warning(f"{name}.{password}"))
    context = {**variables, **magic_vars(name, tuple(sorted(member_of - {ALL})))}
    understood: dict[str, Any] = {}
    for variable in UNDERSTOOD_VARS & variables.keys():
        value = variables[variable]
        if isinstance(value, Mapping) and _VAULT in value:
            problems.append(f"{shown}: {name}.{variable}: a vault-encrypted value; {ADVICE}")
            continue
        try:
            understood[variable] = render(value, context)
        except TemplateProblem as exc:
            problems.append(f"{shown}: {name}.{variable}: {str(exc).split('; ')[0]}; {ADVICE}")
    found: list[str] = []
    settings = validate_vars(understood, name, found, defer_templates=False)
    problems.extend(f"{shown}: {line}" for line in found)
    other = {
        variable: VaultEncrypted(value[_VAULT]) if isinstance(value, Mapping) and _VAULT in value else conceal(variable, value)
        for variable, value in variables.items()
        if variable not in UNDERSTOOD_VARS and variable not in IGNORED_PASSWORDS
    }
    return host_spec(name, settings, other, member_of | {ALL}) if not found else None


class _Selector:
    """--limit through ``ansible -i INV all --limit PATTERN --list-hosts``: Ansible's own selection."""

    def __init__(self, command: str, source: str, vault: VaultOptions | None, load_warnings: list[str]) -> None:
        self.ansible = str(Path(command).with_name("ansible"))
        self.source, self.vault = source, vault
        self.load_warnings = set(load_warnings)  # said once already, when the inventory was read

    def __call__(self, limit: str) -> tuple[list[str], list[str]]:
        done = _run([self.ansible, "-i", self.source, "all", "--limit", limit, "--list-hosts"], self.vault, "--limit")
        warnings = [f"--limit: {line}" for line in _messages(done.stderr, "WARNING") if line not in self.load_warnings]
        if done.returncode != 0:
            errors = _messages(done.stderr, "ERROR") or ["ansible --list-hosts failed"]
            raise InventoryError([*warnings, *(f"--limit: {line}" for line in errors)])
        lines = [line.strip() for line in done.stdout.splitlines()]
        names = [line for line in lines[1:] if line] if lines and lines[0].startswith("hosts (") else []
        return names, warnings
