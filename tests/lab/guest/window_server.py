"""Runs INSIDE the guest: a receiver whose reads stall while a real sender streams (issue 16).

    python3 window_server.py PORT HOLD_MS MODULE.ko RCVBUF WARM_S

RCVBUF 0 lets autotuning grow the buffer; otherwise the receiver calls setsockopt(SO_RCVBUF,
RCVBUF) before listen (the accepted socket inherits it, locked). The receiver reads for WARM_S
seconds, so autotuning grows rcvbuf and the window, then arms the hold module: its next recv()
spins HOLD_MS in the kernel with the socket owned, while the sender keeps sending what the
window allows. Prints `listening`, `warm <sk_meminfo>`, `held <s>`, `after <sk_meminfo>`, then
the module's `held_ms`, then `done`. Stdlib only, one file.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

SO_MEMINFO = 55  # include/uapi/asm-generic/socket.h
# include/uapi/linux/sock_diag.h: SK_MEMINFO_RMEM_ALLOC, RCVBUF, WMEM_ALLOC, SNDBUF, FWD_ALLOC,
# WMEM_QUEUED, OPTMEM, BACKLOG, DROPS.
MEMINFO = ("rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc", "wmem_queued", "optmem", "backlog", "drops")
ACCEPT_TIMEOUT = 60.0
DRAIN_S = 2.0
ARM_TIMEOUT = 150.0  # loading and registering take 1-2 s idle under TCG, 17 s seen under load
STAP_OUTPUT = "/tmp/fdl-window-hold.out"


def wait_armed(staprun: subprocess.Popen) -> None:
    """Return once the module's kprobe has handled a call (it prints `live`), poking it meanwhile."""
    # Neither /sys/kernel/debug/kprobes/list nor a begin probe proves the probe handles hits yet.
    deadline = time.monotonic() + ARM_TIMEOUT
    while time.monotonic() < deadline:
        if staprun.poll() is not None:
            raise SystemExit(f"staprun exited {staprun.returncode} before arming")
        if os.path.exists(STAP_OUTPUT):
            with open(STAP_OUTPUT) as output:
                if "live" in output.read():
                    return
        poke_recvmsg()
        time.sleep(0.2)
    raise SystemExit(f"the delay module did not go live within {ARM_TIMEOUT}s")


def poke_recvmsg() -> None:
    """One tcp_recvmsg on a loopback connection (another port: never held)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"x")
                conn.recv(1)


def pin_apart() -> None:
    """This process on CPU 0, the NIC's receive interrupts on CPU 1 (and left there).

    The hold spins in a kprobe handler, with interrupts off on its CPU: if the NIC's interrupt
    were routed there too, nothing would reach TCP until the hold ends and no segment would
    meet the owned socket. Apart, every one does, and the count is the same run after run.
    """
    with open("/proc/interrupts") as interrupts:
        irqs = [line.split(":")[0].strip() for line in interrupts if "virtio" in line and "-input." in line]
    if not irqs or os.cpu_count() is None or os.cpu_count() < 2:
        raise SystemExit(f"need 2 CPUs and a virtio NIC (irqs {irqs}, cpus {os.cpu_count()})")
    for irq in irqs:
        with open(f"/proc/irq/{irq}/smp_affinity_list", "w") as affinity:
            affinity.write("1")
    os.sched_setaffinity(0, {0})


def meminfo(conn: socket.socket) -> str:
    raw = conn.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * len(MEMINFO))
    values = struct.unpack(f"{len(raw) // 4}I", raw)
    return " ".join(f"{name}={value}" for name, value in zip(MEMINFO, values))


def read_for(conn: socket.socket, seconds: float) -> int:
    deadline, total = time.monotonic() + seconds, 0
    conn.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            data = conn.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            break
        total += len(data)
    return total


def main(port: int, hold_ms: int, module: str, rcvbuf: int, warm_s: float) -> int:
    if os.path.exists(STAP_OUTPUT):
        os.unlink(STAP_OUTPUT)
    name = os.path.basename(module)[: -len(".ko")]
    staprun = subprocess.Popen(
        ["staprun", "-o", STAP_OUTPUT, module, f"hold_port={port}", f"delay_ms={hold_ms}", "delays=0"],
        stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
    )  # fmt: skip
    try:
        wait_armed(staprun)
        pin_apart()
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        server.bind(("0.0.0.0", port))
        server.listen(1)
        server.settimeout(ACCEPT_TIMEOUT)
        print("listening", flush=True)
        conn, _ = server.accept()
        warm = read_for(conn, warm_s)
        print(f"warm bytes={warm} {meminfo(conn)}", flush=True)
        ss = subprocess.run(["ss", "-tmiH", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True).stdout  # fmt: skip
        print("ss " + " ".join(ss.split()), flush=True)
        with open(f"/proc/systemtap/{name}/arm", "w") as arm:
            arm.write("1\n")
        conn.settimeout(None)
        started = time.monotonic()
        data = conn.recv(65536)  # held in the kernel, socket owned, for HOLD_MS
        print(f"held {time.monotonic() - started:.2f} bytes {len(data)}", flush=True)
        print(f"after {meminfo(conn)}", flush=True)
        read_for(conn, DRAIN_S)
        print(f"drained {meminfo(conn)}", flush=True)
        conn.close()
        server.close()
    finally:
        staprun.send_signal(signal.SIGTERM)
        staprun.wait(timeout=60)
    with open(STAP_OUTPUT) as output:
        print(output.read().replace("live", "").strip(), flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
