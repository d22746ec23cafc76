"""Armed windows, the host's side: the scripts that arm one window on a host and fetch its result.

Arming (one short session): the window script (``probes/run_window.sh``, the same as a held
session runs) and its keeper (``probes/arm_keeper.sh``) go into a private 0700 directory; one
round trip measures the host's clock against the controller's; the reply gives the start
instant on the host's clock; the keeper, detached (setsid, nohup), waits for it, runs the window
(its own timer and ``timeout`` backstop, as always) with its stdout kept in the directory, then
removes the directory by itself once the pickup deadline passes. Fetching (another short
session) prints the result, ends the keeper and removes the directory; with ``stop`` it first
ends a running window early (EOF on its stdin, as a held session's stop does).

Everything here is text built from fleetdiag's own pieces and parsing of what hosts print;
any transport that runs a script and answers its questions can drive it.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass

from fleetdiag.sections import split_sections
from fleetdiag.tracers.base import ProbePlan, probe_text
from fleetdiag.transport.base import ASK_MARKER, CommandResult, reply
from fleetdiag.window_script import build_window_script, remote_deadline_s

# The ping's reply: its length and one newline, read with builtins (``READY_QUESTION``'s framing).
PING_REPLY = b"\n"
# Beyond the probe's own deadline, how long the keeper holds the window's stdin open.
HOLD_MARGIN_S = 30
# How the window script waits for the fleet's instant (in place of a held session's "go").
_WAIT_FOR_INSTANT = """# Armed: wait for the fleet's instant on this host's own clock (the controller measured its offset).
# In milliseconds, with the shell's arithmetic (the start has 3 decimals, as start_reply writes it).
clock
fd_s=${FLEETDIAG_START:-0}
case $fd_s in *.*) ;; *) fd_s=$fd_s. ;; esac
fd_sf=${fd_s#*.}000
fd_sf=${fd_sf%"${fd_sf#???}"}
fd_d=$((${fd_s%.*} * 1000 + 1$fd_sf - 1000 - fd_ns / 1000000))
if [ "$fd_d" -gt 0 ]; then
  fd_f=$((fd_d % 1000 + 1000))
  sleep "$((fd_d / 1000)).${fd_f#1}"
  : >"$FLEETDIAG_ARM_DIR/started"
else
  fd_d=$((-fd_d / 10))
  fd_f=$((fd_d % 100 + 100))
  echo "late $((fd_d / 100)).${fd_f#1}" >"$FLEETDIAG_ARM_DIR/started"
fi"""
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_DIR = re.compile(r"^/[A-Za-z0-9._/-]+/fleetdiag-armed\.[A-Za-z0-9]+$")
_BOOT_ID = re.compile(r"^[0-9a-f-]{36}$")


def armed_window_script(plan: ProbePlan, duration_s: int) -> str:
    """The window script as a keeper runs it: it waits for the instant instead of asking to start."""
    return build_window_script(plan, duration_s, ready=_WAIT_FOR_INSTANT)


def arm_script(plan: ProbePlan, duration_s: int) -> str:
    """The script that arms one window: files in a private dir, the clock's round trip, the detached keeper.

    It asks twice (ASK_MARKER): first a ping (reply ``PING_REPLY``), after which it prints
    ``@@fleetdiag clock EPOCH BOOT_ID`` at once and asks for ``START PICKUP HOLD`` (the start
    instant on its own clock, the pickup deadline after the window's end, how long the window's
    stdin is held). It prints ``@@fleetdiag armed DIR`` once the keeper runs; any other reply,
    or none, ends it with its directory removed.
    """
    window = armed_window_script(plan, duration_s)
    keeper = probe_text("arm_keeper.sh")
    token = secrets.token_hex(6)
    return f"""# fleetdiag: arm one window on this host (run {token}); the keeper runs it by itself.
umask 077
fd_now() {{
  case ${{EPOCHREALTIME:-}} in
    [0-9]*[.,]*) echo "${{EPOCHREALTIME%[.,]*}}.${{EPOCHREALTIME#*[.,]}}" ;;
    *) date +%s.%N ;;
  esac
}}
fd_a=$(mktemp -d "${{TMPDIR:-/tmp}}/fleetdiag-armed.XXXXXXXX" 2>/dev/null) ||
  {{ echo '@@fleetdiag error'; echo "no writable temp dir: mktemp -d failed in ${{TMPDIR:-/tmp}}"; exit 3; }}
