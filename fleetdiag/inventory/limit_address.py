"""Whether a whole --limit reads as one host, as Ansible decides before splitting it at colons.

Ansible keeps a comma-less limit whole when it parses as one address with ranges allowed
(``web[01:03]``, ``db-[a:c].example.org``, ``192.0.2.[1:3]``, ``[2001:db8::1]:22``, an
optional ``:port``); otherwise ``web:db`` is two patterns. Written here from that rule,
with ansible-core's ``parse_address`` as the reference the differential tests check.
"""

from __future__ import annotations

import re

_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE | re.UNICODE)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{1,2}|\[[0-9]+:[0-9]+(?::[0-9]+)?\])"
_IPV4 = re.compile(rf"^(?:{_OCTET}\.){{3}}{_OCTET}$")
_HEXTET = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_IPV6_CHARS = re.compile(rf"^(?:{_HEXTET}|:)+$", re.IGNORECASE)
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def _is_ipv6(text: str) -> bool:
    """An IPv6 address, hextets possibly written as ranges: 2..8 groups, at most one '::'."""
    if not _IPV6_CHARS.match(text) or text.count("::") > 1 or ":::" in text:
        return False
    groups = re.sub(r"\[[^\]]*\]", "0", text).split(":")
    if "::" in text:
        return 2 <= len(groups) <= 9
    return len(groups) == 8


def is_one_address(text: str) -> bool:
    """Whether ``text`` is one host identifier: a host name, IPv4 or IPv6 address, ranges allowed."""
    bracketed = _BRACKETED_PORT.match(text)
    if bracketed:
        text = bracketed.group(1)
    else:
        with_port = _PORT.match(text)
        if with_port:
            text = with_port.group(1)
    return bool(_IPV4.match(text) or _is_ipv6(text) or _HOSTNAME.match(text))
