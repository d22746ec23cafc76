# fleetdiag: check the probe points, then compile probe.stp into fleetdiag_backlog.ko, in this temp dir.
#
# Compiling takes seconds to minutes: in a window script the window opens only when staprun has
# loaded the module; stap_build_host.sh runs it once for every host of a kernel release.
# points.txt lists each probe point and the variable it must offer ($sk).
# On the controller (--stap-kernel), FD_STAP_KERNEL is the release or build tree to compile for
# (stap -r) and FD_STAP_RELEASE the release it is; on a host both are unset: its own kernel.
set -u
set --
[ -n "${FD_STAP_KERNEL:-}" ] && set -- -r "$FD_STAP_KERNEL"
release=${FD_STAP_RELEASE:-$(uname -r)}
# stap's cache (default ~/.systemtap) goes into this temp dir, removed with it after the window.
SYSTEMTAP_DIR="$PWD/systemtap-cache"
export SYSTEMTAP_DIR
while read -r var point; do
  [ -n "$point" ] || continue
  if ! stap "$@" -L "$point" 2>/dev/null | grep -qF "\$$var:"; then
    echo "stap -L finds no \$$var at $point on $release: the kernel source and debuginfo disagree" >&2
    exit 1
  fi
done <points.txt
if ! stap "$@" -p4 -m fleetdiag_backlog -DMAXMAPENTRIES=@@MAXMAPENTRIES@@ -DMAXSTRINGLEN=64 probe.stp 2>stap.err; then
  # A known break: stable kernels changed task_work_cancel under systemtap 4.8's runtime.
  # Said first, so it is the sentence the host's error shows.
  if grep -q task_work_cancel stap.err; then
    echo "systemtap's runtime does not build for $release (task_work_cancel changed): update systemtap" >&2
  fi
  # Another: 5.10.2xx stopped exporting module_mutex, which systemtap before 4.5 takes.
  if grep -q '"module_mutex" .* undefined' stap.err; then
    echo "systemtap's runtime does not build for $release (module_mutex is no longer exported): update systemtap" >&2
  fi
  grep -v '^Tip: ' stap.err >&2
  exit 1
fi
