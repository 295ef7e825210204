#!/usr/bin/env bash
# tail -f follows a record (SPEC 3: "an open descriptor sees the commits
# made to its record in place ... so tail -f follows a record"): each of
# 3 lines appended by other processes (echo >> log) shows in tail's output
# (within 10 s: a bound for a busy machine; the time it took is printed).
# tail polls a FUSE file system (no inotify there), so it runs with -s 0.2.
# Then the same with tail -F (by name), and after an in-place rewrite
# to a shorter content (> log) tail -f says the file was truncated and
# follows on.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
LOG=$MNT/log
OUT=$T/tail.out

# start_tail OUT ARGS...: tail ARGS in the background, its output to OUT
start_tail() {
	local out=$1
	shift
	: >"$out"
	tail "$@" >"$out" 2>&1 &
	TAIL_PID=$!
	BG_PIDS+=("$TAIL_PID")
}
stop_tail() {
	kill "$TAIL_PID" 2>/dev/null
	wait "$TAIL_PID" 2>/dev/null
}
# seen OUT LINE: LINE is a whole line of OUT
seen() {
	grep -qx -- "$2" "$1"
}

for mode in -f -F; do
	echo "start $mode" >"$LOG"
	start_tail "$OUT" -s 0.2 "$mode" "$LOG"
	check "await 10 \"seen '$OUT' 'start $mode'\"" \
		"tail $mode prints the existing line"
	for i in 1 2 3; do
		t0=$(date +%s%N)
		sh -c "echo 'line $i $mode' >>'$LOG'"
		await 10 "seen '$OUT' 'line $i $mode'"
		ok=$?
		ms=$((($(date +%s%N) - t0) / 1000000))
		check "[ $ok = 0 ]" \
			"tail $mode shows line $i, appended by another process (after $ms ms; tail printed: $(tr '\n' '|' <"$OUT"))"
	done
	check "[ \"\$(cat '$LOG')\" = \"\$(printf 'start $mode\nline 1 $mode\nline 2 $mode\nline 3 $mode')\" ]" \
		"the record holds the 4 lines ($(tr '\n' '|' <"$LOG"))"
	stop_tail
done

# a rewrite in place: tail -f notices the truncation and prints the rest
printf 'a\nb\n' >"$LOG"
start_tail "$OUT" -s 0.2 -f "$LOG"
check "await 10 \"seen '$OUT' b\"" "tail -f prints the record"
sh -c "printf 'n\n' >'$LOG'"
check "await 10 \"seen '$OUT' n\"" \
	"tail -f follows a rewrite in place (> log) by another process ($(tr '\n' '|' <"$OUT"))"
sh -c "echo after >>'$LOG'"
check "await 10 \"seen '$OUT' after\"" \
	"... and an append after it ($(tr '\n' '|' <"$OUT"))"
stop_tail

finish
