"""Host-side CPU of --follow: the window script around a probe that only sleeps, with and without follow.

Run from the repository root: ``python3 benchmarks/follow_cost.py [WINDOW_SECONDS]``.
Local only (no SSH, no tracer); both variants are measured in the same run, 3 times each,
and the medians compared, since the machine is shared and noisy.
"""

from __future__ import annotations

import resource
import statistics
import sys

from fleetdiag.tracers.base import ProbePlan
from fleetdiag.transport.local import LocalTransport
from fleetdiag.window_script import build_window_script

RUNS = 3


def host_cpu_s(plan: ProbePlan, seconds: int, follow: bool) -> float:
    """CPU seconds the window script and its children used for one window."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    on_line = (lambda _line: None) if follow else None
    LocalTransport().run(build_window_script(plan, seconds, follow=follow), seconds + 30, on_line=on_line)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    plan = ProbePlan(tracer="sleep", probe="sleep", command=f"sh -c 'echo @@attached; exec sleep {seconds}'")
    base = statistics.median(host_cpu_s(plan, seconds, False) for _ in range(RUNS))
    follow = statistics.median(host_cpu_s(plan, seconds, True) for _ in range(RUNS))
    print(
        f"window {seconds} s, median of {RUNS}: host CPU {base * 1000:.0f} ms without --follow, "
        f"{follow * 1000:.0f} ms with (ratio {follow / base:.1f}x); --follow adds "
        f"{(follow - base) * 1000 / seconds:.1f} ms of CPU per second of window"
    )


if __name__ == "__main__":
    main()
