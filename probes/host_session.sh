# fleetdiag: what every script that leaves files on a host starts with (run_window.sh,
# stap_build_host.sh): a private temp dir, one error section, and cleanup on any exit.
set -u
umask 077
d=""
pid=""
mounted=""
watcher=""

cleanup() {
  if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null; fi
  if [ -n "${stopper:-}" ]; then kill "$stopper" 2>/dev/null; fi
  if [ -n "${sampler:-}" ]; then kill "$sampler" 2>/dev/null; fi
  if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null
    sleep 1
    kill -KILL "$pid" 2>/dev/null
  fi
  if [ -n "$mounted" ]; then umount /sys/kernel/tracing 2>/dev/null; fi
  if [ -n "$d" ]; then rm -rf "$d"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP INT TERM PIPE

fail() {
  echo '@@fleetdiag error'
  echo "$1"
  exit 3
}

# The controller holds stdin open for the whole session (the script's $1 says so, passed
# here): EOF means it asked us to stop, or died. Then $pid gets INT now; results still print
# if anyone listens, and a dead reader ends the script through the PIPE trap. (An async
# list's stdin is /dev/null without job control, hence fd 3.)
on_stdin_eof() { kill -INT "$pid" 2>/dev/null; } # a script may say more (run_window.sh does)
stop_on_stdin_eof() {
  [ "$1" = stop-on-stdin-eof ] || return 0
  exec 3<&0
  (while read -r _ <&3; do :; done; on_stdin_eof) &
  watcher=$!
  exec 3<&-
}

d=$(mktemp -d "${TMPDIR:-/tmp}/fleetdiag.XXXXXXXX" 2>/dev/null) ||
  fail "no writable temp dir: mktemp -d failed in ${TMPDIR:-/tmp}"
cd "$d" || fail "cannot enter the temp dir $d"
