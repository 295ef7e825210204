#!/usr/bin/env bash
# -o sync=batch[:MS] (SPEC section 3): the mode shows in .recfs/status;
# a close returns once journaled and the version is read back at once
# (open, cat, ls, getfattr); fsync waits until it is durable; bad windows
# are refused; and the kill -9 campaign with --sync batch:20 loses and
# tears nothing (a kill keeps the page cache: the loss of the window and
# the prefix after a power cut are the unit suite batch's).
. "$(dirname "$0")/lib.sh"

status_sync() {
	sed -n 's/.*"sync":\({[^}]*}\).*/\1/p' "$MNT/.recfs/status"
}
durable() {
	sed -n 's/.*"durable":\([0-9]*\).*/\1/p' "$MNT/.recfs/status"
}

# ---- bad windows
for bad in batch:0 batch:60001 batch:x batch: fast; do
	out=$("$RECFS" "$T/nostore" "$T" -o create -o "sync=$bad" 2>&1)
	rc=$?
	check "[ $rc = 2 ] && grep -q 'sync=$bad: expected close, batch or batch:MS' <<<\"\$out\"" \
		"-o sync=$bad is refused with exit 2 and says why ($out)"
done
check "[ ! -e '$T/nostore' ]" "... and creates no store"

# ---- the default, then batch
mount_store || exit 1
check "[ \"\$(status_sync)\" = '{\"mode\":\"close\"}' ]" \
	".recfs/status: sync close by default ($(status_sync))"
umount_store
mount_store -o sync=batch || exit 1
check "[[ \"\$(status_sync)\" == '{\"mode\":\"batch\",\"ms\":100,'* ]]" \
	"-o sync=batch: batch, 100 ms by default ($(status_sync))"
umount_store
# a 5 s window: long enough that the check of a commit not durable yet
# is done inside it even on a busy machine
mount_store -o sync=batch:5000 || exit 1
check "[[ \"\$(status_sync)\" == '{\"mode\":\"batch\",\"ms\":5000,'* ]]" \
	"-o sync=batch:5000 ($(status_sync))"
seq 1 1000 >"$T/a"
check "cp '$T/a' '$MNT/a' && cmp '$T/a' '$MNT/a'" \
	"a record written is read back at once"
check "ls '$MNT' | grep -qx a" "... and listed"
check "[ \"\$(version '$MNT/a')\" = 1 ]" "... at version 1"
for i in 1 2 3; do printf 'line %s\n' "$i" >>"$MNT/a"; done
check "[ \"\$(tail -n1 '$MNT/a')\" = 'line 3' ] && [ \"\$(version '$MNT/a')\" = 4 ]" \
	"three appends in a row: version 4, the last line there"
printf 'new\n' >"$MNT/n" # not read back: reading it would wait for it
d0=$(durable)
r0=$(revision)
check "[ $d0 -lt $r0 ]" \
	"within the 5 s window a new commit is not durable yet (durable $d0 < revision $r0)"
check "dd if='$T/a' of='$MNT/b' conv=fsync status=none" "dd conv=fsync"
d1=$(durable)
r1=$(revision)
check "[ $d1 -ge $r1 ]" \
	"after fsync everything up to it is durable (durable $d1, revision $r1)"
printf 'late\n' >"$MNT/c"
r2=$(revision)
await 30 "[ \$(durable) -ge $r2 ]" # the window, and time to spare
check "[ \$(durable) -ge $r2 ]" "a commit becomes durable within the window"
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0"
check "'$RECFSCTL' verify '$STORE' >/dev/null" "verify is clean"
mount_store || exit 1
check "cmp '$T/a' <(head -n 1000 '$MNT/a') && [ \"\$(cat '$MNT/c')\" = late ]" \
	"everything is there after a remount with sync=close"
umount_store

# ---- kill -9 during a write load
src=$(cd "$(dirname "$0")/../.." && pwd)
"$src/tools/torture" --build "$RECFS_BUILD_ROOT" --no-build --sync batch:20 \
	--iterations 6 --run 1.5 >"$T/out" 2>&1
rc=$?
sed 's/^/# /' "$T/out"
line=$(tail -n 1 "$T/out")
check "[ $rc = 0 ]" "tools/torture --sync batch:20 --iterations 6 exits 0 ($line)"
check "[[ '$line' =~ ^iterations=6\ acked=[1-9][0-9]*\ lost=0\ torn=0\$ ]]" \
	"its summary: 6 iterations, changes acked, none lost or torn"
finish
