#!/usr/bin/env bash
# A full disk (SPEC section 8, issue 17). The store is on a 16 MiB tmpfs
# (no blocks reserved for root there, unlike ext4): records are written
# until a commit fails with ENOSPC, then a file next to the store takes
# what is left, as another program would, so that nothing is free. A
# commit then fails with ENOSPC and keeps the previous version; the
# history writer backs off without spinning; and without unmounting,
# renames and the rm of the records work (the store's space reserve), the
# history catches up, df shows the space freed, new commits succeed, and
# nothing acknowledged is lost: the records left read back exactly, the
# deleted ones from the history. Then, full again: unmount and mount work
# (the reserve goes to the open), and `recfsctl verify` is ok offline.
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null || { echo "Bail out! jq is not installed"; exit 2; }
if plain; then
	echo "1..0 # SKIP the space reserve and the history are recfs's"
	exit 0
fi

SMALL=$T/small
mount_tmpfs "$SMALL" 16m || { echo "Bail out! cannot mount a tmpfs"; exit 1; }
STORE=$SMALL/store
SRC=$T/src
mkdir -p "$SRC"
mount_store || exit 1
PID=${DAEMON_PID[$MNT]}
LOG=$(daemon_log)

df_avail() { df -k --output=avail "$SMALL" | tail -n1 | tr -d ' '; }
df_line() { df -k "$SMALL" | tail -n1; }
status() { cat "$MNT/.recfs/status"; }
lag() { status | jq -r .history.lag; }
space() { status | jq -r ".space.$1"; }
# user + system clock ticks of the daemon so far
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
drained() {
	setfattr -n user.recfs.ctl.drain -v 2000 "$MNT" 2>/dev/null ||
		sleep 0.5
	[[ $(lag) == 0 ]]
}

printf 'precious, version 1\n' >"$SRC/keep"
check "cp '$SRC/keep' '$MNT/keep'" "write a small record"
check "cp '$SRC/keep' '$MNT/moved'" "and one to rename later"
reserve=$(space reserve)
note "space reserve: $reserve bytes, $(space reserve_state)"
check "[ '$(space reserve_state)' = held ] && [ $reserve -gt 0 ]" \
	"the status shows the space reserve held ($reserve bytes)"
check "[ \"\$(stat -c %s '$STORE/reserve')\" = '$reserve' ]" \
	"STORE/reserve holds it"
note "df at the start:  $(df_line)"

# ---- fill it: records of 512 KiB of random bytes (git cannot compress
# them) until a cp fails; each acknowledged one is remembered
ACKED=()
err=
for ((i = 1; i <= 64; i++)); do
	head -c $((512 << 10)) /dev/urandom >"$SRC/f$i"
	if out=$(cp "$SRC/f$i" "$MNT/f$i" 2>&1); then
		ACKED+=("f$i")
	else
		err=$out
		break
	fi
done
note "${#ACKED[@]} records of 512 KiB acknowledged, then: $err"
check "[ -n \"\$err\" ] && grep -q 'No space left' <<<\"\$err\"" \
	"filling the store ends with a cp that fails with ENOSPC ($err)"
# What is left goes to another file on that file system. The history
# writer's files of a failed batch come and go: top up until it stays full.
top_up() {
	dd if=/dev/zero bs=4k oflag=append conv=notrunc \
		of="$SMALL/filler" 2>/dev/null
	sleep 0.3
	(($(df_avail) == 0))
}
await 20 "top_up && top_up"
avail_full=$(df_avail)
note "df when full:     $(df_line)"
check "[ $avail_full -lt 64 ]" "the file system is full (${avail_full} KiB free)"

head -c $((2 << 20)) /dev/urandom >"$SRC/big"
out=$(cp "$SRC/big" "$MNT/keep" 2>&1)
rc=$?
check "[ $rc -ne 0 ] && grep -q 'No space left' <<<\"\$out\"" \
	"cp of 2 MiB onto a record fails with ENOSPC ($out)"
check "cmp '$SRC/keep' '$MNT/keep' && [ \"\$(version '$MNT/keep')\" = 1 ]" \
	"... and the record keeps its previous version"
check "grep -q 'record keep: commit failed: .*ENOSPC' '$LOG'" \
	"the log names the record and ENOSPC"

# ---- the history writer backs off; the status says why
await 10 "status | jq -e '.history.state | test(\"No space\")' >/dev/null"
check "status | jq -e '.history.state | test(\"No space\")' >/dev/null" \
	"the history's state names ENOSPC ($(status | jq -c .history))"
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks)
sleep 5
t1=$(cpu_ticks)
note "daemon CPU while full: $((t1 - t0)) ticks of 1/$hz s in 5 s"
check "[ $((t1 - t0)) -le $((hz / 4)) ]" \
	"the daemon uses under 5% of a CPU while the disk is full ($((t1 - t0)) ticks in 5 s)"
