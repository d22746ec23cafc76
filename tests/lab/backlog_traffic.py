"""One TCP flow that makes the receiving kernel drop packets from the socket backlog (TCPBacklogDrop).

Run inside a namespace: `python3 backlog_traffic.py receive ADDR PORT SECONDS` in the receiver's,
then `python3 backlog_traffic.py send ADDR PORT SECONDS` in the sender's. Stdlib only.

Recipe (LAB.md): the receiver alternates 0.2 s phases. "grow" sets SO_RCVBUF to 8 MiB, so the
sender gets a large window; "shrink" has a second thread hammer SO_RCVBUF=4096 while the main
thread keeps recv()ing, so the socket is often owned by the user as a window's worth of data
arrives and overflows the now tiny backlog limit.

That alone is luck: how much arrives while the socket is owned depends on the sender's congestion
state (after a loss it may sit out an RTO), and on a quiet machine a run can end with no drop at
all. So each shrink phase also holds one recv() for HOLD_SECONDS through userfaultfd
(socket_hold.py) and, while the socket is surely owned, injects DUPLICATES copies of a segment of
this flow (as from the sender, through the loopback: raw_segments.py). They meet the owned socket
and its tiny limit, so every hold drops most of them: TCPBacklogDrop on every run, from the kernel's
own tcp_add_backlog(), on this flow. Where userfaultfd is unavailable the recipe runs alone and
the receiver says so on stderr.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

# Run as a script under `python3 -I` (no script directory on sys.path): its siblings by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_segments import ipv4_tcp_segment  # noqa: E402
from socket_hold import HoldUnavailable, SocketHold, queued_bytes  # noqa: E402

PHASE_SECONDS = 0.2
GROW_RCVBUF = 8 * 1024 * 1024
SHRINK_RCVBUF = 4096
RECV_SIZE = 1024 * 1024
SEND_SIZE = 1_000_000
POLL_SECONDS = 0.5  # kernel-level socket timeouts, so blocking calls wake to check the deadline
HARD_STOP_GRACE = 5  # the kernel kills us this long after the deadline whatever Python is doing
HOLD_SECONDS = 0.05  # each shrink phase's held recv(); the duplicates take a few ms
DUPLICATES = 25  # per hold; the sender's own segments already fill most of the limit, so most drop
DUPLICATE_BYTES = 1000

READY_LINE = "listening"


def receive(address: str, port: int, seconds: float) -> int:
    """Accept one flow and run grow/shrink phases on it for SECONDS; returns bytes received."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(1)
        listener.settimeout(seconds)
        print(READY_LINE, flush=True)
        conn, _ = listener.accept()
    with conn:
        conn.settimeout(None)  # a truly blocking socket, as in the recipe
        _set_kernel_timeout(conn, socket.SO_RCVTIMEO, POLL_SECONDS)
        return _receive_in_phases(conn, time.monotonic() + seconds)


def _receive_in_phases(conn: socket.socket, deadline: float) -> int:
    """Main thread: recv and flip phases; helper thread: shrink SO_RCVBUF while told to."""
    shrinking, finished = threading.Event(), threading.Event()
    shrinker = threading.Thread(target=_shrink_while_set, args=(conn, shrinking, finished), daemon=True)
    shrinker.start()
    holder, inject = _socket_hold(), _duplicates_of(conn)
    received, phase, phase_end, holds = 0, 0, 0.0, 0
    try:
        while (now := time.monotonic()) < deadline:
            if now >= phase_end:
                grow = phase % 2 == 0
                phase, phase_end = phase + 1, now + PHASE_SECONDS
                if not grow and holder is not None and _data_queued(conn, PHASE_SECONDS / 2):
                    # The hammering thread starts after the hold: CPython keeps the GIL in
                    # setsockopt(), which would sleep on the held lock, while the thread that
                    # ends the hold needs the GIL.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SHRINK_RCVBUF)
                    received += holder.hold(conn, HOLD_SECONDS, during=inject)
                    holds += 1
                _enter_phase(conn, shrinking, grow=grow)
                continue
            try:
                chunk = conn.recv(RECV_SIZE)
            except (BlockingIOError, TimeoutError):
                continue
            if not chunk:
                break
            received += len(chunk)
    finally:
        finished.set()
        shrinking.clear()
        shrinker.join()
        if holder is not None:
            print(f"holds {holds} duplicates {holds * DUPLICATES}", flush=True)
            holder.close()
    return received


