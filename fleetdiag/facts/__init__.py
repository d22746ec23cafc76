"""Detection: every fact about a host in one round trip, parsed into HostFacts.

>>> script = detection_script()   # run it on the host with any transport
>>> facts = parse_facts(stdout)   # doctest: +SKIP
"""

from __future__ import annotations

from fleetdiag.facts.base import Fact
from fleetdiag.facts.host import KERNEL, NETNS, OS_RELEASE, UID
from fleetdiag.facts.tracing import (
    BPFTRACE,
    BTF,
    KFREE_SKB_FORMAT,
    parse_reason_table,
    parse_tracepoint_fields,
)
from fleetdiag.model import HostFacts
from fleetdiag.sections import section_header, split_sections

FACTS: tuple[Fact, ...] = (KERNEL, OS_RELEASE, UID, NETNS, BTF, BPFTRACE, KFREE_SKB_FORMAT)


def detection_script() -> str:
    """One POSIX shell script that prints every fact in its own section."""
    parts = ["exec 2>/dev/null"]
    for fact in FACTS:
        # A subshell per fact: one failing command never hides the others.
        parts += [section_header(fact.name), f"( {fact.command.strip()}\n)"]
    return "\n".join(parts) + "\n"


def parse_facts(output: str) -> HostFacts:
    """Turn the detection script's stdout into HostFacts (pure; tested from recorded output)."""
    sections = split_sections(output)
    values = {fact.name: fact.parse_or_none(sections.get(fact.name)) for fact in FACTS}
    kfree_skb_format = values["kfree_skb_format"] or ""
    return HostFacts(
        kernel=values["kernel"],
        os_name=values["os_release"],
        uid=values["uid"],
        netns=values["netns"],
        btf=bool(values["btf"]),
        bpftrace_version=values["bpftrace"],
        kfree_skb_fields=parse_tracepoint_fields(kfree_skb_format),
        drop_reasons=parse_reason_table(kfree_skb_format),
    )
