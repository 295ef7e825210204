#!/usr/bin/env bash
# Odds and ends of local-disk behaviour that programs rely on:
#  - a 255-byte name works, a 256-byte one gives "File name too long"
#    (SPEC 2: ENAMETOOLONG);
#  - fallocate -l 4096 works (size 4096, content kept) or fails with
#    EOPNOTSUPP leaving no new file behind and an old one unchanged;
#  - rsync -aX src/ mnt/dst/ twice exits 0, and the second run with -i
#    changes nothing: no transfer, no new revision (SPEC 3: setting or
#    removing a computed attribute is accepted and has no effect). It
#    itemizes `.f........x` at most: listxattr shows user.recfs.* (SPEC 3),
#    which the source has not, so rsync removes them every time;
#  - setfattr -x user.recfs.version exits 0 and the attribute still reads;
#  - scratch files (cp notes notes~, a vim swap file .notes.swp) survive
#    an unmount and a remount with their content (SPEC 4);
#  - a record deleted through its conditional name (rm x@1) is gone: an
#    open(x, O_WRONLY) without O_CREAT fails with ENOENT (it must not
#    bring x back);
#  - a file created and still open can be opened again and stat()ed by
#    name before its first close, as on a local disk.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1

# ---- name length -----------------------------------------------------------
n255=$(printf 'a%.0s' {1..255})
n256=${n255}b
check "echo ok >'$MNT/$n255' && [ \"\$(cat '$MNT/$n255')\" = ok ]" \
	"a 255-byte name is an ordinary record"
out=$(sh -c "echo x >'$MNT/$n256'" 2>&1)
rc=$?
check "[ $rc != 0 ] && grep -q 'File name too long' <<<\"\$out\"" \
	"a 256-byte name: File name too long (${out##*: })"
out=$(mkdir "$MNT/$n256" 2>&1)
check "grep -q 'File name too long' <<<\"\$out\"" "mkdir of a 256-byte name: File name too long (${out##*: })"
out=$(stat "$MNT/$n256" 2>&1)
check "grep -q 'File name too long' <<<\"\$out\"" "stat of a 256-byte name: File name too long (${out##*: })"

# ---- fallocate -------------------------------------------------------------
out=$(fallocate -l 4096 "$MNT/fa" 2>&1)
rc=$?
if ((rc == 0)); then
	check "[ \"\$(stat -c %s '$MNT/fa')\" = 4096 ] && cmp -s '$MNT/fa' <(head -c 4096 /dev/zero)" \
		"fallocate -l 4096 fa works: 4096 zero bytes ($(stat -c %s "$MNT/fa"))"
else
	check "grep -q 'Operation not supported' <<<\"\$out\" && [ ! -e '$MNT/fa' ]" \
		"fallocate -l 4096 fa fails with EOPNOTSUPP and leaves no file fa behind ($out; $(ls -la "$MNT/fa" 2>&1))"
fi
printf '0123456789' >"$MNT/fb"
out=$(fallocate -l 4096 "$MNT/fb" 2>&1)
rc=$?
if ((rc == 0)); then
	check "[ \"\$(stat -c %s '$MNT/fb')\" = 4096 ] && [ \"\$(head -c 10 '$MNT/fb')\" = 0123456789 ]" \
		"fallocate -l 4096 of a 10-byte file: size 4096, content kept ($(stat -c %s "$MNT/fb"))"
else
	check "grep -q 'Operation not supported' <<<\"\$out\" && [ \"\$(cat '$MNT/fb')\" = 0123456789 ]" \
		"fallocate -l 4096 of a 10-byte file fails with EOPNOTSUPP, the file unchanged ($out)"
fi

# ---- rsync -aX twice -------------------------------------------------------
S=$T/src
mkdir -p "$S/ns"
printf 'one\n' >"$S/one"
printf 'two\n' >"$S/ns/two"
head -c 100000 /dev/urandom >"$S/bin"
setfattr -n user.color -v blue "$S/one"
setfattr -n user.shape -v round "$S/ns/two"
out=$(rsync -aX "$S/" "$MNT/dst/" 2>&1)
rc=$?
check "[ $rc = 0 ]" "rsync -aX src/ mnt/dst/ exits 0 (exit $rc: ${out:0:300})"
check "diff -r '$S' '$MNT/dst' >/dev/null && [ \"\$(xattr user.color '$MNT/dst/one')\" = blue ]" \
	"... it copied the content and user.color"
