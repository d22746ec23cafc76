# fleetdiag: watch one window on this host with one probe, then leave nothing behind.
#
# The host enforces the window itself: the probe ends by its own timer and, as a
# backstop, `timeout` ends it @@LIFETIME@@ s after it starts, even if the controller
# or the SSH session is gone. Output is framed in "@@fleetdiag NAME" sections and
# printed only at the end; the probe's own output stays in a private temp dir until then.
@@SESSION@@

# The tracers need tracefs; mount it only if nobody has, and unmount it after.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ] &&
  [ -d /sys/kernel/tracing ] && [ "$(id -u)" = 0 ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && mounted=1
fi

@@FILES@@

# Tracers that compile first (systemtap) do it here, before the window: it opens at attach.
@@PREPARE@@

# In a sweep everything above runs while the other hosts still connect; the controller then
# says "go" to all at once (its window gate), so the windows start together and cheaply.
@@READY@@

@@ENV@@ timeout -s INT -k 2 @@LIFETIME@@ @@COMMAND@@ >"$d/out" 2>"$d/err" </dev/null &
pid=$!

# Stdin's EOF (a stop, or a dead controller) ends the window now.
stop_on_stdin_eof "${1:-}"

# The window opens when the probe says it is watching; the counters are read then.
# Checked with builtins (read, not grep): a sweep starts this on every host at once.
attached() {
  while IFS= read -r line; do
    case $line in *@@attached*) return 0 ;; esac # bpftrace -f json wraps it in a JSON line
  done <"$d/out"
  return 1
}
while ! attached; do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
start=$(date +%s.%N)
{ echo '@@fleetdiag counters_before'; cat /proc/net/netstat; } >"$d/before" 2>/dev/null

# --follow: once a second, the probe's new lines (at most 20, 4 KB each) and the
# namespace's drop counters, framed "@@live" so the sections below ignore them.
if [ "@@FOLLOW@@" = 1 ]; then
  live_counters() {
    awk -v t="$(date +%s.%N)" '/^TcpExt:/ {
      if (!named) { for (i = 2; i <= NF; i++) name[i] = $i; named = 1; next }
      line = "@@live tcpext " t
      for (i = 2; i <= NF; i++) if (name[i] ~ /Drop|Prune|Collapsed|MemoryPressures|Overflow/) line = line " " name[i] "=" $i
      print line
    }' /proc/net/netstat
  }
  live_counters
  seen=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    lines=$(wc -l <"$d/out")
    if [ "$lines" -gt "$seen" ]; then
      sed -n "$((seen + 1)),${lines}p" "$d/out" | head -n 20 | cut -c 1-4096 | sed 's/^/@@live probe /'
      seen=$lines
    fi
    live_counters
  done
fi
wait "$pid"
rc=$?
pid=""
if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null; watcher=""; fi
end=$(date +%s.%N)
{ echo '@@fleetdiag counters_after'; cat /proc/net/netstat; echo '@@fleetdiag probe_out'; } >"$d/after" 2>/dev/null

echo '@@fleetdiag window'
echo "$start $end $rc"
cat "$d/before" "$d/after" "$d/out"
echo '@@fleetdiag probe_err'
if [ -s "$d/err" ]; then head -c 16384 "$d/err"; fi
