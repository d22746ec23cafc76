"""Detection parsers, fed output recorded from real hosts."""

from __future__ import annotations

import subprocess

from fleetdiag.facts import detection_script, parse_facts
from fleetdiag.facts.host import parse_netns, parse_os_release, parse_uid
from fleetdiag.facts.tracing import parse_bpftrace_version, parse_reason_table, parse_tracepoint_fields

# The shape of 6.1's format file (reason numbers differ from 6.18's: SOCKET_BACKLOG is 20 there).
FORMAT_6_1 = """name: kfree_skb
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:28;\tsize:4;\tsigned:0;

print fmt: "skbaddr=%p protocol=%u location=%p reason: %s", REC->skbaddr, REC->protocol, REC->location, \
__print_symbolic(REC->reason, { 1, "NOT_SPECIFIED" }, { 2, "NO_SOCKET" }, { 20, "SOCKET_BACKLOG" }, { 0x1f, "HEX_ONE" })
"""


def test_recorded_6_18_host(facts_6_18):
    assert facts_6_18.kernel == "6.18.44-fc-v769"
    assert facts_6_18.os_name == "Debian GNU/Linux 12 (bookworm)"
    assert facts_6_18.uid == 0
    assert facts_6_18.btf is True
    assert facts_6_18.bpftrace_version == "0.17.0"
    assert facts_6_18.netns == 4026531833
    assert facts_6_18.kfree_skb_fields == ("skbaddr", "location", "rx_sk", "protocol", "reason")
    assert facts_6_18.reason_number("SOCKET_BACKLOG") == 29
    assert facts_6_18.drop_reasons[3] == "NO_SOCKET"
    assert len(facts_6_18.drop_reasons) == 127


def test_reason_numbers_come_from_the_host_format():
    table = parse_reason_table(FORMAT_6_1)
    assert table[20] == "SOCKET_BACKLOG"
    assert table[2] == "NO_SOCKET"
    assert table[0x1F] == "HEX_ONE"
    assert parse_tracepoint_fields(FORMAT_6_1) == ("skbaddr", "location", "protocol", "reason")


def test_format_without_reasons_gives_an_empty_table():
    assert dict(parse_reason_table("print fmt: \"skbaddr=%p\", REC->skbaddr")) == {}


def test_missing_sections_are_none_not_errors():
    facts = parse_facts("@@fleetdiag kernel\n3.10.0-1160.el7.x86_64\n@@fleetdiag btf\nno\n")
    assert facts.kernel == "3.10.0-1160.el7.x86_64"
    assert facts.btf is False
    assert facts.bpftrace_version is None
    assert facts.netns is None
    assert facts.kfree_skb_fields == ()


def test_small_parsers():
    assert parse_netns("net:[4026532001]") == 4026532001
    assert parse_netns("") is None
    assert parse_uid("1000\n") == 1000
    assert parse_uid("id: not found") is None
    assert parse_os_release('PRETTY_NAME="Red Hat Enterprise Linux Server 7.9 (Maipo)"') == (
        "Red Hat Enterprise Linux Server 7.9 (Maipo)"
    )
    assert parse_bpftrace_version("bpftrace v0.21.2") == "0.21.2"
    assert parse_bpftrace_version("") is None


def test_detection_script_is_valid_posix_shell():
    # `sh -n` parses without running: catches quoting mistakes in fact commands.
    done = subprocess.run(["sh", "-n", "-c", detection_script()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
