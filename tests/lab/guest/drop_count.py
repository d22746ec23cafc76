"""Hand-written SOCKET_BACKLOG drop counters that run in the guest (bcc, bpftrace), independent of fleetdiag.

They exist to cross-check the generator and, later, fleetdiag's own probes: each counts
`skb:kfree_skb` events with reason SOCKET_BACKLOG, in the kernel, until told to stop.
"""

from __future__ import annotations

import re
import subprocess
from types import TracebackType
from typing import Literal

from tests.lab.guest.streams import LineReader
from tests.lab.guest.vm import GuestVM

Tool = Literal["bcc", "bpftrace"]
START_TIMEOUT = 180.0  # bcc compiles with clang in the emulated guest: 3-4 s idle, far more when busy

# On 6.1 the reason enum lives in net/dropreason.h; without it: "incomplete type 'enum skb_drop_reason'".
BCC_COUNTER = r'''
import sys
from bcc import BPF
bpf = BPF(text="""
#include <net/dropreason.h>
BPF_ARRAY(hits, u64, 1);
TRACEPOINT_PROBE(skb, kfree_skb) {
    if (args->reason != SKB_DROP_REASON_SOCKET_BACKLOG)
        return 0;
    int zero = 0;
    u64 *n = hits.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
""")
print("ready", flush=True)
sys.stdin.read()
print("count", bpf["hits"][0].value, flush=True)
'''

# The reason's number differs between kernels (20 on 6.1): read it from the tracepoint's own table.
BPFTRACE_COUNTER = r"""
reason=$(grep -o '{ [0-9]*, "SOCKET_BACKLOG" }' /sys/kernel/tracing/events/skb/kfree_skb/format | grep -o '[0-9][0-9]*')
[ -n "$reason" ] || { echo "no SOCKET_BACKLOG in kfree_skb's format" >&2; exit 1; }
bpftrace -e "BEGIN { printf(\"ready\n\"); } tracepoint:skb:kfree_skb /args->reason == $reason/ { @hits = count(); }" &
tracer=$!
cat > /dev/null
kill -TERM $tracer  # not INT: a non-interactive shell starts background jobs with SIGINT ignored
wait $tracer
"""


class GuestDropCounter:
    """Context manager counting SOCKET_BACKLOG drops in the guest with TOOL; .count after exit."""

    def __init__(self, vm: GuestVM, tool: Tool):
        self.vm, self.tool = vm, tool
        self.count: int | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GuestDropCounter:
        # A file, not the command line: no quoting, and stdin stays free to signal the stop.
        program = BCC_COUNTER if self.tool == "bcc" else BPFTRACE_COUNTER
        path = f"/root/fdl-count.{'py' if self.tool == 'bcc' else 'sh'}"
        self.vm.put(program.encode(), path)
        command = f"python3 {path}" if self.tool == "bcc" else f"sh {path}"
        self._proc = self.vm.popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = LineReader(self._proc)
        try:
            self._reader.until("ready", START_TIMEOUT)
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._kill()
            return
        self.count = self.stop()

    def stop(self) -> int:
        """End the count (stdin closed) and return the number of SOCKET_BACKLOG drops seen."""
        assert self._proc is not None
        out, err = self._proc.communicate(input=b"", timeout=120)
        text = "\n".join([*self._reader.seen, out.decode(errors="replace")])
        if self._proc.returncode != 0:
            raise RuntimeError(f"{self.tool} counter exited {self._proc.returncode}: {err.decode()[-2000:]}")
        if self.tool == "bcc":
            match = re.search(r"^count (\d+)", text, re.M)
            if not match:
                raise RuntimeError(f"bcc counter printed no count: {text[-1000:]}")
            return int(match.group(1))
        match = re.search(r"^@hits: (\d+)", text, re.M)
        return int(match.group(1)) if match else 0  # bpftrace prints no map that was never written

    def _kill(self) -> None:
        """Stop the ssh session (the guest side ends with it) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
