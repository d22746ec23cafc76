"""How one lab host can differ from a plain one: the fault and security cases of the end-to-end tests.

Each difference is real, not mocked: a login user whose sudo wants a password (its own
/etc/passwd, /etc/shadow and /etc/sudoers bound over the host's /etc by `ip netns exec`),
a read-only TMPDIR in the sshd's own mount namespace, sshd_config lines (AllowUsers for a
host reachable only through a bastion), session environment (SetEnv: a private TMPDIR,
a PATH whose bpftrace cannot start, or never stops).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.requirements import find_program

SUDO_USER = "ops"
SUDO_UID = 4242  # not used by Debian; the user exists only inside the lab host's /etc


@dataclass(frozen=True)
class HostSetup:
    """What sets one lab host apart (all off by default: a plain host)."""

    sshd_config: tuple[str, ...] = ()  # extra sshd_config lines, e.g. "AllowUsers root@10.213.0.2"
    env: Mapping[str, str] = field(default_factory=dict)  # SetEnv for every session
    readonly_tmp: bool = False  # the sessions' TMPDIR is a read-only tmpfs: no writable temp dir
    sudo_password: str | None = None  # adds login user `ops` (same key) whose sudo asks this password
    bpftrace: str | None = None  # "broken": cannot load its maps; "hung": attaches, then ignores INT
    # A clock that reads off by this many whole seconds: a `date` on the sessions' PATH that adds
    # them (time namespaces shift only the monotonic clocks, never the wall clock).
    clock_offset_s: int | None = None


def readonly_tmp_dir(host_dir: Path) -> Path:
    """Where a ``readonly_tmp`` host's TMPDIR points: a read-only tmpfs in its sshd's mount namespace."""
    return host_dir / "readonly-tmp"


def sshd_wrapper(setup: HostSetup, host_dir: Path) -> str:
    """Shell run before `exec sshd` inside the host's namespace (its own mount namespace)."""
    if not setup.readonly_tmp:
        return ""
    return f"mount -t tmpfs -o ro,size=64k fdl-readonly-tmp '{readonly_tmp_dir(host_dir)}' || exit 1; "


def sshd_config_lines(setup: HostSetup, host_dir: Path, base_env: Mapping[str, str]) -> list[str]:
    """The extra sshd_config lines for SETUP; one SetEnv line, as sshd reads only the first."""
    lines = list(setup.sshd_config)
    env = {**base_env, **setup.env}
    if setup.readonly_tmp:  # mktemp -d follows TMPDIR: the host has no writable temp dir
        env["TMPDIR"] = str(readonly_tmp_dir(host_dir))
    if setup.bpftrace is not None or setup.clock_offset_s is not None:
        env["PATH"] = f"{host_dir / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if env:
        lines.append("SetEnv " + " ".join(f'"{name}={value}"' for name, value in env.items()))
    return lines


def prepare_host_files(setup: HostSetup, host_dir: Path, etc: Path, controller_key: str) -> None:
    """Write what SETUP needs: the broken bpftrace, the sudo user's /etc files and home."""
    if setup.bpftrace is not None:
        _write_bpftrace_wrapper(host_dir / "bin", setup.bpftrace)
    if setup.clock_offset_s is not None:
        _write_date_wrapper(host_dir / "bin", setup.clock_offset_s)
    if setup.readonly_tmp:
        readonly_tmp_dir(host_dir).mkdir()
    if setup.sudo_password is not None:
        _add_sudo_user(setup.sudo_password, host_dir, etc, controller_key)


def _write_bpftrace_wrapper(bin_dir: Path, kind: str) -> None:
    """A bpftrace on the host's PATH that answers detection like the real one and then misbehaves."""
    real = find_program("bpftrace") or "/usr/bin/bpftrace"
    misbehave = {
        # The real bpftrace with too few file descriptors for its maps: it fails by itself.
        "broken": f'ulimit -n 8\nexec {real} "$@"\n',
        # Says it is watching, then never ends and ignores SIGINT: only `timeout -k` can stop it.
        "hung": "trap '' INT TERM\n"
        """echo '{"type": "printf", "data": "@@attached\\n"}'\n"""
        "while :; do sleep 1; done\n",
    }[kind]
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    script = bin_dir / "bpftrace"
    script.write_text(f'#!/bin/sh\ncase "${{1:-}}" in --version|-V|--info) exec {real} "$@";; esac\n{misbehave}')
    script.chmod(0o755)


def _write_date_wrapper(bin_dir: Path, offset_s: int) -> None:
    """A `date` on the host's PATH whose clock reads OFFSET_S seconds off (every format, -d aside)."""
    real = find_program("date") or "/bin/date"
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    script = bin_dir / "date"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -d"*|*" --date"*) exec ' + real + ' "$@" ;; esac\n'
        f"now=$({real} +%s.%N)\n"
        f'exec {real} -d "@$((${{now%.*}} + ({int(offset_s)}))).${{now#*.}}" "$@"\n'
    )
    script.chmod(0o755)


def _add_sudo_user(password: str, host_dir: Path, etc: Path, controller_key: str) -> None:
    home = host_dir / f"home-{SUDO_USER}"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text(controller_key + "\n")
    for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
        os.chown(path, SUDO_UID, SUDO_UID)
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    home.chmod(0o755)
    # The user's sshd must reach its home: the fleet's workdir is root's private temp dir.
    for parent in (host_dir, host_dir.parent):
        parent.chmod(parent.stat().st_mode | 0o711)
    passwd = (etc / "passwd").read_text()
    (etc / "passwd").write_text(passwd + f"{SUDO_USER}:x:{SUDO_UID}:{SUDO_UID}::{home}:/bin/sh\n")
    shadow = Path("/etc/shadow").read_text()
    (etc / "shadow").write_text(shadow + f"{SUDO_USER}:{_password_hash(password)}:19000:0:99999:7:::\n")
    (etc / "shadow").chmod(0o640)
    group = Path("/etc/group").read_text()
    (etc / "group").write_text(group + f"{SUDO_USER}:x:{SUDO_UID}:\n")
    sudoers = etc / "sudoers"
    # timestamp_timeout=0: every sudo asks, so a test never rides on an earlier success.
    sudoers.write_text(
        "Defaults env_reset\nDefaults !lecture\nDefaults timestamp_timeout=0\n"
        f"root ALL=(ALL:ALL) ALL\n{SUDO_USER} ALL=(ALL:ALL) ALL\n"
    )
    sudoers.chmod(0o440)


def _password_hash(password: str) -> str:
    """SHA-512 crypt of PASSWORD, as /etc/shadow holds it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # stdlib up to Python 3.12

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        except ImportError:
            pass
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("lab sudo user needs Python's crypt module or `openssl` to hash its password")
    done = subprocess.run([openssl, "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True)
    return done.stdout.strip()
