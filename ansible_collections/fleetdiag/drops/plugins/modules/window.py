#!/usr/bin/python
# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# The work is done by the action plugin of the same name, on the controller: nothing runs from here.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: window
short_description: Watch one window of TCP packet drops on a host with fleetdiag's probes
version_added: "0.1.0"
description:
  - Runs fleetdiag's own collector on the controller, over the task's Ansible connection; the target
    needs a POSIX shell and the tracer (bpftrace, bcc, systemtap (stap), or only C(/proc/net/netstat) for
    counters), but no Python.
  - Detects the host's kernel and tracers, chooses the probe as C(fleetdiag collect) does, watches one
    window and returns the host's record and flows in fleetdiag's JSON schema (schema_version 1).
  - Every host of the play starts its window at one instant (O(start_at), or one the play sets).
  - In check mode it is C(fleetdiag check) for the host, detection and every tracer's verdict, and no
    probe runs.
  - Become is Ansible's (C(become), C(-b), C(-K)); probes need root.
options:
  start_at:
    description:
      - When every host starts watching, as a Unix time (seconds since the epoch, controller clock).
      - Omitted, the first host of the play past detection sets one instant for the forks batch (from its
        own round trip and the rate Ansible is starting the play's hosts), and the others read it.
      - A held window cannot span Ansible's forks batches; with more hosts than forks use
        M(fleetdiag.drops.arm) and M(fleetdiag.drops.fetch), as the playbook C(fleetdiag.drops.sweep) does.
    type: float
attributes:
  check_mode:
    support: full
    description: Check mode runs detection only and reports every tracer's verdict.
notes:
  - Any connection plugin that runs a shell command works; C(ssh) and C(local) are tested.
  - To turn the hosts' results into one fleetdiag document (C(fleetdiag report), C(history), C(diff)),
    add a M(fleetdiag.drops.save) task, or run the playbook C(fleetdiag.drops.sweep).
extends_documentation_fragment:
  - fleetdiag.drops.window
  - fleetdiag.drops.window.attributes
seealso:
  - module: fleetdiag.drops.save
  - module: fleetdiag.drops.arm
author:
  - fleetdiag contributors (@fleetdiag)
"""

EXAMPLES = r"""
- name: Watch 60 s of drops on port 8888
  fleetdiag.drops.window:
    duration: 60
    port: 8888
  become: true
  register: drops

- name: Which tracer each host could run (no probe)
  fleetdiag.drops.window:
  check_mode: true
"""

RETURN = r"""
host:
  description: The host's record, as in C(hosts[]) of a fleetdiag document.
  returned: unless in check mode
  type: dict
  sample: {"name": "web01", "status": "ok", "probe": "bpftrace:rx_sk", "drops": {"SOCKET_BACKLOG": 12}}
flows:
  description: The host's flows, as in C(flows[]) of a fleetdiag document.
  returned: unless in check mode
  type: list
  elements: dict
port:
  description: The port the window traced, if any.
  returned: unless in check mode
  type: int
check:
  description: The host's entry of C(fleetdiag check -o json) (kernel, every tracer's verdict, the probe).
  returned: in check mode
  type: dict
msg:
  description: One sentence; why, when the host failed.
  returned: always
  type: str
"""
