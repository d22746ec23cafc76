# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.arm: arm the host's window for the play's one instant; fleetdiag.drops.fetch collects it."""

from __future__ import annotations

from ansible import constants as C
from ansible import context
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import (
    FleetdiagAction,
    ansible_armed,
    ansible_instant,
    ansible_task,
)

try:
    from fleetdiag.model import HostResult, Window
    from fleetdiag.sweep import with_groups
except ImportError:
    pass  # FleetdiagAction.run says so


class ActionModule(FleetdiagAction):
    """Detect, read the host's clock and leave its window armed on it (a short task; the window runs by itself)."""

    NAME = "fleetdiag.drops.arm"

    def run_fleetdiag(self, args, task_vars):
        """What fleetdiag.drops.fetch needs (``armed``), or the host's failure in fleetdiag's schema."""
        pickup = ansible_task._integer(args.pop("pickup", ansible_armed.DEFAULT_PICKUP_S), "pickup", 10, 86400)
        and_fetch = boolean(args.pop("fetch", False), strict=False)
        options = ansible_task.window_options(args)
        spec = self.host_spec(task_vars)
        if self._task.check_mode:
            return self.check(spec, options)
        hosts = len(task_vars.get("ansible_play_batch") or ()) or 1
        forks = int(context.CLIARGS.get("forks") or C.DEFAULT_FORKS)
        play = self.play_id()
        chosen = []

        def instant(_elapsed_s):
            # The play's instant, set once its first forks batch is ready (ansible_instant says why).
            if options.start_at is not None:
                chosen.append(options.start_at)
            else:
                chosen.append(ansible_instant.wave_instant(play, hosts, forks))
            return chosen[-1]

        if options.start_at is None:
            ansible_instant.note_arrival(play)
        window = Window(duration_s=options.duration, port=options.port)
        armed = ansible_armed.arm(spec, self.transport(), window, options.tracer, instant, pickup)
        if options.start_at is None and not chosen:  # failed before it was ready: its batch does not wait for it
            ansible_instant.leave(play)
        if isinstance(armed, HostResult):  # failed before its window: still in its groups in the report
            return ansible_task.window_task_result(with_groups(armed, spec), options.port)
        armed_result = ansible_armed.arm_task_result(armed, options, chosen[-1] if chosen else None)
        if and_fetch:  # the play's hosts fit in one forks batch: no second pass over them to fetch
            host = ansible_armed.fetch(armed, options.duration, self.transport(), options.tracer)
            return ansible_armed.fetch_task_result(host, armed_result["armed"])
        return armed_result