def _socket_hold() -> SocketHold | None:
    """The userfaultfd hold, or None (said on stderr) where this kernel or process cannot have one."""
    try:
        return SocketHold()
    except HoldUnavailable as exc:
        print(f"no held recv, the recipe alone: {exc}", file=sys.stderr, flush=True)
        return None


def _data_queued(conn: socket.socket, wait: float) -> bool:
    """Data queued within WAIT seconds: a held recv() must copy, or it waits with the lock released."""
    readable, _, _ = select.select([conn], [], [], wait)
    return bool(readable) and queued_bytes(conn) > 0


def _duplicates_of(conn: socket.socket):
    """A callable that sends DUPLICATES copies of one segment of CONN's flow to CONN, as from its peer.

    Raw, through this namespace's loopback: the kernel delivers them to the flow's socket as if they
    had come from the sender. Their sequence number does not matter here: tcp_add_backlog() runs
    before any check of it, and what fits the backlog is discarded as out of window afterwards.
    """
    (local, lport), (peer, pport) = conn.getsockname(), conn.getpeername()
    packet = ipv4_tcp_segment(peer, pport, local, lport, 0, 0, b"\0" * DUPLICATE_BYTES)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied

    def inject() -> None:
        for _ in range(DUPLICATES):
            raw.sendto(packet, (local, 0))

    return inject


def _enter_phase(conn: socket.socket, shrinking: threading.Event, grow: bool) -> None:
    """Grow sets the 8 MiB buffer once; shrink wakes the helper thread's setsockopt loop."""
    if grow:
        shrinking.clear()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, GROW_RCVBUF)
    else:
        shrinking.set()


def _shrink_while_set(conn: socket.socket, shrinking: threading.Event, finished: threading.Event) -> None:
    """Tight setsockopt(SO_RCVBUF, 4096) loop during shrink phases."""
    while not finished.is_set():
        if not shrinking.wait(0.05):
            continue
        while shrinking.is_set():
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SHRINK_RCVBUF)
            except OSError:
                return  # socket closed under us at the end


def send(address: str, port: int, seconds: float) -> int:
    """Connect and write 1 MB buffers with TCP_NODELAY for SECONDS; returns bytes sent."""
    deadline = time.monotonic() + seconds
    conn = _connect_with_retry(address, port, deadline)
    payload = b"\x00" * SEND_SIZE
    sent = 0
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_kernel_timeout(conn, socket.SO_SNDTIMEO, POLL_SECONDS)
        while time.monotonic() < deadline:
            try:
                sent += conn.send(payload)
            except (BlockingIOError, TimeoutError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break  # the receiver finished first
    return sent


def _connect_with_retry(address: str, port: int, deadline: float) -> socket.socket:
    """A blocking connected socket; retries briefly in case the receiver is still binding."""
    while True:
        try:
            conn = socket.create_connection((address, port), timeout=POLL_SECONDS)
            conn.settimeout(None)
            return conn
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _set_kernel_timeout(conn: socket.socket, option: int, seconds: float) -> None:
    """SO_RCVTIMEO/SO_SNDTIMEO: the socket stays blocking but calls return after SECONDS."""
    whole = int(seconds)
    conn.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6)))


def main(argv: list[str]) -> int:
    """CLI entry: `receive|send ADDRESS PORT SECONDS`; prints the byte count it moved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["receive", "send"])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    # Nothing may outlive the run: SIGALRM's default action ends the process even mid-syscall.
    signal.alarm(int(args.seconds) + 1 + HARD_STOP_GRACE)
    role = receive if args.role == "receive" else send
    moved = role(args.address, args.port, args.seconds)
    print(f"bytes {moved}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
