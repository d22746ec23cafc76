# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.window: fleetdiag's collector on the controller, over the task's Ansible connection."""

from __future__ import annotations

from ansible import constants as C
from ansible import context

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
        instants = [] if options.start_at is None else [options.start_at]
        start_at = options.start_at
        if start_at is None:  # the play's instant: set by the first host past detection
            ansible_task.note_arrival(self.play_id())
            hosts = len(task_vars.get("ansible_play_batch") or ()) or 1
            forks = int(context.CLIARGS.get("forks") or C.DEFAULT_FORKS)
            start_at = ansible_task.play_hold(self.play_id(), hosts, forks, instants)
        host = ansible_task.run_window(spec, self.transport(), options, start_at)
        instant = {"mode": "held", "window_instant": instants[-1]} if instants else {"mode": "held"}
        return dict(result, **ansible_task.window_task_result(host, options.port), **instant)
