# fleetdiag: build the systemtap module once for this kernel release, print it, leave nothing behind.
#
# The controller ships what this prints (gzip, base64) to every host with the same release; they
# need only systemtap-runtime. The compile is bounded by `timeout` here on the host, and ends early
# when the controller closes our stdin (it asked to stop, or died).
@@SESSION@@

@@FILES@@

timeout -s INT -k 5 @@TIMEOUT@@ sh build.sh >build_out 2>build_err </dev/null &
pid=$!
stop_on_stdin_eof "${1:-}"
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
