"""The lab guest running: qemu (TCG) with a tap on a LabFleet's bridge, reachable by strict ssh."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.lab import sshd
from tests.lab.counters import parse_tcpext
from tests.lab.fleet import MAX_HOSTS, SSH_PORT, LabFleet
from tests.lab.guest.image import GuestImage, ensure_image
from tests.lab.inventory import HostVars
from tests.lab.requirements import find_program, program
from tests.lab.runs import PREFIX, make_workdir, new_run_id
from tests.lab.teardown import destroy_run, stop_processes

__all__ = ["GUEST_PORTS", "GuestVM", "GuestBootError", "missing_guest_requirements"]

BOOT_TIMEOUT = 480.0  # about 20 s idle; 141 s seen while other tests loaded the 2 cores
SSH_TIMEOUT = 120.0
_QEMU = "qemu-system-x86_64"
# The guest's sshds (build-image.sh): one kernel release seen as several hosts. "full" has everything;
# "nosource" lacks the kernel source (stap's return probe); "runtime" has only systemtap-runtime;
# "nobtf" sees no /sys/kernel/btf (bpftrace's kprobe tier).
GUEST_PORTS = {"full": SSH_PORT, "nosource": 2222, "runtime": 2223, "nobtf": 2224}
_TUN = Path("/dev/net/tun")


class GuestBootError(RuntimeError):
    """The guest did not come up; the message carries the tail of its console."""


def missing_guest_requirements() -> list[str]:
    """What stops the guest from booting here (qemu, tun); empty when it can."""
    missing = [] if find_program(_QEMU) else [f"`{_QEMU}` (apt-get install qemu-system-x86)"]
    if not _TUN.exists():
        missing.append(f"{_TUN} (tap devices for the guest's network)")
    return missing


class GuestVM:
    """Context manager: boot the image on FLEET's bridge as host NAME, wait for ssh, kill on exit.

    The guest takes the address after the fleet's hosts; it authorizes the fleet's controller key too,
    so one inventory (and `--known-hosts fleet_file --known-hosts guest_file`) covers both.
    """

    def __init__(
        self,
        fleet: LabFleet,
        *,
        image: GuestImage | None = None,
        name: str = "g01",
        index: int = 1,
        memory_mb: int = 2048,
        cpus: int = 2,
        boot_timeout: float = BOOT_TIMEOUT,
    ):
        if not 1 <= fleet.size + index <= MAX_HOSTS:
            raise ValueError(f"no address left for guest {index} after {fleet.size} fleet hosts")
        self.fleet, self.name, self.index = fleet, name, index
        self.image = image
        self.memory_mb, self.cpus, self.boot_timeout = memory_mb, cpus, boot_timeout
        self.run_id = new_run_id()
        self.tap = f"{PREFIX}-{self.run_id}-tap"
        self.address = ""
        self.workdir: Path | None = None
        self.boot_seconds: float | None = None  # qemu start to first successful `ssh true`
        self._qemu: subprocess.Popen | None = None

    def __enter__(self) -> GuestVM:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def known_hosts_path(self) -> Path:
        """known_hosts with the guest's fixed host key under its lab address."""
        return self._dir / "known_hosts"

    @property
    def key_path(self) -> Path:
        """The image's controller key (the fleet's key works as well)."""
        return self._image.key_path

    @property
    def console_log(self) -> Path:
        """The guest's serial console (kernel and systemd messages)."""
        return self._dir / "console.log"

    @property
    def kernel_release(self) -> str:
        """The guest's `uname -r` as recorded at image build."""
        return self._image.kernel_release

    def host_vars(self, view: str = "full") -> HostVars:
        """Inventory variables for one of the guest's sshds (GUEST_PORTS), for LabFleet.write_inventory(extra_hosts=...)."""
        port = GUEST_PORTS[view]
        return {"ansible_host": self.address, **({"ansible_port": port} if port != SSH_PORT else {})}

    def ssh_argv(self, command: str) -> list[str]:
        """`ssh ... root@guest COMMAND`, strict host key checking, sharing one master connection."""
        return [
            program("ssh"), "-F", "none",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            # Each new connection costs about 0.9 s of emulated crypto; reuse one.
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._dir}/ssh-%C",
            "-o", "ControlPersist=120",
            "-i", str(self.key_path),
            f"root@{self.address}", command,
        ]  # fmt: skip

    def ssh(self, command: str, *, timeout: float = SSH_TIMEOUT, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run COMMAND in the guest; text output captured unless told otherwise."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.ssh_argv(command), timeout=timeout, **kwargs)

    def check(self, command: str, *, timeout: float = SSH_TIMEOUT, **kwargs: Any) -> str:
        """Run COMMAND in the guest and return its stdout; raise with its stderr if it fails."""
        result = self.ssh(command, timeout=timeout, **kwargs)
        if result.returncode != 0:
            raise RuntimeError(f"guest `{command}` exited {result.returncode}: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def popen(self, command: str, **kwargs: Any) -> subprocess.Popen:
        """Start COMMAND in the guest and return at once (the caller waits or kills)."""
        return subprocess.Popen(self.ssh_argv(command), **kwargs)

    def put(self, data: bytes, path: str, mode: str = "600") -> None:
        """Write DATA to PATH in the guest."""
        result = self.ssh(f"cat > {path} && chmod {mode} {path}", input=data, text=False)
        if result.returncode != 0:
            raise RuntimeError(f"copy to guest {path} failed: {result.stderr.decode(errors='replace')}")

    def tcpext(self) -> dict[str, int]:
        """The guest's TcpExt counters, e.g. vm.tcpext()["TCPBacklogDrop"]."""
        return parse_tcpext(self.check("cat /proc/net/netstat"))

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("guest is not running")
        return self.workdir

    @property
    def _image(self) -> GuestImage:
        if self.image is None:
            raise RuntimeError("guest has no image yet; start() finds or builds it")
        return self.image

    def start(self) -> None:
        """Find or build the image, boot it, wait for ssh; on failure clean up and re-raise."""
        self.image = self.image or ensure_image()
        if self.fleet.subnet is None:
            raise RuntimeError("the lab fleet must be running before its guest starts")
        try:
            self._boot()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill qemu, remove the tap, the workdir and the run record (idempotent)."""
        if self._qemu is not None:
            stop_processes([self._qemu.pid], grace_seconds=5.0)
            self._qemu.wait()
            self._qemu = None
        if self.workdir is not None:
            subprocess.run([program("ssh"), "-o", f"ControlPath={self.workdir}/ssh-%C", "-O", "exit",
                            f"root@{self.address}"], capture_output=True, timeout=10, check=False)  # fmt: skip
            # Our tap first: destroy_run would wait 5 s for it to go away with a namespace.
            subprocess.run([program("ip"), "link", "del", self.tap], capture_output=True, check=False)
            # Kills anything still naming the workdir (the ssh master), then removes it and the record.
            destroy_run(self.run_id, self.workdir)
            self.workdir = None

    def _boot(self) -> None:
        """Tap on the fleet bridge, qemu, known_hosts, then wait until `ssh true` succeeds."""
        subnet = self.fleet.subnet
        assert subnet is not None
        self.workdir = make_workdir(self.run_id)
        self.address = str(subnet[self.fleet.size + 1 + self.index])
        lines = [sshd.known_hosts_line(self.address, port, self._image.host_public_key) for port in GUEST_PORTS.values()]
        self.known_hosts_path.write_text("\n".join(lines) + "\n")
        _ip(["tuntap", "add", "dev", self.tap, "mode", "tap"])
        _ip(["link", "set", self.tap, "master", self.fleet.bridge, "up"])
        started = time.monotonic()
        with open(self._dir / "qemu.out", "w") as qemu_out:
            self._qemu = subprocess.Popen(
                self._qemu_argv(str(subnet.netmask)),
                stdin=subprocess.DEVNULL,
                stdout=qemu_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in pytest must not kill qemu before close() does
            )
        self._wait_for_ssh(started)
        self.boot_seconds = time.monotonic() - started
        self._authorize_fleet_key()

    def _qemu_argv(self, netmask: str) -> list[str]:
        """qemu-system-x86_64 under TCG (KVM hangs here), snapshot disk, tap, serial console to a file."""
        image = self._image
        cmdline = " ".join([
            "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
            # systemd-network-generator turns this into eth0's static address; no gateway on purpose.
            f"ip={self.address}:::{netmask}::eth0:off",
        ])  # fmt: skip
        mac = "52:54:00:" + ":".join(self.run_id[i : i + 2] for i in (0, 2, 4))
        return [
            program(_QEMU), "-name", f"{PREFIX}-{self.run_id}-guest",
            "-accel", "tcg,thread=multi", "-cpu", "max",
            "-m", str(self.memory_mb), "-smp", str(self.cpus),
            "-kernel", str(image.vmlinuz), "-initrd", str(image.initrd), "-append", cmdline,
            "-drive", f"file={image.disk},format=raw,if=virtio", "-snapshot",
            "-netdev", f"tap,id=lab0,ifname={self.tap},script=no,downscript=no",
            # No mergeable rx buffers and no guest offloads: every segment lands in a buffer of one
            # fixed size. With them, buffer sizes follow the recent packet lengths (an average), so
            # how many duplicates fit the backlog would depend on what the guest received before.
            "-device", f"virtio-net-pci,netdev=lab0,mac={mac},mrg_rxbuf=off,guest_tso4=off,guest_tso6=off,"
                       "guest_ecn=off,guest_ufo=off",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console_log}",
            "-pidfile", str(self._dir / "qemu.pid"),
        ]  # fmt: skip

    def _wait_for_ssh(self, started: float) -> None:
        """Poll until `ssh true` succeeds; raise with the console tail if qemu dies or time runs out."""
        deadline = started + self.boot_timeout
        while time.monotonic() < deadline:
            assert self._qemu is not None
            if self._qemu.poll() is not None:
                raise GuestBootError(f"qemu exited {self._qemu.returncode}:\n{self._diagnostics()}")
            if sshd.is_listening(self.address, SSH_PORT, timeout=1.0):
                try:
                    if self.ssh("true", timeout=30).returncode == 0:
                        return
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.5)
        raise GuestBootError(f"no ssh on {self.address} after {self.boot_timeout:.0f}s:\n{self._diagnostics()}")

    def _authorize_fleet_key(self) -> None:
        """Let the fleet's controller key in too, so one inventory key reaches every host."""
        public = self.fleet.key_path.with_name(self.fleet.key_path.name + ".pub").read_text().strip()
        self.check(f"echo '{public}' >> /root/.ssh/authorized_keys")

    def _diagnostics(self) -> str:
        """qemu's own output and the last console lines."""
        parts = []
        for path in (self._dir / "qemu.out", self.console_log):
            if path.exists():
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _ip(args: Sequence[str]) -> None:
    """Run `ip ARGS`, raising with ip's message on failure."""
    result = subprocess.run([program("ip"), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
