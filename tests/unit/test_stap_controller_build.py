"""--stap-kernel: the option's errors, build ids from ELF notes, and the cache keyed by build id.

The compile itself runs for real against the lab guests' root filesystems (tests/e2e/test_guest_suites.py).
"""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import fleetdiag.module_builds as module_builds
from fleetdiag.errors import UsageError
from fleetdiag.facts.kernel import BUILD_ID_COMMAND, parse_build_id
from fleetdiag.model import StapModule
from fleetdiag.module_builds import ModuleBuilds, ModuleCache, ModuleUnavailable
from fleetdiag.stap_controller_build import KernelTree, build_mismatch, parse_stap_kernels, vmlinux_build_id
from tests.unit.test_module_builds import NoCommands, runtime_facts

RELEASE = "3.10.0-1160.el7.x86_64"  # the release of runtime_facts()


def _note(build_id: bytes, kind: int = 3, name: bytes = b"GNU\0") -> bytes:
    pad = lambda data: data + b"\0" * (-len(data) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(build_id), kind) + pad(name) + pad(build_id)


def _elf_with_notes(path: Path, notes: bytes) -> Path:
    """A minimal ELF64 file: header, one SHT_NOTE section holding NOTES, its section table."""
    header_size, section_size = 64, 64
    data_at = header_size
    table_at = data_at + len(notes)
    null_section = b"\0" * section_size
    note_section = struct.pack("<IIQQQQIIQQ", 0, 7, 0, 0, data_at, len(notes), 0, 0, 4, 0)
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, table_at, 0, header_size, 0, 0, section_size, 2, 0)
    path.write_bytes(header + notes + null_section + note_section)
    return path


def test_the_running_kernels_build_id_is_read_from_its_notes() -> None:
    out = subprocess.run(["sh", "-c", BUILD_ID_COMMAND], capture_output=True, text=True, check=False).stdout
    build_id = parse_build_id(out)
    assert build_id and len(build_id) == 40 and int(build_id, 16) >= 0
    # A note of another kind before it is skipped; garbage is no build id.
    other = _note(b"\x01\x02\x03", kind=1, name=b"Linux\0")
    assert parse_build_id(" ".join(f"{b:02x}" for b in other + _note(bytes.fromhex("beef")))) == "beef"
    assert parse_build_id("zz 00") is None and parse_build_id("") is None


def test_a_vmlinux_build_id_comes_from_its_note_section(tmp_path: Path) -> None:
    elf = _elf_with_notes(tmp_path / "vmlinux", _note(b"\x00", kind=1, name=b"Xen\0") + _note(bytes.fromhex("c0ffee11")))
    assert vmlinux_build_id(elf) == "c0ffee11"
    (tmp_path / "not-elf").write_bytes(b"#!/bin/sh\n")
    assert vmlinux_build_id(tmp_path / "not-elf") is None
    assert vmlinux_build_id(tmp_path / "absent") is None
    if shutil.which("readelf"):  # a real binary's id, as binutils reads it
        real = shutil.which("sh") or "/bin/sh"
        notes = subprocess.run(["readelf", "-n", str(Path(real).resolve())], capture_output=True, text=True).stdout
        expected = next((line.split()[-1] for line in notes.splitlines() if "Build ID" in line), None)
        assert vmlinux_build_id(Path(real).resolve()) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-equals", "expected RELEASE=DIR"),
        ("=/tmp", "expected RELEASE=DIR"),
        ("a/b=/tmp", "expected RELEASE=DIR"),
        ("5.10.0-32-cloud-amd64=/nonexistent/tree", "/nonexistent/tree is not a directory"),
    ],
)
def test_bad_stap_kernel_values_are_named_with_what_to_do(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_stap_kernels([value])
    assert caught.value.hint


def test_a_tree_without_vmlinux_or_named_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"no vmlinux with debug symbols at {tmp_path}/vmlinux"):
        parse_stap_kernels([f"r1={tmp_path}"])
    _elf_with_notes(tmp_path / "vmlinux", _note(b"\x01"))
    (tmp_path / "Makefile").write_text("")
    if shutil.which("stap"):
        assert parse_stap_kernels([f"r1={tmp_path}"])["r1"].directory == tmp_path
        with pytest.raises(UsageError, match="names r1 twice"):
            parse_stap_kernels([f"r1={tmp_path}", f"r1={tmp_path}"])


def test_a_tree_of_another_build_of_the_release_is_refused(tmp_path: Path) -> None:
    _elf_with_notes(tmp_path / "vmlinux", _note(bytes.fromhex("aaaa")))
    tree = KernelTree(RELEASE, tmp_path)
    facts = dataclasses.replace(runtime_facts(), kernel_build_id="bbbb")
    assert "another build than the one running here (build id aaaa, the host runs bbbb)" in (build_mismatch(tree, facts) or "")
    assert build_mismatch(tree, dataclasses.replace(facts, kernel_build_id="aaaa")) is None
    assert build_mismatch(tree, dataclasses.replace(facts, kernel_build_id=None)) is None  # unknown: stap checks at load
    builds = ModuleBuilds(ModuleCache(tmp_path / "cache"), trees={RELEASE: tree})
    with pytest.raises(ModuleUnavailable, match="another build"):
        builds.module_for("r1", facts, NoCommands())


def test_the_controller_builds_once_for_every_host_and_the_cache_keeps_each_build_apart(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_build(tree, facts, timeout=0):
        calls.append(facts.kernel_build_id)
        return StapModule(gzip.compress(b"ko"), tree.release, "tcp_add_backlog_return", "controller", 12.0,
                          build_id=facts.kernel_build_id)  # fmt: skip

    monkeypatch.setattr(module_builds, "build_on_controller", fake_build)
    monkeypatch.setattr(module_builds, "build_mismatch", lambda tree, facts: None)
    tree = KernelTree(RELEASE, tmp_path)
    cache = ModuleCache(tmp_path / "cache")
    first = dataclasses.replace(runtime_facts(), kernel_build_id="aaaa")
    builds = ModuleBuilds(cache, trees={RELEASE: tree})
    module, origin = builds.module_for("r1", first, NoCommands())
    again, origin2 = builds.module_for("r2", first, NoCommands())
    assert again is module and calls == ["aaaa"]
    assert (origin.how, origin.built_on) == ("built on controller", "controller") == (origin2.how, origin2.built_on)
    assert "--stap-kernel" in origin.sentence()
    # The cache holds it under the build id: the same build finds it, a rebuilt kernel of the release does not.
    assert cache.load(RELEASE, "aaaa") is not None and cache.load(RELEASE, "aaaa").build_id == "aaaa"
    assert cache.load(RELEASE, "cccc") is None and cache.load(RELEASE) is None
    rebuilt = dataclasses.replace(runtime_facts(), kernel_build_id="cccc")
    ModuleBuilds(cache, trees={RELEASE: tree}).module_for("r3", rebuilt, NoCommands())
    assert calls == ["aaaa", "cccc"]
    with pytest.raises(ValueError, match="not a build id"):
        cache.load(RELEASE, "../x")
