"""One TCP flow that makes the receiving kernel drop packets from the socket backlog (TCPBacklogDrop).

Run inside a namespace: `python3 backlog_traffic.py receive ADDR PORT SECONDS` in the receiver's,
then `python3 backlog_traffic.py send ADDR PORT SECONDS` in the sender's. Stdlib only.

Recipe (LAB.md): the receiver alternates 0.2 s phases. "grow" sets SO_RCVBUF to 8 MiB, so the
sender gets a large window; "shrink" has a second thread hammer SO_RCVBUF=4096 while the main
thread keeps recv()ing, so the socket is often owned by the user as a window's worth of data
arrives and overflows the now tiny backlog limit.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys
import threading
import time

PHASE_SECONDS = 0.2
GROW_RCVBUF = 8 * 1024 * 1024
SHRINK_RCVBUF = 4096
RECV_SIZE = 1024 * 1024
SEND_SIZE = 1_000_000
POLL_SECONDS = 0.5  # kernel-level socket timeouts, so blocking calls wake to check the deadline
HARD_STOP_GRACE = 5  # the kernel kills us this long after the deadline whatever Python is doing

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
    received, phase, phase_end = 0, 0, 0.0
    try:
        while (now := time.monotonic()) < deadline:
            if now >= phase_end:
                _enter_phase(conn, shrinking, grow=phase % 2 == 0)
                phase, phase_end = phase + 1, now + PHASE_SECONDS
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
    return received


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
