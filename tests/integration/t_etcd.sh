#!/usr/bin/env bash
# A store on etcd mounted by one host (issue 16, phase 2): recfs
# etcd://HOST:PORT/PREFIX MNT -o create on a real one-member etcd (started
# here on a loopback port, always stopped at exit): cp, cat, the computed
# attributes, user xattrs, mv, rm, mkdir/ls, cp onto a@N (one winner,
# then ESTALE), a remount that shows everything, ID@N without history,
# and etcd stopped: close(2) fails with EIO, soon, not a hang, and what
# the mount saw stays readable.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etcd_lib.sh"

etcd_start 1
URI="etcd://$ETCD_ENDPOINTS/recfs/t"
check "! '$RECFS' '$URI' '$MNT' -f 2>'$T/nocreate.err'" \
	"mounting an etcd prefix with no store fails without -o create"
check "grep -q 'create' '$T/nocreate.err'" \
	"... and says -o create makes one ($(head -c 200 "$T/nocreate.err"))"
mount_at "$URI" "$MNT" -o create || exit 1
check "etcdctl_ get recfs/t/format --print-value-only | grep -q '\"format\":1'" \
	"-o create wrote PREFIX/format"

printf 'hello\n' >"$T/one"
printf 'second\n' >"$T/two"
printf 'third\n' >"$T/three"
check "cp '$T/one' '$MNT/a'" "cp a file in"
check "cmp '$T/one' '$MNT/a'" "cat gives it back"
check "[ \"\$(version '$MNT/a')\" = 1 ]" "user.recfs.version is 1"
check "[ \"\$(xattr user.recfs.hash '$MNT/a')\" = \"xxh3-128:\$(xxhsum -H2 '$T/one' 2>/dev/null | cut -d' ' -f1 | sed 's/^XXH128_//')\" ] || xattr user.recfs.hash '$MNT/a' | grep -qE '^xxh3-128:[0-9a-f]{32}$'" \
	"user.recfs.hash is an xxh3-128 hash"
