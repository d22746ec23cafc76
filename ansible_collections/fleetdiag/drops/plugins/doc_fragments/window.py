# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Documentation the collection's plugins share: the window's options, and what every plugin's attributes say."""

from __future__ import annotations


class ModuleDocFragment:
    """``fleetdiag.drops.window`` (the window's options) and ``fleetdiag.drops.window.attributes``."""

    DOCUMENTATION = r"""
options:
  duration:
    description: Seconds to watch.
    type: int
    default: 60
  tracer:
    description: The probe backend; C(auto) chooses the best one the host can run.
    type: str
    default: auto
    choices: [auto, bpftrace, bcc, stap, counters]
  port:
    description: Only flows with this local or remote port (counters stay namespace-wide).
    type: int
"""

    ATTRIBUTES = r"""
attributes:
  diff_mode:
    support: none
    description: Nothing lasting changes on the host, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Linux hosts reached by any connection plugin that runs a shell command.
"""
