# Copyright: fleetdiag contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""fleetdiag.drops.save: the play hosts' window results as one fleetdiag sweep, saved on the controller."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.fleetdiag.drops.plugins.plugin_utils.fleetdiag_action import FleetdiagAction, ansible_sweep

try:
    from fleetdiag.errors import FleetdiagError
    from fleetdiag.history import default_results_dir
    from fleetdiag.model import Status
except ImportError:
    pass  # FleetdiagAction.run says so

_REASONS_SHOWN = 10
_OPTIONS = frozenset({"results", "hosts", "results_dir", "prom_file", "duration", "port", "fail_on_missing"})


class ActionModule(FleetdiagAction):
    """Reads each host's registered fleetdiag.drops.window result; writes the document and its index."""

    NAME = "fleetdiag.drops.save"

    def run_fleetdiag(self, args, task_vars):
        """Save the sweep (never contacts a host); the record's id and a summary."""
        unknown = sorted(set(args) - _OPTIONS)
        if unknown:
            return dict(failed=True, msg=f"{self.NAME}: unsupported option(s) {', '.join(unknown)}")
        register = str(args.get("results") or "fleetdiag_window")
        names = [str(h) for h in args.get("hosts") or task_vars.get("ansible_play_hosts_all") or ()]
        hostvars = task_vars.get("hostvars") or {}
        results, addresses = {}, {}
        for name in names:
            host = hostvars.get(name) or {}
            results[name] = host.get(register)
            addresses[name] = str(host.get("ansible_host") or name)
        if self._task.check_mode:
            return dict(changed=False, msg=f"check mode: {len(names)} host(s) checked, no sweep saved")
        try:
            sweep = ansible_sweep.sweep_from_results(
                results, addresses, duration_s=_number(args.get("duration")), port=_number(args.get("port"))
            )
            where = str(args.get("results_dir") or default_results_dir())
            record, document = ansible_sweep.save_sweep(sweep, where, args.get("prom_file") or None)
        except (FleetdiagError, OSError, ValueError) as exc:
            return dict(failed=True, msg=f"{self.NAME}: could not save the sweep: {exc}")
        missing = {h.name: h.error or h.status.value for h in sweep.hosts if h.status is not Status.OK}
        saved = dict(changed=True, sweep_id=record.id, results_dir=where, document=str(document), missing=missing,
                     summary=ansible_sweep.summary(sweep), msg=ansible_sweep.summary_sentence(sweep, record, where))  # fmt: skip
        if missing and boolean(args.get("fail_on_missing", False), strict=False):
            # Each host's reason in the message itself: Ansible prints a failed task's msg verbatim.
            reasons = [f"{name}: {why}" for name, why in list(missing.items())[:_REASONS_SHOWN]]
            more = f"; and {len(missing) - _REASONS_SHOWN} more" if len(missing) > _REASONS_SHOWN else ""
            saved.update(failed=True, msg=f"{saved['msg']}; no window on {len(missing)} host(s): {'; '.join(reasons)}{more}")
        return saved


def _number(value):
    """An optional whole number from a task argument (templated strings included)."""
    if value in (None, "", "0", 0):
        return None
    return int(str(value))
