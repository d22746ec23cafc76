"""Deterministic TCPBacklogDrop in the guest: hold recv() in the kernel, send raw duplicates meanwhile.

The guest's socket is owned by its user for DELAY_MS (its recv() copies the controller's one real byte
into a userfaultfd page that stays missing that long, with the socket lock held: backlog_server.py),
so every segment the controller sends meanwhile goes to the backlog; past the limit the kernel drops
them and counts TCPBacklogDrop. Drops = segments sent - the few that fit. No module: the same on
every kernel, including 6.12 where Debian 13's systemtap 5.1 cannot load one.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.guest.raw_tcp import send_duplicates
from tests.lab.guest.streams import LineReader
from tests.lab.guest.vm import GuestVM

# The former guru-mode stap hold; kept as a real script for the stap compile tests (test_guest_lab.py).
DELAY_SCRIPT = Path(__file__).with_name("delay_recvmsg.stp")
SERVER_SCRIPT = Path(__file__).with_name("backlog_server.py")
GUEST_SERVER_PATH = "/root/fdl-backlog-server.py"
DEFAULT_PORT = 5301
DEFAULT_SEGMENTS = 300
DEFAULT_DELAY_MS = 3000
# The guest's `holding` line crosses ssh before the first duplicate leaves: the sending must end this
# much before the hold does.
MARGIN_SECONDS = 0.5
COUNTER = "TCPBacklogDrop"
START_TIMEOUT = 60.0  # ssh and python3 starting in the emulated guest, under load
HOLD_TIMEOUT = 60.0  # the held recv() and the unload after it


class GuestBacklogError(RuntimeError):
    """The generator did not run as planned; the message carries the guest side's output."""


@dataclass(frozen=True)
class GuestBacklogRun:
    """What one generator run did and what the guest's kernel counted."""

    drops: int  # the guest's TcpExt TCPBacklogDrop delta over the run
    segments: int  # duplicates sent
    send_seconds: float  # time to send them (must stay well under the hold)
    held_seconds: float  # how long the guest held its socket (its handler's own clock)
    guest_address: str
    guest_port: int
    controller_address: str
    controller_port: int


def generate_guest_backlog_drops(
    vm: GuestVM,
    port: int = DEFAULT_PORT,
    segments: int = DEFAULT_SEGMENTS,
    delay_ms: int = DEFAULT_DELAY_MS,
) -> GuestBacklogRun:
    """Run the generator once and return the guest's TCPBacklogDrop delta with the flow it hit."""
    before = vm.tcpext()[COUNTER]
    vm.put(SERVER_SCRIPT.read_bytes(), GUEST_SERVER_PATH)
    server = vm.popen(
        f"python3 {GUEST_SERVER_PATH} {port} {delay_ms}",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines = LineReader(server)
    try:
        lines.until("listening", START_TIMEOUT)
        with socket.create_connection((vm.address, port), timeout=30,
                                      source_address=(vm.fleet.controller_address, 0)) as conn:  # fmt: skip
            if conn.recv(1) != b"R":
                raise GuestBacklogError("the guest server sent no ready byte")
            conn.sendall(b"D")  # the real byte the guest's held recv() copies
            lines.until("holding", HOLD_TIMEOUT)
            send_seconds = send_duplicates(conn, segments)
            recv_line = lines.until("held ", HOLD_TIMEOUT)
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
    recv_seconds = float(recv_line.split()[1])  # the held recv() itself, timed by the guest's main thread
    if held_ms < delay_ms or recv_seconds < delay_ms / 1000:
        raise GuestBacklogError(
            f"the socket was held {held_ms} ms, not {delay_ms} ms ({held_line}; {recv_line}): recv() was not"
            " delayed;"
            f" guest server stderr:\n{err.decode(errors='replace')[-3000:]}"
        )
    if send_seconds > held_seconds - MARGIN_SECONDS:
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