check "grep -q 'history of revisions .*ENOSPC' '$LOG'" "the log names ENOSPC for the history"
n=$(grep -c 'is not written yet' "$LOG")
check "[ $n -le 2 ]" "... once, not once per try ($n lines)"
check "! grep -qi 'unknown error' '$LOG'" "the log has no 'unknown error'"

# ---- free space from inside the mount
# each rename appends to the journal: 64 of them need more than the
# slack of its last page, so the reserve must give them room
bad=0
for ((k = 0; k < 32; k++)); do
	mv "$MNT/moved" "$MNT/moved2" || bad=$((bad + 1))
	mv "$MNT/moved2" "$MNT/moved" || bad=$((bad + 1))
done
check "[ $bad = 0 ] && mv '$MNT/moved' '$MNT/moved2'" \
	"65 renames of a record on the full disk work ($bad failed)"
bad=0
for f in "${ACKED[@]}"; do
	rm "$MNT/$f" || bad=$((bad + 1))
done
check "[ $bad = 0 ]" "rm of all ${#ACKED[@]} records on the full disk works ($bad failed)"
check "[ \"\$(space released)\" -ge 1 ] && [ \"\$(space last_error)\" = ENOSPC ]" \
	"the status shows the reserve was released, and ENOSPC ($(status | jq -c .space))"
check "grep -q 'released the space reserve' '$LOG'" "the log says the reserve was used"
check "await 60 drained" "the history catches up (drain, status lag $(lag))"
check "status | jq -e '.history.state == \"ok\"' >/dev/null" \
	"the history's state is ok again ($(status | jq -c .history))"
avail_after=$(df_avail)
note "df after the rm:  $(df_line)"
note "df available: ${avail_full} KiB when full, ${avail_after} KiB after the rm"
check "[ $avail_after -ge $((avail_full + 4096)) ]" \
	"df shows at least 4 MiB more free after the rm ($avail_full -> $avail_after KiB)"
check "cp '$SRC/big' '$MNT/keep' && cmp '$SRC/big' '$MNT/keep'" \
	"a new commit succeeds"
check "[ \"\$(version '$MNT/keep')\" = 2 ]" "... as version 2"

# ---- nothing acknowledged is lost
bad=0
for f in "${ACKED[@]}"; do
	cmp -s "$SRC/$f" "$MNT/.recfs/history/$f/1" || bad=$((bad + 1))
done
check "[ $bad = 0 ]" \
	"every deleted record reads back exactly from the history ($bad bad)"
check "cmp '$SRC/keep' '$MNT/moved2'" "the renamed record reads back"
check "cmp '$SRC/keep' '$MNT/keep@1'" "keep@1 reads back"

# ---- the reserve comes back when there is room
rm -f "$SMALL/filler"
printf 'room again\n' >"$SRC/again"
check "cp '$SRC/again' '$MNT/again'" "a commit once the filler is gone"
check "[ \"\$(space reserve_state)\" = held ] && [ \"\$(stat -c %s '$STORE/reserve')\" = '$reserve' ]" \
	"the reserve is held again ($(status | jq -c .space))"

# ---- full again: unmount and mount work
MORE=()
for ((i = 1; i <= 64; i++)); do
	head -c $((512 << 10)) /dev/urandom >"$SRC/g$i"
	cp "$SRC/g$i" "$MNT/g$i" 2>/dev/null || break
	MORE+=("g$i")
done
await 20 "top_up && top_up"
note "full again:       $(df_line)"
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "unmount on the full disk works, the daemon exits 0"
mounted=0
mount_store && mounted=1
check "[ $mounted = 1 ]" "the store mounts again on the full disk"
((mounted)) || finish
LOG=$(daemon_log)
check "grep -q 'space reserve of .* goes to opening the store' '$LOG'" \
	"... with its reserve (logged)"
note "after the mount:  $(df_line), reserve $(space reserve_state)"
bad=0
for f in "${MORE[@]}"; do
	cmp -s "$SRC/$f" "$MNT/$f" || bad=$((bad + 1))
done
check "[ $bad = 0 ] && cmp '$SRC/big' '$MNT/keep'" \
	"the ${#MORE[@]} records written before it read back ($bad bad)"
# (no 512 KiB file may have fitted after the reserve came back: then the
# record written before it is the one removed)
check "rm '$MNT/${MORE[0]:-again}'" "rm works after that mount"

umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "unmount works, the daemon exits 0"
check "'$RECFSCTL' verify '$STORE' >'$T/verify' 2>&1" \
	"recfsctl verify STORE is ok ($(tail -n1 "$T/verify" 2>/dev/null))"
finish
