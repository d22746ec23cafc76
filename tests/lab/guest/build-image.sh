#!/usr/bin/env bash
# Build a lab guest: one Debian suite with its own cloud kernel, that kernel's headers, debug symbols
# and source, the suite's systemtap, bcc, bpftrace and sshd; a raw ext4 image for qemu plus the rootfs
# kept beside it (the controller compiles systemtap modules in a chroot of it with `stap -r KERNEL`).
# One recipe for every suite: bookworm (6.1), bullseye (5.10), trixie (6.12).
#
# Usage (root): build-image.sh OUT_DIR KERNEL_ABI MIRROR SECURITY_MIRROR DEB_CACHE [SUITE]
#   KERNEL_ABI e.g. 6.1.0-56-cloud-amd64 (the caller reads the suite's current one from apt-cache)
#   SUITE bookworm (the default), bullseye or trixie
# Writes OUT_DIR/{rootfs/,guest.ext4,vmlinuz,initrd.img,id_ed25519{,.pub},ssh_host_ed25519_key.pub,build.env}.
# tests/lab/guest/image.py runs this and caches OUT_DIR by a hash of this file and KERNEL_ABI.
set -euo pipefail

if [ "${FDL_IN_MOUNT_NS:-}" != 1 ]; then
  # Chroot mounts live in a private mount namespace: they vanish with this process, even on a crash.
  exec env FDL_IN_MOUNT_NS=1 unshare --mount --propagation private bash "$0" "$@"
fi

OUT=$1 K=$2 MIRROR=$3 SECURITY_MIRROR=$4 DEBS=$5 SUITE=${6:-bookworm}
ROOT=$OUT/rootfs
IMAGE_SIZE=8G
case $SUITE in bookworm|bullseye|trixie) ;; *) echo "build-image: unknown suite $SUITE" >&2; exit 2 ;; esac
BASE_PACKAGES=openssh-server,iproute2,systemd-sysv,udev,kmod,dbus,procps,python3
# Debian's source of this kernel series (linux-source-6.1): fleetdiag reads the line that counts
# TCPBacklogDrop from it, the origin case's statement probe.
SOURCE_SERIES=$(echo "$K" | cut -d. -f1,2)
GUEST_PACKAGES=(
  initramfs-tools "linux-image-$K" "linux-headers-$K" "linux-image-$K-dbg"
  systemtap systemtap-runtime bpfcc-tools python3-bpfcc bpftrace gcc make libc6-dev
)
# Debian's systemtap 4.8 runtime calls task_work_cancel(task, func); 6.1.19x (a stable backport) renamed
# that form task_work_cancel_func and changed task_work_cancel to take a callback_head.
STAP_RUNTIME=/usr/share/systemtap/runtime
STAP_PATCHED_FILE=$STAP_RUNTIME/stp_task_work.c

log() { printf '%s build-image: %s\n' "$(date +%T)" "$*" >&2; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }
mark() { echo "$1=$(( $(date +%s) - START ))" >> "$OUT/build.env"; }

START=$(date +%s)
mkdir -p "$OUT" "$DEBS/partial"
: > "$OUT/build.env"

log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$BASE_PACKAGES" --cache-dir="$DEBS" \
  "$SUITE" "$ROOT" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 || { tail -30 "$OUT/debootstrap.log" >&2; exit 1; }
mark seconds_debootstrap

mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount --bind "$DEBS" "$ROOT/var/cache/apt/archives"
# No service may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"

cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
log "apt-get install ${GUEST_PACKAGES[*]}"
in_root apt-get update -qq
if ! in_root apt-cache show "linux-image-$K" > /dev/null 2>&1; then
  log "linux-image-$K is not on the mirror any more; the host's apt lists are stale: run apt-get update"
  exit 1
fi
# The source of this very kernel: linux-source-X.Y of the image's version (the security archive may
# carry a newer one for a newer ABI than the one chosen).
image_candidate=$(in_root apt-cache show "linux-image-$K" | sed -n 's/^Version: //p' | head -1)
GUEST_PACKAGES+=("linux-source-$SOURCE_SERIES=$image_candidate")
# Where systemd-networkd is a package of its own (trixie), it must be asked for.
if in_root apt-cache show systemd-networkd > /dev/null 2>&1; then GUEST_PACKAGES+=(systemd-networkd); fi
in_root apt-get install -y -qq --no-install-recommends "${GUEST_PACKAGES[@]}" > "$OUT/apt.log" 2>&1 \
  || { tail -30 "$OUT/apt.log" >&2; exit 1; }
mark seconds_packages
# On a first build this is what was downloaded; later builds reuse the cache and download only news.
du -sb "$DEBS" | awk '{print "deb_cache_bytes=" $1}' >> "$OUT/build.env"