rev=$(xattr user.recfs.revision "$MNT/a")
erev=$(etcdctl_ get recfs/t/e/01/a -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')
check "[ -n '$rev' ] && [ '$rev' = '$erev' ]" \
	"user.recfs.revision is etcd's revision of the commit ($rev = $erev)"
check "etcdctl_ get recfs/t/v/a//00000000000000000001 -w json | python3 -c 'import base64,json,sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)[\"kvs\"][0][\"value\"]))' | cmp - '$T/one'" \
	"the content is in etcd under PREFIX/v/ID//N"

check "setfattr -n user.color -v blue '$MNT/a'" "setfattr user.color"
check "[ \"\$(xattr user.color '$MNT/a')\" = blue ]" "getfattr gives it back"
check "[ \"\$(version '$MNT/a')\" = 1 ]" "... and makes no new version"

v=$(version "$MNT/a")
check "cp '$T/two' '$MNT/a@$v'" "cp new a@$v wins"
check "cmp '$T/two' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 2 ]" \
	"a holds it at version 2"
out=$(cp "$T/three" "$MNT/a@$v" 2>&1)
rc=$?
check "[ $rc -ne 0 ] && grep -q 'Stale file handle' <<<\"\$out\"" \
	"cp new a@$v a second time fails with ESTALE ($out)"
check "cmp '$T/two' '$MNT/a'" "... and a is unchanged"
check "cmp '$T/one' '$MNT/a@1'" "a@1 reads version 1 from etcd"

check "mkdir '$MNT/d'" "mkdir d"
check "cp '$T/three' '$MNT/d/x'" "cp into d"
check "[ \"\$(ls '$MNT' | tr '\n' ' ')\" = 'a d ' ]" "ls shows a and d"
check "[ \"\$(ls '$MNT/d')\" = x ]" "ls d shows x"
check "mv '$MNT/d/x' '$MNT/d/y'" "mv d/x d/y"
check "[ \"\$(ls '$MNT/d')\" = y ] && cmp '$T/three' '$MNT/d/y'" \
	"d/y has the content, d/x is gone"
check "! rmdir '$MNT/d' 2>/dev/null" "rmdir of a namespace with a record fails"
check "cp '$T/one' '$MNT/gone' && rm '$MNT/gone'" "cp and rm a record"
check "[ ! -e '$MNT/gone' ]" "... it is gone"
check "cp '$T/two' '$MNT/gone' && [ \"\$(version '$MNT/gone')\" = 2 ]" \
	"re-created, it goes on at version 2"

# what editors and tools do: without scratch files on etcd, their temp
# names are records, renamed onto the target
printf 'hello\n' >"$MNT/s"
check "sed -i s/hello/bye/ '$MNT/s' && [ \"\$(cat '$MNT/s')\" = bye ]" \
	"sed -i edits a record"
mkdir -p "$T/src/sub"
printf 'r1\n' >"$T/src/r1"
printf 'r2\n' >"$T/src/sub/r2"
check "rsync -a '$T/src/' '$MNT/d/'" "rsync -a a tree in"
check "diff -r '$T/src' '$MNT/d' -x y" "... and diff -r finds it all"
check "printf 'ab' >'$MNT/ap' && printf 'cd' >>'$MNT/ap' && [ \"\$(cat '$MNT/ap')\" = abcd ] && [ \"\$(version '$MNT/ap')\" = 2 ]" \
	"an append is a new version holding both"
check "ln -s s '$MNT/lnk' && [ \"\$(readlink '$MNT/lnk')\" = s ]" "a symlink"
check "! dd if=/dev/zero of='$MNT/big' bs=1M count=2 2>'$T/dd.err' && grep -q 'File too large' '$T/dd.err'" \
	"a record over 1 MiB: EFBIG (SPEC 9)"
check "getfattr -d -m - '$MNT/a' 2>&1 | grep -q user.color && ! getfattr -d -m - '$MNT/a' 2>&1 | grep -q 'No such attribute'" \
	"getfattr -d lists what it can read (no user.recfs.commit)"
rm -f "$MNT/big" "$MNT/ap" "$MNT/lnk" "$MNT/s"
rm -rf "$MNT/d/r1" "$MNT/d/sub"

# no history on etcd yet (a later phase): said clearly
check "! getfattr -n user.recfs.commit '$MNT/a' 2>'$T/commit.err' && grep -q 'No such attribute' '$T/commit.err'" \
	"user.recfs.commit: no such attribute (no history)"
check "! '$RECFSCTL' log '$MNT' a 2>'$T/log.err' && grep -q 'no history yet' '$T/log.err'" \
	"recfsctl log says an etcd store has no history yet"
check "'$RECFSCTL' stats '$URI' 2>/dev/null | grep -q '^records: *3'" \
	"recfsctl stats on the etcd URI counts the records"
check "! '$RECFSCTL' log '$URI' a 2>'$T/log2.err' && grep -q 'no history yet' '$T/log2.err'" \
	"... and recfsctl log on the URI says why it cannot"

check "! '$RECFSCTL' backup '$MNT' '$T/bk' 2>'$T/bk.err' && grep -q 'not built yet' '$T/bk.err'" \
	"recfsctl backup of an etcd store says it is not built yet"
check "! timeout 20 '$RECFSCTL' watch '$MNT' 2>'$T/watch.err' && grep -q 'etcd watch' '$T/watch.err'" \
	"recfsctl watch of an etcd store says it is not built yet"

# recfsctl update: 4 processes x 10 increments of one counter, each a
# read-modify-write with a conditional commit
echo 0 >"$MNT/counter"
pids=()
for p in 1 2 3 4; do
	(for i in $(seq 10); do
		"$RECFSCTL" update "$MNT" counter -- sh -c 'read n; echo $((n + 1))' ||
			echo "update failed" >>"$T/update.err"
	done) &
	pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p"; done
check "[ \"\$(cat '$MNT/counter')\" = 40 ] && [ ! -s '$T/update.err' ]" \
	"recfsctl update from 4 processes: the counter is exactly 40"
check "'$RECFSCTL' rollback '$MNT' counter --to 1 >/dev/null && [ \"\$(cat '$MNT/counter')\" = 0 ]" \
	"recfsctl rollback of a record reads its old version from etcd"
rm -f "$MNT/counter"

umount_at "$MNT"
check "[ '$DAEMON_RC' = 0 ]" "the daemon exits 0 at unmount"
mount_at "$URI" "$MNT" || exit 1
check "cmp '$T/two' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 2 ]" \
	"remounted: a at version 2"
check "[ \"\$(xattr user.color '$MNT/a')\" = blue ]" "... with its xattr"
check "cmp '$T/three' '$MNT/d/y' && [ ! -e '$MNT/d/x' ]" "... d/y, no d/x"
check "[ \"\$(version '$MNT/gone')\" = 2 ]" "... gone at version 2"
check "cmp '$T/one' '$MNT/a@1'" "... and a@1"
check "[ \"\$(ls '$MNT' | tr '\n' ' ')\" = 'a d gone ' ]" "... ls"
check "[ ! -e '$MNT/new' ]" "... (no file 'new' yet)"

# etcd stops: commits fail at close(2) with EIO, in seconds, both of a
# file opened before and of a new one
cat "$MNT/a" >/dev/null
timeout 60 python3 - "$MNT/a" "$MNT/new" "$T/stop.fifo" >"$T/down.out" 2>&1 <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.mkfifo(sys.argv[3])
open(sys.argv[3], "w").close()  # etcd is stopped when this returns
open(sys.argv[3]).read()
t = time.monotonic()
os.write(fd, b"while etcd is down\n")
try:
    os.close(fd)
    print("close: ok")
except OSError as e:
    print("close:", os.strerror(e.errno), "after %.0f s" % (time.monotonic() - t))
try:
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"new\n")
    os.close(fd)
    print("new: ok")
except OSError as e:
    print("new:", os.strerror(e.errno))
PY
py=$!
await 20 "[ -p '$T/stop.fifo' ]" && cat "$T/stop.fifo" >/dev/null
etcd_stop_member 0
echo >"$T/stop.fifo"
wait "$py"
out=$(cat "$T/down.out")
check "grep -q '^close: Input/output error' <<<\"$out\"" \
	"close(2) of a write with etcd stopped fails with EIO ($out)"
check "grep -q '^new: Input/output error' <<<\"$out\"" \
	"... and of a new file too"
out=$(timeout 60 cat "$MNT/d/y" 2>&1)
rc=$?
check "[ $rc = 0 ] && [ \"$out\" = third ]" \
	"a read with etcd stopped answers with the version the mount last saw (rc $rc: $out)"
out=$(timeout 60 ls "$MNT/d" 2>&1)
rc=$?
check "[ $rc -ne 124 ] && { [ $rc = 0 ] || grep -q 'Input/output error' <<<\"$out\"; }" \
	"ls with etcd stopped answers or fails with EIO, no hang (rc $rc: $out)"
etcd_start_member 0
check "cmp '$T/two' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 2 ]" \
	"etcd back: a is still version 2 (the failed close changed nothing)"
check "cp '$T/three' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 3 ]" \
	"... and commits work again without a remount"
check "[ ! -e '$MNT/new' ]" "the new file whose close failed is not there"
finish
