"""Deterministic TCPBacklogDrop in the guest: hold recv() in the kernel, send raw duplicates meanwhile.

The guest's socket is owned by its user for DELAY_MS (a guru-mode stap probe spins at the entry of
tcp_recvmsg_locked), so every segment the controller sends goes to the backlog; past the limit the
kernel drops them and counts TCPBacklogDrop. Drops = segments sent - the few that fit.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.guest.raw_tcp import send_duplicates
from tests.lab.guest.stap_modules import StapModule, compile_module
from tests.lab.guest.streams import LineReader
from tests.lab.guest.vm import GuestVM

DELAY_SCRIPT = Path(__file__).with_name("delay_recvmsg.stp")
SERVER_SCRIPT = Path(__file__).with_name("backlog_server.py")
DELAY_MODULE = "fdl_lab_delay"
GUEST_MODULE_PATH = f"/root/{DELAY_MODULE}.ko"
GUEST_SERVER_PATH = "/root/fdl-backlog-server.py"
DEFAULT_PORT = 5301
DEFAULT_SEGMENTS = 300
DEFAULT_DELAY_MS = 3000
SETTLE_SECONDS = 0.5  # between the guest's "R" and the first duplicate: recv() is entered by then
COUNTER = "TCPBacklogDrop"
ARM_TIMEOUT = 200.0  # staprun loading the module and registering its kprobe in the emulated guest
HOLD_TIMEOUT = 60.0  # the held recv() and the unload after it


class GuestBacklogError(RuntimeError):
    """The generator did not run as planned; the message carries the guest side's output."""


@dataclass(frozen=True)
class GuestBacklogRun:
    """What one generator run did and what the guest's kernel counted."""

    drops: int  # the guest's TcpExt TCPBacklogDrop delta over the run
    segments: int  # duplicates sent
    send_seconds: float  # time to send them (must stay well under the hold)
    held_seconds: float  # how long the delay module held the guest's socket (its own clock)
    guest_address: str
    guest_port: int
    controller_address: str
    controller_port: int


def delay_module(vm: GuestVM) -> StapModule:
    """The delay module for the guest's kernel, compiled on the controller (cached) and copied in once."""
    if vm.image is None:
        raise RuntimeError("the guest is not started")
    module = compile_module(vm.image, DELAY_SCRIPT, DELAY_MODULE, ("-g", "-DSTP_NO_OVERLOAD"))
    data = module.path.read_bytes()
    present = vm.ssh(f"sha256sum {GUEST_MODULE_PATH} 2>/dev/null").stdout.split()[:1]
    if present != [hashlib.sha256(data).hexdigest()]:
        vm.put(data, GUEST_MODULE_PATH)
    return module


def generate_guest_backlog_drops(
    vm: GuestVM,
    port: int = DEFAULT_PORT,
    segments: int = DEFAULT_SEGMENTS,
    delay_ms: int = DEFAULT_DELAY_MS,
) -> GuestBacklogRun:
    """Run the generator once and return the guest's TCPBacklogDrop delta with the flow it hit."""
    delay_module(vm)
    before = vm.tcpext()[COUNTER]
    vm.put(SERVER_SCRIPT.read_bytes(), GUEST_SERVER_PATH)
    server = vm.popen(
        f"python3 {GUEST_SERVER_PATH} {port} {delay_ms} {GUEST_MODULE_PATH}",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines = LineReader(server)
    try:
        lines.until("listening", ARM_TIMEOUT)
        with socket.create_connection((vm.address, port), timeout=30,
                                      source_address=(vm.fleet.controller_address, 0)) as conn:  # fmt: skip
            if conn.recv(1) != b"R":
                raise GuestBacklogError("the guest server sent no ready byte")
            time.sleep(SETTLE_SECONDS)
            send_seconds = send_duplicates(conn, segments)
            lines.until("held", HOLD_TIMEOUT)
            _reset(conn)
            controller_port = conn.getsockname()[1]
        held_line = lines.until("held_ms", HOLD_TIMEOUT)
        held_ms = int(held_line.split()[1])
        lines.until("done", HOLD_TIMEOUT)
        _, err = server.communicate(timeout=HOLD_TIMEOUT)
    except Exception as exc:
        server.kill()
        _, err = server.communicate()
        raise GuestBacklogError(f"{exc}\nguest server stderr:\n{err.decode(errors='replace')[-3000:]}") from exc
    if server.returncode != 0:
        raise GuestBacklogError(f"guest server exited {server.returncode}:\n{err.decode(errors='replace')[-3000:]}")
    held_seconds = held_ms / 1000
    if held_ms < delay_ms:
        raise GuestBacklogError(
            f"the socket was held {held_ms} ms, not {delay_ms} ms ({held_line}): recv() was not delayed;"
            f" guest server stderr:\n{err.decode(errors='replace')[-3000:]}"
        )
    if send_seconds > held_seconds - SETTLE_SECONDS:
        raise GuestBacklogError(f"sending took {send_seconds:.2f}s, longer than the {held_seconds:.2f}s hold")
    return GuestBacklogRun(
        drops=vm.tcpext()[COUNTER] - before,
        segments=segments,
        send_seconds=send_seconds,
        held_seconds=held_seconds,
        guest_address=vm.address,
        guest_port=port,
        controller_address=vm.fleet.controller_address,
        controller_port=controller_port,
    )


def _reset(conn: socket.socket) -> None:
    """Close with RST on exit: the stream is out of step after the duplicates, so no orderly FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
