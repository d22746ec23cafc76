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


@pytest.mark.parametrize(("version", "kernel", "usable"), [("5.1", "6.12.117+deb13-cloud-amd64", False), ("5.2", "6.12.117+deb13-cloud-amd64", True), ("5.1", "6.1.0-57-cloud-amd64", True), ("4.4", "5.10.0-32-cloud-amd64", True)])
def test_systemtap_5_1_on_6_12_is_refused_by_check_not_at_load(version: str, kernel: str, usable: bool) -> None:
    from fleetdiag.tracers import systemtap

    facts = parse_facts(fixture_text("detection/rhel7.9-3.10-stap/stdout.txt"))
    facts = dataclasses.replace(facts, kernel=kernel, stap_version=version)
    verdict = systemtap.verdict(facts)
    assert verdict.usable is usable, verdict
    if not usable:
        assert verdict.reason == (
            f"systemtap {version} cannot load modules on {kernel} (its runtime needs uprobe_unregister, "
            "which 6.12 replaced): update systemtap to 5.2 or later"
        )


@pytest.mark.parametrize(("version", "variable"), [("0.17.0", "BPFTRACE_MAP_KEYS_MAX"), ("0.23.2", "BPFTRACE_MAX_MAP_KEYS"), (None, "BPFTRACE_MAP_KEYS_MAX")])
def test_the_map_cap_uses_the_name_the_bpftrace_version_reads(version: str | None, variable: str) -> None:
    facts = ubuntu_5_15(bpftrace_version=version)
    assert bpftrace.map_keys_variable(facts) == variable
