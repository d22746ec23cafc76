"""The systemtap backend: TCPBacklogDrop on kernels BPF cannot trace (RHEL 7's 3.10) and any with debuginfo.

Three tiers, backlog drops only, each with the flow and the socket's buffers and queue:

- ``tcp_add_backlog_statement`` (4.9+) and ``tcp_v4_rcv_statement`` (3.10-era, ``sk_add_backlog``
  inline): a statement probe on the very line that bumps LINUX_MIB_TCPBACKLOGDROP, so it counts
  what the counter counts. The line comes from the host's own source (a detection fact) and the
  build checks it with ``stap -L`` before compiling. This is the origin case's probe.
- ``tcp_add_backlog_return`` (4.9+, no source on the host): the return of tcp_add_backlog.

Compiling and running are apart. A host that can compile (stap, kernel headers, debuginfo) either
compiles in its own window (``plan`` with no module: the self-contained collector) or builds once
for every host of its kernel release (``build_script``, ``fleetdiag.module_builds``). A module
built once is shipped in the window script (``plan`` with a module); such hosts need only
systemtap-runtime. Everything that differs per host (netns, port, duration) is a module
parameter given to staprun, so one module serves them all.
"""

from __future__ import annotations

import base64
import re

from fleetdiag.model import HostFacts, ProbeReport, StapModule, Verdict, Window, frozen_map
from fleetdiag.sections import split_sections
from fleetdiag.timeline import interval_for
from fleetdiag.tracers.base import (
    STOP_GRACE_S,
    ProbePlan,
    at_least,
    fill_template,
    insert_blocks,
    privilege_problem,
    probe_text,
    write_file_command,
)
from fleetdiag.tracers.records import parse_records

name = "stap"
MODULE = "fleetdiag_backlog"
# Flows kept per window; stap preallocates its arrays, so this stays modest.
MAP_KEYS_MAX = 2048
# A cold compile takes minutes on a slow host (3 min in an emulated guest).
PREPARE_TIMEOUT_S = 900
ATTACH_ALLOWANCE_S = 60
UNPACK_TIMEOUT_S = 30
# The probe a host with only systemtap-runtime runs: whichever tier its kernel release's module has.
PREBUILT_PROBE = "stap:prebuilt"


# The functions whose TCPBacklogDrop line a statement probe may sit on, best first.
_STATEMENT_FUNCTIONS = ("tcp_add_backlog", "tcp_v4_rcv")


def tier(facts: HostFacts) -> str | None:
    """The statement probe when the host's source gives the line, else tcp_add_backlog's return, else None."""
    for function in _STATEMENT_FUNCTIONS:
        if facts.backlogdrop_lines.get(function):
            return f"{function}_statement"
    if "tcp_add_backlog" in facts.kernel_symbols:
        return "tcp_add_backlog_return"
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


def _stap_version(facts: HostFacts) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", facts.stap_version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problem(facts: HostFacts) -> str | None:
    """A systemtap that cannot run any module on this kernel (None: none known).

    Measured on the lab's Debian 13 guest: systemtap 5.1 builds the module for 6.12, but staprun
    refuses it at load ("ERROR: Can't resolve uprobe_unregister!"): 6.12 split that function.
    """
    version = _stap_version(facts)
    if version is not None and version < (5, 2) and at_least(facts, 6, 12):
        return (
            f"systemtap {facts.stap_version} cannot load modules on {facts.kernel} (its runtime needs "
            "uprobe_unregister, which 6.12 replaced): update systemtap to 5.2 or later"
        )
    return None


def _no_tier_reason(facts: HostFacts) -> str:
    if facts.kernel_source is None:
        return (
            f"no tcp_add_backlog on {facts.kernel} and no kernel source under /usr/src/debug "
            "(kernel-debuginfo-common) to find the TCPBacklogDrop line of tcp_v4_rcv"
        )
    return f"no LINUX_MIB_TCPBACKLOGDROP line found in tcp_v4_rcv under {facts.kernel_source}"


def build_problem(facts: HostFacts) -> str | None:
    """Why this host cannot compile the module itself (None: it can, and may build for others)."""
    if facts.stap_version is None:
        return "systemtap (stap) is not installed"
    if facts.kernel_headers != "build":
        return f"no kernel-devel/headers for {facts.kernel} (/lib/modules/{facts.kernel}/build)"
    if facts.debuginfo is None:
        return f"no debuginfo for {facts.kernel} (kernel-debuginfo or linux-image-*-dbg)"
    if tier(facts) is None:
        return _no_tier_reason(facts)
    return None


def verdict(facts: HostFacts) -> Verdict:
    """Usable as root where unsigned modules load and kprobes exist: compiling here, or with staprun
    alone running a module built for this kernel release on another host (or found in the cache)."""
    if facts.stap_version is None and not facts.staprun:
        return Verdict(False, "systemtap (stap) is not installed")
    problem = privilege_problem(facts) or _module_problem(facts) or version_problem(facts)
    if problem:
        return Verdict(False, problem)
    if facts.netns is None:
        return Verdict(False, "could not read the host's network namespace")
    cannot_build = build_problem(facts)
    if cannot_build is None:
        chosen = tier(facts)
        where = "tcp_add_backlog return" if chosen == "tcp_add_backlog_return" else "the TCPBacklogDrop line"
        return Verdict(True, f"systemtap {facts.stap_version}, debuginfo, {where}", f"stap:{chosen}")
    if facts.staprun and "tcp_add_backlog" in facts.kernel_symbols:
        return Verdict(
            True,
            f"systemtap-runtime only ({cannot_build}): runs a module built once for {facts.kernel} "
            "on another host of this run, on the controller (--stap-kernel), or found in the controller's cache",
            PREBUILT_PROBE,
        )
    return Verdict(False, cannot_build)


