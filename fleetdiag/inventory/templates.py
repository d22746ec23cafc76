"""Jinja2 templates in connection variables, rendered where the built-in reader can do it faithfully.

A template made only of plain variable references (``"{{ inventory_hostname }}.example.net"``,
``"-J {{ jump_host }}"``) renders exactly as Ansible renders it: a lone ``{{ name }}`` keeps
the variable's own value and type, anything else is text; references to templates render
in turn. Anything more (filters, expressions, ``{% %}``) is refused for that host, with the
advice to let ansible-core read the inventory.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
_MAX_DEPTH = 20  # Ansible refuses recursive templates too; a loop must end somewhere
ANSIBLE_READER_ADVICE = "ansible-core renders any template: install it, or pass --inventory-reader ansible"


class TemplateProblem(ValueError):
    """A template the built-in reader cannot render faithfully; the message is one line."""


class Template(str):
    """A variable's text still to be rendered for each host (validated once rendered)."""

    __slots__ = ()


def is_template(value: Any) -> bool:
    """Whether a value is text holding Jinja2 markup."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS[::2])


def magic_vars(name: str, groups: tuple[str, ...]) -> dict[str, Any]:
    """The variables Ansible gives every host that templates commonly use."""
    try:
        ipaddress.ip_address(name)
        short = name
    except ValueError:
        short = name.split(".")[0]
    return {"inventory_hostname": name, "inventory_hostname_short": short, "group_names": list(groups)}


def render(value: Any, variables: Mapping[str, Any], depth: int = 0) -> Any:
    """``value`` with its plain ``{{ name }}`` references replaced from ``variables``."""
    if not is_template(value):
        return value
    if depth > _MAX_DEPTH:
        raise TemplateProblem("the template refers to itself in a loop")
    if any(marker in _REFERENCE.sub("", value) for marker in _MARKERS):
        # The advice to use the ansible reader comes once, as the error's hint.
        raise TemplateProblem("the built-in reader renders only plain variable references such as '{{ name }}'")
    whole = _REFERENCE.fullmatch(value)
    if whole is not None:  # Ansible's native types: "{{ port }}" is the number itself
        return render(_lookup(whole.group(1), variables), variables, depth + 1)
    return _REFERENCE.sub(lambda match: str(render(_lookup(match.group(1), variables), variables, depth + 1)), value)


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    if name not in variables:
        raise TemplateProblem(f"the template refers to '{name}', which is undefined for this host")
    return variables[name]
