"""Seeded random inventories (INI and YAML) and limits, for the differential tests to try beyond the corpus.

Deterministic for a seed: a failure names its seed and writes the inventory it made, which
then belongs in the corpus as a case of its own (two of them did: ini_host_vars_line_order,
ini_pending_children_order).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml


def _host_vars(rnd: random.Random) -> dict[str, Any] | None:
    body: dict[str, Any] = {}
    if rnd.random() < 0.4:
        body["ansible_user"] = rnd.choice(["a", "b", "c"])
    if rnd.random() < 0.3:
        body["ansible_port"] = rnd.choice([2201, "2202", 2203])
    if rnd.random() < 0.15:
        body["ansible_host"] = "{{ inventory_hostname }}.example.net"
    return body or None


def ini_inventory(rnd: random.Random, directory: Path) -> Path:
    """An INI inventory: ungrouped hosts, groups with hosts (some with :port), children, vars sections."""
    groups = [f"g{i}" for i in range(rnd.randint(1, 5))]
    hosts = [f"h{i}" for i in range(rnd.randint(1, 7))]
    lines = [h + (" ansible_port=2999" if rnd.random() < 0.3 else "") for h in rnd.sample(hosts, rnd.randint(0, min(2, len(hosts))))]
    for group in groups:
        lines.append(f"[{group}]")
        for host in rnd.sample(hosts, rnd.randint(0, min(3, len(hosts)))):
            port = f":{rnd.randint(2000, 2002)}" if rnd.random() < 0.2 else ""
            lines.append(host + port + (f" ansible_user=u{group}" if rnd.random() < 0.3 else ""))
        later = groups[groups.index(group) + 1 :]
        if later and rnd.random() < 0.4:
            lines += [f"[{group}:children]", *rnd.sample(later, rnd.randint(1, len(later)))]
        if rnd.random() < 0.3:
            lines += [f"[{group}:vars]", f"ansible_user=v{group}"]
    if rnd.random() < 0.2:
        lines += ["[ungrouped:vars]", "ansible_become=true"]
    if rnd.random() < 0.3:
        lines += ["[all:vars]", "ansible_port=2222"]
    path = directory / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def yaml_inventory(rnd: random.Random, directory: Path) -> Path:
    """A YAML inventory: groups under all and at the top level, nested children, repeated hosts, vars."""
    groups = [f"g{i}" for i in range(rnd.randint(1, 5))]
    hosts = [f"h{i}" for i in range(rnd.randint(1, 7))] + ["h9:2222"]

    def group(depth: int, name: str) -> dict[str, Any] | None:
        body: dict[str, Any] = {}
        if rnd.random() < 0.7:
            body["hosts"] = {h: _host_vars(rnd) for h in rnd.sample(hosts, rnd.randint(0, min(3, len(hosts))))}
        later = groups[groups.index(name) + 1 :]
        if depth < 3 and later and rnd.random() < 0.5:
            body["children"] = {k: group(depth + 1, k) for k in rnd.sample(later, rnd.randint(1, min(2, len(later))))}
        if rnd.random() < 0.3:
            body["vars"] = {"ansible_user": f"v{name}", "ansible_become": rnd.choice([True, "yes", 0])}
        return body or None

    document: dict[str, Any] = {}
    if rnd.random() < 0.6:
        document["all"] = {"children": {g: group(1, g) for g in rnd.sample(groups, rnd.randint(1, len(groups)))}}
        if rnd.random() < 0.4:
            document["all"]["hosts"] = {h: _host_vars(rnd) for h in rnd.sample(hosts, 2)}
    for name in rnd.sample(groups, rnd.randint(0, len(groups))):
        document[name] = group(1, name)
    if rnd.random() < 0.2:
        document["ungrouped"] = {"hosts": {rnd.choice(hosts): None}}
    if not document:
        document["all"] = {"hosts": {hosts[0]: None}}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def limits(rnd: random.Random, names: list[str], count: int) -> list[str]:
    """Limits of one to three patterns, with subscripts, globs, '!' and '&', joined by ':' or ','."""
    made = []
    for _ in range(count):
        parts = []
        for _ in range(rnd.randint(1, 3)):
            pattern = rnd.choice(names)
            if rnd.random() < 0.3:
                pattern += rnd.choice(["[0]", "[-1]", "[1:]", "[0:1]", "[1]", "*"])
            if rnd.random() < 0.3:
                pattern = rnd.choice("!&") + pattern
            parts.append(pattern)
        made.append(rnd.choice([":", ","]).join(parts))
    return made
