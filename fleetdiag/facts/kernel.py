"""Facts about what the running kernel allows: modules, lockdown, Secure Boot, symbols, headers, debuginfo.

Several commands read ``$fd_tracefs``: the detection prelude sets it to where tracefs
is (mounting it for the length of detection when nobody has).
"""

from __future__ import annotations

import re

from fleetdiag.facts.base import Fact

# The kallsyms names the probes care about; everything else in the (large) file is skipped on the host.
WATCHED_SYMBOLS = ("tcp_add_backlog", "tcp_v4_rcv", "tcp_v6_rcv", "sk_add_backlog", "register_kprobe")

MODULES_COMMAND = """
if [ ! -e /proc/modules ]; then echo unsupported
elif [ "$(cat /proc/sys/kernel/modules_disabled)" = 1 ]; then echo disabled
else echo yes
fi
"""

# Unreadable (securityfs not mounted) prints nothing: unknown, not "none".
LOCKDOWN_COMMAND = "cat /sys/kernel/security/lockdown"

# The SecureBoot EFI variable: 4 attribute bytes, then 1 (on) or 0 (off). No EFI: BIOS boot, no Secure Boot.
SECURE_BOOT_COMMAND = """
if [ ! -d /sys/firmware/efi ]; then echo bios; exit 0; fi
v=$(ls /sys/firmware/efi/efivars/SecureBoot-* | head -n 1)
if [ -n "$v" ]; then od -An -t u1 "$v" | awk '{print "efivar " $NF}'
elif command -v mokutil >/dev/null; then mokutil --sb-state
fi
"""

# grep, not awk: reading /proc/kallsyms is most of the cost, and grep adds little to it.
KALLSYMS_COMMAND = (
    "grep -E ' ("
    + "|".join(WATCHED_SYMBOLS)
    + ")([[:space:]]|$)' /proc/kallsyms | awk '{ print $3 }' | sort -u"
)

# tcp_add_backlog's parameter names from BTF: FUNC_PROTO blocks list them, FUNC names the
# proto. Dumping all of BTF costs ~0.1-0.2 s, so it is read only where the tcp_add_backlog
# tiers may be used: hosts whose kfree_skb has no rx_sk.
TCP_ADD_BACKLOG_BTF_COMMAND = r"""
[ -r /sys/kernel/btf/vmlinux ] && command -v bpftool >/dev/null || exit 0
grep -q rx_sk "$fd_tracefs/events/skb/kfree_skb/format" && exit 0
bpftool btf dump file /sys/kernel/btf/vmlinux | awk '
  /^\[/ { proto = ""; if ($2 == "FUNC_PROTO") { proto = substr($1, 2, length($1) - 2); params[proto] = "" } }
  /^\t\047/ && proto != "" { params[proto] = params[proto] " " $1 }
  $2 == "FUNC" && $3 == "\047tcp_add_backlog\047" { split($4, id, "="); want = id[2] }
  END { if (want != "") print "tcp_add_backlog" params[want] }'
"""

# fentry/kretfunc need the function in ftrace's list; bpftrace refuses them when it cannot read it.
FENTRY_COMMAND = """
f="$fd_tracefs/available_filter_functions"
[ -n "$fd_tracefs" ] && [ -e "$f" ] || exit 0
grep -q -E '^tcp_add_backlog( |$)' "$f"
case $? in 0) echo yes ;; 1) echo no ;; *) echo unreadable ;; esac
"""

HEADERS_COMMAND = """
r=$(uname -r)
[ -e "/lib/modules/$r/build/Makefile" ] && echo "build /lib/modules/$r/build"
[ -e /sys/kernel/kheaders.tar.xz ] && echo "kheaders /sys/kernel/kheaders.tar.xz"
[ -e /proc/modules ] && modinfo kheaders >/dev/null && echo "kheaders module"
exit 0
"""

# RHEL's kernel-debuginfo, Debian's linux-image-*-dbg, and a hand-built vmlinux.
DEBUGINFO_COMMAND = """
r=$(uname -r)
for f in "/usr/lib/debug/lib/modules/$r/vmlinux" "/usr/lib/debug/boot/vmlinux-$r" "/boot/vmlinux-$r" "/lib/modules/$r/build/vmlinux"; do
  if [ -r "$f" ]; then echo "$f"; exit 0; fi
done
"""


# The running kernel's GNU build id, from its ELF notes (world-readable): a rebuilt kernel of the
# same release has another one, so a systemtap module cached for the release is keyed by it too.
BUILD_ID_COMMAND = "od -An -v -tx1 /sys/kernel/notes"

_NT_GNU_BUILD_ID = 3


