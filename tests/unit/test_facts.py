"""Detection parsers, fed output recorded from real hosts (see fixtures/detection/README.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from fleetdiag.backlog_limit import kernel_version
from fleetdiag.facts import FACTS, detection_script, parse_facts
from fleetdiag.facts.host import (
    parse_netns,
    parse_os_release,
    parse_os_release_fields,
    parse_sudo,
    parse_uid,
)
from fleetdiag.facts.kernel import (
    TCP_ADD_BACKLOG_BTF_COMMAND,
    parse_btf_params,
    parse_headers,
    parse_kallsyms,
    parse_lockdown,
    parse_modules,
    parse_secure_boot,
    parse_yes_no_unknown,
)
from fleetdiag.facts.source import BACKLOGDROP_SOURCE_COMMAND, parse_backlogdrop_source
from fleetdiag.facts.tools import parse_bcc, parse_systemtap, parse_tools
from fleetdiag.facts.tracing import (
    parse_bpftrace_version,
    parse_reason_table,
    parse_tracepoint_fields,
)
from tests.unit.conftest import fixture_text

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


def detection(case: str):
    return parse_facts(fixture_text(f"detection/{case}/stdout.txt"))


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


def test_recorded_6_18_host_every_fact():
    facts = detection("debian12-6.18-all-facts")
    assert (facts.os_id, facts.sudo, facts.tracefs) == ("debian", "root", "/sys/kernel/tracing")
    # No modules, no kprobes, no headers: exactly why stap and bcc cannot run on this machine.
    assert facts.modules == "unsupported"
    assert facts.kprobes is False
    assert facts.kernel_headers is None and facts.debuginfo is None
    assert facts.kernel_symbols == {"tcp_add_backlog", "tcp_v4_rcv", "tcp_v6_rcv"}
    assert facts.tcp_add_backlog_params is None  # rx_sk is there: the BTF dump is skipped
    assert facts.fentry_tcp_add_backlog is None  # available_filter_functions: EPERM here
    assert facts.secure_boot is False and facts.lockdown is None
    assert (facts.stap_version, facts.staprun) == ("4.8", True)
    assert (facts.bcc_python, facts.bcc_version) == ("/usr/bin/python3", "0.26.0")
    assert {"ss", "bpftool", "timeout"} <= facts.tools
    assert facts.kernel_source is None and dict(facts.backlogdrop_lines) == {}


def test_detection_mounts_tracefs_for_itself_when_hidden():
    """Recorded under plain `ip netns exec` (a fresh /sys without tracefs)."""
    facts = detection("netns-6.18-tracefs-unmounted")
    assert facts.tracefs == "unmounted"
    assert "rx_sk" in facts.kfree_skb_fields
    assert facts.reason_number("SOCKET_BACKLOG") == 29
    assert facts.netns != detection("debian12-6.18-all-facts").netns


def test_handwritten_rhel7_host():
    facts = detection("rhel7.9-3.10-stap")
    assert facts.os_id == "rhel" and facts.kernel == "3.10.0-1160.el7.x86_64"
    assert facts.kfree_skb_fields == ("skbaddr", "location", "protocol")
    assert dict(facts.drop_reasons) == {}
    assert facts.tracefs == "/sys/kernel/debug/tracing"
    assert facts.kprobes and "tcp_add_backlog" not in facts.kernel_symbols
    assert facts.kernel_source == "/usr/src/debug/kernel-3.10.0-1160.el7/linux-3.10.0-1160.el7.x86_64"
    assert dict(facts.backlogdrop_lines) == {"tcp_v4_rcv": (1746,), "tcp_v6_rcv": (1519,)}
    assert facts.bcc_python == "/usr/bin/python2"


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
    assert (facts.stap_version, facts.bcc_python, facts.modules) == (None, None, None)
    assert facts.tools == frozenset() and facts.kernel_symbols == frozenset()


def test_small_parsers():
    assert parse_netns("net:[4026532001]") == 4026532001
    assert parse_netns("") is None
    assert parse_uid("1000\n") == 1000
    assert parse_uid("id: not found") is None
    assert parse_os_release('PRETTY_NAME="Red Hat Enterprise Linux Server 7.9 (Maipo)"') == (
        "Red Hat Enterprise Linux Server 7.9 (Maipo)"
    )
    assert parse_os_release_fields("ID=ubuntu\n# comment\nbroken line\n")["ID"] == "ubuntu"
    assert parse_bpftrace_version("bpftrace v0.21.2") == "0.21.2"
    assert parse_bpftrace_version("") is None
    assert [parse_sudo(x) for x in ("root\n", "passwordless", "password", "sudo: x")] == [
        "root", "passwordless", "password", None,
    ]  # fmt: skip


def test_kernel_parsers():
    assert parse_modules("disabled\n") == "disabled" and parse_modules("") is None
    assert parse_lockdown("[none] integrity confidentiality") == "none"
    assert parse_lockdown("none integrity [confidentiality]\n") == "confidentiality"
    assert parse_lockdown("") is None
    assert parse_secure_boot("efivar 0") is False and parse_secure_boot("bios") is False
    assert parse_secure_boot("SecureBoot enabled\n") is True
    assert parse_kallsyms("tcp_v4_rcv\nsomething_else\nregister_kprobe\n") == {"tcp_v4_rcv", "register_kprobe"}
    assert parse_btf_params("") is None
    assert parse_btf_params("tcp_add_backlog 'sk' 'skb' 'reason'\n") == ("sk", "skb", "reason")
    assert [parse_yes_no_unknown(x) for x in ("yes", "no", "unreadable", "")] == [True, False, None, None]
    assert parse_headers("kheaders module\n") == "kheaders"
    assert parse_headers("build /lib/modules/5.4/build\nkheaders /sys/kernel/kheaders.tar.xz\n") == "build"
    assert parse_headers("") is None


def test_tool_parsers():
    stap = parse_systemtap("Systemtap translator/driver (version 4.8/0.188, Debian version 4.8-2)\nstaprun\n")
    assert (stap.version, stap.staprun) == ("4.8", True)
    assert parse_systemtap("staprun\n").version is None
    assert parse_bcc("/usr/libexec/platform-python 0.19.0\n").python == "/usr/libexec/platform-python"
    # Only the fixed interpreter names are ever accepted: host output never becomes a command.
    assert parse_bcc("/tmp/evil;rm 1.0\n") is None
    assert parse_bcc("python3 0.26.0 extra\n") is None
    assert parse_tools("ss\nfoo\ntimeout\n") == {"ss", "timeout"}


def test_backlogdrop_line_is_the_one_inside_the_function():
    out = fixture_text("detection/rhel7.9-3.10-stap/stdout.txt").split("@@fleetdiag backlogdrop_source\n")[1]
    source = parse_backlogdrop_source(out.split("@@fleetdiag")[0])
    assert dict(source.lines) == {"tcp_v4_rcv": (1746,), "tcp_v6_rcv": (1519,)}
    # 4.9+: the counter moved into tcp_add_backlog; prototypes and exports are not definitions.
    newer = parse_backlogdrop_source(
        "source /s\n"
        "net/ipv4/tcp_ipv4.c:1800:bool tcp_add_backlog(struct sock *sk, struct sk_buff *skb,\n"
        "net/ipv4/tcp_ipv4.c:1880:\t\t__NET_INC_STATS(sock_net(sk), LINUX_MIB_TCPBACKLOGDROP);\n"
        "net/ipv4/tcp_ipv4.c:1890:EXPORT_SYMBOL(tcp_add_backlog);\n"
        "net/ipv4/tcp_ipv4.c:1950:int tcp_v4_rcv(struct sk_buff *skb);\n"
    )
    assert dict(newer.lines) == {"tcp_add_backlog": (1880,)}
    assert parse_backlogdrop_source("").root is None


def test_backlogdrop_command_reads_a_real_tree(tmp_path):
    """The fact's own command, run here on a small kernel-style tree laid out as kernel-debuginfo-common does."""
    release = os.uname().release
    tree = tmp_path / "kernel-x" / f"linux-{release}"
    (tree / "net/ipv4").mkdir(parents=True)
    (tree / "net/ipv4/tcp_ipv4.c").write_text(
        "static int helper(int x);\n"
        "int tcp_v4_do_rcv(struct sock *sk, struct sk_buff *skb)\n{\n\treturn 0;\n}\n\n"
        "int tcp_v4_rcv(struct sk_buff *skb)\n{\n"
        "\tif (x) {\n\t\tbh_unlock_sock(sk);\n\t\tNET_INC_STATS_BH(net, LINUX_MIB_TCPBACKLOGDROP);\n\t}\n}\n"
    )
    done = subprocess.run(
        ["sh", "-c", BACKLOGDROP_SOURCE_COMMAND],
        env={**os.environ, "FLEETDIAG_SOURCE_ROOT": str(tmp_path)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    source = parse_backlogdrop_source(done.stdout)
    assert source.root == str(tree)
    assert dict(source.lines) == {"tcp_v4_rcv": (11,)}


def test_detection_script_is_valid_posix_shell():
    # `sh -n` parses without running: catches quoting mistakes in fact commands.
    done = subprocess.run(["sh", "-n", "-c", detection_script()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_facts_without_a_subshell_cannot_end_or_move_the_detection():
    """A fact in a `{ }` group shares detection's shell: it must not exit, cd, set options or trap."""
    grouped = [fact for fact in FACTS if not fact.subshell]
    assert {"kernel", "uid", "netns", "tools"} <= {fact.name for fact in grouped}
    for fact in grouped:
        assert not re.search(r"\b(exit|cd|set|trap|exec|return|shift)\b", fact.command), fact.name


def test_a_fact_that_exits_in_its_subshell_hides_no_other(monkeypatch):
    import fleetdiag.facts as facts_module
    from fleetdiag.facts.base import Fact

    leaving = Fact("kernel", "echo 9.9-test; exit 7", lambda out: out.strip())
    monkeypatch.setattr(facts_module, "COUNTERS_FACTS", (leaving, *facts_module.COUNTERS_FACTS[1:]))
    done = subprocess.run(["sh", "-c", detection_script(counters_only=True)], capture_output=True, text=True, timeout=30)
    assert "@@fleetdiag kernel\n9.9-test\n" in done.stdout
    assert parse_facts(done.stdout).uid == os.geteuid()  # the facts after it still ran
    assert "@@fleetdiag examined\ncounters" in done.stdout


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="detection reads Linux's /proc and /sys")
def test_detection_runs_here_in_one_go():
    done = subprocess.run(["sh", "-c", detection_script()], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for fact in FACTS:
        assert f"@@fleetdiag {fact.name}\n" in done.stdout
    facts = parse_facts(done.stdout)
    assert facts.kernel == os.uname().release
    assert facts.uid == os.geteuid()
    assert facts.netns == int(os.readlink("/proc/self/ns/net").split("[")[1].rstrip("]"))


@pytest.mark.skipif(
    shutil.which("bpftool") is None or not os.path.exists("/sys/kernel/btf/vmlinux"),
    reason="needs bpftool and this kernel's BTF (/sys/kernel/btf/vmlinux)",
)
def test_tcp_add_backlog_signature_from_this_kernels_btf(tmp_path):
    """The fact's command for real, on a host whose kfree_skb has no rx_sk (a stand-in format file)."""
    fmt = tmp_path / "events/skb/kfree_skb/format"
    fmt.parent.mkdir(parents=True)
    fmt.write_text(FORMAT_6_1)
    done = subprocess.run(["sh", "-c", TCP_ADD_BACKLOG_BTF_COMMAND], env={**os.environ, "fd_tracefs": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    params = parse_btf_params(done.stdout)
    # 5.17+ added the drop-reason out-parameter; this kernel is newer.
    assert params is not None and params[:2] == ("sk", "skb")
    if (kernel_version(os.uname().release) or (0, 0)) >= (5, 17):
        assert params == ("sk", "skb", "reason")
    fmt.write_text(fmt.read_text() + "\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;\n")
    skipped = subprocess.run(["sh", "-c", TCP_ADD_BACKLOG_BTF_COMMAND], env={**os.environ, "fd_tracefs": str(tmp_path)},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert parse_btf_params(skipped.stdout) is None


def test_first_fit_detection_skips_deep_facts_where_bpftrace_fits():
    """Run for real here (root, BTF, bpftrace, kfree_skb with rx_sk): the deep facts are skipped."""
    from fleetdiag.facts import DEEP_FACTS
    from fleetdiag.tracers import choose

    script = detection_script(first_fit=True)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60).stdout
    full = parse_facts(subprocess.run(["sh", "-c", detection_script()], capture_output=True, text=True, timeout=60).stdout)
    fits = full.uid == 0 and full.btf and full.bpftrace_version and "rx_sk" in full.kfree_skb_fields
    facts = parse_facts(out)
    if not fits:
        assert facts.examined_all is True  # the guard fell through: every fact was gathered
        return
    assert facts.examined_all is False
    assert not any(f"@@fleetdiag {fact.name}\n" in out for fact in DEEP_FACTS)
    assert (facts.kernel, facts.netns, facts.drop_reasons) == (full.kernel, full.netns, full.drop_reasons)
    tracer, verdicts = choose(facts)
    assert tracer.name == "bpftrace"
    assert verdicts["bcc"].reason.startswith("not examined")
    assert verdicts["stap"].reason.startswith("not examined")
    assert verdicts["counters"].usable


def test_first_fit_falls_through_without_rx_sk():
    """A host whose kfree_skb lacks rx_sk gets every fact even in first-fit mode (stand-in tracefs)."""
    script = detection_script(first_fit=True).replace('grep -q \'rx_sk;\'', "grep -q 'no-such-field;'")
    facts = parse_facts(subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60).stdout)
    assert facts.examined_all is True


def _debian_source_tree(root, series: str, version: str):
    tree = root / f"linux-source-{series}"
    (tree / "net/ipv4").mkdir(parents=True)
    major, minor, sub = version.split(".")
    (tree / "Makefile").write_text(f"# SPDX\nVERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = {sub}\nEXTRAVERSION =\n")
    (tree / "net/ipv4/tcp_ipv4.c").write_text(
        "bool tcp_add_backlog(struct sock *sk, struct sk_buff *skb,\n\t\t     enum skb_drop_reason *reason)\n{\n"
        "\tif (unlikely(sk_add_backlog(sk, skb, limit))) {\n\t\tbh_unlock_sock(sk);\n"
        "\t\t__NET_INC_STATS(sock_net(sk), LINUX_MIB_TCPBACKLOGDROP);\n\t\treturn true;\n\t}\n}\n"
    )
    return tree


def _run_source_command(root):
    done = subprocess.run(
        ["sh", "-c", BACKLOGDROP_SOURCE_COMMAND],
        env={**os.environ, "FLEETDIAG_SOURCE_ROOT": str(root)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return parse_backlogdrop_source(done.stdout)


def test_unpacked_linux_source_is_read_only_when_it_is_the_running_kernels(tmp_path):
    """Debian's linux-source under /usr/src: its Makefile version must be named by uname -rv."""
    running = re.search(r"\d+\.\d+\.\d+", f"{os.uname().release} {os.uname().version}").group(0)
    match = _debian_source_tree(tmp_path / "match", "x", running)
    _debian_source_tree(tmp_path / "other", "x", "2.6.99")
    source = _run_source_command(tmp_path / "match")
    assert source.root == str(match)
    assert dict(source.lines) == {"tcp_add_backlog": (6,)}
    # The same tree with another kernel's version is not this kernel's source: its lines would lie.
    assert _run_source_command(tmp_path / "other").root is None


def test_counters_only_detection_gathers_what_that_tier_reads_and_says_so():
    from fleetdiag.tracers import choose

    done = subprocess.run(["sh", "-c", detection_script(counters_only=True)], capture_output=True, text=True, timeout=60)
    facts = parse_facts(done.stdout)
    assert facts.examined == "counters" and not facts.examined_all
    assert facts.kernel == os.uname().release and facts.uid == os.geteuid() and facts.netns
    assert "bpftrace" not in done.stdout  # the costly probe of bpftrace's version is skipped
    tracer, verdicts = choose(facts, "counters")
    assert tracer is not None and tracer.name == "counters"
    assert all(v.reason.startswith("not examined: --tracer counters") for n, v in verdicts.items() if n != "counters")


@pytest.mark.skipif(not os.path.exists("/etc/os-release"), reason="no /etc/os-release on this machine")
def test_host_facts_read_with_builtins_match_the_tools_they_replace(tmp_path):
    """kernel, os_release and uid are read without a process each; they must say what uname, cat and id say."""
    from fleetdiag.facts.host import EUID_COMMAND, KERNEL_COMMAND, OS_RELEASE_COMMAND

    def sh(command: str, *prefix: str) -> str:
        return subprocess.run([*prefix, "sh", "-c", command], capture_output=True, text=True, timeout=30, check=True).stdout

    assert sh(KERNEL_COMMAND) == sh("uname -r")
    assert sh(OS_RELEASE_COMMAND).rstrip("\n") == sh("cat /etc/os-release").rstrip("\n")
    assert sh(EUID_COMMAND) == sh("id -u")
    # A last line without its newline, and backslashes, come through as they are.
    odd = tmp_path / "os-release"
    odd.write_text('NAME="a\\nb"\nPRETTY_NAME="Odd 1"')
    assert parse_os_release(sh(OS_RELEASE_COMMAND.replace("/etc/os-release", str(odd)))) == "Odd 1"
    assert "a\\nb" in sh(OS_RELEASE_COMMAND.replace("/etc/os-release", str(odd)))
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv:  # an unprivileged login reads its own uid too
        as_nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
        assert sh(EUID_COMMAND, *as_nobody) == "65534\n"
