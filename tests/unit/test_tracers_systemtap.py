"""The systemtap backend: the script and checks it deploys for a host, and the parser of its output.

systemtap cannot run here (no modules), so: the generated script, its syntax through
`stap -p1` where stap is installed, the prepare step, and the end-probe output format.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.model import Window
from fleetdiag.tracers import systemtap
from fleetdiag.window_script import build_window_script, remote_deadline_s
from tests.unit.conftest import fixture_text


def rhel7():
    return parse_facts(fixture_text("detection/rhel7.9-3.10-stap/stdout.txt"))


def newer_kernel():
    """A 4.9+ host with debuginfo: tcp_add_backlog exists, no source needed."""
    return dataclasses.replace(
        rhel7(), kernel="4.18.0-553.el8_10.x86_64",
        kernel_symbols=frozenset({"tcp_add_backlog", "tcp_v4_rcv", "register_kprobe"}),
        backlogdrop_lines={}, kernel_source=None,
    )  # fmt: skip


def test_rhel7_gets_statement_probes_on_the_lines_from_its_own_source():
    plan = systemtap.plan(rhel7(), Window(30, port=8888))
    assert plan.probe == "stap:tcp_v4_rcv_statement"
    script = plan.files["probe.stp"]
    assert 'kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:1746")' in script
    assert 'module("ipv6").statement("tcp_v6_rcv@net/ipv6/tcp_ipv6.c:1519") ?' in script
    assert "if (fd_netns(sk) != 4026531956)" in script
    assert "if (8888 != 0 && lp != 8888 && rp != 8888)" in script
    assert "probe timer.s(30)" in script
    assert not re.findall(r"@@[A-Z0-9_]+@@", script.replace("@@attached", "").replace("@@window_end", ""))
    # The prepare step checks every probe point offers $sk before compiling, then compiles.
    assert plan.files["points.txt"] == 'sk kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:1746")'
    assert f"-DMAXMAPENTRIES={systemtap.MAP_KEYS_MAX + 64}" in plan.files["prepare.sh"]
    assert "stap -p4 -m fleetdiag_backlog" in plan.files["prepare.sh"]
    assert (plan.prepare, plan.command) == ("sh prepare.sh", "staprun -R fleetdiag_backlog.ko")


def test_newer_kernels_use_the_return_of_tcp_add_backlog():
    plan = systemtap.plan(newer_kernel(), Window(10))
    assert plan.probe == "stap:tcp_add_backlog_return"
    script = plan.files["probe.stp"]
    assert 'kernel.function("tcp_add_backlog").return' in script
    assert "fd_entry[tid()] = $sk" in script  # entry $vars saved by thread: stap 4.8 .return cannot read them
    assert "statement" not in script
    assert plan.files["points.txt"] == 'sk kernel.function("tcp_add_backlog")'


def test_compile_time_is_part_of_the_host_deadline():
    plan = systemtap.plan(rhel7(), Window(10))
    script = build_window_script(plan, 10)
    assert f"timeout -s INT -k 5 {systemtap.PREPARE_TIMEOUT_S} sh prepare.sh" in script
    assert remote_deadline_s(10, plan) >= systemtap.PREPARE_TIMEOUT_S + 10 + systemtap.ATTACH_ALLOWANCE_S
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_prepare_refuses_a_line_stap_cannot_probe(tmp_path):
    """The prepare script, run for real with a stand-in `stap` that lists the line without $sk."""
    plan = systemtap.plan(rhel7(), Window(10))
    for name, text in plan.files.items():
        (tmp_path / name).write_text(text + "\n")
    fake = tmp_path / "bin" / "stap"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho \'kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:1746") $skb:struct sk_buff*\'\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", "prepare.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 1
    assert "stap -L finds no $sk at kernel.statement" in done.stderr


def test_parse_end_probe_output():
    report = systemtap.parse(fixture_text("tracers/stap-statement.stdout.txt"), rhel7())
    assert dict(report.drops) == {"SOCKET_BACKLOG": 283}
    first = report.flows[0]
    assert (first.laddr, first.lport, first.raddr, first.rport, first.drops) == ("172.16.16.25", 8888, "172.16.16.20", 57348, 270)
    assert (first.netns, first.rcvbuf, first.sndbuf, first.userlocks) == (4026531956, 67108864, 46080, 12)
    assert (first.backlog_len_max, first.rmem_alloc_max, first.queue_max) == (5503744, 65022720, 67309568)
    assert [f.drops for f in report.flows] == [270, 8, 5]
    assert report.flows[1].laddr == "2001:db8::25"  # IPv6 flows come through tcp_v6_rcv
    assert report.flows_truncated is False


@pytest.mark.parametrize("change, words", [
    ({"stap_version": None}, "systemtap (stap) is not installed"),
    ({"modules": "unsupported"}, "cannot load modules"),
])  # fmt: skip
def test_verdicts(change, words):
    verdict = systemtap.verdict(dataclasses.replace(rhel7(), **change))
    assert not verdict.usable and words in verdict.reason


def _fake_build_tree(root):
    # `stap -p1` only parses, but first checks the kernel build tree's three marker files.
    (root / "include/config").mkdir(parents=True)
    (root / "include/config/kernel.release").write_text("3.10.0-1160.el7.x86_64\n")
    (root / ".config").write_text("")
    (root / "Module.symvers").write_text("")
    return root


@pytest.mark.skipif(shutil.which("stap") is None, reason="systemtap is not installed here (.ci/setup installs it)")
@pytest.mark.parametrize("facts", [rhel7, newer_kernel], ids=["statement", "return"])
def test_script_parses_with_real_stap(facts, tmp_path):
    script = tmp_path / "probe.stp"
    script.write_text(systemtap.plan(facts(), Window(5, port=80)).files["probe.stp"])
    build = _fake_build_tree(tmp_path / "build")
    done = subprocess.run(["stap", "-p1", "-r", str(build), str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # The same check fails on a broken script, so it really parses.
    script.write_text("probe begin { x = }\n")
    assert subprocess.run(["stap", "-p1", "-r", str(build), str(script)], capture_output=True).returncode != 0


def test_a_known_runtime_break_is_named(tmp_path):
    """stap 4.8 on 6.1.19x fails in its own runtime (QEMU-GUEST.md): the host's error says what to do."""
    plan = systemtap.plan(newer_kernel(), Window(10))
    for name, text in plan.files.items():
        (tmp_path / name).write_text(text + "\n")
    fake = tmp_path / "bin" / "stap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -L ]; then echo \'kernel.function("tcp_add_backlog@net/ipv4/tcp_ipv4.c:1800") $sk:struct sock*\'; exit 0; fi\n'
        "echo 'stp_task_work.c:40: error: passing argument 2 of kallsyms_task_work_cancel from incompatible pointer type' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(["sh", "prepare.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 1
    # Said first: the window script shows the first lines that say what went wrong.
    assert done.stderr.strip().splitlines()[0].endswith("(task_work_cancel changed): update systemtap")
