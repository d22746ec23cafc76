# fleetdiag: the keeper of one armed window (fleetdiag/arming.py starts it detached: setsid, nohup).
# $1 its private 0700 dir, $2 the start instant on this host's clock, $3 the pickup deadline
# (seconds after the window ends), $4 how long the window's stdin is held open.
#
# The window script (window.sh, the same run_window.sh a held session runs) waits for the
# instant, watches, and ends by its own timer and `timeout` backstop; its stdin is a fifo that
# `sleep` holds open, so killing that sleep (a fetch that stops early) ends the window now, as a
# held session's EOF does. Its output stays in the dir until a fetch takes it; a result nobody
# fetched goes with the dir at the pickup deadline, and the keeper with it.
a=$1
cd / || exit 1
echo $$ >"$a/keeper.pid"
mkfifo "$a/stop" || exit 1
sleep "$4" >"$a/stop" &
holder=$!
echo $holder >"$a/holder.pid"
FLEETDIAG_START=$2 FLEETDIAG_ARM_DIR=$a sh "$a/window.sh" stop-on-stdin-eof <"$a/stop" >"$a/result.part" 2>"$a/stderr"
echo $? >"$a/exit"
kill "$holder" 2>/dev/null
mv "$a/result.part" "$a/result"
sleep "$3"
rm -rf "$a"