rev=$(getfattr --only-values -n user.recfs.revision "$MNT" 2>/dev/null)
rsync -aXi "$S/" "$MNT/dst/" >"$T/rsync2.out" 2>&1
rc=$?
check "[ $rc = 0 ]" "a second rsync -aXi exits 0 (exit $rc: $(head -c 300 "$T/rsync2.out" | tr '\n' ' '))"
check "! grep -qvE '^\\.(d|f\\.{8}x) ' '$T/rsync2.out'" \
	"... and itemizes no change but the computed attributes ($(head -c 300 "$T/rsync2.out" | tr '\n' ' '))"
check_recfs "[ \"\$(getfattr --only-values -n user.recfs.revision '$MNT')\" = '$rev' ]" \
	"... and makes no new revision ($rev)"

# ---- removing a computed attribute -----------------------------------------
echo v >"$MNT/xa"
out=$(setfattr -x user.recfs.version "$MNT/xa" 2>&1)
rc=$?
check_recfs "[ $rc = 0 ]" "setfattr -x user.recfs.version exits 0 ($out)"
check_recfs "[ \"\$(version '$MNT/xa')\" = 1 ]" \
	"... and user.recfs.version still reads 1 ($(version "$MNT/xa"))"

# ---- scratch files survive a remount ---------------------------------------
printf 'my notes\n' >"$MNT/notes"
check "cp '$MNT/notes' '$MNT/notes~'" "cp notes notes~"
check "printf 'b0VIM swap\\0data' >'$MNT/.notes.swp'" "write a vim swap file .notes.swp"
mkdir -p "$MNT/ns"
printf 'deep notes\n' >"$MNT/ns/notes"
check "cp '$MNT/ns/notes' '$MNT/ns/notes~' && printf 'swap2' >'$MNT/ns/.notes.swp'" \
	"the same in a namespace"
umount_store
mount_store || exit 1
check "[ \"\$(cat '$MNT/notes~')\" = 'my notes' ]" \
	"after a remount notes~ is there with its content ($(cat "$MNT/notes~" 2>&1))"
check "cmp -s '$MNT/.notes.swp' <(printf 'b0VIM swap\\0data')" \
	"after a remount .notes.swp is there with its content ($(ls -a "$MNT" | grep -c swp) swap files listed)"
check "[ \"\$(cat '$MNT/ns/notes~')\" = 'deep notes' ] && [ \"\$(cat '$MNT/ns/.notes.swp')\" = swap2 ]" \
	"after a remount the namespace's notes~ and .notes.swp are there"
check "ls -a '$MNT' | grep -qx 'notes~' && ls -a '$MNT' | grep -qx '.notes.swp'" \
	"ls -a lists them"

# ---- no resurrection after rm x@1 ------------------------------------------
printf 'x\n' >"$MNT/x"
stat "$MNT/x" >/dev/null
if ! plain; then
	check "rm '$MNT/x@1'" "rm x@1 (x is at version 1): deletes x"
fi
plain && rm "$MNT/x"
out=$(python3 -c 'import os, sys
try:
    os.open(sys.argv[1], os.O_WRONLY)
    print("opened")
except OSError as e:
    print(os.strerror(e.errno))' "$MNT/x" 2>&1)
check "[ '$out' = 'No such file or directory' ]" \
	"open(x, O_WRONLY) without O_CREAT then fails with ENOENT ($out)"
check "[ ! -e '$MNT/x' ] && ! ls '$MNT' | grep -qx x" \
	"... and x does not come back ($(ls -la "$MNT/x" 2>&1))"

# ---- a file being created is there before its first close ------------------
out=$(python3 -c 'import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"abc")
res = []
try:
    st = os.stat(p)
    res.append("stat ok")
except OSError as e:
    res.append("stat: " + os.strerror(e.errno))
try:
    fd2 = os.open(p, os.O_RDONLY)
    res.append("open ok")
    os.close(fd2)
except OSError as e:
    res.append("open: " + os.strerror(e.errno))
os.close(fd)
print(", ".join(res))' "$MNT/creating" 2>&1)
check "[ '$out' = 'stat ok, open ok' ]" \
	"a file created (O_CREAT, written, not closed yet): stat and a second open by name work ($out)"
check "[ \"\$(cat '$MNT/creating')\" = abc ]" "... and it holds abc after close"

finish
