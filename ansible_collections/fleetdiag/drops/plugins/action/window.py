# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.window: fleetdiag's collector on the controller, over the task's Ansible connection."""

from __future__ import annotations

import time

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import FleetdiagAction

try:
    from fleetdiag import ansible_task
    from fleetdiag.errors import FleetdiagError
except ImportError:
    pass  # FleetdiagAction.missing_package says so


class ActionModule(FleetdiagAction):
    """Detect, choose the tracer and watch one window on the host, as ``fleetdiag collect`` does."""

    def run(self, tmp=None, task_vars=None):
        """The host's result in fleetdiag's schema; check mode is ``fleetdiag check``."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        missing = self.missing_package()
        if missing:
            return dict(result, **missing)
        try:
            options = ansible_task.window_options(self._task.args)
        except FleetdiagError as exc:
            return dict(result, failed=True, msg=f"fleetdiag.drops.window: {exc}")
        spec = self.host_spec(task_vars)
        if self._task.check_mode:
            return dict(result, **ansible_task.check_task_result(ansible_task.run_check(spec, self.transport(), options)))
        start_at = options.start_at
        if start_at is None:
            start_at = ansible_task.play_instant(self.play_id(), lambda _arrivals: time.time() + ansible_task.PLAY_LEAD_S)
        host = ansible_task.run_window(spec, self.transport(), options, start_at)
        return dict(result, **ansible_task.window_task_result(host, options.port))
