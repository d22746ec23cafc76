"""Runs INSIDE the guest (python3 backlog_server.py PORT DELAY_MS MODULE.ko): the generator's receiving end.

Loads the delay module, listens, accepts one connection, sends one byte so the controller knows
recv() is next, then recv() is held in the kernel (socket owned by the user) while the controller
blasts duplicates. Prints `listening`, `held <seconds> bytes <n>`, `held_ms <n>` (the module's own
measure), then `done`; stdlib only.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

ARM_TIMEOUT = 150.0  # loading and registering take 1-2 s idle under TCG, 17 s seen under load
ACCEPT_TIMEOUT = 60.0
RECV_TIMEOUT = 30  # seconds
STAP_OUTPUT = "/tmp/fdl-delay.out"


def main(port: int, delay_ms: int, module: str) -> int:
    """Load the module, serve one held recv(), unload; exit status 0 when all went as planned."""
    if os.path.exists(STAP_OUTPUT):
        os.unlink(STAP_OUTPUT)
    staprun = subprocess.Popen(
        ["staprun", "-o", STAP_OUTPUT, module, f"hold_port={port}", f"delay_ms={delay_ms}", "delays=1"],
        stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
    )  # fmt: skip
    try:
        wait_armed(staprun)
        pin_apart()
        serve_once(port)
    finally:
        staprun.send_signal(signal.SIGTERM)  # staprun unloads the module on SIGTERM
        staprun.wait(timeout=60)
    with open(STAP_OUTPUT) as output:  # the module's end probe: how long it really held the socket
        print(output.read().replace("live", "").strip(), flush=True)
    print("done", flush=True)
    return 0


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


def serve_once(port: int) -> None:
    """Accept one connection, signal the controller, make the held recv(), report how long it took."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Small buffers keep the backlog limit (rcvbuf + sndbuf + 64K) low; accepted sockets inherit them.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    server.settimeout(ACCEPT_TIMEOUT)
    print("listening", flush=True)
    conn, _ = server.accept()
    # A kernel-side timeout, not settimeout(): Python would poll() first and call recv() only once data
    # is there, so the hold would begin after the duplicates had already arrived.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", RECV_TIMEOUT, 0))
    conn.sendall(b"R")
    started = time.monotonic()
    data = conn.recv(65536)
    print(f"held {time.monotonic() - started:.2f} bytes {len(data)}", flush=True)
    conn.close()
    server.close()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