log "configure: kernel symbols, systemtap runtime fix, network, sshd"
# The image's System.map is a placeholder; systemtap needs the real one (from the -dbg package).
cp "$ROOT/usr/lib/debug/boot/System.map-$K" "$ROOT/boot/System.map-$K"

# Keep Debian's runtime untouched beside the fixed one, so the unpatched failure can be reproduced:
# stap -R /usr/share/systemtap/runtime.debian-orig ...
cp -a "$ROOT$STAP_RUNTIME" "$ROOT$STAP_RUNTIME.debian-orig"
# Only where the kernel has the new name and the suite's systemtap does not know it yet.
if { grep -q 'task_work_cancel_func' "$ROOT/usr/src/linux-headers-$K/include/linux/task_work.h" 2>/dev/null \
     || grep -rq 'task_work_cancel_func' "$ROOT/usr/src/linux-headers-"*-common*/include/linux/task_work.h 2>/dev/null; } \
   && ! grep -q 'task_work_cancel_func' "$ROOT$STAP_PATCHED_FILE"; then
  # Exactly its 4 uses (typedef, #define, symbol lookup, call); comments and messages stay as they are.
  sed -i -e 's/typeof(&task_work_cancel)/typeof(\&task_work_cancel_func)/' \
    -e 's/^#define task_work_cancel (/#define task_work_cancel_func (/' \
    -e 's/kallsyms_lookup_name("task_work_cancel")/kallsyms_lookup_name("task_work_cancel_func")/' \
    -e 's/= task_work_cancel(task, func)/= task_work_cancel_func(task, func)/' "$ROOT$STAP_PATCHED_FILE"
  changed=$(diff "$ROOT$STAP_RUNTIME.debian-orig/stp_task_work.c" "$ROOT$STAP_PATCHED_FILE" | grep -c '^>' || true)
  [ "$changed" = 4 ] || { log "systemtap runtime fix changed $changed lines, expected 4: recipe out of date"; exit 1; }
fi
# Debian 11's systemtap 4.4 cannot build any module for 5.10.2xx: a stable backport unexported
# module_mutex, which its kprobes runtime locks around kallsyms_on_each_symbol ("modpost:
# module_mutex undefined"). Upstream (4.5) stopped taking it there; so does this: exactly its 4 uses.
KPROBES_FILE=$STAP_RUNTIME/linux/kprobes.c
if grep -q '&module_mutex' "$ROOT$KPROBES_FILE" 2>/dev/null && ! grep -q STAPCONF_MODULE_MUTEX "$ROOT$KPROBES_FILE" \
   && ! grep -q -E '[[:space:]]module_mutex[[:space:]]' "$ROOT/usr/src/linux-headers-$K/Module.symvers"; then
  sed -i -e '/^[[:space:]]*mutex_lock(&module_mutex);$/d' -e '/^[[:space:]]*mutex_unlock(&module_mutex);$/d' "$ROOT$KPROBES_FILE"
  changed=$(diff "$ROOT$STAP_RUNTIME.debian-orig/linux/kprobes.c" "$ROOT$KPROBES_FILE" | grep -c '^<' || true)
  [ "$changed" = 4 ] || { log "systemtap module_mutex fix removed $changed lines, expected 4: recipe out of date"; exit 1; }
  echo "stap_patched_kprobes=$KPROBES_FILE" >> "$OUT/build.env"
fi
{
  echo "stap_patched_file=$STAP_PATCHED_FILE"
  echo "stap_patched_lines=$(diff "$ROOT$STAP_RUNTIME.debian-orig/stp_task_work.c" "$ROOT$STAP_PATCHED_FILE" \
    | sed -n 's/^\([0-9][0-9,]*\)c.*/\1/p' | paste -sd, -)"
  echo "stap_original_runtime=$STAP_RUNTIME.debian-orig"
} >> "$OUT/build.env"
diff -u --label "a$STAP_PATCHED_FILE" --label "b$STAP_PATCHED_FILE" \
  "$ROOT$STAP_RUNTIME.debian-orig/stp_task_work.c" "$ROOT$STAP_PATCHED_FILE" > "$ROOT/etc/fdl-lab-stap-runtime.patch" || true
diff -u --label "a$KPROBES_FILE" --label "b$KPROBES_FILE" \
  "$ROOT$STAP_RUNTIME.debian-orig/linux/kprobes.c" "$ROOT$KPROBES_FILE" >> "$ROOT/etc/fdl-lab-stap-runtime.patch" || true
cp "$ROOT/etc/fdl-lab-stap-runtime.patch" "$OUT/stap-runtime.patch"

