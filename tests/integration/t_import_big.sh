#!/usr/bin/env bash
# A change of any size (issue 14): `recfsctl import STORE DIR` of 30,000
# small files is one store change (one revision) spanning many journal
# frames, in memory bounded by one frame; every file reads back through
# the mount, and the store directory reopens clean.
. "$(dirname "$0")/lib.sh"

N=30000
SRC=$T/src

# 30 directories of 1000 files each, a few bytes per file
mkdir -p "$SRC"
for ((d = 0; d < 30; d++)); do
	mkdir "$SRC/d$d"
	(cd "$SRC/d$d" && for ((f = 0; f < 1000; f++)); do
		echo "file $d/$f" >"f$f"
	done)
done
check "[ \$(find '$SRC' -type f | wc -l) = $N ]" "a tree of $N small files"

check "'$RECFSCTL' init '$STORE' >/dev/null" "recfsctl init"
out=$("$RECFSCTL" import "$STORE" "$SRC" 2>&1)
rc=$?
check "[ $rc = 0 ]" "recfsctl import STORE DIR of $N files succeeds: $out"
check "grep -q 'as revision 1: $N records given a new version' <<<'$out'" \
	"as one store change: $out"
check "! grep -qi 'too long\|E2BIG\|full' <<<'$out'" "no size limit met"
mount_store || exit 1
check "[ \$(revision) = 1 ]" "the store is at revision 1"
check "[ \$(find '$MNT' -path '$MNT/.recfs' -prune -o -type f -print | wc -l) = $N ]" \
	"all $N records are there through the mount"
check "[ \"\$(cat '$MNT/d0/f0')\" = 'file 0/0' ]" "d0/f0 reads back"
check "[ \"\$(cat '$MNT/d17/f523')\" = 'file 17/523' ]" "d17/f523 reads back"
check "[ \"\$(cat '$MNT/d29/f999')\" = 'file 29/999' ]" "d29/f999 reads back"
check_recfs "[ \"\$(version '$MNT/d5/f5')\" = 1 ]" "each is version 1"
echo again >"$MNT/d0/f0"
check "[ \$(revision) = 2 ]" "the store takes the next change"
umount_store

# again: every file is the current version, nothing changes
out=$("$RECFSCTL" import "$STORE" "$SRC" 2>&1)
check "[ $? = 0 ]" "a second import succeeds: $out"
check "grep -q '1 records given a new version, $((N - 1)) unchanged' <<<'$out'" \
	"only the file changed since gets a version: $out"

finish
