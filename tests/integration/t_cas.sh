#!/usr/bin/env bash
# Compare-and-swap from the shell: cp onto ID@N, stale N fails with
# ESTALE and changes nothing, ID@0 creates only when absent.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
A=$MNT/a
printf 'first\n' >"$T/first"
printf 'second\n' >"$T/second"
printf 'third\n' >"$T/third"

check "cp '$T/first' '$A'" "create a"
v=$(getfattr --only-values -n user.recfs.version "$A" 2>/dev/null)
check "[ '$v' = 1 ]" "v=\$(getfattr --only-values -n user.recfs.version) gives 1"
check "cp '$T/second' '$A@$v'" "cp new a@\$v succeeds"
check "cmp '$T/second' '$A' && [ \"\$(version '$A')\" = 2 ]" \
	"a has the new content at version 2"
out=$(cp "$T/third" "$A@$v" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cp at the stale version fails"
check "grep -q 'Stale file handle' <<<\"\$out\"" \
	"... and says 'Stale file handle' ($out)"
check "cmp '$T/second' '$A' && [ \"\$(version '$A')\" = 2 ]" \
	"... and a is unchanged (content and version 2)"
check "! ls -a '$MNT' | grep -qx 'a@$v'" "no record named a@$v appears"
# a@N itself reads version N from the history (SPEC 4)
check "cmp '$T/first' '$A@$v'" "a@$v still reads version $v (first)"

# a CAS that went stale between open and close fails at close(2)
printf 'racer\n' >"$T/racer"
out=$(python3 - "$A@2" "$T/racer" "$A" <<'PY' 2>&1
import os, shutil, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"late\n")
shutil.copyfile(sys.argv[2], sys.argv[3])   # another writer wins
try:
    os.close(fd)
    print("close: ok")
except OSError as e:
    print("close:", os.strerror(e.errno))
PY
)
check "[ \"$out\" = 'close: Stale file handle' ]" \
	"close(2) of a CAS writer that lost the race fails with ESTALE ($out)"
check "cmp '$T/racer' '$A' && [ \"\$(version '$A')\" = 3 ]" \
	"... the winner's content and version 3 are kept"

# ID@0: create only when absent
check "cp '$T/first' '$MNT/b@0'" "cp x b@0 creates b"
check "cmp '$T/first' '$MNT/b' && [ \"\$(version '$MNT/b')\" = 1 ]" \
	"b holds the content at version 1"
out=$(cp "$T/second" "$MNT/b@0" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cp x b@0 a second time fails"
check "grep -q 'Stale file handle' <<<\"\$out\"" "... with ESTALE ($out)"
check "cmp '$T/first' '$MNT/b' && [ \"\$(version '$MNT/b')\" = 1 ]" \
	"... and b is unchanged"
check "[ \"\$(ls '$MNT' | sort | tr '\n' ' ')\" = 'a b ' ]" \
	"only a and b are listed (no a@N / b@0 entries)"

# reading ID@N: the current version reads, a missing one is ENOENT
check "cmp '$T/racer' '$A@3'" "cat a@3 (the current version) gives its content"
check "! cat '$A@99' >/dev/null 2>&1" "cat a@99 fails"

# rename onto ID@N
printf 'renamed\n' >"$MNT/c"
check "mv '$MNT/c' '$A@3' && cmp - '$A' <<<renamed && [ \"\$(version '$A')\" = 4 ]" \
	"mv c a@3 commits when a is at version 3"
printf 'again\n' >"$MNT/c"
check "! mv '$MNT/c' '$A@3' 2>/dev/null && cmp - '$A' <<<renamed && [ -e '$MNT/c' ]" \
	"mv c a@3 fails when a is at version 4, and changes nothing"

# Names the kernel keeps (entry_timeout) that stop naming a version behind
# its back: b@0 once b is gone again, b after rm b@N.
check "rm '$MNT/b' && cp '$T/second' '$MNT/b@0' && cmp '$T/second' '$MNT/b' && [ \"\$(version '$MNT/b')\" = 2 ]" \
	"after rm b, cp x b@0 creates b again (version 2)"
check "rm '$MNT/b' && printf 'dd\\n' | dd of='$MNT/b@0' conv=notrunc status=none && cmp - '$MNT/b' <<<dd && [ \"\$(version '$MNT/b')\" = 3 ]" \
	"... and so does an open of b@0 without O_TRUNC (dd conv=notrunc)"
ls "$MNT" >/dev/null # a listing the kernel may keep (dir.c)
check "rm '$MNT/b@3' && [ ! -e '$MNT/b' ] && ! cat '$MNT/b' 2>/dev/null" \
	"rm b@3 deletes b: stat and cat of b fail at once"
check "! ls '$MNT' | grep -qx b" "... and a listing of its directory no longer has b"
check "echo back >'$MNT/b' && cmp - '$MNT/b' <<<back && [ \"\$(version '$MNT/b')\" = 4 ]" \
	"... and > b creates it again (version 4)"

# A CAS writer's stage (open, truncated, not written yet) is not ID's
# size: that would clamp the kernel's reads of the committed version for
# every reader of ID (tools/torture --contention once read "").
out=$(python3 - "$MNT/s" <<'PY' 2>&1
import os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.write(b"committed\n")
r = os.open(p, os.O_RDONLY)
w = os.open(p + "@1", os.O_WRONLY | os.O_TRUNC)
size = os.stat(p).st_size
seen = os.pread(r, 100, 0)
os.close(w)
print(size, seen == b"committed\n")
PY
)
check "[ '$out' = '10 True' ]" \
	"stat of s while s@1 is open truncated says 10 bytes, a reader reads them all ($out)"

finish