trap 'rm -rf "$fd_a"' EXIT
trap 'exit 129' HUP INT TERM PIPE
printf '%s\\n' {shlex.quote(window)} >"$fd_a/window.sh" &&
  printf '%s\\n' {shlex.quote(keeper)} >"$fd_a/keeper.sh" ||
  {{ echo '@@fleetdiag error'; echo "cannot write the window's files in $fd_a"; exit 3; }}
echo '{ASK_MARKER}'
IFS= read -r fd_length || exit 0
[ "$fd_length" = {len(PING_REPLY)} ] || exit 0
IFS= read -r _ || exit 0
fd_boot=""
{{ read -r fd_boot </proc/sys/kernel/random/boot_id; }} 2>/dev/null
echo "@@fleetdiag clock $(fd_now) $fd_boot"
echo '{ASK_MARKER}'
IFS= read -r fd_length || exit 0
case $fd_length in ''|0|*[!0-9]*) exit 0 ;; esac
read -r fd_start fd_pickup fd_hold || exit 0
for fd_n in "$fd_start" "$fd_pickup" "$fd_hold"; do
  case $fd_n in ''|*[!0-9.]*) exit 0 ;; esac
done
# A keeper in a session of its own (setsid) has no terminal whose hangup could reach it; only
# without setsid does it need nohup (one process fewer per host where setsid is there).
if command -v setsid >/dev/null 2>&1; then fd_detach=setsid; else fd_detach=nohup; fi
$fd_detach sh "$fd_a/keeper.sh" "$fd_a" "$fd_start" "$fd_pickup" "$fd_hold" </dev/null >/dev/null 2>&1 &
echo $! >"$fd_a/keeper.pid" # the keeper writes it too; from here a fetch never finds it missing
trap - EXIT
echo "@@fleetdiag armed $fd_a"
"""


def start_reply(start_host: float, pickup_s: float, hold_s: float) -> bytes:
    """The second answer: the start instant on the host's clock, the pickup deadline, the stdin hold."""
    return reply(f"{start_host:.3f} {int(pickup_s)} {int(hold_s)}\n".encode())


def hold_seconds(wait_s: float, duration_s: int, plan: ProbePlan) -> int:
    """How long the keeper holds the window's stdin: past the window's own deadline, so only a stop ends it early."""
    return int(max(0.0, wait_s)) + remote_deadline_s(duration_s, plan) + HOLD_MARGIN_S


@dataclass(frozen=True)
class HostClock:
    """The host's clock as one round trip saw it: ``host`` read between ``sent`` and ``received`` (controller time)."""

    host: float
    sent: float
    received: float
    boot_id: str

    @property
    def offset_s(self) -> float:
        """Host clock minus controller clock, taken at the round trip's midpoint."""
        return self.host - (self.sent + self.received) / 2

    @property
    def bound_s(self) -> float:
        """The most the offset can be wrong by: half the round trip."""
        return (self.received - self.sent) / 2


def parse_clock(stdout: str, sent: float, received: float) -> HostClock | None:
    """The ``@@fleetdiag clock`` line of an arm script's output, or None when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("@@fleetdiag clock "):
            parts = line.split()[2:]
            if parts and _NUMBER.match(parts[0]):
                boot = parts[1] if len(parts) > 1 and _BOOT_ID.match(parts[1]) else ""
                return HostClock(float(parts[0]), sent, received, boot)
    return None


def parse_armed_dir(stdout: str) -> str | None:
    """The directory an arm script armed, or None when it did not get that far."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("@@fleetdiag armed "):
            path = line.split(" ", 2)[2].strip()
            return path if _DIR.match(path) else None
    return None


