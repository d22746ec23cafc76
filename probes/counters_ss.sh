# fleetdiag: no tracer at all. Sample every TCP socket's memory counters (ss -tanm) through the
# window and report the sockets whose own drop counter (skmem d) moved.
#
# Lower fidelity than a probe, and reported as such: `d` counts every drop the socket saw
# (backlog full, receive buffer full, out-of-order pruning, filters...), samples miss what
# happened to a socket after its last sample, and bl/r are sampled maxima, not values at a
# drop. The TcpExt counters around the window stay exact. Aggregated here, on the host, one
# line per socket, so the output stays small. PORT 0 means every port.
set -u
duration=@@DURATION@@
interval=@@INTERVAL@@
port=@@PORT@@
state=agg.txt
: >"$state"

sample() {
  if [ "$port" -eq 0 ]; then ss -tanm; else ss -tanm "( sport = :$port or dport = :$port )"; fi
}

# One line per socket: local peer r rb tb bl d. The skmem:(...) block may follow the
# socket's line (older ss prints it on the next line).
flatten() {
  awk '
    function flush() { if (have && mem != "") print local, peer, v["r"], v["rb"], v["tb"], v["bl"], v["d"]; have = 0; mem = "" }
    function skmem(line,   n, parts, i, name) {
      if (!match(line, /skmem:\([^)]*\)/)) return
      mem = substr(line, RSTART + 7, RLENGTH - 8)
      split("", v)
      n = split(mem, parts, ",")
      for (i = 1; i <= n; i++) { name = parts[i]; sub(/[0-9]+$/, "", name); v[name] = substr(parts[i], length(name) + 1) }
    }
    /^State/ { next }
    /^[A-Z]/ && NF >= 5 { flush(); local = $4; peer = $5; have = 1; skmem($0); next }
    /skmem:/ { skmem($0) }
    END { flush() }'
}

# Fold a sample into the state: per socket the first and last d, the max r, bl and r+bl.
# Sockets in the first sample start from their d then; later ones were born in the window.
fold() {
  sample | flatten | awk -v first="$1" -v state="$state" '
    BEGIN { while ((getline old < state) > 0) { split(old, s, " "); line[s[1] " " s[2]] = old } close(state) }
    {
      key = $1 " " $2; seen[key] = 1
      if (key in line) { split(line[key], s, " ") } else { s[3] = first ? $7 : 0; s[5] = 0; s[6] = 0; s[7] = 0 }
      r = $3 + 0; bl = $6 + 0
      line[key] = sprintf("%s %s %d %d %d %d %d %d %d", $1, $2, s[3], $7, (r > s[5] ? r : s[5]), (bl > s[6] ? bl : s[6]), (r + bl > s[7] ? r + bl : s[7]), $4, $5)
    }
    # Gone sockets are kept only if they dropped: they still count, the others are forgotten.
    END { for (key in line) { split(line[key], s, " "); if ((key in seen) || s[4] > s[3]) print line[key] } }
  ' >"$state.new" && mv "$state.new" "$state"
}

report() {
  fold 0
  echo "interval $interval"
  awk '
    function host(a) { sub(/:[^:]*$/, "", a); sub(/%.*/, "", a); gsub(/[][]/, "", a); return a }
    function port(a) { sub(/.*:/, "", a); return a == "*" ? 0 : a }
    $4 > $3 { print "flow -", host($1), port($1), host($2), port($2), "SK_DROPS", $4 - $3, $8, $9, "-", $6, $5, $7 }
  ' "$state"
  echo "@@window_end"
  exit 0
}
trap report INT TERM

fold 1
echo "@@attached"
end=$(($(date +%s) + duration))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep "$interval"
  fold 0
done
report
