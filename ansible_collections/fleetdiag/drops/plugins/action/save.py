# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.save: the play hosts' window results as one fleetdiag sweep, saved on the controller."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

try:
    from fleetdiag import ansible_sweep
    from fleetdiag.errors import FleetdiagError
    from fleetdiag.history import default_results_dir
except ImportError as exc:  # the collection came without its Python package
    FLEETDIAG_IMPORT_ERROR: ImportError | None = exc
else:
    FLEETDIAG_IMPORT_ERROR = None

_OPTIONS = frozenset({"results", "hosts", "results_dir", "prom_file", "duration", "port"})


class ActionModule(ActionBase):
    """Reads each host's registered fleetdiag.drops.window result; writes the document and its index."""

    _supports_check_mode = True
    _supports_async = False
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """Save the sweep (never contacts a host); the record's id and a summary."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        if FLEETDIAG_IMPORT_ERROR is not None:
            return dict(result, failed=True, msg=f"the fleetdiag Python package is missing on the controller "
                        f"({FLEETDIAG_IMPORT_ERROR}): pip install 'fleetdiag[ansible]'")  # fmt: skip
        args = self._task.args
        unknown = sorted(set(args) - _OPTIONS)
        if unknown:
            return dict(result, failed=True, msg=f"fleetdiag.drops.save: unsupported option(s) {', '.join(unknown)}")
        register = str(args.get("results") or "fleetdiag_window")
        names = [str(h) for h in args.get("hosts") or task_vars.get("ansible_play_hosts_all") or ()]
        hostvars = task_vars.get("hostvars") or {}
        results, addresses = {}, {}
        for name in names:
            host = hostvars.get(name) or {}
            results[name] = host.get(register)
            addresses[name] = str(host.get("ansible_host") or name)
        if self._task.check_mode:
            return dict(result, changed=False, msg=f"check mode: {len(names)} host(s) checked, no sweep saved")
        try:
            sweep = ansible_sweep.sweep_from_results(
                results, addresses, duration_s=_number(args.get("duration")), port=_number(args.get("port"))
            )
            where = str(args.get("results_dir") or default_results_dir())
            record, document = ansible_sweep.save_sweep(sweep, where, args.get("prom_file") or None)
        except (FleetdiagError, OSError, ValueError) as exc:
            return dict(result, failed=True, msg=f"fleetdiag.drops.save: could not save the sweep: {exc}")
        return dict(
            result,
            changed=True,
            sweep_id=record.id,
            results_dir=where,
            document=str(document),
            summary=ansible_sweep.summary(sweep),
            msg=ansible_sweep.summary_sentence(sweep, record, where),
        )


def _number(value):
    """An optional whole number from a task argument (templated strings included)."""
    if value in (None, "", "0", 0):
        return None
    return int(str(value))
