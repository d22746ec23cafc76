"""The systemtap backend: the script and checks it deploys for a host, and the parser of its output.

systemtap cannot run here (no modules), so: the generated script, its syntax through
`stap -p1` where stap is installed, the prepare step, and the end-probe output format.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import shutil
import subprocess

import pytest

from fleetdiag.facts import parse_facts
from fleetdiag.model import StapModule, Window
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
    assert 'probe kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:1746")' in script
    assert 'module("ipv6").statement("tcp_v6_rcv@net/ipv6/tcp_ipv6.c:1519") ?' in script
    # Per host and per window: module parameters, so one compiled module serves every host of a release.
    assert "if (fd_netns(sk) != fd_want_netns)" in script
    assert "if (fd_want_port != 0 && lp != fd_want_port && rp != fd_want_port)" in script
    assert "global fd_want_netns = 0, fd_want_port = 0, fd_duration = 60" in script
    assert "if (++fd_ticks >= fd_duration)" in script
    assert "4026531956" not in script and "8888" not in script
    assert not re.findall(r"@@[A-Z0-9_]+@@", script.replace("@@attached", "").replace("@@window_end", ""))
    # The build checks every probe point offers $sk before compiling, then compiles.
    assert plan.files["points.txt"] == 'sk kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:1746")'
    assert f"-DMAXMAPENTRIES={systemtap.MAP_KEYS_MAX + 64}" in plan.files["build.sh"]
    assert "-p4 -m fleetdiag_backlog" in plan.files["build.sh"]
    assert plan.prepare == "sh build.sh"
    assert plan.command == "staprun -R fleetdiag_backlog.ko fd_want_netns=4026531956 fd_want_port=8888 fd_duration=32 fd_interval_s=1"


def test_the_line_in_tcp_add_backlog_is_preferred_to_its_return():
    """4.9+ with the source (Debian's linux-source, RHEL's debuginfo-common): the line that counts."""
    facts = dataclasses.replace(newer_kernel(), backlogdrop_lines={"tcp_add_backlog": (1907,)}, kernel_source="/usr/src/linux-source-6.1")
    plan = systemtap.plan(facts, Window(10))
    assert plan.probe == "stap:tcp_add_backlog_statement"
    script = plan.files["probe.stp"]
    assert 'probe kernel.statement("tcp_add_backlog@net/ipv4/tcp_ipv4.c:1907")' in script
    assert "tcp_v6_rcv" not in script  # IPv6 shares tcp_add_backlog since 4.9
    assert plan.files["points.txt"] == 'sk kernel.statement("tcp_add_backlog@net/ipv4/tcp_ipv4.c:1907")'


def test_newer_kernels_without_source_use_the_return_of_tcp_add_backlog():
    plan = systemtap.plan(newer_kernel(), Window(10))
    assert plan.probe == "stap:tcp_add_backlog_return"
    script = plan.files["probe.stp"]
    assert 'kernel.function("tcp_add_backlog").return' in script
    assert "fd_entry[tid()] = $sk" in script  # entry $vars saved by thread: stap 4.8 .return cannot read them
    assert "statement" not in script
    assert plan.files["points.txt"] == 'sk kernel.function("tcp_add_backlog")'


def _module(tier="tcp_add_backlog_statement"):
    return StapModule(gzip.compress(b"\x7fELF not really a module" * 100), "4.18.0-553.el8_10.x86_64", tier, "builder", 200.0)


def test_a_shipped_module_is_unpacked_and_loaded_without_compiling(tmp_path):
    module = _module()
    plan = systemtap.plan(newer_kernel(), Window(20, port=80), module)
    assert plan.probe == "stap:tcp_add_backlog_statement"  # the module's tier, not this host's guess
    assert set(plan.files) == {"module.b64", "unpack.sh"}
    assert plan.command == "staprun -R fleetdiag_backlog.ko fd_want_netns=4026531956 fd_want_port=80 fd_duration=22 fd_interval_s=1"
    for name, text in plan.files.items():
        (tmp_path / name).write_text(text + "\n")
    done = subprocess.run(["sh", "-c", plan.prepare], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fleetdiag_backlog.ko").read_bytes() == gzip.decompress(module.gzip_data)
    assert plan.prepare_timeout_s < systemtap.PREPARE_TIMEOUT_S  # nothing to compile


def test_runtime_only_hosts_are_usable_with_a_module_from_elsewhere():
    runtime_only = dataclasses.replace(newer_kernel(), stap_version=None, staprun=True, debuginfo=None, kernel_headers=None)
    verdict = systemtap.verdict(runtime_only)
    assert verdict.usable and verdict.probe == systemtap.PREBUILT_PROBE
    assert "systemtap-runtime only" in verdict.reason and "4.18.0-553.el8_10.x86_64" in verdict.reason
    assert systemtap.build_problem(runtime_only) == "systemtap (stap) is not installed"
    nothing = dataclasses.replace(runtime_only, staprun=False)
    assert systemtap.verdict(nothing).reason == "systemtap (stap) is not installed"


def test_build_script_prints_the_module_or_the_hosts_words(tmp_path):
    """The build script, run for real with stand-in stap: success prints the module, failure one sentence."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stap = bin_dir / "stap"
    stap.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -L ]; then echo \'kernel.statement("x") $sk:struct sock*\'; exit 0; fi\n'
        'if [ -n "$FAIL" ]; then echo "semantic error: no match" >&2; exit 1; fi\n'
        "printf 'module-bytes' > fleetdiag_backlog.ko\n"
    )
    stap.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    script = systemtap.build_script(rhel7())
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    module = systemtap.parse_build(done.stdout, rhel7(), "b1", 1.5)
    assert gzip.decompress(module.gzip_data) == b"module-bytes"
    assert (module.kernel, module.tier, module.built_on) == ("3.10.0-1160.el7.x86_64", "tcp_v4_rcv_statement", "b1")
    failed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={**env, "FAIL": "1"}, timeout=60)
    with pytest.raises(ValueError, match="systemtap module build failed on .*semantic error: no match"):
        systemtap.parse_build(failed.stdout, rhel7(), "b1", 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]  # the temp dir went, both times


def test_compile_time_is_part_of_the_host_deadline():
    plan = systemtap.plan(rhel7(), Window(10))
    script = build_window_script(plan, 10)
    assert f"timeout -s INT -k 5 {systemtap.PREPARE_TIMEOUT_S} sh build.sh" in script
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
    done = subprocess.run(["sh", "build.sh"], cwd=tmp_path, capture_output=True, text=True,
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
    done = subprocess.run(["sh", "build.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 1
    # Said first: the window script shows the first lines that say what went wrong.
    assert done.stderr.strip().splitlines()[0].endswith("(task_work_cancel changed): update systemtap")
