"""The Ansible variables fleetdiag reads, as pydantic types; every other variable passes through.

Each ``vars`` mapping is validated where it is written (group vars, host vars), so a
problem is reported at the line the user must fix, before precedence merges them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from fleetdiag.inventory.names import host_problem, login_problem, template_problem
from fleetdiag.inventory.secret_values import VaultEncrypted
from fleetdiag.inventory.templates import Template, is_template
from fleetdiag.transport.ssh_args import SshArgsError, parse_ssh_args

# Ansible's module_utils.parsing.convert_bool sets, compared lower-cased.
_ANSIBLE_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_ANSIBLE_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})
# Ansible's paramiko and smart connections are ssh as far as fleetdiag is concerned.
_SSH_CONNECTIONS = frozenset({"paramiko", "paramiko_ssh", "smart"})
# Ansible's full plugin names (ansible.builtin.ssh) name the same connections.
_BUILTIN_PREFIXES = ("ansible.builtin.", "ansible.legacy.")


def _checked_by(problem_of: Callable[[str], str | None], error_type: str) -> AfterValidator:
    """A validator raising ``problem_of``'s one-line problem as a pydantic error."""

    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise PydanticCustomError(error_type, problem)
        return value

    return AfterValidator(check)


def _not_bool(value: Any) -> Any:
    # pydantic's lax int accepts True as 1; "ansible_port: yes" is a mistake, not port 1.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _ansible_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _ANSIBLE_TRUE:
            return True
        if word in _ANSIBLE_FALSE:
            return False
    raise PydanticCustomError(
        "ansible_boolean", "Input should be a boolean: yes/no, true/false, on/off or 1/0"
    )


def _short_connection_name(value: Any) -> Any:
    if isinstance(value, str):
        for prefix in _BUILTIN_PREFIXES:
            if value.startswith(prefix):
                return value[len(prefix) :]
    return value


def _number_as_text(value: Any) -> Any:
    # Ansible turns ansible_user: 1000 into the string "1000"; a boolean stays a mistake.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _ssh_unless_local(connection: str) -> str:
    return "ssh" if connection in _SSH_CONNECTIONS else connection


def _non_empty_path(path: str) -> str:
    if not path.strip():
        raise PydanticCustomError("empty_path", "key file path must not be empty")
    return os.path.expanduser(path)


_NoTemplate = _checked_by(template_problem, "template")


def _become_method(method: str) -> str:
    if method != "sudo":
        raise PydanticCustomError(
            "become_method",
            "fleetdiag becomes another user with sudo only; '{method}' is not supported (use sudo, or log in as root)",
            {"method": method if method.isidentifier() else "this method"},
        )
    return method


def _host_key_checking(value: Any) -> str:
    """ansible_host_key_checking: an Ansible boolean, or strict/accept-new/off."""
    if isinstance(value, str) and value.strip().lower() in ("strict", "accept-new", "off"):
        return value.strip().lower()
    return "strict" if _ansible_boolean(value) else "off"


def ssh_args_problem(text: str) -> str | None:
    """A problem if ssh common args cannot be honoured, or name a jump host ssh must not see."""
    try:
        parsed = parse_ssh_args(text)
    except SshArgsError as exc:
        return str(exc)
    for hop in parsed.jumps:
        problem = host_problem(hop.host, "jump host") or (hop.user and login_problem(hop.user, "jump user"))
        if problem:
            return problem
    return None

Port = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65535)]
HostAddress = Annotated[str, _checked_by(lambda text: host_problem(text, "host address"), "host_address")]
LoginName = Annotated[str, BeforeValidator(_number_as_text), _checked_by(login_problem, "login_name")]
KeyFile = Annotated[str, _NoTemplate, AfterValidator(_non_empty_path)]
AnsibleBool = Annotated[bool, BeforeValidator(_ansible_boolean)]
Connection = Annotated[
    Literal["ssh", "local", "paramiko", "paramiko_ssh", "smart"],
    BeforeValidator(_short_connection_name),
    AfterValidator(_ssh_unless_local),
]
SshArgs = Annotated[str, _NoTemplate, _checked_by(ssh_args_problem, "ssh_args")]
BecomeMethod = Annotated[str, AfterValidator(_become_method)]
HostKeyCheckingMode = Annotated[str, BeforeValidator(_host_key_checking)]
GroupPriority = Annotated[int, BeforeValidator(_not_bool)]


