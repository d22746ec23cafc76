"""The pieces of a lab host's sshd: keys, config, clean passwd, known_hosts, readiness."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.lab.requirements import program

SSHD_RUNTIME_DIR = Path("/run/sshd")  # privilege separation dir sshd insists on
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def generate_ed25519_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair without passphrase; returns the public key line."""
    subprocess.run(
        [program("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def render_sshd_config(address: str, port: int, host_key: Path, pid_file: Path) -> str:
    """sshd_config for one lab host: key-only root login on its own address."""
    return "\n".join(
        [
            f"ListenAddress {address}:{port}",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            # %h resolves through the namespace's own /etc/passwd, i.e. the clean home.
            "AuthorizedKeysFile %h/.ssh/authorized_keys",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            # Scale tests open hundreds of connections at once; the defaults (10:30:100) drop them.
            "MaxStartups 1000",
            "MaxSessions 100",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            # Fabric/paramiko put() goes over SFTP.
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]
    )


def clean_passwd(passwd_text: str, root_home: Path) -> str:
    """/etc/passwd with root's home moved, so sshd's bash finds no slow .bashrc."""
    lines = []
    for line in passwd_text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == "root":
            fields[5] = str(root_home)
        lines.append(":".join(fields))
    return "\n".join(lines) + "\n"


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """`ADDR ssh-ed25519 AAAA...` (or `[ADDR]:PORT ...` off port 22), comment dropped."""
    key_type, key_blob = public_key.split()[:2]
    target = address if port == 22 else f"[{address}]:{port}"
    return f"{target} {key_type} {key_blob}"


def is_listening(address: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a TCP connect to ADDRESS:PORT succeeds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_listening(targets: list[tuple[str, int]], timeout: float) -> list[tuple[str, int]]:
    """Poll until every target accepts TCP or time runs out; returns those still not listening."""
    pending = list(targets)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [t for t in pending if not is_listening(*t)]
        if pending:
            time.sleep(0.05)
    return pending
