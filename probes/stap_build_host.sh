# fleetdiag: build the systemtap module once for this kernel release, print it, leave nothing behind.
#
# The controller ships what this prints (gzip, base64) to every host with the same release; they
# need only systemtap-runtime. The compile is bounded by `timeout` here on the host, and ends early
# when the controller closes our stdin (it asked to stop, or died).
set -u
umask 077
d=""
pid=""
watcher=""
cleanup() {
  if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null; fi
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null; fi
  if [ -n "$d" ]; then rm -rf "$d"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP INT TERM PIPE
fail() {
  echo '@@fleetdiag error'
  echo "$1"
  exit 3
}
d=$(mktemp -d "${TMPDIR:-/tmp}/fleetdiag.XXXXXXXX" 2>/dev/null) ||
  fail "no writable temp dir: mktemp -d failed in ${TMPDIR:-/tmp}"
cd "$d" || fail "cannot enter the temp dir $d"

@@FILES@@

timeout -s INT -k 5 @@TIMEOUT@@ sh build.sh >build_out 2>build_err </dev/null &
pid=$!
if [ "${1:-}" = stop-on-stdin-eof ]; then
  exec 3<&0
  (while read -r _ <&3; do :; done; kill -INT "$pid" 2>/dev/null) &
  watcher=$!
  exec 3<&-
fi
wait "$pid"
rc=$?
pid=""
if [ "$rc" != 0 ] || [ ! -s fleetdiag_backlog.ko ]; then
  why=$(grep -v '^Tip: ' build_err | grep -i -m 2 -E 'error|does not build|finds no' | tr '\n' ' ')
  [ -n "$why" ] || why=$(grep -v '^Tip: ' build_err | tail -n 3 | tr '\n' ' ')
  [ "$rc" = 124 ] && why="the compile did not finish within @@TIMEOUT@@ s"
  fail "systemtap module build failed on $(uname -r): ${why:-exit code $rc}"
fi
echo '@@fleetdiag module'
gzip -9c fleetdiag_backlog.ko | base64
