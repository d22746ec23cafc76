#!/usr/bin/python
# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# The work is done by the action plugin of the same name, on the controller: nothing runs from here.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fetch
short_description: Fetch the window fleetdiag.drops.arm armed on a host, once it is over
version_added: "0.1.0"
description:
  - Waits (on the controller) until the armed window has ended, then collects its result in one short
    session and removes the window's directory and keeper from the host.
  - Returns what M(fleetdiag.drops.window) returns, the host's record and flows in fleetdiag's schema,
    with the window times corrected by the host's measured clock offset.
  - A host the arm task could not arm gets the arm task's failure back, without being contacted.
options:
  armed:
    description: The registered result of the M(fleetdiag.drops.arm) task for this host.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: In check mode the arm task checked, and this passes its result on.
extends_documentation_fragment:
  - fleetdiag.drops.window.attributes
seealso:
  - module: fleetdiag.drops.arm
  - module: fleetdiag.drops.save
author:
  - fleetdiag contributors (@fleetdiag)
"""

EXAMPLES = r"""
- name: Fetch every window once it is over
  fleetdiag.drops.fetch:
    armed: "{{ armed }}"
  register: drops
"""

RETURN = r"""
host:
  description: The host's record, as in C(hosts[]) of a fleetdiag document.
  returned: always
  type: dict
flows:
  description: The host's flows, as in C(flows[]) of a fleetdiag document.
  returned: always
  type: list
  elements: dict
mode:
  description: C(armed).
  returned: when the host was armed
  type: str
window_instant:
  description: The play's instant (Unix time, controller clock).
  returned: when the host was armed
  type: float
msg:
  description: One sentence; why, when the host failed.
  returned: always
  type: str
"""