# What a user does with linux-source: unpack it under /usr/src. Only the files fleetdiag reads are
# unpacked (the whole tree is 1.3 GB); the tarball goes, and the source must be this very kernel's.
image_version=$(in_root dpkg-query -W -f='${Version}' "linux-image-$K")
source_version=$(in_root dpkg-query -W -f='${Version}' "linux-source-$SOURCE_SERIES")
[ "$image_version" = "$source_version" ] || {
  log "linux-source-$SOURCE_SERIES is $source_version but linux-image-$K is $image_version: refresh apt lists"; exit 1; }
tar -C "$ROOT/usr/src" -xJf "$ROOT/usr/src/linux-source-$SOURCE_SERIES.tar.xz" \
  "linux-source-$SOURCE_SERIES/Makefile" "linux-source-$SOURCE_SERIES/net/ipv4/tcp_ipv4.c" \
  "linux-source-$SOURCE_SERIES/net/ipv6/tcp_ipv6.c"
rm -f "$ROOT/usr/src/linux-source-$SOURCE_SERIES.tar.xz"
echo "kernel_source=/usr/src/linux-source-$SOURCE_SERIES" >> "$OUT/build.env"

echo fdl-guest > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 fdl-guest\n' > "$ROOT/etc/hosts"
echo '/dev/vda / ext4 defaults,noatime 0 0' > "$ROOT/etc/fstab"
# The address comes from the kernel command line (ip=ADDR:::MASK::eth0:off, written by vm.py)
# through systemd-network-generator, so one image serves any lab subnet. No route beyond the bridge.
in_root systemctl enable -q systemd-networkd systemd-network-generator
in_root systemctl mask -q systemd-networkd-wait-online apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap fstrim.timer man-db.timer

rm -f "$ROOT"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C fdl-guest-host -f "$ROOT/etc/ssh/ssh_host_ed25519_key"
cp "$ROOT/etc/ssh/ssh_host_ed25519_key.pub" "$OUT/"
cat > "$ROOT/etc/ssh/sshd_config.d/fdl-lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100
EOF
# More sshds, each in its own mount namespace, make the guest several hosts of one kernel release:
# port 2222 sees no kernel source (systemtap picks the tcp_add_backlog return probe there), and port
# 2223 has only systemtap-runtime (no stap, headers, debug symbols or source): it can run a module
# built elsewhere and nothing else of systemtap's. Same host key; known_hosts lists [addr]:port.
sshd_unit() {  # NAME PORT HIDDEN_PATHS
  cat > "$ROOT/etc/systemd/system/fdl-sshd-$1.service" <<UNIT
[Unit]
Description=fleetdiag lab: sshd on port $2 without $3
After=ssh.service
Wants=ssh.service

[Service]
ExecStart=/usr/sbin/sshd -D -p $2
InaccessiblePaths=$3
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
  in_root systemctl enable -q "fdl-sshd-$1.service"
}
sshd_unit nosource 2222 "/usr/src/linux-source-$SOURCE_SERIES"
sshd_unit runtime 2223 "/usr/src /usr/lib/debug /usr/bin/stap"
# Port 2224 sees no BTF (/sys/kernel/btf): bpftrace falls back to its kprobe tier and kernel headers there,
# as on a kernel built without CONFIG_DEBUG_INFO_BTF.
sshd_unit nobtf 2224 "/sys/kernel/btf"

ssh-keygen -q -t ed25519 -N '' -C fdl-guest-controller -f "$OUT/id_ed25519"
install -d -m 700 "$ROOT/root/.ssh"
install -m 600 "$OUT/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
in_root usermod -p '*' root  # no password at all: key login only

cp "$ROOT/boot/vmlinuz-$K" "$OUT/vmlinuz"
cp "$ROOT/boot/initrd.img-$K" "$OUT/initrd.img"
{
  echo "suite=$SUITE"
  echo "kernel_release=$K"
  echo "kernel_version=$(in_root dpkg-query -W -f='${Version}' "linux-image-$K")"
  echo "systemtap_version=$(in_root dpkg-query -W -f='${Version}' systemtap)"
  echo "bcc_version=$(in_root dpkg-query -W -f='${Version}' python3-bpfcc)"
  echo "bpftrace_version=$(in_root dpkg-query -W -f='${Version}' bpftrace)"
} >> "$OUT/build.env"

rm -f "$ROOT/usr/sbin/policy-rc.d"
umount "$ROOT/var/cache/apt/archives"
umount -R "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/*
mark seconds_configure

log "mkfs.ext4 -d into a sparse $IMAGE_SIZE image"
truncate -s "$IMAGE_SIZE" "$OUT/guest.ext4"
mkfs.ext4 -q -F -L fdlroot -d "$ROOT" "$OUT/guest.ext4"
echo "image_bytes_used=$(( $(stat -c %b "$OUT/guest.ext4") * 512 ))" >> "$OUT/build.env"
echo "rootfs_bytes=$(du -sb "$ROOT" | cut -f1)" >> "$OUT/build.env"
mark seconds_total
log "done in $(( $(date +%s) - START ))s"
