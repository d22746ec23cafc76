"""The systemtap backend: TCPBacklogDrop on kernels BPF cannot trace (RHEL 7's 3.10) and any with debuginfo.

Two tiers, both backlog drops only, each with the flow and the socket's buffers and queue:

- ``tcp_v4_rcv_statement`` (3.10-era, ``sk_add_backlog`` inline): a statement probe on the
  line of tcp_v4_rcv (and tcp_v6_rcv) that bumps LINUX_MIB_TCPBACKLOGDROP. The line comes
  from the host's own source (kernel-debuginfo-common, a detection fact) and the prepare
  step checks it with ``stap -L`` before compiling.
- ``tcp_add_backlog_return`` (4.9+): the return of tcp_add_backlog.

The plan keeps compiling and running apart: ``prepare`` checks the probe points and builds
the module (``stap -p4``), ``command`` loads it (``staprun``). A later version can replace
the prepare step by a module compiled once per kernel release and shipped to the hosts.
"""

from __future__ import annotations

from fleetdiag.model import HostFacts, ProbeReport, Verdict, Window, frozen_map
from fleetdiag.tracers.base import (
    ProbePlan,
    fill_template,
    insert_blocks,
    privilege_problem,
    probe_text,
)
from fleetdiag.tracers.records import parse_records

name = "stap"
MODULE = "fleetdiag_backlog"
# Flows kept per window; stap preallocates its arrays, so this stays modest.
MAP_KEYS_MAX = 2048
# A cold compile takes minutes on a slow host (3 min in an emulated guest).
PREPARE_TIMEOUT_S = 900
ATTACH_ALLOWANCE_S = 60


def tier(facts: HostFacts) -> str | None:
    """``tcp_add_backlog_return`` (4.9+), ``tcp_v4_rcv_statement`` (source line known), or None."""
    if "tcp_add_backlog" in facts.kernel_symbols:
        return "tcp_add_backlog_return"
    if facts.backlogdrop_lines.get("tcp_v4_rcv"):
        return "tcp_v4_rcv_statement"
    return None


def _module_problem(facts: HostFacts) -> str | None:
    """Why this kernel will not load a freshly compiled, unsigned module (None: it will)."""
    if facts.modules == "unsupported":
        return f"{facts.kernel} cannot load modules (built without CONFIG_MODULES)"
    if facts.modules == "disabled":
        return "module loading is disabled (kernel.modules_disabled=1)"
    if facts.lockdown in ("integrity", "confidentiality"):
        return f"kernel lockdown={facts.lockdown} refuses unsigned modules (stap modules need a MOK-enrolled key)"
    if facts.secure_boot:
        return "Secure Boot is on: unsigned stap modules are refused (they need a MOK-enrolled signing key)"
    if not facts.kprobes:
        return f"no kprobes in {facts.kernel} (stap's kernel probes need CONFIG_KPROBES)"
    return None


def _no_tier_reason(facts: HostFacts) -> str:
    if facts.kernel_source is None:
        return (
            f"no tcp_add_backlog on {facts.kernel} and no kernel source under /usr/src/debug "
            "(kernel-debuginfo-common) to find the TCPBacklogDrop line of tcp_v4_rcv"
        )
    return f"no LINUX_MIB_TCPBACKLOGDROP line found in tcp_v4_rcv under {facts.kernel_source}"


def verdict(facts: HostFacts) -> Verdict:
    """Usable with stap, root, loadable unsigned modules, kprobes, kernel-devel, debuginfo and a tier."""
    if facts.stap_version is None:
        return Verdict(False, "systemtap (stap) is not installed")
    problem = privilege_problem(facts) or _module_problem(facts)
    if problem:
        return Verdict(False, problem)
    if facts.kernel_headers != "build":
        return Verdict(False, f"no kernel-devel/headers for {facts.kernel} (/lib/modules/{facts.kernel}/build)")
    if facts.debuginfo is None:
        return Verdict(False, f"no debuginfo for {facts.kernel} (kernel-debuginfo or linux-image-*-dbg)")
    chosen = tier(facts)
    if chosen is None:
        return Verdict(False, _no_tier_reason(facts))
    if facts.netns is None:
        return Verdict(False, "could not read the host's network namespace")
    where = "tcp_add_backlog return" if chosen == "tcp_add_backlog_return" else "statement in tcp_v4_rcv"
    return Verdict(True, f"systemtap {facts.stap_version}, debuginfo, {where}", f"stap:{chosen}")


def _probes_and_points(facts: HostFacts, chosen: str) -> tuple[str, dict[str, int], list[str]]:
    """The probe block, its line numbers, and the probe points the prepare step checks."""
    if chosen == "tcp_add_backlog_return":
        return probe_text("stap_return.stp"), {}, ['sk kernel.function("tcp_add_backlog")']
    lines = {"V4_LINE": facts.backlogdrop_lines["tcp_v4_rcv"][0]}
    block = probe_text("stap_statement.stp")
    points = [f'sk kernel.statement("tcp_v4_rcv@net/ipv4/tcp_ipv4.c:{lines["V4_LINE"]}")']
    v6 = facts.backlogdrop_lines.get("tcp_v6_rcv")
    if v6:
        lines["V6_LINE"] = v6[0]
        block += "\n" + probe_text("stap_statement_v6.stp")
    return block, lines, points


def plan(facts: HostFacts, window: Window) -> ProbePlan:
    """probe.stp and the points to check; prepare compiles it, the command loads it for the window."""
    chosen = tier(facts)
    if chosen is None:
        raise ValueError(f"no systemtap tier fits this host: {_no_tier_reason(facts)}")
    block, lines, points = _probes_and_points(facts, chosen)
    script = fill_template(
        insert_blocks(probe_text("stap_backlog.stp"), {"PROBES": block}),
        {
            "NETNS": int(facts.netns or 0),
            "PORT": int(window.port or 0),
            "MAP_KEYS_MAX": MAP_KEYS_MAX,
            "DURATION": int(window.duration_s),
            **{key: int(value) for key, value in lines.items()},
        },
    )
    prepare = fill_template(probe_text("stap_prepare.sh"), {"MAXMAPENTRIES": MAP_KEYS_MAX + 64})
    return ProbePlan(
        tracer=name,
        probe=f"stap:{chosen}",
        files=frozen_map({"probe.stp": script, "points.txt": "\n".join(points), "prepare.sh": prepare}),
        prepare="sh prepare.sh",
        prepare_timeout_s=PREPARE_TIMEOUT_S,
        # -R: a unique module name, so two runs on one host never collide.
        command=f"staprun -R {MODULE}.ko",
        attach_allowance_s=ATTACH_ALLOWANCE_S,
    )


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """The record lines printed by the module's end probe."""
    return parse_records(output, facts)
