"""Checks for the names an inventory hands to ssh: host names, addresses, user and group names.

Each check returns a one-line problem or None. Allow-lists, not deny-lists: a value
that reaches an ssh command line must not be read as an option (leading ``-``) or
split by a shell (whitespace, metacharacters).
"""

from __future__ import annotations

import ipaddress
import string

_DNS_CHARS = frozenset(string.ascii_letters + string.digits + "._-")
# ':' and '%' only ever appear in IPv6 literals (with an optional zone, fe80::1%eth0).
_HOST_CHARS = _DNS_CHARS | frozenset(":%")
# '@' for user@REALM logins, '$' for machine accounts.
_LOGIN_CHARS = _DNS_CHARS | frozenset("@$")

_CHAR_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}


def describe_char(char: str) -> str:
    """How a character is named in a message: 'a space', or quoted like ';'."""
    return _CHAR_NAMES.get(char, repr(char))


def template_problem(text: str) -> str | None:
    """A problem if ``text`` is a Jinja template, which fleetdiag does not evaluate."""
    if "{{" in text or "{%" in text:
        return "Jinja templates are not evaluated by fleetdiag; write the value itself"
    return None


def _charset_problem(text: str, what: str, allowed: frozenset[str], advice: str) -> str | None:
    if not text:
        return f"{what} must not be empty"
    if problem := template_problem(text):
        return problem
    if text.startswith("-"):
        return f"{text!r} is not a valid {what}: it starts with '-', which ssh would read as an option"
    # Letters and digits of any script are names (Ansible reads unicode host names), never shell syntax.
    bad = next((char for char in text if char not in allowed and not char.isalnum()), None)
    if bad is not None:
        return f"{text!r} is not a valid {what}: it contains {describe_char(bad)}; {advice}"
    return None


def host_problem(text: str, what: str = "host name") -> str | None:
    """A problem if ``text`` is not a DNS name, an IPv4 or an IPv6 address (e.g. ``web01;reboot``)."""
    advice = "use a DNS name, an IPv4 or an IPv6 address"
    if problem := _charset_problem(text, what, _HOST_CHARS, advice):
        return problem
    if ":" in text or "%" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return f"{text!r} is not a valid {what}: ':' and '%' are only allowed in an IPv6 address"
    return None


def login_problem(text: str, what: str = "user name") -> str | None:
    """A problem if ``text`` cannot safely be a login name (e.g. ``-oProxyCommand=x``)."""
    advice = "use letters, digits, '.', '_', '-', '@' and '$'"
    return _charset_problem(text, what, _LOGIN_CHARS, advice)


def group_problem(text: str) -> str | None:
    """A problem if ``text`` cannot be a group name usable in a --limit pattern."""
    # Group names never reach ssh, but ':', ',', '!', '&', '*' would break --limit.
    if not text:
        return "group name must not be empty"
    bad = next((char for char in text if not (char.isalnum() or char in "_-.")), None)
    if bad is not None:
        return (
            f"{text!r} is not a valid group name: it contains {describe_char(bad)}; "
            "use letters, digits, '_', '-' and '.'"
        )
    return None
