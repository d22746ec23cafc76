# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.fetch: the armed window's result, once it is over; the host is left as it was."""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import FleetdiagAction

try:
    from fleetdiag import ansible_armed
except ImportError:
    pass  # FleetdiagAction.missing_package says so


class ActionModule(FleetdiagAction):
    """Wait for the window the arm task armed to end, fetch its result, remove what it left."""

    def run(self, tmp=None, task_vars=None):
        """The host's result in fleetdiag's schema, as fleetdiag.drops.window returns it."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        missing = self.missing_package()
        if missing:
            return dict(result, **missing)
        unknown = sorted(set(self._task.args) - {"armed"})
        registered = self._task.args.get("armed")
        if unknown or not isinstance(registered, Mapping):
            return dict(result, failed=True, msg="fleetdiag.drops.fetch: armed: give the fleetdiag.drops.arm task's "
                        "registered result (armed: \"{{ its_register }}\"), and no other option")  # fmt: skip
        if not isinstance(registered.get("armed"), Mapping):
            return dict(result, **ansible_armed.not_armed_result(registered))  # its failure, check or skip, as it was
        try:
            armed, duration, wanted, _port = ansible_armed.armed_from(registered["armed"])
        except ValueError as exc:
            return dict(result, failed=True, msg=f"fleetdiag.drops.fetch: armed: {exc}")
        host = ansible_armed.fetch(armed, duration, self.transport(), wanted)
        return dict(result, **ansible_armed.fetch_task_result(host, registered["armed"]))
