"""The lab's second kernel: a qemu guest with Debian's 6.1 kernel, where systemtap and bcc really run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.lab import sshd
from tests.lab.fleet import LabFleet
from tests.lab.guest.backlog import DELAY_SCRIPT, generate_guest_backlog_drops
from tests.lab.guest.drop_count import GuestDropCounter
from tests.lab.guest.image import GuestImage
from tests.lab.guest.stap_modules import StapCompileError, compile_module
from tests.lab.guest.vm import GuestVM
from tests.lab.requirements import program

pytestmark = [pytest.mark.lab, pytest.mark.guest]

GENERATOR_RUNS = 3
# 300 duplicates; on 6.1.0-56 about 47 fit in the backlog and 252-253 are dropped, run after run.
MAX_SPREAD = 10


def strict_ssh(vm: GuestVM, known_hosts: Path, command: str) -> subprocess.CompletedProcess:
    """A fresh ssh connection (no shared master, which would skip the host key check)."""
    argv = [
        program("ssh"), "-F", "none", "-o", "ControlPath=none",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-i", str(vm.key_path),
        f"root@{vm.address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_guest_answers_ssh_only_with_its_recorded_host_key(lab_guest: GuestVM, tmp_path: Path) -> None:
    ok = strict_ssh(lab_guest, lab_guest.known_hosts_path, "hostname")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "fdl-guest"
    other_key = sshd.generate_ed25519_key(tmp_path / "other_host_key", "not-the-guest")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(sshd.known_hosts_line(lab_guest.address, 22, other_key) + "\n")
    refused = strict_ssh(lab_guest, wrong, "true")
    assert refused.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr, refused.stderr


def test_guest_runs_debians_61_kernel(lab_guest: GuestVM, guest_image: GuestImage) -> None:
    release = lab_guest.check("uname -r").strip()
    assert re.fullmatch(r"6\.1\.\d+-\d+-cloud-amd64", release), release
    assert release == guest_image.kernel_release


def test_guest_has_every_tracer_and_what_they_need(lab_guest: GuestVM) -> None:
    release = lab_guest.kernel_release
    out = lab_guest.check(
        "stap -V 2>&1 | head -1; command -v staprun; bpftrace --version;"
        " python3 -c 'import bcc; print(\"bcc\", bcc.__file__)';"
        f" test -f /lib/modules/{release}/build/Makefile && echo headers;"
        f" test -f /usr/lib/debug/lib/modules/{release}/vmlinux && echo debuginfo;"
        f" cmp -s /boot/System.map-{release} /usr/lib/debug/boot/System.map-{release} && echo system.map"
    )
    assert "Systemtap translator/driver (version 4." in out
    assert "/staprun" in out
    assert "bpftrace v0." in out
    assert "bcc /usr/lib/python3/dist-packages/bcc" in out
    assert {"headers", "debuginfo", "system.map"} <= set(out.split())


def test_guest_and_namespace_hosts_share_one_lab_network(lab_fleet: LabFleet, lab_guest: GuestVM) -> None:
    host = lab_fleet.host("h01")
    reach = f"import socket; socket.create_connection(({lab_guest.address!r}, 22), timeout=10).recv(7)"
    result = lab_fleet.exec(host, ["python3", "-c", reach], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert lab_guest.check("ip -4 -o addr show eth0").split()[3] == f"{lab_guest.address}/24"


def test_generator_drops_are_counted_alike_by_the_kernel_and_bcc(lab_guest: GuestVM) -> None:
    with GuestDropCounter(lab_guest, "bcc") as bcc:
        run = generate_guest_backlog_drops(lab_guest)
    assert run.drops > 0
    assert bcc.count == run.drops
    assert run.held_seconds >= 3.0


def test_generator_drops_are_counted_alike_by_the_kernel_and_bpftrace(lab_guest: GuestVM) -> None:
    with GuestDropCounter(lab_guest, "bpftrace") as bpftrace:
        run = generate_guest_backlog_drops(lab_guest)
    assert run.drops > 0
    assert bpftrace.count == run.drops


def test_generator_gives_the_same_count_run_after_run(lab_guest: GuestVM) -> None:
    runs = [generate_guest_backlog_drops(lab_guest) for _ in range(GENERATOR_RUNS)]
    drops = [run.drops for run in runs]
    assert min(drops) > 0
    assert max(drops) - min(drops) <= MAX_SPREAD, drops
    assert all(run.drops < run.segments for run in runs), "some segments must fit in the backlog"


def test_fewer_segments_give_fewer_drops_by_exactly_the_difference(lab_guest: GuestVM) -> None:
    full = generate_guest_backlog_drops(lab_guest, segments=300)
    fewer = generate_guest_backlog_drops(lab_guest, segments=200)
    # The same number fit in the backlog each time; everything past them is dropped.
    assert abs((full.segments - full.drops) - (fewer.segments - fewer.drops)) <= MAX_SPREAD // 2
    assert fewer.drops > 0


def test_controller_compiles_for_the_guest_kernel_only_with_the_runtime_fix(guest_image: GuestImage) -> None:
    facts = guest_image.facts
    assert facts["stap_patched_file"] == "/usr/share/systemtap/runtime/stp_task_work.c"
    assert facts["stap_patched_lines"] == "12,13,38,107"
    with pytest.raises(StapCompileError, match="task_work_cancel"):
        compile_module(guest_image, DELAY_SCRIPT, "fdl_lab_unpatched", ("-g",), runtime=facts["stap_original_runtime"])
