"""systemtap modules built on the controller (``--stap-kernel RELEASE=DIR``), for hosts with only systemtap-runtime.

DIR is what the user has for that kernel release, in one of two forms:

- a kernel build tree (``Makefile``, ``.config``, ``vmlinux`` with DWARF): the controller's own stap
  compiles with ``stap -r DIR``, as systemtap's cross-compiling documents;
- a root filesystem of that release (a chroot or an unpacked container image with stap, the
  headers and the -dbg/debuginfo package installed, e.g. ``DIR/usr/bin/stap``): the compile runs
  chrooted into it with ``stap -r RELEASE`` (root on the controller), so the compiler and the
  headers are the release's own.

Either way the module is the one a host of that release would have built, its build id checked
against the host's running kernel before it ships, and it lands in the controller's module cache.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fleetdiag.errors import UsageError
from fleetdiag.facts.kernel import build_id_from_notes
from fleetdiag.model import HostFacts, StapModule
from fleetdiag.tracers import systemtap

BUILT_ON = "controller"
_CHROOT_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
_MODULE_FILE = f"{systemtap.MODULE}.ko"


class ControllerBuildError(RuntimeError):
    """The compile on the controller failed; the message is stap's own words, one line."""


@dataclass(frozen=True)
class KernelTree:
    """One ``--stap-kernel RELEASE=DIR``: where the controller compiles modules for RELEASE."""

    release: str
    directory: Path

    @property
    def is_rootfs(self) -> bool:
        """A whole root filesystem of the release (compile in a chroot), not a bare build tree."""
        return (self.directory / "usr/bin/stap").exists()

    @property
    def vmlinux(self) -> Path | None:
        """The kernel image with DWARF the module is compiled against (its build id is the kernel's)."""
        if self.is_rootfs:
            candidates = [f"usr/lib/debug/boot/vmlinux-{self.release}", f"usr/lib/debug/lib/modules/{self.release}/vmlinux",
                          f"boot/vmlinux-{self.release}"]  # fmt: skip
        else:
            candidates = ["vmlinux"]
        return next((self.directory / c for c in candidates if (self.directory / c).is_file()), None)

    def _in_root(self, relative: str) -> Path:
        """RELATIVE inside the root filesystem, its absolute symlinks resolved inside it too (not on the controller)."""
        path = self.directory / relative
        for _ in range(8):
            if not path.is_symlink():
                return path
            target = os.readlink(path)
            path = self.directory / target.lstrip("/") if target.startswith("/") else path.parent / target
        return path

    def build_id(self) -> str | None:
        """The GNU build id of that vmlinux, or None when it has none (or there is no vmlinux)."""
        return vmlinux_build_id(self.vmlinux) if self.vmlinux else None

    def problem(self) -> str | None:
        """Why this tree cannot build modules here (None: it can)."""
        if not self.directory.is_dir():
            return f"{self.directory} is not a directory"
        if self.vmlinux is None:
            where = f"{self.directory}/usr/lib/debug/boot/vmlinux-{self.release}" if self.is_rootfs else f"{self.directory}/vmlinux"
            return f"no vmlinux with debug symbols at {where}"
        if self.is_rootfs:
            if os.geteuid() != 0:
                return f"compiling in the root filesystem {self.directory} needs root on the controller (chroot)"
            if not self._in_root(f"lib/modules/{self.release}/build").exists():
                return f"no kernel headers for {self.release} in {self.directory} (lib/modules/{self.release}/build)"
        elif not shutil.which("stap"):
            return "systemtap (stap) is not installed on the controller"
        elif not (self.directory / "Makefile").is_file():
            return f"{self.directory} has no Makefile: not a kernel build tree"
        return None


def parse_stap_kernels(values: Iterable[str]) -> dict[str, KernelTree]:
    """``RELEASE=DIR`` options as trees by release; a UsageError names the bad one and what to do."""
    trees: dict[str, KernelTree] = {}
    for value in values:
        release, sep, directory = value.partition("=")
        release, directory = release.strip(), directory.strip()
        if not sep or not release or not directory or "/" in release:
            raise UsageError(
                f"--stap-kernel {value!r}: expected RELEASE=DIR",
                hint="e.g. --stap-kernel 5.10.0-32-cloud-amd64=/srv/roots/bullseye (the release as `uname -r` prints it)",
            )
        if release in trees:
            raise UsageError(f"--stap-kernel names {release} twice", hint="give one directory per kernel release")
        tree = KernelTree(release, Path(directory).expanduser().resolve())
        problem = tree.problem()
        if problem:
            raise UsageError(f"--stap-kernel {release}: {problem}", hint="give a kernel build tree or a root filesystem of that release")
        trees[release] = tree
    return trees


