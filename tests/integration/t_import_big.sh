#!/usr/bin/env bash
# A change of any size (issue 14): `recfsctl import STORE DIR` of 8,000
# files of 1 KiB (more than one journal frame of 4 MiB can hold: the old
# code refused it with E2BIG) is one store change (one revision) spanning
# several journal frames; every file reads back through the mount, and
# the store directory reopens clean. (test_bigtxn does 100,000 records
# and crashes at every frame boundary; tools/bench import measures
# 1,000,000.)
. "$(dirname "$0")/lib.sh"

N=8000
SRC=$T/src

# 8 directories of 1000 files each, 1 KiB per file (its name, then
# padding), written by one process
python3 - "$SRC" "$N" <<'PY'
import os, sys
src, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d, f = divmod(i, 1000)
    os.makedirs(f"{src}/d{d}", exist_ok=True)
    head = f"file {d}/{f}\n".encode()
    with open(f"{src}/d{d}/f{f}", "wb") as fh:
        fh.write(head + b"." * (1024 - len(head)))
PY
check "[ \$(find '$SRC' -type f | wc -l) = $N ]" "a tree of $N small files"
check "[ \$(du -sb --apparent-size '$SRC' | cut -f1) -gt $((4 << 20)) ]" \
	"more content than one journal record (4 MiB) holds"

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
check "[ \"\$(head -1 '$MNT/d0/f0')\" = 'file 0/0' ]" "d0/f0 reads back"
check "[ \"\$(head -1 '$MNT/d5/f523')\" = 'file 5/523' ]" "d5/f523 reads back"
check "[ \"\$(head -1 '$MNT/d7/f999')\" = 'file 7/999' ]" "d7/f999 reads back"
check "cmp -s '$SRC/d3/f3' '$MNT/d3/f3'" "d3/f3 is the same 1 KiB"
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
