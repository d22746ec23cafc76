"""Hand-made IPv4/TCP segments with valid checksums, for the lab's generators. Stdlib only.

Used from the controller (tests/lab/guest/raw_tcp.py, into a guest) and from inside a lab
namespace (tests/lab/backlog_traffic.py, next to which it is then imported by path).
"""

from __future__ import annotations

import socket
import struct

_ACK, _PSH = 0x10, 0x08


def ipv4_tcp_segment(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    """An IPv4 packet holding one ACK|PSH TCP segment with valid checksums (no TCP options)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, _ACK | _PSH, 65535, 0, 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, socket.IPPROTO_TCP, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
