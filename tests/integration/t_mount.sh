#!/usr/bin/env bash
# Mounting: .recfs/status is JSON with a revision, .recfs is hidden from
# readdir, the store lock names its holder, a newer format version and a
# missing mount point are refused with a clear message.
. "$(dirname "$0")/lib.sh"

json_ok() {
	if command -v jq >/dev/null 2>&1; then
		jq -e . "$1" >/dev/null
	else
		python3 -m json.tool "$1" >/dev/null
	fi
}

mount_store || exit 1
pid=${DAEMON_PID[$MNT]}
echo one >"$MNT/a"
echo two >"$MNT/b"
cat "$MNT/.recfs/status" >"$T/status.json" 2>&1
check "json_ok '$T/status.json'" "cat .recfs/status is valid JSON ($(head -c 200 "$T/status.json"))"
check "python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d[\"revision\"], int) else 1)' '$T/status.json'" \
	"status has an integer revision field"
check "[ \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"revision\"])' '$T/status.json')\" = \"\$(revision)\" ]" \
	"status revision equals the root's user.recfs.revision"
check "python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d.get(\"records\") == 2 else 1)' '$T/status.json'" \
	"status counts 2 records"
check "! ls -a '$MNT' | grep -qx .recfs" "ls -a does not list .recfs"
check "[ -d '$MNT/.recfs' ]" ".recfs can still be entered"
check "ls '$MNT/.recfs' | grep -qx status" "ls .recfs lists status"
check "! { echo x >'$MNT/.recfs/status'; } 2>/dev/null" ".recfs/status cannot be written"
check "! rm '$MNT/.recfs/status' 2>/dev/null && ! rmdir '$MNT/.recfs' 2>/dev/null" \
	".recfs cannot be removed"
check "! find '$MNT' -name .recfs | grep -q ." "find does not descend into .recfs"

# a second mount of the same store names the lock holder
mkdir -p "$T/mnt2"
out=$(timeout 20 "$RECFS" "$STORE" "$T/mnt2" -f 2>&1)
rc=$?
check "[ $rc -ne 0 ] && ! mountpoint -q '$T/mnt2'" "a second recfs of the same store fails"
check "grep -q 'pid $pid' <<<\"\$out\"" "... naming the holder's pid $pid ($out)"
check "grep -qi 'lock' <<<\"\$out\"" "... and saying the store is locked"
check "[ \"\$(cat '$MNT/a')\" = one ]" "the first mount is unaffected"
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0 at unmount"
check "tail -n1 '$(daemon_log)' | grep -q shutdown" "the log ends with a shutdown line"

# snapdir=visible lists .recfs; ro refuses writes
mount_store -o snapdir=visible || exit 1
check "ls -a '$MNT' | grep -qx .recfs" "-o snapdir=visible: ls -a lists .recfs"
umount_store
mount_store -o ro || exit 1
check "[ \"\$(cat '$MNT/a')\" = one ]" "-o ro: records can be read"
out=$( { echo x >"$MNT/a"; } 2>&1)
check "grep -q 'Read-only file system' <<<\"\$out\" && [ \"\$(cat '$MNT/a')\" = one ]" \
	"-o ro: a write fails with EROFS ($out)"
umount_store

# a store with a newer format version is refused and left untouched
cp "$STORE/format.json" "$T/format.orig"
sed -i 's/"version": *[0-9]*/"version":99/' "$STORE/format.json"
check "grep -q '\"version\":99' '$STORE/format.json'" "format.json now says version 99"
( cd "$STORE" && find . -printf '%p %s %T@\n' | sort ) >"$T/before"
out=$(timeout 20 "$RECFS" "$STORE" "$MNT" -f 2>&1)
rc=$?
check "[ $rc -ne 0 ] && ! mountpoint -q '$MNT'" "a store of format version 99 is not mounted"
check "grep -q '99' <<<\"\$out\" && grep -qiE 'newer|support|upgrade' <<<\"\$out\"" \
	"... with a clear message ($out)"
( cd "$STORE" && find . -printf '%p %s %T@\n' | sort ) >"$T/after"
check "diff '$T/before' '$T/after'" "... and the store is left untouched"
fusermount3 -u "$MNT" 2>/dev/null
cp "$T/format.orig" "$STORE/format.json"

# a corrupt format file is refused naming the file
echo '{"format": "recfs", "version": ' >"$STORE/format.json"
out=$(timeout 20 "$RECFS" "$STORE" "$MNT" -f 2>&1)
rc=$?
check "[ $rc -ne 0 ] && grep -q format.json <<<\"\$out\"" \
	"a corrupt format.json is refused naming the file ($out)"
fusermount3 -u "$MNT" 2>/dev/null
cp "$T/format.orig" "$STORE/format.json"

