"""The lab guests' disk images: built once per Debian suite by build-image.sh, cached by a hash of its recipe.

Run `python3 -m tests.lab.guest.image [SUITE]` (root) to build one ahead of the tests and print where it
is. SUITE is bookworm (6.1, the default), bullseye (5.10) or trixie (6.12).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.lab.requirements import find_program

BUILD_SCRIPT = Path(__file__).with_name("build-image.sh")
CACHE_ROOT = Path(os.environ.get("FDL_LAB_CACHE", "/var/cache/fleetdiag-lab"))
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"  # depends on the suite's current cloud kernel ABI
DEFAULT_SUITE = "bookworm"
# Each suite's kernel series: the ABI read from apt-cache must belong to it (a sanity check, not a pin).
SUITE_KERNEL_SERIES = {"bookworm": "6.1", "bullseye": "5.10", "trixie": "6.12"}
LISTS_MAX_AGE = 12 * 3600  # a suite's private apt lists are refreshed when older than this
BUILD_TIMEOUT = 45 * 60  # a cold build on a slow mirror; about 5 min here
_SOURCES_DIR = Path("/etc/apt/sources.list.d")
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
_DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
_BUILD_PROGRAMS = ("debootstrap", "mkfs.ext4", "unshare", "chroot", "apt-cache", "ssh-keygen")


class GuestImageError(RuntimeError):
    """The image could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class GuestImage:
    """A built image: the files qemu boots and the facts recorded when it was built."""

    directory: Path

    @property
    def disk(self) -> Path:
        """Raw ext4 root filesystem (boot it with -snapshot: it is shared and never written)."""
        return self.directory / "guest.ext4"

    @property
    def rootfs(self) -> Path:
        """The tree the disk was made from; chroot into it to compile stap modules with `-r`."""
        return self.directory / "rootfs"

    @property
    def vmlinuz(self) -> Path:
        """The guest kernel, booted directly by qemu."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """The guest's initramfs."""
        return self.directory / "initrd.img"

    @property
    def key_path(self) -> Path:
        """Private key of the controller, authorized for root in the guest."""
        return self.directory / "id_ed25519"

    @property
    def host_public_key(self) -> str:
        """The guest sshd's ed25519 public key line, for known_hosts."""
        return (self.directory / "ssh_host_ed25519_key.pub").read_text().strip()

    @property
    def facts(self) -> dict[str, str]:
        """build.env as a dict: kernel_release, kernel_version, versions, sizes, build seconds."""
        lines = (self.directory / "build.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    @property
    def kernel_release(self) -> str:
        """`uname -r` in the guest, e.g. 6.1.0-56-cloud-amd64."""
        return self.facts["kernel_release"]

    @property
    def suite(self) -> str:
        """The Debian suite the image was built from (images before suites were all bookworm)."""
        return self.facts.get("suite", DEFAULT_SUITE)


def missing_build_requirements() -> list[str]:
    """What stops an image build here; empty when it can run."""
    absent = [name for name in _BUILD_PROGRAMS if not find_program(name)]
    missing = [f"`{name}` (apt-get install debootstrap e2fsprogs util-linux)" for name in absent]
    if os.geteuid() != 0:
        missing.append("root (debootstrap and chroot)")
    return missing


def check_suite(suite: str) -> str:
    """SUITE if the lab knows how to build it; a GuestImageError naming the known ones otherwise."""
    if suite not in SUITE_KERNEL_SERIES:
        raise GuestImageError(f"unknown guest suite {suite!r}: use one of {', '.join(SUITE_KERNEL_SERIES)}")
    return suite


def suite_root(suite: str) -> Path:
    """Where SUITE's images and .debs are cached: bookworm's at the top (as before suites), others below."""
    return CACHE_ROOT if suite == DEFAULT_SUITE else CACHE_ROOT / suite


def current_kernel_abi(suite: str = DEFAULT_SUITE) -> str:
    """SUITE's current cloud kernel ABI from apt-cache, e.g. 6.1.0-56-cloud-amd64 (never pinned).

    Bookworm reads this machine's own apt lists; other suites read private lists of that suite kept in
    the cache (`apt-get update` with its own sources and lists dirs: the machine's apt is untouched),
    without its security archive, whose kernels' debug symbols cannot be downloaded.
    """
    check_suite(suite)
    out = subprocess.run(
        ["apt-cache", *_suite_apt_options(suite), "depends", KERNEL_METAPACKAGE],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    match = re.search(r"Depends: linux-image-(\S+-cloud-amd64)", out)
    if not match:
        what = "run `apt-get update` first" if suite == DEFAULT_SUITE else f"its lists in {suite_root(suite) / 'apt'}"
        raise GuestImageError(f"apt-cache knows no {KERNEL_METAPACKAGE} in {suite}; {what}")
    abi = match.group(1)
    if not abi.startswith(SUITE_KERNEL_SERIES[suite] + "."):
        raise GuestImageError(
            f"{suite}'s {KERNEL_METAPACKAGE} depends on {abi}, not a {SUITE_KERNEL_SERIES[suite]} kernel"
        )
    return abi


def _suite_apt_options(suite: str) -> list[str]:
    """apt options pointing at SUITE's private sources and lists (refreshed first when stale); none for bookworm."""
    if suite == DEFAULT_SUITE:
        return []
    apt = suite_root(suite) / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    mirror, _ = debian_mirrors()
    sources = apt / "sources.list"
    # Not the security archive: it lists the kernels' -dbg packages but does not serve them (404), so
    # the newest kernel with debug symbols is the one in the suite itself (its latest point release).
    sources.write_text(f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n")
    options = [
        "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
    ]  # fmt: skip
    stamp = apt / "updated"
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > LISTS_MAX_AGE:
        result = subprocess.run(["apt-get", *options, "-qq", "update"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            stamp.touch()
        elif not stamp.exists():
            raise GuestImageError(f"apt-get update for {suite} failed: {result.stderr.strip()[-1000:]}")
    return options


def debian_mirrors() -> tuple[str, str]:
    """(main mirror, security mirror) as apt uses them here, from the deb822 or one-line sources."""
    uris = []
    for path in sorted(_SOURCES_DIR.glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        with contextlib.suppress(OSError):
            text = path.read_text()
            uris += re.findall(r"^URIs:\s*(\S+)", text, re.M)
            uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm", text, re.M)
    main = next((u.rstrip("/") for u in uris if u.rstrip("/").endswith("/debian")), _DEFAULT_MIRROR)
    security = next((u.rstrip("/") for u in uris if "security" in u), _DEFAULT_SECURITY_MIRROR)
    return main, security


def recipe_hash(kernel_abi: str, suite: str = DEFAULT_SUITE) -> str:
    """16 hex digits over the build script, the kernel ABI and the suite: any change means a new image."""
    digest = hashlib.sha256(BUILD_SCRIPT.read_bytes())
    digest.update(kernel_abi.encode())
    if suite != DEFAULT_SUITE:
        digest.update(suite.encode())
    return digest.hexdigest()[:16]


def ensure_image(log: bool = True, suite: str = DEFAULT_SUITE) -> GuestImage:
    """SUITE's cached image for the current recipe, building it first if needed (serialised by a lock)."""
    check_suite(suite)
    missing = missing_build_requirements()
    if missing:
        raise GuestImageError("cannot build the lab guest image: need " + "; ".join(missing))
    kernel_abi = current_kernel_abi(suite)
    image = GuestImage(suite_root(suite) / f"guest-{recipe_hash(kernel_abi, suite)}")
    with _build_lock(suite_root(suite)):
        if (image.directory / "build.env").exists() and image.disk.exists():
            return image
        _build(image.directory, kernel_abi, suite, log)
        _drop_other_images(keep=image.directory)
    return image


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """One build of a suite at a time on this machine; others wait and then find the image ready."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(directory: Path, kernel_abi: str, suite: str, log: bool) -> None:
    """Run build-image.sh into DIRECTORY.partial, then move it into place (never a half image)."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    mirror, security = debian_mirrors()
    debs = suite_root(suite) / "debs"
    argv = ["bash", str(BUILD_SCRIPT), str(partial), kernel_abi, mirror, security, str(debs), suite]
    started = time.monotonic()
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None if log else subprocess.PIPE,
        text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        raise GuestImageError(
            f"build-image.sh failed ({result.returncode}) after {time.monotonic() - started:.0f}s; "
            f"logs in {partial}: {(result.stderr or '')[-2000:]}"
        )
    os.replace(partial, directory)


def _drop_other_images(keep: Path) -> None:
    """Remove images of older recipes of the same suite (each is several GB); the .deb cache stays."""
    for old in keep.parent.glob("guest-*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def main() -> int:
    """Build (or find) the image of the suite named on the command line and print its directory and facts."""
    try:
        image = ensure_image(suite=sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SUITE)
    except GuestImageError as exc:
        print(f"guest image: {exc}", file=sys.stderr)
        return 1
    print(image.directory)
    for key, value in image.facts.items():
        print(f"  {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
