# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.arm: arm the host's window for the play's one instant; fleetdiag.drops.fetch collects it."""

from __future__ import annotations

import time

from ansible import constants as C
from ansible import context

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import FleetdiagAction

try:
    from fleetdiag import ansible_armed, ansible_task
    from fleetdiag.errors import FleetdiagError
    from fleetdiag.model import HostResult, Window
    from fleetdiag.sweep import with_groups
except ImportError:
    pass  # FleetdiagAction.missing_package says so


class ActionModule(FleetdiagAction):
    """Detect, read the host's clock and leave its window armed on it (a short task; the window runs by itself)."""

    def run(self, tmp=None, task_vars=None):
        """What fleetdiag.drops.fetch needs (``armed``), or the host's failure in fleetdiag's schema."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        missing = self.missing_package()
        if missing:
            return dict(result, **missing)
        args = dict(self._task.args)
        try:
            pickup = ansible_task._integer(args.pop("pickup", ansible_armed.DEFAULT_PICKUP_S), "pickup", 10, 86400)
            options = ansible_task.window_options(args)
        except FleetdiagError as exc:
            return dict(result, failed=True, msg=f"fleetdiag.drops.arm: {exc}")
        spec = self.host_spec(task_vars)
        if self._task.check_mode:
            return dict(result, **ansible_task.check_task_result(ansible_task.run_check(spec, self.transport(), options)))
        hosts = len(task_vars.get("ansible_play_batch") or ()) or 1
        forks = int(context.CLIARGS.get("forks") or C.DEFAULT_FORKS)

        chosen = []

        def instant(elapsed_s):
            if options.start_at is not None:
                chosen.append(options.start_at)
            else:
                def choose(arrivals):
                    now = time.time()
                    return now + ansible_armed.arm_lead_s(elapsed_s, hosts, forks, arrivals, now)

                chosen.append(ansible_task.play_instant(self.play_id(), choose))
            return chosen[-1]

        if options.start_at is None:
            ansible_task.note_arrival(self.play_id())
        window = Window(duration_s=options.duration, port=options.port)
        armed = ansible_armed.arm(spec, self.transport(), window, options.tracer, instant, pickup)
        if isinstance(armed, HostResult):  # failed before its window: still in its groups in the report
            return dict(result, **ansible_task.window_task_result(with_groups(armed, spec), options.port))
        return dict(result, **ansible_armed.arm_task_result(armed, options, chosen[-1] if chosen else None))
