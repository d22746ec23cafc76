# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.fetch: the armed window's result, once it is over; the host is left as it was."""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import FleetdiagAction, ansible_armed


class ActionModule(FleetdiagAction):
    """Wait for the window the arm task armed to end, fetch its result, remove what it left."""

    NAME = "fleetdiag.drops.fetch"

    def run_fleetdiag(self, args, task_vars):
        """The host's result in fleetdiag's schema, as fleetdiag.drops.window returns it."""
        registered = args.get("armed")
        if sorted(set(args) - {"armed"}) or not isinstance(registered, Mapping):
            return dict(failed=True, msg=f"{self.NAME}: armed: give the fleetdiag.drops.arm task's "
                        "registered result (armed: \"{{ its_register }}\"), and no other option")  # fmt: skip
        if not isinstance(registered.get("armed"), Mapping):
            return ansible_armed.not_armed_result(registered)  # its failure, check or skip, as it was
        try:
            armed, duration, wanted, _port = ansible_armed.armed_from(registered["armed"])
        except ValueError as exc:
            return dict(failed=True, msg=f"{self.NAME}: armed: {exc}")
        host = ansible_armed.fetch(armed, duration, self.transport(), wanted)
        return ansible_armed.fetch_task_result(host, registered["armed"])
