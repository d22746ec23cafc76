# fleetdiag: no tracer at all. Sample every TCP socket's memory counters (ss -tanm) through the
# window and report the sockets whose own drop counter (skmem d) moved.
#
# Lower fidelity than a probe, and reported as such: `d` counts every drop the socket saw
# (backlog full, receive buffer full, out-of-order pruning, filters...), samples miss what
# happened to a socket after its last sample (and before its first, taken as this starts,
# just after the window opened), and bl/r are sampled maxima, not values at a drop. The
# TcpExt counters around the window stay exact. PORT 0 means every port.
#
# Cheap on purpose (a sweep runs this on every host at once): one awk folds every sample in
# memory and prints one line per socket at the end; per sample only `ss` and `sleep` run.
set -u
duration=@@DURATION@@
interval=@@INTERVAL@@
port=@@PORT@@
# The timeline: the TcpExt counters are read at the end of every STEP s interval of the window,
# and ss runs every EVERY-th of them (interval = step * every).
step=@@TL_INTERVAL@@
every=@@SS_EVERY@@

# Each family costs ss a walk of the kernel's whole TCP hash table (about 1 ms here): skip
# IPv6's when this namespace has no IPv6 TCP socket (sockstat6, read with a builtin).
families() {
  fam=""
  while read -r proto _ n _; do
    if [ "$proto" = TCP6: ]; then [ "$n" = 0 ] && fam=-4; break; fi
  done 2>/dev/null </proc/net/sockstat6 || fam=-4 # no IPv6 at all
}

sample() {
  families
  if [ "$port" -eq 0 ]; then ss $fam -tanm; else ss $fam -tanm "( sport = :$port or dport = :$port )"; fi
  echo "@@sample"
}

# The TcpExt counters at the end of interval $1 (builtins only: this runs every second).
tcpext() {
  echo "@@tcpext $1"
  while IFS= read -r line; do
    case $line in TcpExt:*) echo "$line" ;; esac
  done 2>/dev/null </proc/net/netstat
}

# The host's uptime in centiseconds (a builtin read: no process per tick).
uptime_cs() {
  read -r up _ </proc/uptime
  now=${up%.*}${up#*.}
}

# Samples at the window's start, every interval after it, and at its end, on the clock
# (sleep only what is left to the next tick, so the samples' own time never stretches
# the window). A stop (INT from the window script) takes one last sample and ends the
# input, and the aggregator then reports.
sampler() {
  trap 'sample; exit 0' INT TERM
  uptime_cs
  start=${FLEETDIAG_WINDOW_START_CS:-$now} # when the window script opened the window
  end=$((start + duration * 100))
  tick=$start
  sample
  # Said by the shell on the probe's own stdout (fd 3), not by awk, which may buffer its output.
  echo "@@attached" >&3
  k=0
  while [ "$tick" -lt "$end" ]; do
    tick=$((tick + step * 100))
    k=$((k + 1))
    if [ "$tick" -gt "$end" ]; then tick=$end; fi
    uptime_cs
    left=$((tick - now))
    # A tick already past (a late start, a busy host) is skipped; the window's end never is.
    if [ "$left" -le 0 ] && [ "$tick" -lt "$end" ]; then continue; fi
    if [ "$left" -gt 0 ]; then
      cs=$((left % 100 + 100))
      sleep "$((left / 100)).${cs#1}"
    fi
    tcpext $((k - 1))
    if [ $((k % every)) -eq 0 ] || [ "$tick" -ge "$end" ]; then sample; fi
  done
}

# Per socket (local peer): the first and last d, the max r, bl and r+bl, and rb, tb. Sockets in
# the first sample start from their d then; later ones were born in the window and start from 0.
# Gone sockets are kept only if they dropped. The skmem:(...) block may follow the socket's line
# (older ss prints it on the next line).
aggregate() {
  # INT is ignored here (inherited through exec): the sampler's stop ends our input instead.
  trap '' INT
  exec awk -v interval="$interval" '
    function host(a) { sub(/:[^:]*$/, "", a); sub(/%.*/, "", a); gsub(/[][]/, "", a); return a }
    function port(a) { sub(/.*:/, "", a); return a == "*" ? 0 : a }
    function skmem(line,   n, parts, i, name) {
      if (!match(line, /skmem:\([^)]*\)/)) return
      mem = substr(line, RSTART + 7, RLENGTH - 8)
      split("", v)
      n = split(mem, parts, ",")
      for (i = 1; i <= n; i++) { name = parts[i]; sub(/[0-9]+$/, "", name); v[name] = substr(parts[i], length(name) + 1) }
    }
    function flush(   key, r, bl) {
      if (have && mem != "") {
        key = local " " peer; seen[key] = 1
        if (!(key in first)) { first[key] = samples == 0 ? v["d"] + 0 : 0; rmax[key] = 0; blmax[key] = 0; qmax[key] = 0 }
        last[key] = v["d"] + 0; r = v["r"] + 0; bl = v["bl"] + 0
        if (r > rmax[key]) rmax[key] = r
        if (bl > blmax[key]) blmax[key] = bl
        if (r + bl > qmax[key]) qmax[key] = r + bl
        rb[key] = v["rb"]; tb[key] = v["tb"]
      }
      have = 0; mem = ""
    }
    function end_sample(   key) {
      flush()
      for (key in first) if (!(key in seen) && last[key] <= first[key]) forget(key)
      split("", seen)
      samples++
    }
    function forget(key) { delete first[key]; delete last[key]; delete rmax[key]; delete blmax[key]; delete qmax[key]; delete rb[key]; delete tb[key] }
    # The TcpExt counters at the end of an interval: only those that moved since the last (all, the first time).
    /^@@tcpext / { tick = $2; header = 1; next }
    /^TcpExt:/ {
      if (header) { for (i = 2; i <= NF; i++) tname[i] = $i; header = 0; next }
      line = ""
      for (i = 2; i <= NF; i++) if (!(i in tlast) || tlast[i] != $i) { line = line " " tname[i] "=" $i; tlast[i] = $i }
      if (line != "") print "tcpext " tick line
      next
    }
    /^@@sample$/ { end_sample(); next }
    /^State/ { next }
    /^[A-Z]/ && NF >= 5 { flush(); local = $4; peer = $5; have = 1; skmem($0); next }
    /skmem:/ { skmem($0) }
    END {
      # A sample cut short by the stop counts for what it saw; its missing sockets are not taken as gone.
      print "interval " interval
      for (key in first) if (last[key] > first[key]) {
        split(key, k, " ")
        print "flow -", host(k[1]), port(k[1]), host(k[2]), port(k[2]), "SK_DROPS", last[key] - first[key], rb[key], tb[key], "-", blmax[key], rmax[key], qmax[key]
      }
      print "@@window_end"
    }'
}

# This shell only waits: a trapped INT lets the pipeline finish its report before we exit.
trap : INT TERM
exec 3>&1
sampler | aggregate 3>&-
