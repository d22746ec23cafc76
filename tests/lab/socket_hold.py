"""Hold a TCP socket owned by its user for as long as we like, from plain Python: userfaultfd.

Stdlib only (it runs inside lab namespaces and guests, next to the script that imports it).

How: recv_into() a buffer whose page is registered with userfaultfd and still missing. tcp_recvmsg()
takes the socket lock, finds data queued and copies it to user space; the copy faults on the missing
page, and the fault waits in handle_userfault() until our handler thread resolves it. All that time
the socket is owned by the user, so every segment that arrives goes to the backlog, and past the
kernel's limit tcp_add_backlog() drops it: real TCPBacklogDrop, with no kernel module and no tracer.

It needs data already queued when recv_into() is called (with an empty queue tcp_recvmsg() waits,
which releases the lock), and root or vm.unprivileged_userfaultfd=1: a fault taken in kernel mode
is only handed to user space for a privileged creator (UFFD_USER_MODE_ONLY refuses it).
Kernels: userfaultfd exists since 4.3; x86_64 only here (the syscall number below).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

_NR_USERFAULTFD = {"x86_64": 323, "aarch64": 282}.get(os.uname().machine)
_UFFD_API = 0xAA


def _iowr(nr: int, size: int) -> int:
    """_IOWR(0xAA, NR, SIZE) of <linux/userfaultfd.h>."""
    return (3 << 30) | (size << 16) | (0xAA << 8) | nr


_UFFDIO_API = _iowr(0x3F, 24)  # struct uffdio_api {u64 api, features, ioctls}
_UFFDIO_REGISTER = _iowr(0x00, 32)  # struct uffdio_register {range {start, len}, mode, ioctls}
_UFFDIO_ZEROPAGE = _iowr(0x04, 32)  # struct uffdio_zeropage {range {start, len}, mode, s64 zeropage}
_UFFDIO_REGISTER_MODE_MISSING = 1
_UFFD_MSG_SIZE = 32


class HoldUnavailable(OSError):
    """This kernel or this process cannot hold a socket this way (no userfaultfd, not privileged)."""


class SocketHold:
    """One missing page registered with userfaultfd; hold(sock, seconds) makes one held recv on it."""

    def __init__(self) -> None:
        if _NR_USERFAULTFD is None:
            raise HoldUnavailable(errno.ENOSYS, f"no userfaultfd syscall number for {os.uname().machine}")
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(ctypes.c_long(_NR_USERFAULTFD), ctypes.c_int(os.O_CLOEXEC | os.O_NONBLOCK))
        if fd < 0:
            code = ctypes.get_errno()
            raise HoldUnavailable(code, f"userfaultfd: {os.strerror(code)}")
        self._fd = fd
        try:
            fcntl.ioctl(fd, _UFFDIO_API, bytearray(struct.pack("QQQ", _UFFD_API, 0, 0)))
            self._page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._address = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
            register = struct.pack("QQQQ", self._address, mmap.PAGESIZE, _UFFDIO_REGISTER_MODE_MISSING, 0)
            fcntl.ioctl(fd, _UFFDIO_REGISTER, bytearray(register))
        except OSError as exc:
            os.close(fd)
            raise HoldUnavailable(exc.errno, f"userfaultfd setup: {exc.strerror}") from exc
        self.held_seconds = 0.0  # summed over every hold, by our own clock

    def hold(self, sock: socket.socket, seconds: float, during: Callable[[], None] | None = None) -> int:
        """One recv_into() on SOCK that keeps the socket owned for SECONDS; returns bytes received.

        DURING, if given, runs on the handler thread once the socket is surely owned (the fault
        has come), before the hold's time runs: what it sends to the socket meets the backlog.

        The caller makes sure data is queued first (see queued_bytes); otherwise the recv waits
        for data with the lock released, and the hold ends when data comes, however long it held.
        """
        self._page.madvise(mmap.MADV_DONTNEED)  # missing again: the next copy faults to us
        released = threading.Thread(target=self._release_after, args=(seconds, during), daemon=True)
        released.start()
        started = time.monotonic()
        try:
            received = sock.recv_into(memoryview(self._page), mmap.PAGESIZE)
        finally:
            released.join()
        self.held_seconds += time.monotonic() - started
        return received

    def _release_after(self, seconds: float, during: Callable[[], None] | None) -> None:
        """Wait for the fault, run DURING, keep the fault pending SECONDS in all, then map a zero page."""
        ready, _, _ = select.select([self._fd], [], [], seconds + 30)
        if not ready:
            return  # no fault came: the recv did not copy (empty queue, or the socket closed)
        os.read(self._fd, _UFFD_MSG_SIZE)
        until = time.monotonic() + seconds
        try:
            if during is not None:
                during()
        finally:
            time.sleep(max(0.0, until - time.monotonic()))
            self._resolve()

    def _resolve(self) -> None:
        """Map a zero page where the fault waits: the copy completes and recv_into() returns."""
        zeropage = struct.pack("QQQq", self._address, mmap.PAGESIZE, 0, 0)
        try:
            fcntl.ioctl(self._fd, _UFFDIO_ZEROPAGE, bytearray(zeropage))
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # already mapped: the fault resolved another way
                raise

    def close(self) -> None:
        """Release the page and the userfaultfd."""
        self._page.close()
        os.close(self._fd)


def queued_bytes(sock: socket.socket) -> int:
    """Bytes in SOCK's receive queue now (SIOCINQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), 0x541B, b"\0\0\0\0"))[0]  # FIONREAD/SIOCINQ
