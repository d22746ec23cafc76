# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.window: fleetdiag's collector on the controller, over the task's Ansible connection."""

from __future__ import annotations

from ansible import constants as C
from ansible import context

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import (
    FleetdiagAction,
    ansible_instant,
    ansible_task,
)


class ActionModule(FleetdiagAction):
    """Detect, choose the tracer and watch one window on the host, as ``fleetdiag collect`` does."""

    NAME = "fleetdiag.drops.window"

    def run_fleetdiag(self, args, task_vars):
        """The host's result in fleetdiag's schema; check mode is ``fleetdiag check``."""
        options = ansible_task.window_options(args)
        spec = self.host_spec(task_vars)
        if self._task.check_mode:
            return self.check(spec, options)
        instants = [] if options.start_at is None else [options.start_at]
        start_at = options.start_at
        if start_at is None:  # the play's instant: set by the first host past detection
            ansible_instant.note_arrival(self.play_id())
            hosts = len(task_vars.get("ansible_play_batch") or ()) or 1
            forks = int(context.CLIARGS.get("forks") or C.DEFAULT_FORKS)
            start_at = ansible_task.play_hold(self.play_id(), hosts, forks, instants)
        host = ansible_task.run_window(spec, self.transport(), options, start_at)
        instant = {"mode": "held", "window_instant": instants[-1]} if instants else {"mode": "held"}
        return dict(ansible_task.window_task_result(host, options.port), **instant)
