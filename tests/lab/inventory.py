"""Render an Ansible-style YAML inventory for lab hosts (stdlib only, so no PyYAML)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

HostVars = Mapping[str, "str | int | bool"]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def render_inventory(group_vars: HostVars, hosts: Mapping[str, HostVars]) -> str:
    """`all: {vars: ..., hosts: {name: {ansible_host: ...}}}` as YAML text."""
    lines = ["all:", "  vars:"]
    lines += [f"    {_key(k)}: {_scalar(v)}" for k, v in group_vars.items()]
    lines.append("  hosts:")
    for name, host_vars in hosts.items():
        if not host_vars:
            lines.append(f"    {_key(name)}: {{}}")
            continue
        lines.append(f"    {_key(name)}:")
        lines += [f"      {_key(k)}: {_scalar(v)}" for k, v in host_vars.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    """A mapping key, quoted unless it is a plain name."""
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _scalar(value: str | int | bool) -> str:
    """A YAML scalar; strings double-quoted (JSON strings are valid YAML) so `5.10` stays text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)
