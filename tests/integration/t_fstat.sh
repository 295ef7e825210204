#!/usr/bin/env bash
# What a descriptor sees when its name changes under it (SPEC 3), with
# tests/integration/fdcheck (it opens, reads N bytes, runs a command as
# another process, then fstat()s, reads on and preads from 0):
#  - fstat works after the name is unlinked, and after another file is
#    renamed over it; the old content stays readable to the end;
#  - a reader that opened before `mv other name` reads the old content to
#    the end (1 MiB, 4 KiB read before the mv);
#  - after another process rewrites the file in place (no rename),
#    fstat(fd).st_size and read(fd) agree: both are the new content.
. "$(dirname "$0")/lib.sh"

FDCHECK=$(helper fdcheck)
mount_store || exit 1

# fdc NAME FDCHECK-ARGS...: run fdcheck, its report in $T/NAME.rep and
# what it read in $T/NAME.out (.pread)
fdc() {
	local name=$1
	shift
	"$FDCHECK" "$@" >"$T/$name.rep" 2>&1
	note "$name: $(tr '\n' ';' <"$T/$name.rep")"
}
# rep NAME LINE: the report of NAME has this line
rep() {
	grep -qx -- "$2" "$T/$name.rep"
}

head -c 1048576 /dev/urandom >"$T/old"
head -c 700000 /dev/urandom >"$T/new"
printf 'old content\n' >"$T/old-small"
printf 'the new content, longer\n' >"$T/new-small"

# unlink: fstat works, the content stays readable
cp "$T/old-small" "$MNT/u"
name=unlink
fdc $name -r 0 "$MNT/u" "$T/$name.out" -- rm "$MNT/u"
check "rep $name 'cmd: exit 0' && [ ! -e '$MNT/u' ]" "rm of an open file works"
check "rep $name 'fstat: ok size 12'" "fstat after the name is unlinked: ok, size 12"
check "cmp '$T/old-small' '$T/$name.out' && cmp '$T/old-small' '$T/$name.out.pread'" \
	"read after the name is unlinked gives the old content"

# rename over: fstat works, the old content stays
cp "$T/old-small" "$MNT/r"
cp "$T/new-small" "$MNT/other"
name=rename-over
fdc $name -r 0 "$MNT/r" "$T/$name.out" -- mv "$MNT/other" "$MNT/r"
check "rep $name 'cmd: exit 0' && cmp '$T/new-small' '$MNT/r'" "mv other r works"
check "rep $name 'fstat: ok size 12'" \
	"fstat after another file is renamed over the name: ok, the old size 12"
check "cmp '$T/old-small' '$T/$name.out' && cmp '$T/old-small' '$T/$name.out.pread'" \
	"read after the rename gives the old content"

# a reader half-way through a big file keeps the old content to the end
cp "$T/old" "$MNT/big"
cp "$T/new" "$MNT/big-new"
name=reader-mv
fdc $name -r 4096 "$MNT/big" "$T/$name.out" -- mv "$MNT/big-new" "$MNT/big"
check "rep $name 'cmd: exit 0' && cmp '$T/new' '$MNT/big'" \
	"mv big-new big while a reader is 4 KiB into big"
check "rep $name 'fstat: ok size 1048576'" "the reader's fstat still says 1 MiB"
check "rep $name 'read: ok 1048576 bytes' && cmp '$T/old' '$T/$name.out'" \
	"the reader reads the old content to the end (1 MiB)"
check "cmp '$T/old' '$T/$name.out.pread'" "... and pread from 0 gives the old content too"

# an in-place rewrite by another process: size and content agree, new
for how in shorter longer; do
	if [[ $how == shorter ]]; then
		a=$T/new-small b=$T/old-small # 24 -> 12 bytes
	else
		a=$T/old-small b=$T/new-small # 12 -> 24 bytes
	fi
	cp "$a" "$MNT/w-$how"
	sz=$(stat -c %s "$b")
	name=rewrite-$how
	# all read first, so the old content is what the reader had seen
	fdc $name -r all "$MNT/w-$how" "$T/$name.out" -- sh -c "cat '$b' >'$MNT/w-$how'"
	check "rep $name 'cmd: exit 0' && cmp '$b' '$MNT/w-$how'" \
		"another process rewrites w-$how in place ($how: $(stat -c %s "$a") -> $sz bytes)"
	check "rep $name 'fstat: ok size $sz'" \
		"fstat(fd) after the rewrite says the new size $sz"
	check "cmp '$b' '$T/$name.out.pread'" \
		"pread(fd) from 0 after the rewrite gives the new content ($(od -An -c "$T/$name.out.pread" | head -2 | tr -s ' \n' ' '))"
	check "[ \"\$(stat -c %s '$T/$name.out.pread')\" = \"\$(sed -n 's/^fstat: ok size //p' '$T/$name.rep')\" ]" \
		"fstat(fd).st_size and what read(fd) gives agree"
done

# the same with the reader opened before and nothing read yet
cp "$T/old-small" "$MNT/w-fresh"
name=rewrite-unread
fdc $name -r 0 "$MNT/w-fresh" "$T/$name.out" -- sh -c "cat '$T/new-small' >'$MNT/w-fresh'"
check "rep $name 'fstat: ok size 24' && cmp '$T/new-small' '$T/$name.out' && cmp '$T/new-small' '$T/$name.out.pread'" \
	"a descriptor opened before an in-place rewrite, not read yet: fstat and read give the new content"

finish
