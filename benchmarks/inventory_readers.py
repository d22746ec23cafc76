"""Reading a 5000-host inventory: the built-in reader, ansible-core in-process, and ``ansible-inventory --list``.

Run from the repository root: ``python3 benchmarks/inventory_readers.py [HOSTS]``.
The inventory (50 groups, a group_vars/ file, ansible_host and ansible_port per host, one
--limit) is written to a temporary directory; each reader runs 3 times in a fresh Python
(imports counted, as a CLI run pays them) and the medians are compared with the built-in
reader's, measured in the same run, since the machine is shared and noisy. CPU seconds
(user + system of the child) are printed beside the wall time: on a machine whose cores other
work is using, they are the steadier figure.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 3
READ = (
    "import sys; from fleetdiag.inventory.readers import read_inventory; "
    "from fleetdiag.inventory.limit import select_with_warnings; "
    "inventory = read_inventory(sys.argv[1], sys.argv[2]); "
    "assert len(select_with_warnings(inventory, 'g1*:!w00010').hosts) > 0"
)


def write_inventory(directory: Path, hosts: int) -> Path:
    """A YAML inventory of ``hosts`` hosts in 50 groups under 'prod', and group_vars/all.yml."""
    lines = ["all:", "  vars:", "    ansible_user: ops", "  children:", "    prod:", "      children:"]
    for group in range(50):
        lines += [f"        g{group}:", "          hosts:"]
        for index in range(group, hosts, 50):
            lines += [f"            w{index:05d}:", f"              ansible_host: 10.{index // 65536}.{index // 256 % 256}.{index % 256}"]
            lines += ["              ansible_port: 2222"] if index % 3 == 0 else []
    (directory / "group_vars").mkdir()
    (directory / "group_vars" / "all.yml").write_text("ansible_ssh_common_args: -o ConnectTimeout=5\n")
    path = directory / "hosts.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def seconds(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as scratch:
        path = str(write_inventory(Path(scratch), hosts))
        runs = {
            "builtin": [sys.executable, "-c", READ, path, "builtin"],
            "ansible (in-process)": [sys.executable, "-c", READ, path, "ansible"],
        }
        if shutil.which("ansible-inventory"):
            runs["ansible-inventory --list"] = ["ansible-inventory", "-i", path, "--list"]
        measured = {name: [seconds(argv) for _ in range(RUNS)] for name, argv in runs.items()}
    wall = {name: statistics.median(run[0] for run in runs_) for name, runs_ in measured.items()}
    cpu = {name: statistics.median(run[1] for run in runs_) for name, runs_ in measured.items()}
    print(f"{hosts} hosts, median of {RUNS} runs each, imports included:")
    for name in measured:
        print(
            f"  {name:26} wall {wall[name]:6.2f} s ({wall[name] / wall['builtin']:.1f}x)   "
            f"CPU {cpu[name]:6.2f} s ({cpu[name] / cpu['builtin']:.1f}x the built-in reader)"
        )


if __name__ == "__main__":
    main()
