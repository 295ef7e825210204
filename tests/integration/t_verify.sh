#!/usr/bin/env bash
# recfsctl verify without --repair changes nothing in the store (SPEC 7):
# not on a clean store, and not on one left by kill -9 (a stale lock of a
# dead pid, journal records after the index snapshot, a torn journal
# tail), where opening it for writing would recover the lock, cut the
# tail, checkpoint and write the history. Where verifying needs a write
# (a record the journal has not put in place yet), it says so and exits
# non-zero; --repair then does the writes.
. "$(dirname "$0")/lib.sh"

# Every file and directory of the store: type, size, mtime, mode, content.
snap() {
	(
		cd "$STORE" || exit 1
		find . -printf '%y %p %s %T@ %m\n' | sort
		find . -type f -print0 | sort -z | xargs -0 sha256sum
	)
}

verify() {
	"$RECFSCTL" verify "$@" "$STORE" >"$T/out" 2>&1
	RC=$?
}

# ---- a clean store
mount_store || exit 1
for i in 1 2 3; do echo "record $i" >"$MNT/r$i"; done
echo "again" >"$MNT/r1"
head -c $((3 << 20)) /dev/urandom >"$MNT/big" # by reference
mkdir "$MNT/ns" && echo inner >"$MNT/ns/x"
umount_store
snap >"$T/before"
verify
check "[ $RC = 0 ]" "verify of a clean store: exit 0 ($(tail -1 "$T/out"))"
snap >"$T/after"
check "diff '$T/before' '$T/after'" "... and every file of the store is as it was"

# ---- after kill -9: stale lock, journal past the snapshot, torn tail
mount_store || exit 1
for i in 1 2 3 4 5; do echo "late $i" >"$MNT/r$i"; done
rm "$MNT/r2"
mv "$MNT/r3" "$MNT/r6"
kill -KILL "${DAEMON_PID[$MNT]}"
wait_daemon "$MNT"
fusermount3 -uz "$MNT" 2>/dev/null
check "grep -q '\"pid\"' '$STORE/lock'" "kill -9 left the lock record of a dead pid"
seg=$(ls "$STORE"/journal/*.log | sort | tail -1)
check "[ -n '$seg' ]" "the journal has a segment ($seg)"
printf 'torn\001\002\003' >>"$seg"
snap >"$T/before"
verify
check "[ $RC = 0 ]" "verify after kill -9 with a torn tail: exit 0 ($(tr '\n' ' ' <"$T/out"))"
snap >"$T/after"
check "diff '$T/before' '$T/after'" \
	"... and every file is as it was: lock, journal tail, index, history"
check "tail -c 7 '$seg' | grep -q torn" "... the torn tail is still there"

# a record the journal has not put in place: verify needs a write
printf 'not what the journal says\n' >"$STORE/records/r4"
snap >"$T/before"
verify
check "[ $RC = 1 ] && grep -q 'r4' '$T/out' && grep -q -- '--repair' '$T/out'" \
	"a record recovery has to write: verify exits 1, naming it and --repair ($(tr '\n' ' ' <"$T/out"))"
snap >"$T/after"
check "diff '$T/before' '$T/after'" "... and writes nothing"
verify --repair
check "[ $RC = 0 ]" "verify --repair recovers and repairs ($(tail -1 "$T/out"))"
check "[ \"\$(cat '$STORE/records/r4')\" = 'late 4' ]" "... r4 holds its journaled version"
check "[ ! -s '$STORE/lock' ] && ! tail -c 7 '$seg' 2>/dev/null | grep -q torn" \
	"... the lock is released and the torn tail cut"
verify
check "[ $RC = 0 ]" "verify is clean afterwards"

mount_store || exit 1
check "[ \"\$(cat '$MNT/r6')\" = 'late 3' ] && [ ! -e '$MNT/r2' ] && [ \"\$(cat '$MNT/r5')\" = 'late 5' ]" \
	"the store mounts with every acknowledged change"
umount_store
finish
