# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the collection's action plugins share: fleetdiag's package, the task's connection as a Transport."""

from __future__ import annotations

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

try:
    from fleetdiag import ansible_task
    from fleetdiag.errors import UnreachableError
    from fleetdiag.transport.ansible_connection import AnsibleTransport
except ImportError as exc:  # the collection came without its Python package
    FLEETDIAG_IMPORT_ERROR: ImportError | None = exc
else:
    FLEETDIAG_IMPORT_ERROR = None


class FleetdiagAction(ActionBase):
    """An action that runs fleetdiag's code on the controller, over the task's own connection and become."""

    _supports_check_mode = True
    _supports_async = False
    TRANSFERS_FILES = False

    def missing_package(self):
        """The failed result when the fleetdiag package cannot be imported, else None."""
        if FLEETDIAG_IMPORT_ERROR is None:
            return None
        return dict(failed=True, msg=f"the fleetdiag Python package is missing on the controller "
                    f"({FLEETDIAG_IMPORT_ERROR}): pip install 'fleetdiag[ansible]'")  # fmt: skip

    def host_spec(self, task_vars):
        """The host as fleetdiag's results name it."""
        return ansible_task.host_spec(task_vars, become=bool(self._play_context.become))

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
