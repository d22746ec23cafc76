"""A fleet of test hosts on one machine: network namespaces on a bridge, each with its own sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.lab import sshd
from tests.lab.counters import parse_tcpext
from tests.lab.cpu_accounting import CpuAccount
from tests.lab.host_setup import (
    HostSetup,
    prepare_host_files,
    sshd_config_lines,
    sshd_wrapper,
)
from tests.lab.inventory import HostVars, render_inventory
from tests.lab.requirements import program
from tests.lab.runs import NETNS_CONFIG_ROOT, PREFIX, make_workdir, new_run_id
from tests.lab.subnet import allocation_lock, choose_free_subnet, prefix_for
from tests.lab.teardown import (
    NETNS_RUN_DIR,
    cleanup_stale,
    destroy_run,
    pids_in_netns,
    stop_processes,
)

__all__ = ["HostSetup", "LabFleet", "LabHost", "cleanup_stale"]

MAX_HOSTS = 2037  # a /21 minus network, broadcast, the controller's .1 and room for guests (past 245 hosts: a bigger subnet)
# Past a /24 the controller's neighbour table must hold every host's address: the kernel's
# defaults (gc_thresh3 1024) drop entries and hosts then fail with "No route to host".
NEIGH_THRESHOLDS = {"gc_thresh1": 4096, "gc_thresh2": 8192, "gc_thresh3": 16384}
_NEIGH_SYSCTL = Path("/proc/sys/net/ipv4/neigh/default")
_GUEST_ROOM = 8
SSH_PORT = 22
_WORKERS = 16  # bring-up is fork/exec bound; more threads than this only queue on 2 cores
# `ip netns exec` mounts a fresh /sys for the namespace, which hides tracefs, and bpftrace then
# reports "tracepoint not found". Real hosts have it mounted, so lab commands and sshd get it too.
_MOUNT_TRACEFS_THEN_EXEC = 'mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; exec "$@"'


@dataclass(frozen=True)
class LabHost:
    """One test host: a network namespace with its own address and sshd."""

    name: str  # inventory name, e.g. "h03"
    netns: str  # e.g. "fdl-3fa9c1-h03"
    address: str  # e.g. "10.213.0.4"
    netns_inode: int  # what `readlink /proc/self/ns/net` shows inside: net:[<inode>]
    port: int = SSH_PORT


class LabFleet:
    """Context manager bringing up SIZE hosts, each reachable as root with `key_path`."""

    def __init__(
        self,
        size: int,
        *,
        sshd_path: str | None = None,
        tracefs: bool = True,
        ready_timeout: float = 20.0,
        setups: Mapping[str, HostSetup] | None = None,
        private_tmp: bool = False,
        cpu_accounting: bool = False,
    ):
        if not 1 <= size <= MAX_HOSTS:
            raise ValueError(f"a lab fleet holds 1..{MAX_HOSTS} hosts, not {size}")
        self.size = size
        self.sshd_path = sshd_path or program("sshd")  # absolute: sshd re-executes itself
        self.tracefs = tracefs  # False: hosts see no /sys/kernel/tracing, like an unprepared box
        self.ready_timeout = ready_timeout
        self.setups = dict(setups or {})  # host name -> how it differs (faults, sudo user...)
        self.private_tmp = private_tmp  # each host's sessions get TMPDIR=<workdir>/<host>/tmp
        self._helpers: set[int] = set()  # pids of test helpers in the hosts (not leftovers)
        self.run_id = new_run_id()
        # All sshds (and so every session and probe) in one cpuacct cgroup: host-side CPU.
        self.cpu = CpuAccount(f"{PREFIX}-{self.run_id}") if cpu_accounting else None
        self.bridge = f"{PREFIX}-{self.run_id}-br"
        self.hosts: tuple[LabHost, ...] = ()
        self.subnet: IPv4Network | None = None
        self.workdir: Path | None = None

    def __enter__(self) -> LabFleet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def key_path(self) -> Path:
        """The controller's private key, accepted by every host for root."""
        return self._dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        """known_hosts listing every host's key under its address, for strict checking."""
        return self._dir / "known_hosts"

    @property
    def controller_address(self) -> str:
        """The root namespace's address on the lab bridge (.1)."""
        return str(self._subnet[1])

    def host(self, name: str) -> LabHost:
        """The host called NAME, e.g. fleet.host("h01")."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no lab host {name!r}; have {[h.name for h in self.hosts]}")

    def start(self) -> None:
        """Bring the fleet up; on any failure tear down what was built and re-raise."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill every process in the fleet's namespaces and delete all it created (idempotent)."""
        if self.workdir is not None or self.subnet is not None:
            destroy_run(self.run_id, self.workdir)
        if self.cpu is not None:
            self.cpu.remove()
        self.workdir = None
        self.subnet = None

    def exec(self, host: LabHost, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """subprocess.run(ARGV) inside the host, as an ssh session would see it (passwd, tracefs)."""
        return subprocess.run(self.host_argv(host, argv), **kwargs)

    def popen(self, host: LabHost, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """subprocess.Popen(ARGV) inside the host; close() kills it if still running."""
        return subprocess.Popen(self.host_argv(host, argv), **kwargs)

    def host_argv(self, host: LabHost, argv: Sequence[str]) -> list[str]:
        """ARGV wrapped to run inside HOST: `ip netns exec NS [sh -c 'mount tracefs; exec'] ARGV`."""
        enter = [program("ip"), "netns", "exec", host.netns]
        if self.tracefs:
            enter += ["/bin/sh", "-c", _MOUNT_TRACEFS_THEN_EXEC, "sh"]
        return [*enter, *argv]

    def tcpext(self, host: LabHost) -> dict[str, int]:
        """The host namespace's TcpExt counters, e.g. fleet.tcpext(h)["TCPBacklogDrop"]."""
        out = self.exec(host, ["cat", "/proc/net/netstat"], capture_output=True, text=True, check=True)
        return parse_tcpext(out.stdout)

    def stop_sshd(self, host: LabHost) -> None:
        """Stop the host's sshd so new connections are refused (open sessions live on)."""
        pid_file = self._host_dir(host) / "sshd.pid"
        if pid_file.exists():
            stop_processes([int(pid_file.read_text().split()[0])])
            pid_file.unlink(missing_ok=True)  # sshd removes it itself on SIGTERM

    def start_sshd(self, host: LabHost) -> None:
        """(Re)start the host's sshd and wait until it accepts connections."""
        self._launch_sshd(host)
        self._wait_listening([host])

    def kill_sshd(self, host: LabHost) -> list[int]:
        """SIGKILL every sshd of the host, its open sessions' too (their children live on); the pids."""
        killed = []
        for pid in pids_in_netns({host.netns_inode}):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            except (OSError, ProcessLookupError):
                continue
        (self._host_dir(host) / "sshd.pid").unlink(missing_ok=True)
        return killed

    def set_link(self, host: LabHost, up: bool) -> None:
        """Take the host's network down (its eth0, as a pulled cable) or bring it back."""
        _ip_batch(["-n", host.netns], [f"link set eth0 {'up' if up else 'down'}"])

    def silent_listener(self, host: LabHost, port: int) -> subprocess.Popen:
        """A socket on HOST:PORT that completes TCP handshakes and never says a word (not SSH)."""
        code = (
            "import socket,sys,time;s=socket.socket();"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(({host.address!r},{port}));s.listen(64);print('ready',flush=True);time.sleep(3600)"
        )
        process = self.popen(host, [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self._helpers.add(process.pid)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise RuntimeError(f"silent listener on {host.name}:{port} did not start")
        return process

    def _is_helper(self, pid: int) -> bool:
        """Whether PID is one of the lab's own helpers (a silent listener, under `ip netns exec`)."""
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        return pid in self._helpers or parent in self._helpers

    def tmp_dir(self, host: LabHost) -> Path:
        """The host's private TMPDIR (``private_tmp=True``): where its probes' temp dirs go."""
        return self._host_dir(host) / "tmp"

    def leftovers(self, hosts: Sequence[LabHost] | None = None) -> dict[str, list[str]]:
        """Probe processes and temp files still on HOSTS (default all); empty lists when clean."""
        chosen = list(self.hosts if hosts is None else hosts)
        processes = []
        for pid in pids_in_netns({h.netns_inode for h in chosen}):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm != "sshd" and not self._is_helper(pid):  # the hosts' own daemons, test listeners
                processes.append(f"{pid} {comm}")
        files = []
        if self.private_tmp:
            files = [str(p) for h in chosen for p in self.tmp_dir(h).iterdir()]
        return {"processes": processes, "temp_files": files}

    def write_inventory(
        self,
        path: Path,
        hosts: Sequence[LabHost] | None = None,
        extra_hosts: Mapping[str, HostVars] | None = None,
        extra_vars: HostVars | None = None,
    ) -> Path:
        """Write an Ansible YAML inventory of HOSTS (default all) plus EXTRA_HOSTS verbatim."""
        group_vars: dict[str, str | int | bool] = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key_path),
            **(extra_vars or {}),
        }
        entries: dict[str, HostVars] = {}
        for host in self.hosts if hosts is None else hosts:
            port = {} if host.port == SSH_PORT else {"ansible_port": host.port}
            entries[host.name] = {"ansible_host": host.address, **port}
        entries.update(extra_hosts or {})
        path.write_text(render_inventory(group_vars, entries))
        return path

    # -- bring-up ---------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("lab fleet is not running")
        return self.workdir

    @property
    def _subnet(self) -> IPv4Network:
        if self.subnet is None:
            raise RuntimeError("lab fleet is not running")
        return self.subnet

    def _host_dir(self, host: LabHost) -> Path:
        return self._dir / host.name

    def _build(self) -> None:
        """Keys, network, clean homes, sshds, known_hosts: in that order."""
        self.workdir = make_workdir(self.run_id)
        sshd.SSHD_RUNTIME_DIR.mkdir(mode=0o755, exist_ok=True)
        width = max(2, len(str(self.size)))
        names = [f"h{i:0{width}d}" for i in range(1, self.size + 1)]
        controller_key = sshd.generate_ed25519_key(self.key_path, f"fleetdiag-lab-{self.run_id}")
        self._controller_key = controller_key
        self._write_clean_home(controller_key)
        if self.cpu is not None:
            self.cpu.create()
        with ThreadPoolExecutor(_WORKERS) as pool:
            host_keys = list(pool.map(self._generate_host_key, names))
            self._create_network(names)
            self.hosts = tuple(pool.map(self._configure_host, names, range(1, self.size + 1)))
            list(pool.map(self._launch_sshd, self.hosts))
        self._wait_listening(list(self.hosts))
        lines = [sshd.known_hosts_line(h.address, h.port, k) for h, k in zip(self.hosts, host_keys)]
        self.known_hosts_path.write_text("\n".join(lines) + "\n")

    def _write_clean_home(self, controller_key: str) -> None:
        """A root home holding only .ssh/authorized_keys (no .bashrc to slow every command)."""
        ssh_dir = self._dir / "home" / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (ssh_dir / "authorized_keys").write_text(controller_key + "\n")
        (ssh_dir / "authorized_keys").chmod(0o600)

    def _generate_host_key(self, name: str) -> str:
        """Per-host ed25519 host key (about 6 ms each); returns the public key line."""
        host_dir = self._dir / name
        host_dir.mkdir()
        return sshd.generate_ed25519_key(host_dir / "ssh_host_ed25519_key", f"{name}-{self.run_id}")

    def _create_network(self, names: list[str]) -> None:
        """Bridge with the controller address, then one namespace and veth per host, in one `ip`."""
        netns = [f"{PREFIX}-{self.run_id}-{name}" for name in names]
        # The veth's name in the root namespace is the namespace's where it fits in IFNAMSIZ
        # (15 characters); past h999 it is the host's number in hex, as teardown still finds it.
        veths = [ns if len(ns) <= 15 else f"{PREFIX}-{self.run_id}-{i:x}" for i, ns in enumerate(netns, 1)]
        commands = [f"netns add {ns}" for ns in netns]
        commands += [f"link add {veth} type veth peer name eth0 netns {ns}" for veth, ns in zip(veths, netns)]
        commands += [f"link set {veth} master {self.bridge} up" for veth in veths]
        if len(names) > 253:
            raise_neighbour_thresholds()
        with allocation_lock():
            # The controller's .1, the hosts, and room for a few qemu guests after them (guest/vm.py).
            self.subnet = choose_free_subnet(prefix_for(len(names) + 1 + _GUEST_ROOM))
            bridge = [
                f"link add {self.bridge} type bridge",
                f"addr add {self.controller_address}/{self._subnet.prefixlen} dev {self.bridge}",
                f"link set {self.bridge} up",
            ]
            _ip_batch([], bridge)
        _ip_batch([], commands)

    def _configure_host(self, name: str, index: int) -> LabHost:
        """Address the host's eth0, bring up lo and give it a clean /etc/passwd."""
        netns = f"{PREFIX}-{self.run_id}-{name}"
        address = str(self._subnet[1 + index])
        _ip_batch(
            ["-n", netns],
            ["link set lo up", f"addr add {address}/{self._subnet.prefixlen} dev eth0", "link set eth0 up"],
        )
        etc = NETNS_CONFIG_ROOT / netns
        etc.mkdir(parents=True, exist_ok=True)
        passwd = sshd.clean_passwd(Path("/etc/passwd").read_text(), self._dir / "home")
        (etc / "passwd").write_text(passwd)
        setup = self.setups.get(name)
        if setup is not None:
            prepare_host_files(setup, self._dir / name, etc, self._controller_key)
        if self.private_tmp:
            tmp = self._dir / name / "tmp"
            tmp.mkdir()
            tmp.chmod(0o1777)
        inode = os.stat(NETNS_RUN_DIR / netns).st_ino
        return LabHost(name=name, netns=netns, address=address, netns_inode=inode)

    def _launch_sshd(self, host: LabHost) -> None:
        """Start the host's sshd inside its namespace; it daemonises and logs to sshd.log."""
        host_dir = self._host_dir(host)
        config = host_dir / "sshd_config"
        setup = self.setups.get(host.name, HostSetup())
        private_env = {"TMPDIR": str(host_dir / "tmp")} if self.private_tmp else {}
        extra = sshd_config_lines(setup, host_dir, private_env)
        config.write_text(
            sshd.render_sshd_config(
                host.address, host.port, host_dir / "ssh_host_ed25519_key", host_dir / "sshd.pid"
            )
            + "".join(line + "\n" for line in extra)
        )
        argv = [self.sshd_path, "-f", str(config), "-E", str(host_dir / "sshd.log")]
        if sshd_wrapper(setup, host_dir):
            argv = ["/bin/sh", "-c", sshd_wrapper(setup, host_dir) + 'exec "$@"', "sh", *argv]
        argv = self.host_argv(host, argv)
        if self.cpu is not None:  # joined before `ip netns exec`, whose fresh /sys has no cgroups
            argv = ["/bin/sh", "-c", self.cpu.join_command() + 'exec "$@"', "sh", *argv]
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"sshd for {host.name} failed to start: {result.stderr.strip()}")

    def _wait_listening(self, hosts: list[LabHost]) -> None:
        """Return once every host's sshd accepts TCP; raise naming the laggards otherwise."""
        pending = sshd.wait_until_listening([(h.address, h.port) for h in hosts], self.ready_timeout)
        if pending:
            late = [h for h in hosts if (h.address, h.port) in pending]
            log = (self._host_dir(late[0]) / "sshd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"sshd not listening after {self.ready_timeout}s on {[h.name for h in late]}; "
                f"{late[0].name} sshd.log:\n{log}"
            )


def raise_neighbour_thresholds() -> None:
    """Raise net.ipv4.neigh.default.gc_thresh1/2/3 to NEIGH_THRESHOLDS (never lowers one)."""
    for name, wanted in NEIGH_THRESHOLDS.items():
        path = _NEIGH_SYSCTL / name
        if int(path.read_text()) < wanted:
            path.write_text(f"{wanted}\n")


def _ip_batch(options: list[str], commands: list[str]) -> None:
    """Run many `ip` commands in one process; raise with ip's message on the first failure."""
    result = subprocess.run(
        [program("ip"), *options, "-batch", "-"],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(options)} -batch failed: {result.stderr.strip()}")
