"""The window script and the interpretation of what it prints."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from fleetdiag.collector import window_result
from fleetdiag.model import HostSpec, Status, Window
from fleetdiag.tracers import bpftrace, counters
from fleetdiag.transport.base import CommandResult
from fleetdiag.window_script import build_window_script, probe_lifetime_s
from tests.unit.conftest import fixture_text

SPEC = HostSpec(name="h01", address="10.0.0.1")


def test_window_script_is_valid_shell_and_carries_the_probe(facts_6_18):
    plan = bpftrace.plan(facts_6_18, Window(30))
    script = build_window_script(plan, 30)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert shlex.quote(plan.files["probe.bt"].rstrip()) in script  # quoted: the shell expands nothing in it
    assert f"timeout -s INT -k 2 {probe_lifetime_s(30, plan.attach_allowance_s)} bpftrace -f json probe.bt" in script
    assert "BPFTRACE_MAP_KEYS_MAX=8192" in script
    assert "@@" + "FILES" + "@@" not in script


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_window_script_runs_the_counters_tier_for_real(facts_6_18, shell):
    script = build_window_script(counters.plan(facts_6_18, Window(2)), 2)
    launched = time.time()
    done = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=30)
    result = window_result(SPEC, facts_6_18, counters, "counters", CommandResult(done.stdout, done.stderr, done.returncode))
    assert result.status is Status.OK, result.error
    assert result.counters["TCPBacklogDrop"] == 0
    # The host's clock (uptime against one `date`) says the epoch time, to its 10 ms...
    assert launched - 0.05 <= result.window_start <= launched + 2, (launched, result.window_start)
    # ...and the sampler keeps to the window: its samples' own time does not stretch it.
    assert 1.98 <= result.window_end - result.window_start < 2.5


def test_bash_reads_the_epoch_time_itself_and_forks_no_date(facts_6_18, tmp_path: Path):
    """bash 5's $EPOCHREALTIME anchors the window's clock: no `date` process while a sweep's hosts connect."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "date").write_text("#!/bin/sh\necho date-was-run >&2\nexit 1\n")
    (bin_dir / "date").chmod(0o755)
    script = build_window_script(counters.plan(facts_6_18, Window(1)), 1)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    launched = time.time()
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env=env)
    assert "date-was-run" not in done.stderr
    result = window_result(SPEC, facts_6_18, counters, "counters", CommandResult(done.stdout, done.stderr, done.returncode))
    assert result.status is Status.OK, result.error
    assert launched - 0.05 <= result.window_start <= launched + 2, (launched, result.window_start)


def test_the_counters_window_opens_before_its_sampler_starts():
    """The counters tier's instrument is TcpExt, read by the script: a slow sampler start is not a late window."""
    from fleetdiag.model import Fidelity
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan

    slow_start = "sh -c 'sleep 1; echo @@attached; sleep 1'"
    for fidelity, opened_after_s in ((Fidelity.SAMPLED, 0.0), (Fidelity.TRACED, 0.9)):
        script = build_window_script(ProbePlan(tracer="x", probe="x", command=slow_start, fidelity=fidelity), 2)
        launched = time.time()
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        start, end, _ = split_sections(done.stdout)["window"].split()
        assert opened_after_s <= float(start) - launched + 0.05 < opened_after_s + 0.8, (fidelity, done.stdout)


def test_a_tracers_files_leave_the_disk_once_it_watches_and_the_report_still_prints(tmp_path: Path):
    """After @@attached the window holds its files open and removes its temp dir (SIGKILL-safe);
    the counters tier's sampler may still be reading its script then, so its dir goes at the end."""
    from fleetdiag.model import Fidelity
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan

    probe = "sh -c 'echo @@attached; sleep 1; if [ -e \"$PWD\" ]; then echo dir-still-there; else echo dir-gone; fi'"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    for fidelity, seen in ((Fidelity.TRACED, "dir-gone"), (Fidelity.SAMPLED, "dir-still-there")):
        script = build_window_script(ProbePlan(tracer="x", probe="x", command=probe, fidelity=fidelity), 2)
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, env=env)
        sections = split_sections(done.stdout)
        assert seen in sections["probe_out"], (fidelity, done.stdout, done.stderr)
        assert "@@attached" in sections["probe_out"]
        assert "TcpExt:" in sections["counters_before"] and "TcpExt:" in sections["counters_after"]
        assert list(tmp_path.iterdir()) == []  # and nothing is left at the end either way


def test_recorded_bpftrace_window(facts_6_18):
    stdout = fixture_text("window/bpftrace-no-socket.stdout.txt")
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0))
    assert result.status is Status.OK
    assert dict(result.drops) == {"NO_SOCKET": 6}
    assert len(result.flows) == 6
    assert result.counters["TCPBacklogDrop"] == 0
    assert result.window_end > result.window_start
    assert result.notes == ()


