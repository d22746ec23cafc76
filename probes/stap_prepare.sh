# fleetdiag: check the probe points, then compile probe.stp into a kernel module, in this temp dir.
#
# Compiling takes seconds to minutes; the window opens only when staprun has loaded the module.
# points.txt lists each probe point and the variable it must offer ($sk).
set -u
while read -r var point; do
  [ -n "$point" ] || continue
  if ! stap -L "$point" 2>/dev/null | grep -qF "\$$var:"; then
    echo "stap -L finds no \$$var at $point on $(uname -r): the kernel source and debuginfo disagree" >&2
    exit 1
  fi
done <points.txt
exec stap -p4 -m fleetdiag_backlog -DMAXMAPENTRIES=@@MAXMAPENTRIES@@ -DMAXSTRINGLEN=64 probe.stp
