"""A page opened in headless Chromium with no network at all: its DOM, its console, a screenshot."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.lab.requirements import find_program

# Debian's package is `chromium`; the flags keep it from phoning home or keeping state.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
)  # fmt: skip
_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


@dataclass(frozen=True)
class Opened:
    dom: str
    console: list[str]  # every message the page logged (errors, warnings, failed loads), not Chromium's own
    screenshot: Path | None


def chromium() -> str | None:
    """The browser, or None when it is not installed (Debian package chromium, set up by .ci/setup)."""
    return find_program("chromium") or find_program("chromium-browser")


def open_offline(page: Path, workdir: Path, size: tuple[int, int] = (1400, 1600), timeout: float = 120) -> Opened:
    """Open PAGE in a fresh, empty network namespace (`unshare -n`): nothing it asks for can load."""
    browser = chromium()
    assert browser, "chromium is not installed"
    shot = workdir / "screenshot.png"
    runs = {"dom": ["--dump-dom"], "shot": [f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}"]}
    out: dict[str, subprocess.CompletedProcess] = {}
    for name, extra in runs.items():
        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)  # empty: no state from before
        argv = ["unshare", "-n", browser, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
        out[name] = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    # Chromium's own pages (chrome://...) log too; only what the page itself logged counts.
    console = [m.group(1) for run in out.values() for m in _CONSOLE.finditer(run.stderr)
               if "source: chrome://" not in m.group(1)]  # fmt: skip
    return Opened(out["dom"].stdout, console, shot if shot.exists() else None)