def _probes_and_points(facts: HostFacts, chosen: str) -> tuple[str, list[str]]:
    """The probe block and the probe points the build checks (each must offer $sk)."""
    if chosen == "tcp_add_backlog_return":
        return probe_text("stap_return.stp"), ['sk kernel.function("tcp_add_backlog")']
    function = chosen.removesuffix("_statement")
    if function not in _STATEMENT_FUNCTIONS:
        raise ValueError(f"no statement probe for {function!r}")
    line = facts.backlogdrop_lines[function][0]
    point = f'kernel.statement("{function}@net/ipv4/tcp_ipv4.c:{line}")'
    block = insert_blocks(probe_text("stap_statement.stp"), {"POINT": point})
    v6 = facts.backlogdrop_lines.get("tcp_v6_rcv")
    if function == "tcp_v4_rcv" and v6:  # 3.10: tcp_v6_rcv inlines its own copy (4.9+ shares tcp_add_backlog)
        block += "\n" + fill_template(probe_text("stap_statement_v6.stp"), {"V6_LINE": int(v6[0])})
    return block, [f"sk {point}"]


def _build_files(facts: HostFacts) -> dict[str, str]:
    """probe.stp, points.txt and build.sh: everything a host needs to compile the module."""
    chosen = tier(facts)
    if chosen is None:
        raise ValueError(f"no systemtap tier fits this host: {_no_tier_reason(facts)}")
    block, points = _probes_and_points(facts, chosen)
    script = fill_template(insert_blocks(probe_text("stap_backlog.stp"), {"PROBES": block}), {"MAP_KEYS_MAX": MAP_KEYS_MAX})
    build = fill_template(probe_text("stap_build.sh"), {"MAXMAPENTRIES": MAP_KEYS_MAX + 64})
    return {"probe.stp": script, "points.txt": "\n".join(points), "build.sh": build}


def build_files(facts: HostFacts) -> dict[str, str]:
    """What compiling the module for this host takes (probe.stp, points.txt, build.sh), to compile elsewhere."""
    return _build_files(facts)


def module_parameters(facts: HostFacts, window: Window) -> str:
    """What differs per host and window, as staprun's module parameters (integers only)."""
    values = {"fd_want_netns": int(facts.netns or 0), "fd_want_port": int(window.port or 0),
              # The module's own timer is a backstop: the host closes the window and stops it first.
              "fd_duration": int(window.duration_s) + STOP_GRACE_S, "fd_interval_s": interval_for(window.duration_s)}  # fmt: skip
    return " ".join(f"{key}={value}" for key, value in values.items())


def plan(facts: HostFacts, window: Window, module: StapModule | None = None) -> ProbePlan:
    """Run the module for the window: compiled here first (no MODULE), or MODULE shipped in the script."""
    # -R: a unique module name, so two runs on one host never collide.
    command = f"staprun -R {MODULE}.ko {module_parameters(facts, window)}"
    if module is None:
        return ProbePlan(
            tracer=name,
            probe=f"stap:{tier(facts)}",
            files=frozen_map(_build_files(facts)),
            prepare="sh build.sh",
            prepare_timeout_s=PREPARE_TIMEOUT_S,
            command=command,
            attach_allowance_s=ATTACH_ALLOWANCE_S,
        )
    return ProbePlan(
        tracer=name,
        probe=f"stap:{module.tier}",
        # base64 and gzip are on every host; the module travels gzipped.
        files=frozen_map({"module.b64": module.encoded(), "unpack.sh": f"base64 -d module.b64 | gzip -dc > {MODULE}.ko"}),
        prepare="sh unpack.sh",
        prepare_timeout_s=UNPACK_TIMEOUT_S,
        command=command,
        attach_allowance_s=ATTACH_ALLOWANCE_S,
    )


def build_script(facts: HostFacts) -> str:
    """A script that compiles the module in a private temp dir, prints it (gzip, base64) and removes all."""
    files = _build_files(facts)
    writes = "\n".join(write_file_command(filename, text) for filename, text in files.items())
    return fill_template(insert_blocks(probe_text("stap_build_host.sh"), {"SESSION": probe_text("host_session.sh"), "FILES": writes}), {"TIMEOUT": PREPARE_TIMEOUT_S})


def parse_build(output: str, facts: HostFacts, built_on: str, seconds: float) -> StapModule:
    """The module a build script printed; raises ValueError with the host's own words when it failed."""
    sections = split_sections(output)
    if "module" not in sections:
        raise ValueError(sections.get("error", "").strip() or "the build printed no module")
    data = base64.b64decode(sections["module"])
    return StapModule(gzip_data=data, kernel=facts.kernel or "", tier=tier(facts) or "", built_on=built_on,
                      build_seconds=seconds, build_id=facts.kernel_build_id)  # fmt: skip


def parse(output: str, facts: HostFacts) -> ProbeReport:
    """The record lines printed by the module's end probe."""
    return parse_records(output, facts)