# a missing mount point
out=$(timeout 20 "$RECFS" "$STORE" "$T/no/such/dir" -f 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "recfs with a missing mount point fails"
check "grep -q '$T/no/such/dir' <<<\"\$out\" && grep -qi 'no such file' <<<\"\$out\"" \
	"... with a message naming it ($out)"
check "[ ! -s '$STORE/lock' ] || ! grep -q '\"pid\"' '$STORE/lock'" \
	"... and leaves no lock behind"
out=$(timeout 20 "$RECFS" "$T/no-store" "$MNT" -f 2>&1)
rc=$?
check "[ $rc -ne 0 ] && grep -q 'no-store' <<<\"\$out\" && [ ! -e '$T/no-store' ]" \
	"a missing store is refused without -o create ($out)"
# a plain directory of files is not a store: the message names the command
# that makes one of it (recfs has no --adopt option)
mkdir -p "$T/plain"
echo data >"$T/plain/f"
for opts in "" "-o create"; do
	out=$(timeout 20 "$RECFS" "$T/plain" "$MNT" -f $opts 2>&1)
	rc=$?
	check "[ $rc -ne 0 ] && ! mountpoint -q '$MNT'" "recfs $opts of a plain directory fails"
	check "grep -qF 'recfsctl init --adopt $T/plain' <<<\"\$out\" && ! grep -q 'use --adopt' <<<\"\$out\"" \
		"... naming \`recfsctl init --adopt DIR\` ($out)"
	check "[ \"\$(ls -A '$T/plain')\" = f ]" "... and leaves the directory as it was"
done
out=$(timeout 20 "$RECFS" 2>&1)
rc=$?
check "[ $rc -ne 0 ] && grep -qi usage <<<\"\$out\"" "recfs without arguments prints usage ($out)"

# after all that, the store mounts and is intact
mount_store || exit 1
check "[ \"\$(cat '$MNT/a')\" = one ] && [ \"\$(cat '$MNT/b')\" = two ]" \
	"the store mounts and is intact"

# recfsctl on the mount point: stats from the daemon; commands that need
# the store directory say so and change nothing
out=$("$RECFSCTL" stats "$MNT" 2>&1)
check "grep -q \"^revision: \$(revision)\$\" <<<'$out' && grep -q '^records:  2\$' <<<'$out'" \
	"recfsctl stats MNT: the daemon's revision and record count ($out)"
out=$("$RECFSCTL" verify "$MNT" 2>&1)
check "[ $? = 1 ] && grep -q 'is a recfs mount point (of .*): verify the store' <<<'$out'" \
	"recfsctl verify MNT refuses, naming the store ($out)"
out=$("$RECFSCTL" unlock --force "$MNT" 2>&1)
check "[ $? = 1 ] && grep -q 'mount point' <<<'$out' && [ -s '$STORE/lock' ]" \
	"recfsctl unlock --force MNT refuses and leaves the lock ($out)"
out=$("$RECFSCTL" unlock --force "$T" 2>&1)
check "[ $? = 1 ] && grep -q 'not a recfs store' <<<'$out'" \
	"recfsctl unlock --force of a plain directory refuses ($out)"

# unlock --force refuses while the holder is alive on this host (SPEC 6):
# two daemons on one store would lose data
pid=${DAEMON_PID[$MNT]}
sum=$(sha256sum <"$STORE/lock")
ino=$(stat -c %i "$STORE/lock")
out=$("$RECFSCTL" unlock --force "$STORE" 2>&1)
rc=$?
check "[ $rc = 1 ]" "recfsctl unlock --force STORE of a mounted store fails (exit $rc: $out)"
check "grep -q 'pid $pid' <<<'$out' && grep -q 'host $(hostname)' <<<'$out' && grep -q 'since 20' <<<'$out'" \
	"... naming the holder's pid, host and start time ($out)"
check "[ \"\$(sha256sum <'$STORE/lock')\" = '$sum' ] && [ \"\$(stat -c %i '$STORE/lock')\" = $ino ]" \
	"... and leaves the lock file untouched"
check "echo three >'$MNT/c' && [ \"\$(cat '$MNT/c')\" = three ]" \
	"... and the mount goes on working"
umount_store
# the lock of another host: cannot be checked from here, so it is removed
# with a warning (the documented recovery)
printf '{"pid":4242,"host":"far-away.example","start":"2026-01-02T03:04:05Z"}\n' \
	>"$STORE/lock"
out=$("$RECFSCTL" unlock --force "$STORE" 2>&1)
rc=$?
check "[ $rc = 0 ] && [ ! -e '$STORE/lock' ] && grep -q 'far-away.example' <<<'$out'" \
	"unlock --force removes another host's lock, warning with its host ($out)"
# a stale lock of a dead pid on this host: removed too
sh -c 'exit 0' &
dead=$!
wait "$dead"
printf '{"pid":%d,"host":"%s","start":"2026-01-02T03:04:05Z"}\n' "$dead" \
	"$(hostname)" >"$STORE/lock"
out=$("$RECFSCTL" unlock --force "$STORE" 2>&1)
rc=$?
check "[ $rc = 0 ] && [ ! -e '$STORE/lock' ]" \
	"unlock --force removes the stale lock of a dead pid ($out)"
mount_store || exit 1

finish
