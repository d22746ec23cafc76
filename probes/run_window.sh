# fleetdiag: watch one window on this host with one probe, then leave nothing behind.
#
# The host enforces the window itself: the probe ends by its own timer and, as a
# backstop, `timeout` ends it @@LIFETIME@@ s after it starts, even if the controller
# or the SSH session is gone. Output is framed in "@@fleetdiag NAME" sections and
# printed only at the end; the probe's own output stays in a private temp dir until then.
@@SESSION@@

# A tracer needs tracefs; mount it only if nobody has, and unmount it after.
if [ @@TRACES@@ = 1 ] && [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ] &&
  [ -d /sys/kernel/tracing ] && [ "$(id -u)" = 0 ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && mounted=1
fi

@@FILES@@

# Tracers that compile first (systemtap) do it here, before the window: it opens at attach.
@@PREPARE@@

# The window's times: /proc/uptime, read with a builtin, against the epoch time taken once now.
# A sweep opens and closes every host's window at the same moment; nothing is forked for the
# clock then. bash 5 says the epoch time itself ($EPOCHREALTIME, "seconds.microseconds", read
# once: two reads could straddle a second); other shells ask `date`, a process per host that a
# sweep pays while the other hosts still connect.
read -r fd_up _ 2>/dev/null </proc/uptime || fail "cannot read /proc/uptime (the window's clock)"
fd_cs0=${fd_up%.*}${fd_up#*.} # centiseconds: /proc/uptime prints two decimals
fd_rt=${EPOCHREALTIME:-}
case $fd_rt in
  [0-9]*[.,][0-9][0-9][0-9][0-9][0-9][0-9]) # the decimal point follows the locale
    fd_us=${fd_rt#*[.,]}
    fd_ns0=$((${fd_rt%[.,]*} * 1000000000 + (1$fd_us - 1000000) * 1000)) ;;
  *) fd_ns0=$(date +%s%N) ;;
esac
case $fd_ns0 in '' | *[!0-9]*) fd_ns0=$(($(date +%s) * 1000000000)) ;; esac # a date without %N
# Sets $now (epoch seconds, as date +%s.%N prints them) and $now_cs (uptime, centiseconds).
clock() {
  read -r fd_up _ </proc/uptime
  now_cs=${fd_up%.*}${fd_up#*.}
  fd_ns=$((fd_ns0 + (now_cs - fd_cs0) * 10000000))
  fd_frac=$((fd_ns % 1000000000 + 1000000000))
  now=$((fd_ns / 1000000000)).${fd_frac#1}
}

# Section headers as files, so that one `cat` prints the whole result at the end.
echo '@@fleetdiag counters_after' >"$d/section.counters_after"
echo '@@fleetdiag probe_out' >"$d/section.probe_out"
if [ @@TRACES@@ = 1 ]; then echo '@@fleetdiag tcpext_samples' >"$d/tcpext"; fi
: >"$d/stop" # the window's closing read, by the stopper or the watcher (see close_window)

# In a sweep everything above runs while the other hosts still connect; the controller then
# says "go" to all at once (its window gate), so the windows start together and cheaply.
@@READY@@

start_probe() {
  # The file exists before the probe's own redirect makes it (in the background child), so the
  # attach loop below never reads a file that is not there yet.
  : >"$d/out"
  clock
  fd_launch_cs=$now_cs # `timeout`'s clock starts here: the stopper must read before it runs out
  FLEETDIAG_WINDOW_START_CS=${start_cs:-} @@ENV@@ timeout -s INT -k 2 @@LIFETIME@@ @@COMMAND@@ >"$d/out" 2>"$d/err" </dev/null &
  pid=$!
  # Stdin's EOF (a stop, or a dead controller) ends the window now: the watcher closes it as the
  # stopper would, through its own handle on the stop file (fd 4, the watcher's only; the temp
  # dir may be gone by then), and then stops the probe. fd_stopped_by is the watcher's own copy.
  exec 4>>"$d/stop"
  stop_on_stdin_eof "${1:-}"
  exec 4>&-
}
on_stdin_eof() {
  fd_stopped_by=stop
  # A controller that died took stdout with it: the stats then fail to print, and must not end
  # this subshell (SIGPIPE) before the probe gets its INT.
  trap '' PIPE
  # (Not when the stopper closed it first: its read is the window's end.)
  if [ ! -s /proc/self/fd/4 ]; then close_window /proc/self/fd/4; fi
  kill -INT "$pid" 2>/dev/null
}

# BPF tracers (@@STATS@@ = 1): the kernel keeps each program's run count and recursion misses
# only while the program is loaded, so at the window's end they are read from the fdinfo of
# the probe's own fds, and only then is the probe stopped (INT: it prints its maps as at its
# own timer, which stays as a backstop a little later). Lines: "prog ID TYPE RUN_CNT RUN_NS
# MISSES", "bpf_stats 0|1" (run counts need kernel.bpf_stats_enabled; fleetdiag never sets it),
# "stopped_by window|limit" (limit: the host's time limit came first, the window is shorter).
fd_stopped_by=window
probe_stats() {
  fd_stats=""
  for fd_p in "$@"; do
    for fd_f in /proc/"$fd_p"/fdinfo/*; do
      fd_id="" fd_t="-" fd_n="-" fd_ns="-" fd_m="-"
      { while read -r fd_k fd_v; do
        case $fd_k in
          prog_type:) fd_t=$fd_v ;; prog_id:) fd_id=$fd_v ;; run_time_ns:) fd_ns=$fd_v ;;
          run_cnt:) fd_n=$fd_v ;; recursion_misses:) fd_m=$fd_v ;;
        esac
      done <"$fd_f"; } 2>/dev/null
      # A BPF link's fdinfo names its program's prog_id too, with none of its counts: programs only.
      if [ -n "$fd_id" ] && [ "$fd_t" != - ]; then fd_stats="$fd_stats
prog $fd_id $fd_t $fd_n $fd_ns $fd_m"; fi
    done
  done
  fd_on=0
  { read -r fd_on </proc/sys/kernel/bpf_stats_enabled; } 2>/dev/null
  printf '@@fleetdiag probe_stats%s\nbpf_stats %s\nstopped_by %s\n' "$fd_stats" "$fd_on" "$fd_stopped_by"
}
# Sleeps until the host's uptime reaches $1 (centiseconds) in steps of a second at most, so none
# outlives the probe by more, and a TERM trap that kills $fd_sleep ends one at once. Fails when
# the probe is gone. (In the background subshells below, which set that trap.)
nap_until() {
  while clock && [ "$now_cs" -lt "$1" ]; do
    fd_left=$(($1 - now_cs))
    [ "$fd_left" -le 100 ] || fd_left=100
    sleep "$((fd_left / 100)).$((fd_left % 100 / 10))$((fd_left % 10))" </dev/null >/dev/null 2>&1 &
    fd_sleep=$!
    wait "$fd_sleep"
    fd_sleep=""
    kill -0 "$pid" 2>/dev/null || return 1
  done
}
# The window closes while the probe still watches: the counters are read first ("closed_at EPOCH",
# then TcpExt, into the stop file $1), then a BPF probe's programs (pids $2...), and only then may
# the probe stop. Read after it had stopped (bpftrace takes 0.2 s here to detach and print its
# maps), they counted drops that nothing traced or missed.
close_window() {
  clock
  { echo "closed_at $now"; cat /proc/net/netstat; } >"$1" 2>/dev/null
  shift
  if [ @@STATS@@ = 1 ]; then probe_stats "$pid" "$@"; else printf '@@fleetdiag probe_stats\nstopped_by %s\n' "$fd_stopped_by"; fi
}
stopper=""
stop_at_window_end() {
  [ @@TRACES@@ = 1 ] || return 0
  (
    # A TERM from the script ends its nap at once.
    fd_sleep=""
    trap 'if [ -n "$fd_sleep" ]; then kill "$fd_sleep" 2>/dev/null; fi; exit 0' TERM
    fd_end_cs=$((start_cs + @@STOP_AFTER@@ * 100))
    # A probe slow to attach (bpftrace 0.17 takes 16 s to its BEGIN in an emulated guest) reaches
    # the host's limit (`timeout`, @@LIFETIME@@ s from its launch) before the window's end: its INT
    # would stop the probe before the window closed (and unload BPF programs unread), so the window
    # closes a second before it instead.
    fd_limit_cs=$((fd_launch_cs + (@@LIFETIME@@ - 1) * 100))
    if [ "$fd_limit_cs" -lt "$fd_end_cs" ]; then fd_end_cs=$fd_limit_cs fd_stopped_by=limit; fi
    nap_until "$fd_end_cs" || exit 0
    # The tracer is the child of `timeout` ($pid).
    fd_kids=$(cat /proc/"$pid"/task/"$pid"/children 2>/dev/null) || fd_kids=""
    if [ -z "$fd_kids" ]; then
      for fd_s in /proc/[0-9]*/stat; do
        { read -r _ _ _ fd_pp _ <"$fd_s"; } 2>/dev/null || continue
        if [ "$fd_pp" = "$pid" ]; then fd_s=${fd_s#/proc/}; fd_kids="$fd_kids ${fd_s%/stat}"; fi
      done
    fi
    close_window "$fd_stop" $fd_kids
    kill -INT ${fd_kids:-$pid} 2>/dev/null
  ) &
  stopper=$!
}

# Traced tiers: the TcpExt counters at the end of every @@TL_INTERVAL@@ s interval but the last
# (the window's final read ends that one), so the timeline's counters telescope to the window's
# deltas. Lines "tcpext INDEX NAME=VALUE..." with only the counters that moved since the last
# line (all of them the first time); builtins only, one `sleep` per interval, and it ends with
# the window (or the probe) at the latest.
sampler=""
sample_tcpext() {
  [ @@TRACES@@ = 1 ] || return 0
  exec 3>>"$d/tcpext"
  (
    fd_sleep=""
    trap 'if [ -n "$fd_sleep" ]; then kill "$fd_sleep" 2>/dev/null; fi; exit 0' TERM
    fd_end_cs=$((start_cs + @@STOP_AFTER@@ * 100))
    fd_tick=$start_cs fd_k=0
    while :; do
      fd_tick=$((fd_tick + @@TL_INTERVAL@@ * 100))
      [ "$fd_tick" -lt "$fd_end_cs" ] || exit 0
      nap_until "$fd_tick" || exit 0
      fd_names="" fd_values=""
      { while read -r fd_h fd_rest; do
        if [ "$fd_h" = TcpExt: ]; then
          if [ -z "$fd_names" ]; then fd_names=$fd_rest; else fd_values=$fd_rest; break; fi
        fi
      done </proc/net/netstat; } 2>/dev/null
      fd_line="" fd_i=0
      set -- $fd_names
      for fd_v in $fd_values; do
        fd_i=$((fd_i + 1))
        eval "fd_o=\${fd_p$fd_i-}"
        if [ "$fd_v" != "$fd_o" ]; then
          fd_line="$fd_line $1=$fd_v"
          eval "fd_p$fd_i=\$fd_v"
        fi
        shift
      done
      if [ -n "$fd_line" ]; then echo "tcpext $fd_k$fd_line"; fi
      fd_k=$((fd_k + 1))
    done
  ) >&3 &
  sampler=$!
  exec 3>&-
}

# The files the report is printed from, by name until forget_files.
fd_before=$d/before fd_after_header=$d/section.counters_after fd_out_header=$d/section.probe_out
fd_out=$d/out fd_err=$d/err fd_tcpext=$d/tcpext fd_stop=$d/stop

# Once a probe has read its own files (it says @@attached), nothing of the window needs to stay
# on disk: the files the report needs are held open (fds 3-9, read back through /proc/self/fd by
# each process that inherits them: cat, head, sed) and the temp dir goes now. A session killed
# outright while a probe watches (SIGKILL, the OOM killer) then leaves nothing behind. (The
# counters tier's sampler may still be opening its script when its window opens: its dir goes
# at the end. `command`: a file that cannot be opened must not end the script.)
forget_files() {
  # (fd 3 is free once the sampler has started; the stopper writes the stop file through it.)
  command exec 3<"$fd_stop" 4<"$fd_before" 5<"$fd_after_header" 6<"$fd_out_header" 7<"$fd_out" 8<"$fd_err" \
    9<"$fd_tcpext" || return 0
  cd / && rm -rf "$d" && d=""
  fd_stop=/proc/self/fd/3 fd_before=/proc/self/fd/4 fd_after_header=/proc/self/fd/5 fd_out_header=/proc/self/fd/6
  fd_out=/proc/self/fd/7 fd_err=/proc/self/fd/8 fd_tcpext=/proc/self/fd/9
}

# The window opens with the TcpExt counters read.
open_window() {
  clock
  start=$now
  start_cs=$now_cs
  { echo '@@fleetdiag counters_before'; cat /proc/net/netstat; } >"$d/before" 2>/dev/null
}

if [ @@TRACES@@ = 1 ]; then
  # A tracer: the window opens when the probe says it is watching. Checked with builtins
  # (read, not grep): a sweep starts this on every host at once.
  attached() {
    while IFS= read -r line; do
      case $line in *@@attached*) return 0 ;; esac # bpftrace -f json wraps it in a JSON line
    done <"$d/out"
    return 1
  }
  start_probe "${1:-}"
  while ! attached; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  open_window
  sample_tcpext
  forget_files
  stop_at_window_end
else
  # The counters tier: they are the window's instrument, so it opens now; the sampler
  # starts after and keeps to the window's end (FLEETDIAG_WINDOW_START_CS).
  open_window
  start_probe "${1:-}"
fi

# --follow: once a second, the probe's new lines (at most 20, 4 KB each) and the
# namespace's drop counters, framed "@@live" so the sections below ignore them.
if [ "@@FOLLOW@@" = 1 ]; then
  live_counters() {
    clock
    awk -v t="$now" '/^TcpExt:/ {
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
    lines=$(wc -l <"$fd_out")
    if [ "$lines" -gt "$seen" ]; then
      sed -n "$((seen + 1)),${lines}p" "$fd_out" | head -n 20 | cut -c 1-4096 | sed 's/^/@@live probe /'
      seen=$lines
    fi
    live_counters
  done
fi
wait "$pid"
rc=$?
pid=""
if [ -n "$stopper" ]; then kill "$stopper" 2>/dev/null; stopper=""; fi
if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; sampler=""; fi
if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null; watcher=""; fi
clock
end=$now
echo '@@fleetdiag window'
echo "$start $end $rc"
# One process prints the rest, the TcpExt counters between the files that frame them: the
# closing read of the stopper or the watcher ("closed_at EPOCH", then the counters), or, when
# neither closed the window (the counters and systemtap tiers' own timers), the counters read now.
fd_after=/proc/net/netstat
if [ -s "$fd_stop" ]; then fd_after=$fd_stop; fi
cat "$fd_before" "$fd_after_header" "$fd_after" "$fd_out_header" "$fd_out" "$fd_tcpext" 2>/dev/null
echo '@@fleetdiag probe_err'
if [ -s "$fd_err" ]; then head -c 16384 "$fd_err"; fi
