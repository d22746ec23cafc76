"""A series of counts as one short line of characters: block elements on a UTF-8 terminal, ASCII otherwise."""

from __future__ import annotations

import math
from typing import Sequence

# Level 0 is "no drop" (a baseline, so the window's length shows); any drop shows at least level 1.
LEVELS = {"unicode": "▁▂▃▄▅▆▇█", "ascii": ".:-=+*#%@"}
WIDTH = 24


def buckets(series: Sequence[int], width: int = WIDTH) -> list[int]:
    """SERIES summed into at most WIDTH buckets of equal length (the last may be shorter).

    >>> buckets([1, 2, 3, 4, 5], 2)
    [6, 9]
    """
    if len(series) <= width:
        return list(series)
    size = math.ceil(len(series) / width)
    return [sum(series[i : i + size]) for i in range(0, len(series), size)]


def sparkline(series: Sequence[int] | None, style: str = "ascii", width: int = WIDTH) -> str:
    """E.g. ``"▁▁▁▂█▅▁"`` (unicode) or ``"...:@+."`` (ascii); "" for no series.

    >>> sparkline([0, 0, 1, 8, 4, 0], "ascii")
    '..:@+.'
    """
    if not series:
        return ""
    levels = LEVELS.get(style, LEVELS["ascii"])
    counts = buckets(series, width)
    top = max(counts)
    if top <= 0:
        return levels[0] * len(counts)
    steps = len(levels) - 1
    return "".join(levels[0] if n <= 0 else levels[max(1, math.ceil(n * steps / top))] for n in counts)


def style_for(is_tty: bool, environ: dict[str, str] | object) -> str:
    """"unicode" on a terminal whose locale says UTF-8; "ascii" otherwise (pipes, cron, LANG=C).

    >>> style_for(True, {"LANG": "en_US.UTF-8"}), style_for(True, {"LC_ALL": "C", "LANG": "en_US.UTF-8"}), style_for(False, {"LANG": "C.UTF-8"})
    ('unicode', 'ascii', 'ascii')
    """
    get = getattr(environ, "get")
    locale = get("LC_ALL") or get("LC_CTYPE") or get("LANG") or ""
    utf8 = "utf-8" in locale.lower() or "utf8" in locale.lower()
    return "unicode" if is_tty and utf8 else "ascii"
