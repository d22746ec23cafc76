"""Compile systemtap modules for the guest's kernel on the controller, in a chroot of its rootfs.

This is systemtap's own cross-compile path (`stap -r KERNEL -p4`): the rootfs holds the guest kernel's
headers and debug symbols, so the controller (6.18, no headers) builds a .ko that the guest loads with
staprun. Modules are cached beside the image by a hash of script, options and kernel.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.guest.image import GuestImage
from tests.lab.requirements import program

COMPILE_TIMEOUT = 15 * 60  # cold compile of a module is about 12 s here, more under load
_CHROOT_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


class StapCompileError(RuntimeError):
    """stap failed in the chroot; the message carries its stderr."""


@dataclass(frozen=True)
class StapModule:
    """A compiled module and how it came to be."""

    path: Path  # NAME.ko on the controller
    name: str  # module name, what staprun and /sys/module show
    compile_seconds: float  # 0.0 when it came from the cache
    cached: bool


def compile_module(
    image: GuestImage, script: Path, name: str, options: tuple[str, ...] = (), runtime: str | None = None
) -> StapModule:
    """SCRIPT compiled for the guest kernel as NAME.ko; e.g. options=("-g", "-DSTP_NO_OVERLOAD").

    RUNTIME selects another runtime dir inside the rootfs (stap -R), e.g. Debian's unpatched one.
    """
    release = image.kernel_release
    key = hashlib.sha256("\0".join([script.read_text(), name, release, runtime or "", *options]).encode())
    cached = image.directory / "stap" / f"{name}-{key.hexdigest()[:16]}.ko"
    if cached.exists():
        return StapModule(cached, name, 0.0, cached=True)
    work = Path(tempfile.mkdtemp(prefix="fdl-stap-", dir=image.rootfs / "tmp"))
    try:
        shutil.copy(script, work / "script.stp")
        inner = ["stap", "-r", release, *(["-R", runtime] if runtime else []), *options,
                 "-p4", "-m", name, "script.stp"]  # fmt: skip
        started = time.monotonic()
        result = run_in_rootfs(image, f"cd /tmp/{work.name} && exec {' '.join(inner)}", COMPILE_TIMEOUT)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise StapCompileError(f"stap -r {release} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        cached.parent.mkdir(exist_ok=True)
        shutil.move(work / f"{name}.ko", cached)
        return StapModule(cached, name, seconds, cached=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_in_rootfs(image: GuestImage, shell_command: str, timeout: float) -> subprocess.CompletedProcess:
    """`sh -c SHELL_COMMAND` chrooted into the image's rootfs, with /proc and /dev in a private mount ns."""
    root = image.rootfs
    setup = (
        f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
        f'exec chroot {root} /usr/bin/env -i {_CHROOT_PATH} HOME=/root LC_ALL=C.UTF-8 sh -c "$0"'
    )
    # The mounts die with the namespace, so a killed compile leaves nothing mounted.
    argv = [program("unshare"), "--mount", "--propagation", "private", "sh", "-c", setup, shell_command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
