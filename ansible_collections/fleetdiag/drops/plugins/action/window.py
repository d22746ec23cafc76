# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.window: fleetdiag's collector on the controller, over the task's Ansible connection."""

from __future__ import annotations

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

try:
    from fleetdiag import ansible_task
    from fleetdiag.errors import FleetdiagError, UnreachableError
    from fleetdiag.transport.ansible_connection import AnsibleTransport
except ImportError as exc:  # the collection came without its Python package
    FLEETDIAG_IMPORT_ERROR: ImportError | None = exc
else:
    FLEETDIAG_IMPORT_ERROR = None


class ActionModule(ActionBase):
    """Detect, choose the tracer and watch one window on the host, as ``fleetdiag collect`` does."""

    _supports_check_mode = True
    _supports_async = False
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """The host's result in fleetdiag's schema; check mode is ``fleetdiag check``."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        if FLEETDIAG_IMPORT_ERROR is not None:
            return dict(result, failed=True, msg=f"the fleetdiag Python package is missing on the controller "
                        f"({FLEETDIAG_IMPORT_ERROR}): pip install 'fleetdiag[ansible]'")  # fmt: skip
        try:
            options = ansible_task.window_options(self._task.args)
        except FleetdiagError as exc:
            return dict(result, failed=True, msg=f"fleetdiag.drops.window: {exc}")
        spec = ansible_task.host_spec(task_vars, become=bool(self._play_context.become))
        transport = AnsibleTransport(self._execute)
        if self._task.check_mode:
            return dict(result, **ansible_task.check_task_result(ansible_task.run_check(spec, transport, options)))
        start_at = options.start_at
        if start_at is None:
            batch = len(task_vars.get("ansible_play_batch") or [1])  # held windows: one batch shares the instant
            start_at = ansible_task.play_instant(self._play_id(), batch, batch)
        host = ansible_task.run_window(spec, transport, options, start_at)
        return dict(result, **ansible_task.window_task_result(host, options.port))

    def _execute(self, command, stdin):
        """One command through Ansible's connection, with become as the play asks (sudoable)."""
        try:
            return self._low_level_execute_command(command, sudoable=True, in_data=stdin)
        except AnsibleConnectionFailure as exc:
            raise UnreachableError(str(exc)) from exc

    def _play_id(self):
        """The play's uuid: every host of one run of this play shares its instant."""
        try:
            return self._task.get_play()._uuid
        except AttributeError:
            return self._task._uuid