class InventoryVars(BaseModel):
    """The variables fleetdiag understands, as written in one ``vars`` mapping (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ansible_host: HostAddress | None = None
    ansible_ssh_host: HostAddress | None = None
    ansible_port: Port | None = None
    ansible_ssh_port: Port | None = None
    ansible_user: LoginName | None = None
    ansible_ssh_user: LoginName | None = None
    ansible_private_key_file: KeyFile | None = None
    ansible_ssh_private_key_file: KeyFile | None = None
    ansible_become: AnsibleBool | None = None
    ansible_become_user: LoginName | None = None
    ansible_connection: Connection | None = None
    ansible_ssh_common_args: SshArgs | None = None
    ansible_ssh_extra_args: SshArgs | None = None
    ansible_become_method: BecomeMethod | None = None
    ansible_host_key_checking: HostKeyCheckingMode | None = None
    ansible_group_priority: GroupPriority | None = None


UNDERSTOOD_VARS = frozenset(InventoryVars.model_fields)

# HostSpec field -> the variables that set it. As in Ansible's ssh connection plugin,
# when several are set the LAST name listed wins (ansible_ssh_host beats ansible_host).
HOSTSPEC_SOURCES: Mapping[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "private_key_file": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "become": ("ansible_become",),
    "become_user": ("ansible_become_user",),
    "connection": ("ansible_connection",),
    "ssh_common_args": ("ansible_ssh_common_args",),  # ansible_ssh_extra_args is appended to it
    "host_key_checking": ("ansible_host_key_checking",),
}

# Passwords fleetdiag never takes from an inventory: they would sit in a file. The become
# password comes from FLEETDIAG_BECOME_PASSWORD or the -K prompt instead.
IGNORED_PASSWORDS = frozenset(
    {"ansible_become_password", "ansible_become_pass", "ansible_sudo_pass", "ansible_sudo_password"}
)


def ignored_password_warning(path: str) -> str:
    """The warning for a become password written in an inventory at ``path`` (dotted, variable included)."""
    return (
        f"{path}: ignored; fleetdiag takes the become password only from "
        "the FLEETDIAG_BECOME_PASSWORD environment variable or the -K prompt"
    )


def validate_vars(
    written: Mapping[str, Any], path: str, problems: list[str], defer_templates: bool = True
) -> dict[str, Any]:
    """The understood variables of one ``vars`` mapping, validated; problems go to ``problems``.

    A variable written as null stays None: it hides a less specific value, and then
    counts as unset, as in Ansible. Problems read ``<path>.<variable>: <pydantic
    message>`` and never contain the input value.
    """
    understood = {name: value for name, value in written.items() if name in UNDERSTOOD_VARS}
    # A template is validated once rendered for each host (precedence does it).
    deferred = {
        name: Template(value) for name, value in understood.items() if defer_templates and is_template(value)
    }
    vaulted = [name for name, value in understood.items() if isinstance(value, VaultEncrypted)]
    for name in vaulted:
        problems.append(
            f"{path}.{name}: a vault-encrypted value; the built-in reader cannot open it: "
            "install ansible-core and pass --vault-password-file or --ask-vault-pass"
        )
    given = {
        name: value
        for name, value in understood.items()
        if value is not None and name not in deferred and name not in vaulted
    }
    try:
        validated = InventoryVars.model_validate(given)
    except ValidationError as exc:
        written_order = list(understood)
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        # pydantic lists errors in field order; the user reads the file top to bottom.
        for error in sorted(errors, key=lambda error: written_order.index(str(error["loc"][0]))):
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{path}.{where}: {error['msg']}")
        return {}
    if vaulted:
        return {}
    return {name: deferred[name] if name in deferred else getattr(validated, name) for name in understood}


_PORT = TypeAdapter(Port)


def validate_port(port: str, path: str, problems: list[str]) -> int | None:
    """A port written in a host pattern (``web01:2222``), validated like ``ansible_port``."""
    try:
        return _PORT.validate_python(port)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            problems.append(f"{path}: port {port}: {error['msg']}")
        return None
