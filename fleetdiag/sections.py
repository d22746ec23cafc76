"""The framing of everything a host prints back: named sections in one stdout stream.

Remote scripts print ``@@fleetdiag NAME`` on a line of its own before each part, so
one round trip carries many facts (or a probe's output and counters) and each part
reaches its own parser untouched.
"""

from __future__ import annotations

MARKER = "@@fleetdiag "


def section_header(name: str) -> str:
    """The shell line that opens a section, e.g. ``echo '@@fleetdiag kernel'``."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"section names are identifiers, not {name!r}")
    return f"echo '{MARKER}{name}'"


def split_sections(output: str) -> dict[str, str]:
    """Split a remote script's stdout into {section name: text}; text before the first marker is dropped.

    >>> split_sections("@@fleetdiag a\\n1\\n@@fleetdiag b\\n2\\n")
    {'a': '1\\n', 'b': '2\\n'}
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith(MARKER):
            current = sections.setdefault(line[len(MARKER):].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "".join(lines) for name, lines in sections.items()}