def parse_build_id(out: str) -> str | None:
    """The GNU build id (hex) among the ELF notes that ``od -An -v -tx1`` printed, or None.

    >>> note = "04 00 00 00 02 00 00 00 03 00 00 00 47 4e 55 00 ab cd 00 00"
    >>> parse_build_id(note)
    'abcd'
    """
    try:
        data = bytes(int(word, 16) for word in out.split())
    except ValueError:
        return None
    return build_id_from_notes(data)


def build_id_from_notes(data: bytes) -> str | None:
    """The GNU build id in a block of ELF notes (little-endian, 4-byte aligned), or None."""
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, kind = (int.from_bytes(data[offset + i : offset + i + 4], "little") for i in (0, 4, 8))
        name_at = offset + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if desc_at + descsz > len(data):
            return None
        if kind == _NT_GNU_BUILD_ID and data[name_at : name_at + namesz].rstrip(b"\0") == b"GNU" and descsz:
            return data[desc_at : desc_at + descsz].hex()
        offset = desc_at + (descsz + 3) // 4 * 4
    return None


def _word(out: str) -> str | None:
    words = out.split()
    return words[0] if words else None


def parse_modules(out: str) -> str | None:
    """``yes``, ``disabled`` or ``unsupported`` (no /proc/modules: CONFIG_MODULES off)."""
    word = _word(out)
    return word if word in ("yes", "disabled", "unsupported") else None


def parse_lockdown(out: str) -> str | None:
    """The active lockdown mode, the bracketed word.

    >>> parse_lockdown("none [integrity] confidentiality\\n")
    'integrity'
    """
    match = re.search(r"\[(\w+)\]", out)
    return match.group(1) if match else None


def parse_secure_boot(out: str) -> bool | None:
    """True/False from the EFI variable or ``mokutil --sb-state``; False on BIOS; None if unknown.

    >>> parse_secure_boot("efivar 1\\n"), parse_secure_boot("SecureBoot disabled\\n"), parse_secure_boot("")
    (True, False, None)
    """
    text = out.strip()
    if text == "bios":
        return False
    match = re.search(r"efivar (\d+)", text)
    if match:
        return match.group(1) == "1"
    if "SecureBoot enabled" in text:
        return True
    if "SecureBoot disabled" in text:
        return False
    return None


def parse_kallsyms(out: str) -> frozenset[str]:
    """The watched symbol names that the kernel has."""
    return frozenset(line.strip() for line in out.splitlines() if line.strip() in WATCHED_SYMBOLS)


def parse_btf_params(out: str) -> tuple[str, ...] | None:
    """tcp_add_backlog's parameter names, e.g. ``tcp_add_backlog 'sk' 'skb' 'reason'`` -> (sk, skb, reason).

    >>> parse_btf_params("tcp_add_backlog 'sk' 'skb'\\n")
    ('sk', 'skb')
    """
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == "tcp_add_backlog":
            return tuple(word.strip("'") for word in words[1:])
    return None


def parse_yes_no_unknown(out: str) -> bool | None:
    """``yes`` -> True, ``no`` -> False, anything else (unreadable, empty) -> None."""
    word = _word(out)
    return {"yes": True, "no": False}.get(word or "")


def parse_headers(out: str) -> str | None:
    """``build`` when /lib/modules/R/build has a Makefile, else ``kheaders`` when the kernel ships its own."""
    kinds = [line.split()[0] for line in out.splitlines() if line.split()]
    for kind in ("build", "kheaders"):
        if kind in kinds:
            return kind
    return None


def parse_path(out: str) -> str | None:
    """An absolute path printed on the first line."""
    word = _word(out)
    return word if word and word.startswith("/") else None


MODULES = Fact("modules", MODULES_COMMAND, parse_modules)
LOCKDOWN = Fact("lockdown", LOCKDOWN_COMMAND, parse_lockdown)
SECURE_BOOT = Fact("secure_boot", SECURE_BOOT_COMMAND, parse_secure_boot)
KALLSYMS = Fact("kallsyms", KALLSYMS_COMMAND, parse_kallsyms)
TCP_ADD_BACKLOG_BTF = Fact("tcp_add_backlog_btf", TCP_ADD_BACKLOG_BTF_COMMAND, parse_btf_params)
FENTRY = Fact("fentry_tcp_add_backlog", FENTRY_COMMAND, parse_yes_no_unknown)
KERNEL_HEADERS = Fact("kernel_headers", HEADERS_COMMAND, parse_headers)
DEBUGINFO = Fact("debuginfo", DEBUGINFO_COMMAND, parse_path)
BUILD_ID = Fact("kernel_build_id", BUILD_ID_COMMAND, parse_build_id)
