"""Real TCPBacklogDrop on demand: one flow between two lab hosts, counted by the receiver's kernel."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.lab.backlog_traffic import HARD_STOP_GRACE, READY_LINE
from tests.lab.fleet import LabFleet, LabHost

SCRIPT = Path(__file__).with_name("backlog_traffic.py")
DEFAULT_PORT = 5201
DEFAULT_SECONDS = 6.0
READY_TIMEOUT = 10.0
COUNTER = "TCPBacklogDrop"


class BacklogTrafficError(RuntimeError):
    """The receiver or sender failed (port taken, no connection, crash); carries their stderr."""


class BacklogTraffic:
    """A running receiver/sender pair; wait() joins it and returns the receiver's drop delta."""

    def __init__(self, fleet: LabFleet, receiver: LabHost, sender: LabHost, port: int, seconds: float):
        self.fleet, self.receiver, self.sender = fleet, receiver, sender
        self.port, self.seconds = port, seconds
        self.drops: int | None = None
        self._logs = Path(tempfile.mkdtemp(prefix="backlog-", dir=fleet.workdir))
        self._before = fleet.tcpext(receiver)[COUNTER]
        self._procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> BacklogTraffic:
        return self if self._procs else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.wait()
        else:
            self._stop_all()

    def start(self) -> BacklogTraffic:
        """Start the receiver, wait until it listens, then start the sender."""
        self._procs["receive"] = self._launch("receive", self.receiver)
        self._wait_ready()
        self._procs["send"] = self._launch("send", self.sender)
        return self

    def wait(self) -> int:
        """Join both processes (killing any past their deadline); TCPBacklogDrop delta of the run."""
        if self.drops is not None:
            return self.drops
        limit = time.monotonic() + self.seconds + HARD_STOP_GRACE + 5
        for role, proc in self._procs.items():
            try:
                proc.wait(timeout=max(0.1, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._stop_all()
                raise BacklogTrafficError(f"{role} outlived its {self.seconds}s run; killed") from None
        failed = {role: p.returncode for role, p in self._procs.items() if p.returncode != 0}
        if failed:
            raise BacklogTrafficError(f"backlog traffic failed {failed}:\n{self._stderr()}")
        self.drops = self.fleet.tcpext(self.receiver)[COUNTER] - self._before
        return self.drops

    def bytes_moved(self, role: str) -> int:
        """Bytes the 'receive' or 'send' side reported moving, after wait()."""
        for line in (self._logs / f"{role}.out").read_text().splitlines():
            if line.startswith("bytes "):
                return int(line.split()[1])
        return 0

    def holds(self) -> int:
        """How many recv()s the receiver held with duplicates meeting them, after wait() (0: recipe alone)."""
        for line in (self._logs / "receive.out").read_text().splitlines():
            if line.startswith("holds "):
                return int(line.split()[1])
        return 0

    def _launch(self, role: str, host: LabHost) -> subprocess.Popen:
        """Run the traffic script in HOST's namespace with output to files (no pipes to drain)."""
        target = self.receiver.address
        argv = [sys.executable, "-I", str(SCRIPT), role, target, str(self.port), str(self.seconds)]
        with open(self._logs / f"{role}.out", "w") as out, open(self._logs / f"{role}.err", "w") as err:
            return self.fleet.popen(host, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def _wait_ready(self) -> None:
        """Block until the receiver prints its ready line; fail fast if it dies first."""
        receiver, out = self._procs["receive"], self._logs / "receive.out"
        deadline = time.monotonic() + READY_TIMEOUT
        while READY_LINE not in out.read_text():
            if receiver.poll() is not None or time.monotonic() > deadline:
                self._stop_all()
                raise BacklogTrafficError(f"receiver never listened on port {self.port}:\n{self._stderr()}")
            time.sleep(0.01)

    def _stop_all(self) -> None:
        """Kill and reap whatever is still running."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def _stderr(self) -> str:
        """Both sides' stderr, labelled."""
        parts = []
        for role in self._procs:
            text = (self._logs / f"{role}.err").read_text(errors="replace").strip()
            parts.append(f"[{role}] {text or '(empty)'}")
        return "\n".join(parts)


def start_backlog_traffic(
    fleet: LabFleet,
    receiver: LabHost,
    sender: LabHost,
    port: int = DEFAULT_PORT,
    seconds: float = DEFAULT_SECONDS,
) -> BacklogTraffic:
    """Start the flow now and return at once; call .wait() (or leave a `with`) for the drop delta."""
    return BacklogTraffic(fleet, receiver, sender, port, seconds).start()


def generate_backlog_drops(
    fleet: LabFleet,
    receiver: LabHost,
    sender: LabHost,
    port: int = DEFAULT_PORT,
    seconds: float = DEFAULT_SECONDS,
) -> int:
    """Run the flow for SECONDS and return the receiver's TCPBacklogDrop delta (usually > 0)."""
    return start_backlog_traffic(fleet, receiver, sender, port, seconds).wait()
