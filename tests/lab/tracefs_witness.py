"""A second pair of eyes on skb:kfree_skb: the kernel's own trace ring buffer, not perf, not BPF.

A BPF program on `tracepoint:skb:kfree_skb` is run from the tracepoint's perf handler, which first
takes a per-CPU, per-context recursion slot (`perf_trace_buf_alloc`); when it cannot, the event is
dropped before any program runs, and no program counts a miss. The same tracepoint's ftrace handler
records into a tracefs instance by another path. Counting one reason there, around a probe's window,
tells a drop the tracepoint fired for and every perf program missed (tracefs saw it) from one the
tracepoint never fired for (nobody saw it). Measured with it: docs/probes.md, "Recursion misses".

Machine-wide: the event cannot be filtered by network namespace, so it counts every namespace's
drops of that reason (on the lab, only the storm's receiver makes backlog drops).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from fleetdiag.facts.tracing import parse_reason_table

TRACEFS = Path("/sys/kernel/tracing")
EVENT = Path("events/skb/kfree_skb")


def reason_value(reason: str, tracefs: Path = TRACEFS) -> int | None:
    """The drop reason's number on this kernel, from the event's own print format."""
    try:
        text = (tracefs / EVENT / "format").read_text()
    except OSError:
        return None
    return {name: number for number, name in parse_reason_table(text).items()}.get(reason)


class TracefsWitness:
    """Counts skb:kfree_skb events of some drop reasons in a private tracefs instance while open.

    ``count()`` is entries plus overruns on every CPU, so a wrapped buffer still counts.
    ``available`` is False (and ``count()`` None) where the kernel has no tracefs instances or
    no such reason; callers then do without the witness.
    """

    def __init__(self, *reasons: str, tracefs: Path = TRACEFS):
        self.reasons = reasons
        self.tracefs = tracefs
        self.instance = tracefs / "instances" / f"fleetdiag-witness-{os.getpid()}"
        self.available = False

    def __enter__(self) -> TracefsWitness:
        values = [reason_value(reason, self.tracefs) for reason in self.reasons]
        if not values or None in values or not (self.tracefs / "instances").is_dir():
            return self
        try:
            self.instance.mkdir()
            (self.instance / "buffer_size_kb").write_text("1024\n")
            (self.instance / EVENT / "filter").write_text(" || ".join(f"reason == {v}" for v in values) + "\n")
            (self.instance / EVENT / "enable").write_text("1\n")
        except OSError:
            self._remove()
            return self
        self.available = True
        return self

    def count(self) -> int | None:
        """Events recorded so far (None without a witness)."""
        if not self.available:
            return None
        total = 0
        for cpu in (self.instance / "per_cpu").iterdir():
            stats = dict(line.split(":", 1) for line in (cpu / "stats").read_text().splitlines() if ":" in line)
            total += int(stats["entries"]) + int(stats["overrun"])
        return total

    def stop(self) -> int | None:
        """Stop recording; the count."""
        if self.available:
            (self.instance / EVENT / "enable").write_text("0\n")
        return self.count()

    def _remove(self) -> None:
        try:
            (self.instance / EVENT / "enable").write_text("0\n")
        except OSError:
            pass
        try:
            self.instance.rmdir()
        except OSError:
            pass

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._remove()