def test_error_section_becomes_the_host_error(facts_6_18):
    stdout = "@@fleetdiag error\nno writable temp dir: mktemp -d failed in /tmp\n"
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 3))
    assert result.status is Status.FAILED
    assert result.error == "no writable temp dir: mktemp -d failed in /tmp"


def test_probe_that_never_attached_says_why(facts_6_18):
    stdout = (
        "@@fleetdiag window\n1.0 2.0 1\n@@fleetdiag probe_out\n@@fleetdiag probe_err\n"
        "ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.\n"
        "ERROR: Could not resolve symbol: /proc/self/exe:BEGIN_trigger\n"
    )
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0))
    assert result.status is Status.FAILED
    assert result.error == "bpftrace did not start: ERROR: Could not resolve symbol: /proc/self/exe:BEGIN_trigger"


def test_cut_off_output_is_a_failure_not_a_crash(facts_6_18):
    result = window_result(
        SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult("@@fleetdiag counters_before\n", "Killed", -1)
    )
    assert result.status is Status.FAILED
    assert "ended early (Killed)" in result.error
    exited = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult("", "Killed\n", 0))
    assert exited.error == "the window script ended early (exit code 0: Killed)"


def test_recorded_real_backlog_drops_on_a_lab_host():
    """Output recorded on a lab host during real backlog drops (generator counted 21)."""
    from fleetdiag.facts import parse_facts

    facts = parse_facts(fixture_text("detection/lab-6.18-netns/stdout.txt"))
    stdout = fixture_text("window/bpftrace-socket-backlog.stdout.txt")
    result = window_result(SPEC, facts, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0))
    assert result.status is Status.OK
    assert result.counters["TCPBacklogDrop"] == 21
    assert result.drops["SOCKET_BACKLOG"] == 21
    (flow,) = [f for f in result.flows if f.reason == "SOCKET_BACKLOG"]
    assert (flow.laddr, flow.lport, flow.raddr) == ("10.213.0.2", 5201, "10.213.0.3")
    assert flow.netns == facts.netns == 4026532178
    assert (flow.rcvbuf, flow.sndbuf) == (8192, 69120)
    # The generator set SO_RCVBUF by hand, so SOCK_RCVBUF_LOCK (2) is set (6 = it + BINDADDR_LOCK).
    assert flow.userlocks & 2
    assert flow.queue_max >= flow.rmem_alloc_max


def test_a_failed_compile_reports_why_not_just_the_last_words():
    """A prepare step failing like stap 4.8 does: the host's error carries the semantic error line."""
    from fleetdiag.model import frozen_map
    from fleetdiag.tracers.base import ProbePlan

    stap_err = (
        "Pass 1: parsed\\nsemantic error: type mismatch (unknown): keyword return at probe.stp:39:5\\n"
        "        source:     return\\n                    ^\\n\\nPass 2: analysis failed.  [man error::pass2]\\n"
        "Tip: /usr/share/doc/systemtap/README.Debian should help you get started."
    )
    plan = ProbePlan(
        tracer="stap",
        probe="stap:test",
        files=frozen_map({"prep.sh": f"printf '{stap_err}\\\\n' >&2; exit 1"}),
        prepare="sh prep.sh",
        prepare_timeout_s=10,
        command="sh -c 'echo @@attached; sleep 1'",
    )
    done = subprocess.run(["sh", "-c", build_window_script(plan, 1)], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("@@fleetdiag error\n")
    assert "semantic error: type mismatch (unknown): keyword return" in done.stdout
    assert "Tip:" not in done.stdout


def test_a_probe_ended_by_the_hosts_time_limit_keeps_its_results(facts_6_18):
    """exit 124 is `timeout` ending a slow-attaching probe: results stand, the note says how long it watched."""
    stdout = fixture_text("window/bpftrace-no-socket.stdout.txt")
    head, _, tail = stdout.partition("@@fleetdiag window\n")
    first, _, rest = tail.partition("\n")
    start, end, _rc = first.split()
    stdout = f"{head}@@fleetdiag window\n{start} {end} 124\n{rest}"
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0))
    assert result.status is Status.OK
    assert dict(result.drops) == {"NO_SOCKET": 6}
    (note,) = result.notes
    assert note.startswith("bpftrace was slow to attach and the host's time limit ended it: it watched 3.3 s")


def test_the_window_opens_at_a_json_wrapped_attach_line():
    """bpftrace -f json prints {"type": "printf", "data": "@@attached\\n"}: still the window's start."""
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan

    probe = """sh -c 'echo "{\\"type\\": \\"printf\\", \\"data\\": \\"@@attached\\\\n\\"}"; sleep 2'"""
    script = build_window_script(ProbePlan(tracer="x", probe="x", command=probe), 2)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    start, end, _ = split_sections(done.stdout)["window"].split()
    assert float(end) - float(start) >= 1.5, done.stdout  # opened at attach, not when the probe ended


