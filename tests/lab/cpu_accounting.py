"""CPU time of a set of processes and all their descendants: the lab hosts' share of the machine.

The lab's hosts run on the controller's own cores; a benchmark that only counted the
controller would hide what sshd, the scripts and the probes cost. A cpuacct cgroup
(v1, or the cpu controller's cpu.stat on v2) holding every sshd counts it all.
"""

from __future__ import annotations

from pathlib import Path

_V1 = Path("/sys/fs/cgroup/cpuacct")
_V2 = Path("/sys/fs/cgroup")


class CpuAccount:
    """One cgroup; processes added to it (and their children) have their CPU time summed."""

    def __init__(self, name: str) -> None:
        self.name = name
        if (_V1 / "cpuacct.usage").exists():
            self.path: Path | None = _V1 / name
            self._v2 = False
        elif (_V2 / "cgroup.controllers").exists():
            self.path = _V2 / name
            self._v2 = True
        else:
            self.path = None  # no cgroup filesystem: seconds() reports None

    def create(self) -> None:
        """Make the cgroup (idempotent)."""
        if self.path is not None:
            self.path.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        """Account PID and every process it starts from now on."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def join_command(self) -> str:
        """Shell that moves the running shell into the cgroup (then `exec` keeps it there)."""
        if self.path is None:
            return ""
        return f"echo $$ > '{self.path / 'cgroup.procs'}' || exit 1; "

    def seconds(self) -> float | None:
        """CPU seconds used so far by the cgroup's processes, dead ones included."""
        if self.path is None:
            return None
        if self._v2:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return None
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (they are, after the fleet's teardown)."""
        if self.path is not None and self.path.exists():
            try:
                self.path.rmdir()
            except OSError:
                pass  # a straggler still inside; cleanup_stale-style leftovers are harmless
