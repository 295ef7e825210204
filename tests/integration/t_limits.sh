#!/usr/bin/env bash
# A full disk fails the commit with ENOSPC and keeps the previous version;
# a record over -o max_record_size fails with EFBIG.
. "$(dirname "$0")/lib.sh"

# ---- ENOSPC: the store on an 8 MiB tmpfs
SMALL=$T/small
mount_tmpfs "$SMALL" 8m || { echo "Bail out! cannot mount a tmpfs"; exit 1; }
STORE=$SMALL/store
mount_store || exit 1
printf 'small and precious\n' >"$T/precious"
head -c $((16 << 20)) /dev/urandom >"$T/big"
check "cp '$T/precious' '$MNT/r'" "write a small record"
v=$(version "$MNT/r")
check "[ '$v' = 1 ]" "it is version 1"
jbytes=$(cat "$STORE"/journal/*.log | wc -c)
check "[ $jbytes -lt 65536 ]" \
	"on a small file system the journal writes no zeros ahead ($jbytes bytes)"
out=$(cp "$T/big" "$MNT/r" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cp of 16 MiB onto it fails"
check "grep -q 'No space left' <<<\"\$out\"" "... with 'No space left on device' ($out)"
check "cmp '$T/precious' '$MNT/r'" "the previous content is intact"
check "[ \"\$(version '$MNT/r')\" = 1 ]" "the previous version is intact"
out=$(cp "$T/big" "$MNT/new" 2>&1)
check "[ ! -e '$MNT/new' ] || [ \"\$(stat -c %s '$MNT/new')\" != $((16 << 20)) ]" \
	"a new record that did not fit is not there in full"
rm -f "$MNT/new" 2>/dev/null
check "cp '$T/precious' '$MNT/r2' && cmp '$T/precious' '$MNT/r2'" \
	"the store still takes small writes once the space is back"
check "printf 'more\n' >>'$MNT/r' && [ \"\$(tail -n1 '$MNT/r')\" = more ] && [ \"\$(version '$MNT/r')\" = 2 ]" \
	"the record takes a new version after the failed one"
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0"
check "[ -z \"\$(ls -A '$STORE/tmp')\" ]" \
	"no stage of the failed writes is left in STORE/tmp ($(ls -A "$STORE/tmp" | head -3 | tr '\n' ' '))"
mount_store || exit 1
check "[ \"\$(head -n1 '$MNT/r')\" = 'small and precious' ] && [ \"\$(version '$MNT/r')\" = 2 ]" \
	"the record is intact after a remount"
umount_store

# ---- EFBIG: -o max_record_size=1M
STORE=$T/store-efbig
mount_store -o max_record_size=1M || exit 1
head -c $((2 << 20)) /dev/urandom >"$T/2m"
head -c $((1 << 20)) /dev/urandom >"$T/1m"
check "cp '$T/precious' '$MNT/r'" "write a small record"
out=$(cp "$T/2m" "$MNT/r" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cp of 2 MiB with max_record_size=1M fails"
check "grep -q 'File too large' <<<\"\$out\"" "... with 'File too large' ($out)"
check "cmp '$T/precious' '$MNT/r' && [ \"\$(version '$MNT/r')\" = 1 ]" \
	"the previous version is intact"
check "cp '$T/1m' '$MNT/exact' && cmp '$T/1m' '$MNT/exact'" \
	"a record of exactly 1 MiB is accepted"
out=$(truncate -s 2M "$MNT/r" 2>&1)
check "grep -q 'File too large' <<<\"\$out\" && cmp '$T/precious' '$MNT/r'" \
	"truncate -s 2M fails with EFBIG and changes nothing ($out)"
out=$( { head -c $((600 << 10)) /dev/zero >>"$MNT/exact"; } 2>&1)
check "grep -q 'File too large' <<<\"\$out\" && cmp '$T/1m' '$MNT/exact'" \
	"an append past the limit fails with EFBIG and changes nothing ($out)"

# ---- the daemon holds no descriptor per record read: `grep -r` over more
# records than its open-file limit works (it held one per record read, and
# failed with EMFILE after 20,000 records read)
mkdir -p "$T/many"
for ((i = 0; i < 2000; i++)); do printf '%d\n' "$i" >"$T/many/m$i"; done
"$RECFSCTL" import "$MNT" "$T/many" >/dev/null 2>&1
pid=${DAEMON_PID[$MNT]}
before=$(ls "/proc/$pid/fd" | wc -l)
check "cat '$MNT'/m* | wc -l | grep -qx 2000" "cat of 2,000 records through the mount"
after=$(ls "/proc/$pid/fd" | wc -l)
check "[ $after -lt $((before + 50)) ]" \
	"... leaves the daemon's open descriptors as they were ($before before, $after after)"
exec 7<"$MNT/m1"
held=$(ls "/proc/$pid/fd" | wc -l)
check "[ \"\$(cat <&7)\" = 1 ] && [ $held -le $((after + 1)) ]" \
	"an open descriptor holds at most one ($held)"
exec 7<&-

finish
