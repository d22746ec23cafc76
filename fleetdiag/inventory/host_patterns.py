"""Host keys as Ansible reads them: ranges (``web[01:03]``, ``db-[a:c]``), a ``:port`` suffix, IPv6.

Only the shape of the key is handled here; whether the resulting names are safe to
hand to ssh is ``names.host_problem``'s job.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass

# A typo like web[1:100000000] would otherwise exhaust memory before any check runs.
MAX_HOSTS_PER_PATTERN = 65536

_BRACKETED_IPV6 = re.compile(r"\[(?P<address>[^\[\]]+)\](?::(?P<port>\d+))?")
_FIRST_BRACKETS = re.compile(r"\[(?P<body>[^\[\]]*)\]")


class HostPatternError(ValueError):
    """A host key that looks like a range but cannot be expanded; the message is one line."""


@dataclass(frozen=True)
class HostPattern:
    """What one host key stands for: host names in order, and a port if one was written."""

    names: tuple[str, ...]
    port: str | None = None


def is_ipv6(text: str) -> bool:
    """Whether ``text`` is an IPv6 literal such as ``2001:db8::10`` (no brackets)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_host_key(key: str) -> HostPattern:
    """The hosts a key under ``hosts:`` names, e.g. ``web[01:02]:2222`` -> web01, web02 on 2222."""
    bracketed = _BRACKETED_IPV6.fullmatch(key)
    if bracketed and is_ipv6(bracketed["address"]):
        return HostPattern((bracketed["address"],), bracketed["port"])
    if is_ipv6(key):
        return HostPattern((key,))
    name, port = _split_port(key)
    return HostPattern(tuple(expand_ranges(name)), port)


def _split_port(key: str) -> tuple[str, str | None]:
    """``web01:2222`` -> (web01, "2222"); colons inside range brackets do not count."""
    depth = 0
    colons = []
    for index, char in enumerate(key):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == ":" and depth == 0:
            colons.append(index)
    # Anything else with a colon is left whole, for the name check to reject.
    if len(colons) == 1 and key[colons[0] + 1 :].isdigit() and colons[0] > 0:
        return key[: colons[0]], key[colons[0] + 1 :]
    return key, None


def expand_ranges(pattern: str) -> list[str]:
    """Every name a pattern stands for, e.g. ``db-[a:c]`` -> db-a, db-b, db-c (inclusive)."""
    bracket = _FIRST_BRACKETS.search(pattern)
    if bracket is None or ":" not in bracket["body"]:
        # No range: brackets without a colon are left for the name check to reject.
        return [pattern]
    head, tail = pattern[: bracket.start()], pattern[bracket.end() :]
    values = _range_values(bracket["body"])
    tails = expand_ranges(tail)
    if len(values) * len(tails) > MAX_HOSTS_PER_PATTERN:
        raise HostPatternError(f"host range expands to more than {MAX_HOSTS_PER_PATTERN} hosts; split it up")
    return [head + value + rest for value in values for rest in tails]


def _range_values(body: str) -> list[str]:
    """The values of one ``start:end[:step]`` range body, as they appear in host names."""
    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise HostPatternError(f"host range [{body}] must read [start:end] or [start:end:step]")
    start, end = parts[0] or "0", parts[1]
    if not end:
        raise HostPatternError(f"host range [{body}] has no end value")
    step_text = parts[2] if len(parts) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise HostPatternError(f"host range [{body}] step must be a whole number above 0")
    step = int(step_text)
    if start.isdigit() and end.isdigit():
        return _numeric_range(body, start, end, step)
    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        first, last = letters.index(start), letters.index(end)
        if first > last:
            raise HostPatternError(f"host range [{body}] starts after its end")
        return list(letters[first : last + 1 : step])
    raise HostPatternError(f"host range [{body}] must run between two numbers or two single letters")


def _numeric_range(body: str, start: str, end: str, stride: int) -> list[str]:
    first, last = int(start), int(end)
    if first > last:
        raise HostPatternError(f"host range [{body}] starts after its end")
    count = (last - first) // stride + 1
    if count > MAX_HOSTS_PER_PATTERN:
        raise HostPatternError(f"host range expands to more than {MAX_HOSTS_PER_PATTERN} hosts; split it up")
    # Zero padding is taken from how the start is written, as Ansible does: [01:10] -> 01..10.
    width = len(start) if start.startswith("0") and len(start) > 1 else 0
    if width and len(end) != width:
        raise HostPatternError(
            f"host range [{body}] is zero-padded, so its start and end need the same number of digits"
        )
    return [str(value).zfill(width) for value in range(first, last + 1, stride)]
