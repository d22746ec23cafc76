"""Old tool versions met on the lab's Debian 11 guest: detection says what they cannot do, before attach."""

from __future__ import annotations

import dataclasses

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.tracers import bpftrace
from tests.unit.conftest import fixture_text


def ubuntu_5_15(**changes):
    """Ubuntu 22.04's 5.15 (kfree_skb without reason's SOCKET_BACKLOG before 5.18) with BTF and fentry."""
    facts = parse_facts(fixture_text("detection/ubuntu22.04-5.15-bpftrace/stdout.txt"))
    return dataclasses.replace(facts, **changes)


@pytest.mark.parametrize(("version", "hook"), [("0.11.3", "kretprobe"), ("0.9.4", "kretprobe"), ("0.12.0", "kretfunc"), ("0.17.0", "kretfunc")])
def test_bpftrace_before_0_12_gets_the_kretprobe_and_the_verdict_says_why(version: str, hook: str) -> None:
    facts = ubuntu_5_15(bpftrace_version=version, btf=True, fentry_tcp_add_backlog=True)
    if "register_kprobe" not in facts.kernel_symbols or "tcp_add_backlog" not in facts.kernel_symbols:
        facts = dataclasses.replace(facts, kernel_symbols=facts.kernel_symbols | {"register_kprobe", "tcp_add_backlog"})
    assert bpftrace.backlog_hook(facts) == hook
    verdict = bpftrace.verdict(facts)
    assert verdict.usable
    if hook == "kretprobe":
        assert f"bpftrace {version} cannot attach kretfunc (its feature probe says kfunc: no)" in verdict.reason
        assert verdict.probe.endswith("kretprobe_tcp_add_backlog") or "+kretprobe" in verdict.probe
    else:
        assert "cannot attach kretfunc" not in verdict.reason


def test_an_unknown_bpftrace_version_is_not_held_against_it() -> None:
    facts = ubuntu_5_15(bpftrace_version="git-main", btf=True, fentry_tcp_add_backlog=True)
    assert bpftrace.kretfunc_problem(facts) is None
