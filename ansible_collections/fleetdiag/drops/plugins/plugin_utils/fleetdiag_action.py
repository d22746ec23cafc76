# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the collection's action plugins share: fleetdiag's package, the task's connection as a Transport,
and their opening (the package check, the task's options, a usage error as the task's one sentence)."""

from __future__ import annotations

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

try:
    from fleetdiag import ansible_armed, ansible_instant, ansible_sweep, ansible_task
    from fleetdiag.errors import FleetdiagError, UnreachableError
    from fleetdiag.transport.ansible_connection import AnsibleTransport
except ImportError as exc:  # the collection came without its Python package: each task says so
    FLEETDIAG_IMPORT_ERROR: ImportError | None = exc
    ansible_armed = ansible_instant = ansible_sweep = ansible_task = None
    FleetdiagError = UnreachableError = AnsibleTransport = None
else:
    FLEETDIAG_IMPORT_ERROR = None

__all__ = ["FleetdiagAction", "ansible_armed", "ansible_instant", "ansible_sweep", "ansible_task"]


class FleetdiagAction(ActionBase):
    """An action that runs fleetdiag's code on the controller, over the task's own connection and become.

    A plugin sets NAME and writes ``run_fleetdiag``; a FleetdiagError it raises (a bad option) is
    the task's failure in one sentence, named after the plugin.
    """

    NAME = "fleetdiag.drops"
    _supports_check_mode = True
    _supports_async = False
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """The task's result: ``run_fleetdiag``'s, or why it could not run."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        if FLEETDIAG_IMPORT_ERROR is not None:
            return dict(result, failed=True, msg=f"the fleetdiag Python package is missing on the controller "
                        f"({FLEETDIAG_IMPORT_ERROR}): pip install 'fleetdiag[ansible]'")  # fmt: skip
        try:
            return dict(result, **self.run_fleetdiag(dict(self._task.args), task_vars))
        except FleetdiagError as exc:
            return dict(result, failed=True, msg=f"{self.NAME}: {exc}")

    def run_fleetdiag(self, args, task_vars):
        """The plugin's own work: its result's keys (ARGS are the task's options, a copy)."""
        raise NotImplementedError

    def host_spec(self, task_vars):
        """The host as fleetdiag's results name it."""
        return ansible_task.host_spec(task_vars, become=bool(self._play_context.become))

    def check(self, spec, options):
        """Check mode: ``fleetdiag check`` on the host (detection, every tracer's verdict, no probe)."""
        return ansible_task.check_task_result(ansible_task.run_check(spec, self.transport(), options))

    def transport(self):
        """Scripts as ``sh -c``, through Ansible's connection plugin, with become as the play asks."""
        return AnsibleTransport(self._execute)

    def _execute(self, command, stdin):
        try:
            return self._low_level_execute_command(command, sudoable=True, in_data=stdin)
        except AnsibleConnectionFailure as exc:
            raise UnreachableError(str(exc)) from exc

    def play_id(self):
        """The play's uuid: every host of one run of this play shares its instant."""
        try:
            return self._task.get_play()._uuid
        except AttributeError:
            return self._task._uuid