def fetch_script(directory: str, boot_id: str, wait_s: float, stop: bool) -> str:
    """The script that collects an armed window's result and leaves nothing behind.

    Prints ``@@fleetdiag lost`` and one word (``rebooted``, ``gone``, ``disarmed``, ``late``,
    ``died``) when there is no result to give; else ``@@fleetdiag fetched`` (the window's exit
    code), ``started`` (empty, or ``late SECONDS``), ``window_stderr``, then the window's
    own sections. ``stop``: end a running window now, disarm one that has not started.
    """
    if not _DIR.match(directory):
        raise ValueError(f"not an armed window's directory: {directory!r}")
    return f"""# fleetdiag: fetch one armed window's result, then remove its directory and its keeper.
# Builtins read the small files (a process each costs the host more than the read): only the
# result's `cat`, the `rm` and the waits' `sleep` are processes.
a={shlex.quote(directory)}
boot={shlex.quote(boot_id)}
lost() {{ echo '@@fleetdiag lost'; echo "$1"; }}
line_of() {{ fd_l=""; {{ IFS= read -r fd_l <"$1"; }} 2>/dev/null; }}
keeper_gone() {{
  line_of "$a/keeper.pid"
  [ -n "$fd_l" ] && kill -TERM -"$fd_l" 2>/dev/null
  rm -rf "$a"
}}
if [ ! -d "$a" ]; then
  line_of /proc/sys/kernel/random/boot_id
  if [ -n "$boot" ] && [ -n "$fd_l" ] && [ "$fd_l" != "$boot" ]; then lost rebooted; else lost gone; fi
  exit 0
fi
if [ {int(stop)} = 1 ] && [ ! -e "$a/result" ]; then
  if [ ! -e "$a/started" ]; then keeper_gone; lost disarmed; exit 0; fi
  line_of "$a/holder.pid"
  [ -n "$fd_l" ] && kill "$fd_l" 2>/dev/null
fi
# Waits in tenths of a second: 0.2 s steps for the first second (a window just ending), then
# 0.5 s ones (a host still busy with its window: fewer processes started on it meanwhile).
w=0
while [ ! -e "$a/result" ]; do
  line_of "$a/keeper.pid"
  if [ -z "$fd_l" ] || ! kill -0 "$fd_l" 2>/dev/null; then
    sleep 0.2
    [ -e "$a/result" ] && break
    keeper_gone; lost died; exit 0
  fi
  if [ $w -ge {max(1, int(wait_s * 10))} ]; then keeper_gone; lost late; exit 0; fi
  if [ $w -lt 10 ]; then w=$((w + 2)); sleep 0.2; else w=$((w + 5)); sleep 0.5; fi
done
echo '@@fleetdiag fetched'
line_of "$a/exit"
echo "$fd_l"
echo '@@fleetdiag started'
line_of "$a/started"
echo "$fd_l"
echo '@@fleetdiag window_stderr'
if [ -s "$a/stderr" ]; then head -c 4096 "$a/stderr"; fi
echo # the result's first section marker must start a line, however the stderr ended
cat "$a/result"
keeper_gone
"""


@dataclass(frozen=True)
class Fetched:
    """What a fetch found: the window's output (as a held session returns it), or why there is none."""

    result: CommandResult | None
    lost: str | None = None  # rebooted, gone, disarmed, late, died
    late_s: float | None = None  # armed after the fleet's instant: its window started this much later


def parse_fetch(output: CommandResult) -> Fetched:
    """Read a fetch script's output."""
    sections = split_sections(output.stdout)
    if "lost" in sections:
        return Fetched(None, sections["lost"].strip() or "gone")
    if "fetched" not in sections:
        return Fetched(None, None)
    code = sections["fetched"].strip()
    started = sections.get("started", "").split()
    late = float(started[1]) if len(started) == 2 and started[0] == "late" and _NUMBER.match(started[1]) else None
    exit_code = int(code) if code.lstrip("-").isdigit() else -1
    return Fetched(CommandResult(output.stdout, sections.get("window_stderr", ""), exit_code), None, late)


def lost_sentence(word: str, directory: str) -> str:
    """One sentence for a host whose result could not be fetched."""
    return {
        "rebooted": f"the host rebooted during its armed window: its result ({directory}) is lost",
        "gone": f"its armed window's directory {directory} is gone (removed by hand, or the pickup deadline passed): "
        "its result is lost",
        "disarmed": "interrupted before its window started (the armed window was removed)",
        "late": "its armed window had not ended when it should have: it was ended and removed, its result is lost",
        "died": "its armed window's keeper died before the window ended: its result is lost",
    }.get(word, f"its armed window's result is lost ({word})")
