#!/usr/bin/env bash
# Symbolic links are records (SPEC 2): ln -s, readlink, following one to
# a record, a link survives a remount; a listing gives each entry's type
# (find -type f / -type l on a fresh mount, past the entries the kernel
# asks attributes for); a tree with symlinks (relative,
# absolute, dangling, to a directory) goes through tar (cf, xf into the
# mount, cf back out, xf) and rsync -a (into the mount: exit 0, not 23;
# back out: equal to the source), compared by diff -r --no-dereference and
# by a listing of type, path and link target.
. "$(dirname "$0")/lib.sh"

# listing DIR: type, path and link target of everything under DIR
listing() {
	(cd "$1" && find . -mindepth 1 -printf '%y %p %l\n' | sort)
}
same_tree() {
	diff -r --no-dereference "$1" "$2" >/dev/null &&
		diff <(listing "$1") <(listing "$2") >/dev/null
}
# what differs, for the description
tree_diff() {
	diff <(listing "$1") <(listing "$2") 2>&1 | head -6 | tr '\n' ' '
}

SRC=$T/src
mkdir -p "$SRC/sub/deeper"
printf 'file\n' >"$SRC/file"
printf 'nested\n' >"$SRC/sub/deeper/n"
ln -s file "$SRC/l1"
ln -s ../file "$SRC/sub/l2"
ln -s /etc/hostname "$SRC/abs"
ln -s nowhere "$SRC/dangling"
ln -s sub "$SRC/dirlink"
ln -s "a target with spaces/and@at" "$SRC/odd"

mount_store || exit 1

echo content >"$MNT/t"
check "ln -s t '$MNT/l'" "ln -s t mnt/l"
check "[ -L '$MNT/l' ] && [ \"\$(readlink '$MNT/l')\" = t ]" \
	"mnt/l is a symlink and readlink says t ($(readlink "$MNT/l" 2>&1))"
check "[ \"\$(cat '$MNT/l')\" = content ]" "cat mnt/l follows it to the record"
check "ln -s /no/such/place '$MNT/d' && [ \"\$(readlink '$MNT/d')\" = /no/such/place ]" \
	"a dangling absolute symlink"
check "mkdir '$MNT/ns' && ln -s ../t '$MNT/ns/up' && [ \"\$(cat '$MNT/ns/up')\" = content ]" \
	"a relative symlink in a namespace, ../t, is followed by the kernel"
check "[ \"\$(stat -c %s '$MNT/l')\" = 1 ] && [ \"\$(stat -c %F '$MNT/l')\" = 'symbolic link' ]" \
	"lstat of mnt/l: a symbolic link of size 1 ($(stat -c '%F %s' "$MNT/l"))"
umount_store
mount_store || exit 1
check "[ -L '$MNT/l' ] && [ \"\$(readlink '$MNT/l')\" = t ] && [ \"\$(readlink '$MNT/ns/up')\" = ../t ]" \
	"after a remount the symlinks are there ($(readlink "$MNT/l" 2>&1), $(readlink "$MNT/ns/up" 2>&1))"

# the types in a listing: find -type f asks for no attributes after the
# first entries (readdirplus only while they are looked at, dir.c)
mkdir "$MNT/many"
for i in $(seq 1 300); do
	echo "$i" >"$MNT/many/r$i"
	((i % 3)) || ln -s "r$i" "$MNT/many/s$i"
done
umount_store
mount_store || exit 1
nf=$(find "$MNT/many" -type f | wc -l)
nl=$(find "$MNT/many" -type l | wc -l)
check "[ $nf = 300 ] && [ $nl = 100 ]" \
	"a fresh mount lists 300 records and 100 symlinks by type ($nf, $nl)"
check "[ \"\$(ls -l '$MNT/many' | grep -c '^l')\" = 100 ]" \
	"ls -l of the same listing shows the 100 symlinks"

# tar
check "tar -C '$SRC' -cf '$T/src.tar' ." "tar cf of the source tree"
mkdir -p "$MNT/tx"
out=$(tar -C "$MNT/tx" -xf "$T/src.tar" 2>&1)
check "[ $? = 0 ]" "tar xf into the mount exits 0 ($out)"
check "same_tree '$SRC' '$MNT/tx'" \
	"the tree in the mount equals the source ($(tree_diff "$SRC" "$MNT/tx"))"
out=$(tar -C "$MNT/tx" -cf "$T/back.tar" . 2>&1)
check "[ $? = 0 ]" "tar cf of the tree in the mount exits 0 ($out)"
mkdir -p "$T/tback"
tar -C "$T/tback" -xf "$T/back.tar"
check "[ $? = 0 ] && same_tree '$SRC' '$T/tback'" \
	"tar round trip: extracted back out, it equals the source ($(tree_diff "$SRC" "$T/tback"))"

# rsync
out=$(rsync -a "$SRC/" "$MNT/rs/" 2>&1)
rc=$?
check "[ $rc = 0 ]" "rsync -a src/ mnt/rs/ exits 0 (exit $rc: ${out:0:300})"
check "same_tree '$SRC' '$MNT/rs'" \
	"the rsync'ed tree in the mount equals the source ($(tree_diff "$SRC" "$MNT/rs"))"
out=$(rsync -a "$MNT/rs/" "$T/rback/" 2>&1)
rc=$?
check "[ $rc = 0 ]" "rsync -a mnt/rs/ back/ exits 0 (exit $rc: ${out:0:300})"
check "same_tree '$SRC' '$T/rback'" \
	"rsync round trip: back/ equals the source ($(tree_diff "$SRC" "$T/rback"))"
rsync -ai "$SRC/" "$MNT/rs/" >"$T/rsync2.out" 2>&1
rc=$?
check "[ $rc = 0 ] && ! grep -qv '^\.d' '$T/rsync2.out'" \
	"a second rsync -ai src/ mnt/rs/ itemizes no change (exit $rc: $(head -c 300 "$T/rsync2.out" | tr '\n' ' '))"

finish