def vmlinux_build_id(path: Path) -> str | None:
    """The GNU build id in an ELF64 little-endian file's note sections (stdlib only), or None."""
    try:
        with open(path, "rb") as elf:
            header = elf.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            shoff = int.from_bytes(header[0x28:0x30], "little")
            shentsize = int.from_bytes(header[0x3A:0x3C], "little")
            shnum = int.from_bytes(header[0x3C:0x3E], "little")
            elf.seek(shoff)
            table = elf.read(shentsize * shnum)
            for index in range(shnum):
                entry = table[index * shentsize : (index + 1) * shentsize]
                if int.from_bytes(entry[4:8], "little") != 7:  # SHT_NOTE
                    continue
                offset, size = int.from_bytes(entry[0x18:0x20], "little"), int.from_bytes(entry[0x20:0x28], "little")
                elf.seek(offset)
                found = build_id_from_notes(elf.read(size))
                if found:
                    return found
    except OSError:
        return None
    return None


def build_mismatch(tree: KernelTree, facts: HostFacts) -> str | None:
    """Why TREE's module would not be the host's kernel's (another build of the release), or None."""
    tree_id, host_id = tree.build_id(), facts.kernel_build_id
    if tree_id and host_id and tree_id != host_id:
        return (
            f"the kernel tree given for {tree.release} ({tree.directory}) is another build than the one "
            f"running here (build id {tree_id[:12]}, the host runs {host_id[:12]}): a module from it would not load"
        )
    return None


def build_on_controller(tree: KernelTree, facts: HostFacts, timeout: float = systemtap.PREPARE_TIMEOUT_S) -> StapModule:
    """Compile fleetdiag's module for FACTS's host from TREE on this machine; raise ControllerBuildError."""
    files = systemtap.build_files(facts)
    scratch_parent = tree.directory / "tmp" if tree.is_rootfs else None
    work = Path(tempfile.mkdtemp(prefix="fleetdiag-stap-", dir=scratch_parent))
    try:
        for name, text in files.items():
            (work / name).write_text(text)
        started = time.monotonic()
        result = _run_build(tree, work, timeout)
        seconds = time.monotonic() - started
        module = work / _MODULE_FILE
        if result.returncode != 0 or not module.is_file():
            raise ControllerBuildError(_failure_sentence(tree, result))
        return StapModule(
            gzip_data=gzip.compress(module.read_bytes(), 9), kernel=tree.release, tier=systemtap.tier(facts) or "",
            built_on=BUILT_ON, build_seconds=seconds, build_id=tree.build_id(),
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_build(tree: KernelTree, work: Path, timeout: float) -> subprocess.CompletedProcess:
    """build.sh in WORK: chrooted into a root filesystem, or with the controller's stap against a tree."""
    if tree.is_rootfs:
        inner = f"cd /tmp/{work.name} && FD_STAP_KERNEL={tree.release} FD_STAP_RELEASE={tree.release} exec sh build.sh"
        root = str(tree.directory)
        # /proc and /dev inside, in a private mount namespace: the mounts die with the compile.
        setup = (
            'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && '
            f'exec chroot "$1" /usr/bin/env -i {_CHROOT_PATH} HOME=/root LC_ALL=C.UTF-8 sh -c "$2"'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", root, inner]
        env = None
    else:
        argv = ["sh", "build.sh"]
        env = {**os.environ, "FD_STAP_KERNEL": str(tree.directory), "FD_STAP_RELEASE": tree.release}
    try:
        return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"the compile did not finish within {timeout:.0f} s")


def _failure_sentence(tree: KernelTree, result: subprocess.CompletedProcess) -> str:
    """The first error lines stap printed, as one sentence (the same words a host's build gives)."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Tip: ")]
    picked = [line for line in lines if any(w in line.lower() for w in ("error", "does not build", "finds no"))][:2] or lines[-3:]
    why = " ".join(line.strip() for line in picked) or f"exit code {result.returncode}"
    return f"systemtap module build on the controller for {tree.release} ({tree.directory}) failed: {why}"

