"""Backlog drops from a real, window-bound sender (issue 16): autotuned rcvbuf versus SO_RCVBUF.

The controller streams to the guest as fast as TCP lets it; the guest's receiver reads for a
warm-up (autotuning grows rcvbuf and the window), then one recv() is held in the kernel with the
socket owned (window_hold.stp), so whatever the advertised window still lets the sender put in
flight lands in the backlog. Unlike backlog.py's raw duplicates, every byte here is one the
receiver's own window allowed: this is the origin case's shape. Returns the kernel's counters.

    python3 -m tests.lab.guest.window_backlog [RCVBUF ...]    # 0 = autotuned; prints each run
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.guest.stap_modules import compile_module
from tests.lab.guest.streams import LineReader
from tests.lab.guest.vm import GuestVM

HOLD_SCRIPT = Path(__file__).with_name("window_hold.stp")
SERVER_SCRIPT = Path(__file__).with_name("window_server.py")
HOLD_MODULE = "fdl_lab_window_hold"
GUEST_MODULE_PATH = f"/root/{HOLD_MODULE}.ko"
GUEST_SERVER_PATH = "/root/fdl_window_server.py"
DEFAULT_PORT = 5302
HOLD_MS = 3000
WARM_S = 6.0
ARM_TIMEOUT = 200.0
RUN_TIMEOUT = 90.0
COLLECT_WINDOW_S = 75  # staprun arming (up to ~20 s under load), warm-up, hold and drain fit inside
COUNTERS = ("TCPBacklogDrop", "TCPRcvQDrop", "PruneCalled", "TCPRcvCollapsed", "TCPBacklogCoalesce", "TCPZeroWindowDrop")


# Every tcp_add_backlog call on the port (drop or not): backlog+rmem against each kernel's limit, at the
# check (entry: the queue before this skb, as sk_rcvqueues_full sees it), and the skbs' len/truesize.
# Counts over a limit this kernel does not use say what an older kernel would have dropped.
LIMIT_COUNTER = r"""
kprobe:tcp_add_backlog
/((struct sock *)arg0)->__sk_common.skc_num == PORT/
{
  $sk = (struct sock *)arg0;
  $skb = (struct sk_buff *)arg1;
  $q = $sk->sk_backlog.len + $sk->sk_backlog.rmem_alloc.counter;
  $rb = $sk->sk_rcvbuf;
  $sb = $sk->sk_sndbuf;
  @calls = count();
  @peak = max($q);
  @rcvbuf_max = max($rb);
  @over_3_10 = sum($q > $rb + $sb ? 1 : 0);
  @over_4_9 = sum($q > $rb + $sb + 65536 ? 1 : 0);
  @over_6_1 = sum($q > $rb + $sb / 2 + 65536 ? 1 : 0);
  @over_ec00 = sum($q > 2 * $rb + $sb / 2 + 65536 ? 1 : 0);
  @len = sum($skb->len);
  @truesize = sum($skb->truesize);
}
"""
LIMIT_PID = "/tmp/fdl-limit-counter.pid"


def start_limit_counter(vm: GuestVM, port: int) -> subprocess.Popen:
    """bpftrace in the guest counting tcp_add_backlog calls over each formula's limit; stop_limit_counter() reads it."""
    vm.put(LIMIT_COUNTER.replace("PORT", str(int(port))).encode(), "/root/fdl-limit-counter.bt")
    proc = vm.popen(f"bpftrace /root/fdl-limit-counter.bt & echo $! > {LIMIT_PID}; wait",
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    LineReader(proc).until("Attaching", ARM_TIMEOUT)
    return proc


def stop_limit_counter(vm: GuestVM, proc: subprocess.Popen) -> dict[str, int]:
    """SIGINT the guest's bpftrace and parse its ``@name: value`` lines."""
    vm.ssh(f"kill -INT $(cat {LIMIT_PID})")
    out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    values = {}
    for line in out.decode(errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.startswith("@") and value.strip().isdigit():
            values[name[1:]] = int(value)
    return values


class WindowRunError(RuntimeError):
    """The run did not go as planned; the message carries the guest side's output."""


@dataclass(frozen=True)
class WindowRun:
    """One run: the receiver's buffer choice, its socket's memory before/after the hold, the counters."""

    rcvbuf_set: int  # what the receiver passed to SO_RCVBUF (0: autotuned)
    warm: dict[str, int]  # SO_MEMINFO after the warm-up (rcvbuf as autotuning left it)
    after: dict[str, int]  # SO_MEMINFO after the held recv() (drops: the socket's own count)
    counters: dict[str, int]  # TcpExt deltas over the run
    sent_bytes: int
    held_ms: int
    ss_after_warm: str  # the guest's `ss -tmi` line for the socket after the warm-up (rcv_ssthresh, rcv_space...)
    limits: dict[str, int]  # LIMIT_COUNTER's maps (empty when not counted)
    guest_address: str
    guest_port: int
    controller_address: str
    controller_port: int

    @property
    def drops(self) -> int:
        return self.counters["TCPBacklogDrop"]


def _meminfo(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (word.split("=") for word in line.split()[1:]) if v.isdigit()}


def install(vm: GuestVM) -> None:
    """The hold module (compiled on the controller, cached) and the server file, copied once."""
    if vm.image is None:
        raise RuntimeError("the guest is not started")
    module = compile_module(vm.image, HOLD_SCRIPT, HOLD_MODULE, ("-g", "-DSTP_NO_OVERLOAD"))
    for data, path in ((module.path.read_bytes(), GUEST_MODULE_PATH), (SERVER_SCRIPT.read_bytes(), GUEST_SERVER_PATH)):
        present = vm.ssh(f"sha256sum {path} 2>/dev/null").stdout.split()[:1]
        if present != [hashlib.sha256(data).hexdigest()]:
            vm.put(data, path)


def _stream(conn: socket.socket, stop: threading.Event, sent: list[int]) -> None:
    chunk = b"\0" * (1 << 20)
    conn.settimeout(0.5)
    while not stop.is_set():
        try:
            sent[0] += conn.send(chunk)
        except socket.timeout:
            continue
        except OSError:
            return


def run_window_backlog(vm: GuestVM, rcvbuf: int = 0, port: int = DEFAULT_PORT, hold_ms: int = HOLD_MS,
                       warm_s: float = WARM_S, mss: int = 0, count_limits: bool = True) -> WindowRun:  # fmt: skip
    """One run with the receiver's SO_RCVBUF (0: autotuned); the guest's counters over it.

    MSS (the sender's TCP_MAXSEG, 0: the path's) makes small segments, each in a full-size
    receive buffer: a high truesize/len, as on NICs whose rx buffers are much larger than packets.
    """
    install(vm)
    counter = start_limit_counter(vm, port) if count_limits else None
    before = vm.tcpext()
    server = vm.popen(
        f"python3 {GUEST_SERVER_PATH} {port} {hold_ms} {GUEST_MODULE_PATH} {int(rcvbuf)} {warm_s}",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines = LineReader(server)
    stop, sent = threading.Event(), [0]
    try:
        lines.until("listening", ARM_TIMEOUT)
        with socket.socket() as conn:
            if mss:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            conn.bind((vm.fleet.controller_address, 0))
            conn.settimeout(30)
            conn.connect((vm.address, port))
            controller_port = conn.getsockname()[1]
            sender = threading.Thread(target=_stream, args=(conn, stop, sent), daemon=True)
            sender.start()
            warm = _meminfo(lines.until("warm", RUN_TIMEOUT))
            ss_line = lines.until("ss", RUN_TIMEOUT)
            lines.until("held", RUN_TIMEOUT)
            after = _meminfo(lines.until("after", RUN_TIMEOUT))
            lines.until("drained", RUN_TIMEOUT)
            stop.set()
            sender.join(5)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        held_ms = int(lines.until("held_ms", RUN_TIMEOUT).split()[1])
        lines.until("done", RUN_TIMEOUT)
        _, err = server.communicate(timeout=RUN_TIMEOUT)
    except Exception as exc:
        stop.set()
        server.kill()
        if counter:
            counter.kill()
        _, err = server.communicate()
        raise WindowRunError(f"{exc}\nguest server stderr:\n{err.decode(errors='replace')[-3000:]}") from exc
    if held_ms < hold_ms:
        raise WindowRunError(f"the socket was held {held_ms} ms, not {hold_ms} ms")
    now = vm.tcpext()
    limits = stop_limit_counter(vm, counter) if counter else {}
    return WindowRun(
        rcvbuf_set=int(rcvbuf), warm=warm, after=after,
        counters={name: now.get(name, 0) - before.get(name, 0) for name in COUNTERS},
        sent_bytes=sent[0], held_ms=held_ms, ss_after_warm=ss_line[3:], limits=limits, guest_address=vm.address, guest_port=port,
        controller_address=vm.fleet.controller_address, controller_port=controller_port,
    )  # fmt: skip


def main(argv: list[str]) -> int:
    from tests.lab.fleet import LabFleet
    from tests.lab.guest.image import ensure_image

    with LabFleet(1) as fleet, GuestVM(fleet, image=ensure_image()) as vm:
        print(vm.check("uname -r; sysctl net.ipv4.tcp_rmem net.core.rmem_max net.ipv4.tcp_adv_win_scale"
                       " net.ipv4.tcp_moderate_rcvbuf net.ipv4.tcp_wmem"), flush=True)  # fmt: skip
        mss = int(os.environ.get("FDL_MSS", "0"))
        for i, value in enumerate(argv or ["0"]):
            if str(value).startswith("mss:"):
                mss = int(value[4:])
                continue
            if str(value).startswith("sysctl:"):
                vm.check(f"sysctl -w {value[7:]}")
                continue
            value = int(value)
            if value < 0:  # a negative value: raise the guest's tcp_rmem max to -value first
                vm.check(f"sysctl -w net.ipv4.tcp_rmem='4096 131072 {-value}' net.core.rmem_max={-value}")
                continue
            run = run_window_backlog(vm, value, port=DEFAULT_PORT + i, mss=mss)
            print(f"mss={mss} rcvbuf_set={value} drops={run.drops} counters={run.counters} sent={run.sent_bytes} "
                  f"held_ms={run.held_ms}\n  warm={run.warm}\n  after={run.after}\n  ss={run.ss_after_warm}\n  limits={run.limits}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


@dataclass(frozen=True)
class WindowCollect:
    """`fleetdiag collect` over one window-bound run: its exit code, document, stderr and the run."""

    returncode: int
    document: dict
    stderr: str
    run: WindowRun


def collect_during_window_run(fleet, vm: GuestVM, inventory: Path, tracer: str, cache_dir: Path,
                              rcvbuf: int = 0, mss: int = 0, port: int = DEFAULT_PORT) -> WindowCollect:  # fmt: skip
    """Run the real CLI with TRACER on the guest while run_window_backlog() streams (collect_run's pattern)."""
    import json
    import sys as _sys

    from tests.lab.guest.collect_run import ATTACH_TIMEOUT_S, attached_windows

    argv = [_sys.executable, "-m", "fleetdiag", "collect", "-i", str(inventory), "--duration", str(COLLECT_WINDOW_S),
            "--tracer", tracer, "-o", "json", "--port", str(port),
            "--known-hosts", str(fleet.known_hosts_path), "--known-hosts", str(vm.known_hosts_path)]  # fmt: skip
    install(vm)  # before the window opens: copying and module checks take seconds under TCG
    env = {**os.environ, "FLEETDIAG_CACHE_DIR": str(cache_dir)}
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while attached_windows(vm) < 1:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise WindowRunError(f"collect ended ({proc.returncode}) before its window opened:\n{err[-3000:]}")
            if time.monotonic() - started > ATTACH_TIMEOUT_S:
                raise WindowRunError(f"the window did not attach in the guest within {ATTACH_TIMEOUT_S} s")
            time.sleep(2)
        run = run_window_backlog(vm, rcvbuf, port=port, mss=mss, warm_s=WARM_S)
        out, err = proc.communicate(timeout=COLLECT_WINDOW_S + ATTACH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return WindowCollect(proc.returncode, json.loads(out), err, run)
