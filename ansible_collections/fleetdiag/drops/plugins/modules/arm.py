#!/usr/bin/python
# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# The work is done by the action plugin of the same name, on the controller: nothing runs from here.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: arm
short_description: Arm one window of fleetdiag's TCP drop probes on a host, for the play's one instant
version_added: "0.1.0"
description:
  - Detects the host's kernel and tracers and chooses the probe as C(fleetdiag collect) does, reads the
    host's clock, and leaves the window armed on the host (a private directory and a detached keeper)
    for one instant; the window then runs on the host by itself. M(fleetdiag.drops.fetch) collects it.
  - This is how hosts that Ansible reaches in different forks batches watch the same seconds; the
    playbook C(fleetdiag.drops.sweep) runs arm, then fetch, then M(fleetdiag.drops.save).
  - Runs fleetdiag's own code on the controller over the task's connection; the target needs no Python.
  - An armed result nobody fetches is removed from the host after O(pickup) seconds, with its keeper.
  - In check mode it is C(fleetdiag check) for the host and arms nothing.
options:
  start_at:
    description:
      - The instant every host starts watching, as a Unix time (seconds since the epoch, controller clock).
      - Omitted, the play sets one instant for all its hosts once every host of its first forks batch is ready
        to be armed (detected, clock read), far enough ahead for them all to arm and for every later batch.
      - A host armed after the instant starts at once, and its result says how late.
    type: float
  pickup:
    description: Seconds after its window's end that the host keeps a result nobody fetched.
    type: int
    default: 900
  fetch:
    description:
      - Also wait for the window to end and fetch its result in this task, returning what M(fleetdiag.drops.fetch)
        returns; no fetch task is needed then.
      - Use it only when all the play's hosts fit in one forks batch, C(ansible_play_batch | length <= ansible_forks),
        because a host waiting here holds its fork, so hosts of a later batch would be armed after the instant.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Check mode runs detection only and reports every tracer's verdict.
notes:
  - With C(serial), each slice is armed after the last one's tasks are over; give O(start_at) far enough
    ahead, or run the sweep without C(serial).
extends_documentation_fragment:
  - fleetdiag.drops.window
  - fleetdiag.drops.window.attributes
seealso:
  - module: fleetdiag.drops.fetch
  - module: fleetdiag.drops.window
author:
  - fleetdiag contributors (@fleetdiag)
"""

EXAMPLES = r"""
- name: Arm 60 s on every host (one instant, whatever the forks)
  fleetdiag.drops.arm:
    duration: 60
  register: armed
  ignore_unreachable: true
  ignore_errors: true

- name: Fetch every window once it is over
  fleetdiag.drops.fetch:
    armed: "{{ armed }}"
  register: drops
"""

RETURN = r"""
armed:
  description: What M(fleetdiag.drops.fetch) needs to collect the window (pass the whole registered result).
  returned: when the host was armed
  type: dict
start_at:
  description: When this host's window starts (Unix time, controller clock).
  returned: when the host was armed
  type: float
window_end:
  description: When it ends (Unix time, controller clock).
  returned: when the host was armed
  type: float
host:
  description: The host's record in fleetdiag's schema, when it could not be armed.
  returned: on failure
  type: dict
check:
  description: The host's entry of C(fleetdiag check -o json).
  returned: in check mode
  type: dict
msg:
  description: One sentence; why, when the host failed.
  returned: always
  type: str
"""
