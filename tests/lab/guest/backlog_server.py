"""Runs INSIDE the guest (python3 backlog_server.py PORT DELAY_MS): the generator's receiving end.

Listens, accepts one connection, sends `R`, waits for the controller's one real byte, then recv()s it
into a userfaultfd-registered page that is still missing: the kernel's copy to user faults while
tcp_recvmsg holds the socket lock, and the fault waits until our handler thread fills the page
DELAY_MS later, so the socket stays owned by its user that long (no module, any kernel with
userfaultfd, run as root). Prints `listening`, `holding` (the fault is pending: send now),
`held <seconds> bytes <n>`, `held_ms <n>` (the handler's own measure), then `done`; stdlib only.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import platform
import select
import socket
import struct
import sys
import threading
import time

ACCEPT_TIMEOUT = 60.0
BYTE_TIMEOUT = 30.0  # the controller's real byte, sent as soon as it reads `R`
FAULT_TIMEOUT = 30.0
RECV_TIMEOUT = 30  # seconds

# <linux/userfaultfd.h>; Python exports none of it.
_SYSCALL_USERFAULTFD = {"x86_64": 323, "aarch64": 282}
UFFD_API = 0xAA
UFFDIO_REGISTER_MODE_MISSING = 1
UFFD_MSG_SIZE = 32


def _iowr(nr: int, size: int) -> int:
    """_IOWR(0xAA, NR, SIZE), as the header computes the uffd ioctl numbers."""
    return (3 << 30) | (size << 16) | (0xAA << 8) | nr


UFFDIO_API = _iowr(0x3F, 24)  # struct uffdio_api
UFFDIO_REGISTER = _iowr(0x00, 32)  # struct uffdio_register
UFFDIO_ZEROPAGE = _iowr(0x04, 32)  # struct uffdio_zeropage


class MissingPage:
    """One anonymous page registered with userfaultfd: the first access to it waits for release()."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        number = _SYSCALL_USERFAULTFD.get(platform.machine())
        if number is None:
            raise SystemExit(f"userfaultfd syscall number unknown for {platform.machine()}")
        self.fd = libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise SystemExit(f"userfaultfd failed: {os.strerror(err)} (needs root or vm.unprivileged_userfaultfd=1)")
        fcntl.ioctl(self.fd, UFFDIO_API, bytearray(struct.pack("QQQ", UFFD_API, 0, 0)))
        self.size = mmap.PAGESIZE
        self.map = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        reg = struct.pack("QQQQ", self.address, self.size, UFFDIO_REGISTER_MODE_MISSING, 0)
        fcntl.ioctl(self.fd, UFFDIO_REGISTER, bytearray(reg))

    def wait_fault(self, timeout: float) -> None:
        """Return once something faults on the page (it is then blocked until release())."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            raise SystemExit(f"no fault on the held page within {timeout}s")
        os.read(self.fd, UFFD_MSG_SIZE)

    def release(self) -> None:
        """Map a zero page there: the faulting access resumes."""
        fcntl.ioctl(self.fd, UFFDIO_ZEROPAGE, bytearray(struct.pack("QQQq", self.address, self.size, 0, 0)))


def main(port: int, delay_ms: int) -> int:
    """Serve one held recv(); exit status 0 when all went as planned."""
    page = MissingPage()
    held_ns: list[int] = []
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            page.wait_fault(ACCEPT_TIMEOUT + BYTE_TIMEOUT + FAULT_TIMEOUT)
            started = time.monotonic_ns()
            print("holding", flush=True)
            time.sleep(delay_ms / 1000)
            held_ns.append(time.monotonic_ns() - started)
            page.release()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            page.release()  # never leave the recv() stuck

    handler = threading.Thread(target=hold, daemon=True)
    handler.start()
    serve_once(port, page)
    handler.join()
    if errors:
        raise errors[0]
    print(f"held_ms {held_ns[0] // 1_000_000}", flush=True)
    print("done", flush=True)
    return 0


def serve_once(port: int, page: MissingPage) -> None:
    """Accept one connection, signal the controller, make the held recv(), report how long it took."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Small buffers keep the backlog limit (rcvbuf + sndbuf + 64K) low; accepted sockets inherit them.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    server.settimeout(ACCEPT_TIMEOUT)
    print("listening", flush=True)
    conn, _ = server.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", RECV_TIMEOUT, 0))
    conn.sendall(b"R")
    # The byte must be queued before recv(): on an empty queue tcp_recvmsg waits with the lock released.
    ready, _, _ = select.select([conn], [], [], BYTE_TIMEOUT)
    if not ready:
        raise SystemExit(f"the controller's byte did not come within {BYTE_TIMEOUT}s")
    started = time.monotonic()
    count = conn.recv_into(memoryview(page.map), page.size)
    print(f"held {time.monotonic() - started:.2f} bytes {count}", flush=True)
    conn.close()
    server.close()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
