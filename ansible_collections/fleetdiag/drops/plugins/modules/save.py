#!/usr/bin/python
# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# The work is done by the action plugin of the same name, on the controller: nothing runs from here.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: save
short_description: Save the play hosts' fleetdiag.drops.window results as one fleetdiag sweep
version_added: "0.1.0"
description:
  - Reads every play host's registered M(fleetdiag.drops.window) result and writes one fleetdiag document
    (schema_version 1) into the results directory with its SQLite index, exactly as C(fleetdiag collect)
    saves a sweep; C(fleetdiag report), C(fleetdiag history) and C(fleetdiag diff) read it.
  - Hosts that were unreachable or failed are in the document with their reason (Ansible's own message
    for an unreachable host); hosts where the window task never ran say so.
  - Runs on the controller only and contacts no host; use it with C(run_once).
  - Register the window task with C(ignore_unreachable) and C(ignore_errors) so the play keeps every host
    until this task, or the play may lose them all before it runs.
options:
  results:
    description: The name of the variable the window task registered.
    type: str
    default: fleetdiag_window
  hosts:
    description: The hosts whose results go into the sweep, in this order; default the play's hosts.
    type: list
    elements: str
  results_dir:
    description: The results directory on the controller; default fleetdiag's (C(~/.local/share/fleetdiag)).
    type: path
  prom_file:
    description: Also write Prometheus textfile-collector metrics here (atomically), as C(--prom-file) does.
    type: path
  duration:
    description: The window's length, for the document; default what the hosts measured.
    type: int
  port:
    description: The port the windows traced, for the document's verdicts.
    type: int
  fail_on_missing:
    description:
      - After saving, fail this task when a host has no window (unreachable, failed, or the window task did
        not run there), naming them, so the run ends non-zero as C(fleetdiag collect) exits 3.
      - One task on the controller does this, not a task per host (at 200 hosts a per-host task costs Ansible
        a pass of its own, several seconds).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: In check mode nothing is saved.
extends_documentation_fragment:
  - fleetdiag.drops.window.attributes
seealso:
  - module: fleetdiag.drops.window
author:
  - fleetdiag contributors (@fleetdiag)
"""

EXAMPLES = r"""
- name: Watch
  fleetdiag.drops.window:
    duration: 30
  register: drops
  ignore_unreachable: true
  ignore_errors: true

- name: One fleetdiag sweep from every host's result
  fleetdiag.drops.save:
    results: drops
    results_dir: /var/lib/fleetdiag
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
sweep_id:
  description: The saved sweep's id (C(fleetdiag report SWEEP_ID)).
  returned: success
  type: str
document:
  description: The saved document's path.
  returned: success
  type: str
results_dir:
  description: The results directory it was saved in.
  returned: success
  type: str
summary:
  description: The number of hosts, the hosts by status, and the hosts with drops.
  returned: success
  type: dict
missing:
  description: The hosts without a window, each with its reason.
  returned: success
  type: dict
msg:
  description: One sentence.
  returned: always
  type: str
"""
