"""A BPF probe's programs as the kernel counted them, from the window script's probe_stats section.

run_window.sh reads the fdinfo of every fd the probe's processes hold just before it stops
the probe (the counts go when the programs unload) and prints one line per program::

    prog <prog_id> <prog_type> <run_cnt> <run_time_ns> <recursion_misses>
    bpf_stats <0|1>

recursion_misses is counted by every kernel that has it (5.12+); run_cnt and run_time_ns
only while kernel.bpf_stats_enabled is 1, which fleetdiag never sets on a host (it is global
and costs every BPF program on the host two clock reads per run).
"""

from __future__ import annotations

from fleetdiag.model import ProbeStats, ProgramStats


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_probe_stats(text: str | None, events: int) -> ProbeStats | None:
    """The section's programs (once each), or None when the host printed none (not a BPF tier, or stopped early)
    or its kernel does not count recursion misses (before 5.12: fdinfo has no such line, and 0 would be a claim)."""
    if text is None:
        return None
    programs: dict[int, ProgramStats] = {}
    stats_on = counts_misses = False
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "bpf_stats":
            stats_on = words[1] not in ("0", "")
        if len(words) != 6 or words[0] != "prog":
            continue
        prog_id, prog_type, runs, run_ns, misses = (_int(w) for w in words[1:])
        # Once each; a line without the program's type (a BPF link's fdinfo names the prog_id but
        # counts nothing) never stands in for the program's own.
        if prog_id is None or prog_type is None or prog_id in programs:
            continue
        counts_misses = counts_misses or misses is not None
        programs[prog_id] = ProgramStats(prog_id, prog_type, misses or 0, runs, run_ns)
    if not programs or not counts_misses:
        return None
    if not stats_on and not any(p.run_cnt for p in programs.values()):
        programs = {k: ProgramStats(p.prog_id, p.prog_type, p.recursion_misses) for k, p in programs.items()}
    return ProbeStats(programs=tuple(programs[k] for k in sorted(programs)), events=events, bpf_stats_enabled=stats_on)


def stats_document(stats: ProbeStats | None) -> dict | None:
    """The JSON form (``probe_stats`` of a host)."""
    if stats is None:
        return None
    return {
        "programs": len(stats.programs),
        "events": stats.events,
        "recursion_misses": stats.recursion_misses,
        "run_cnt": stats.run_cnt,
        "run_time_ns": stats.run_time_ns,
        "bpf_stats_enabled": stats.bpf_stats_enabled,
        "per_program": [
            {"prog_id": p.prog_id, "prog_type": p.prog_type, "recursion_misses": p.recursion_misses,
             "run_cnt": p.run_cnt, "run_time_ns": p.run_time_ns}
            for p in stats.programs
        ],
    }  # fmt: skip


def stats_from_document(doc: dict | None) -> ProbeStats | None:
    """A saved ``probe_stats`` back to the value it was written from."""
    if not doc:
        return None
    programs = tuple(
        ProgramStats(int(p["prog_id"]), p.get("prog_type"), int(p.get("recursion_misses") or 0), p.get("run_cnt"),
                     p.get("run_time_ns"))
        for p in doc.get("per_program") or []
    )  # fmt: skip
    return ProbeStats(programs=programs, events=int(doc.get("events") or 0),
                      bpf_stats_enabled=bool(doc.get("bpf_stats_enabled")))  # fmt: skip
