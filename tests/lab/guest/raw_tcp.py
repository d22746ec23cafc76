"""Hand-made TCP segments on an open connection: read its sequence numbers, then send raw duplicates."""

from __future__ import annotations

import socket
import time

from tests.lab.raw_segments import ipv4_tcp_segment

# <linux/tcp.h>; Python's socket module does not export the repair options.
TCP_REPAIR = 19
TCP_REPAIR_QUEUE = 20
TCP_QUEUE_SEQ = 21
TCP_RECV_QUEUE = 1
TCP_SEND_QUEUE = 2
TCP_REPAIR_ON = 1
TCP_REPAIR_OFF_NO_WP = -1  # leave repair mode without sending a window probe


def sequence_numbers(sock: socket.socket) -> tuple[int, int]:
    """(next seq to send, next seq expected) of a connected socket, read in repair mode (root)."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        snd_nxt = _unsigned(sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ))
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        rcv_nxt = _unsigned(sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ))
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
    return snd_nxt, rcv_nxt


def send_duplicates(sock: socket.socket, count: int, payload_len: int = 1000) -> float:
    """Send COUNT copies of one data segment on SOCK's connection (same seq each); returns seconds taken."""
    (src, sport), (dst, dport) = sock.getsockname(), sock.getpeername()
    seq, ack = sequence_numbers(sock)
    packet = ipv4_tcp_segment(src, sport, dst, dport, seq, ack, b"\0" * payload_len)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
    try:
        started = time.monotonic()
        for _ in range(count):
            raw.sendto(packet, (dst, 0))
        return time.monotonic() - started
    finally:
        raw.close()


def _unsigned(value: int) -> int:
    """getsockopt returns a C int; sequence numbers are u32."""
    return value & 0xFFFFFFFF