def test_a_stats_reading_probe_slow_to_attach_is_read_before_the_hosts_limit_ends_it(facts_6_18):
    """Issue 19: bpftrace 0.17 takes 16 s to its BEGIN in the emulated 6.1 guest, past its attach allowance,
    so `timeout` (LIFETIME s from the launch) came before the window's end and its INT unloaded the
    programs unread (probe_stats null). The stopper now reads them, and stops the probe, a second
    before that limit; the window is shorter and the host says so."""
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan

    # Attaches after 2 s of a 1 s allowance: the limit (launch + 1 + 3 s) comes before the window's end (attach + 3 s).
    probe = "sh -c 'sleep 2; echo @@attached; sleep 20 & w=$!; trap \"kill $w; exit 0\" INT; wait'"
    plan = ProbePlan(tracer="bpftrace", probe="x", command=probe, reads_stats=True, attach_allowance_s=1)
    started = time.monotonic()
    done = subprocess.run(["sh", "-c", build_window_script(plan, 3)], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    sections = split_sections(done.stdout)
    assert "stopped_by limit" in sections["probe_stats"], done.stdout
    start, end, rc = sections["window"].split()
    assert rc == "0", done.stdout  # the stopper's INT, not timeout's (124)
    assert 0.5 <= float(end) - float(start) < 2.5 and took < 8, (start, end, took)
    output = CommandResult(done.stdout, "", 0)
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", output, plan=plan)
    assert result.status is Status.OK
    assert any(n.startswith("bpftrace was slow to attach and the host's time limit ended it") for n in result.notes)
    # On time, the stopper reads at the window's end and says so.
    plan = ProbePlan(tracer="bpftrace", probe="x", command=probe, reads_stats=True, attach_allowance_s=10)
    done = subprocess.run(["sh", "-c", build_window_script(plan, 2)], capture_output=True, text=True, timeout=30)
    assert "stopped_by window" in split_sections(done.stdout)["probe_stats"], done.stdout


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_stats_reading_window_closes_before_the_probe_stops(facts_6_18, shell):
    """The window's closing counters are read while the probe still watches, before its INT: bpftrace
    then takes a while to detach and print its maps, and drops in that time were counted, never traced."""
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan

    # After its INT, this probe takes 1 s to go, as a tracer printing its maps does.
    probe = "sh -c 'echo @@attached; sleep 20 & w=$!; trap \"kill $w; sleep 1; exit 0\" INT; wait'"
    plan = ProbePlan(tracer="bpftrace", probe="x", command=probe, reads_stats=True, attach_allowance_s=10)
    done = subprocess.run([shell, "-c", build_window_script(plan, 1)], capture_output=True, text=True, timeout=30)
    sections = split_sections(done.stdout)
    closed = [line.split() for line in sections["counters_after"].splitlines() if line.startswith("closed_at ")]
    assert len(closed) == 1 and "TcpExt:" in sections["counters_after"], done.stdout
    _, after_exit, rc = sections["window"].split()
    assert rc == "0", done.stdout
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(done.stdout, "", 0), plan=plan)
    assert result.status is Status.OK, result.error
    assert result.window_end == float(closed[0][1])
    assert float(after_exit) - result.window_end >= 0.9, done.stdout  # the probe's 1 s after its INT is not in it
    assert result.counters.get("TCPBacklogDrop") is not None  # the closing read is the window's counters


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_window_stopped_early_closes_before_the_probe_stops(facts_6_18, shell):
    """Stdin's EOF (the controller's SIGINT, a fetch ending an armed window early) closes the window as
    its end does: the counters and the programs are read while the probe still watches, then it stops."""
    from fleetdiag.sections import split_sections
    from fleetdiag.tracers.base import ProbePlan
    from fleetdiag.transport.base import SESSION_ARGS

    probe = "sh -c 'echo @@attached; sleep 60 & w=$!; trap \"kill $w; sleep 1; exit 0\" INT; wait'"
    plan = ProbePlan(tracer="bpftrace", probe="x", command=probe, reads_stats=True, attach_allowance_s=10)
    proc = subprocess.Popen([shell, "-c", build_window_script(plan, 30), *SESSION_ARGS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.5)  # attached, well inside its 30 s window
    proc.stdin.close()
    stdout = proc.stdout.read()
    proc.wait(timeout=20)
    sections = split_sections(stdout)
    assert "stopped_by stop" in sections["probe_stats"], stdout
    closed = [line.split() for line in sections["counters_after"].splitlines() if line.startswith("closed_at ")]
    assert len(closed) == 1 and "TcpExt:" in sections["counters_after"], stdout
    _, after_exit, _ = sections["window"].split()
    result = window_result(SPEC, facts_6_18, bpftrace, "bpftrace:kfree_skb", CommandResult(stdout, "", 0), plan=plan)
    assert result.status is Status.OK, result.error
    assert result.window_end == float(closed[0][1]) and result.window_end - result.window_start < 20
    assert float(after_exit) - result.window_end >= 0.9, stdout
