#!/usr/bin/env bash
# Round trips with cp/cat, namespaces, mv, rm, mkdir/rmdir, ls -l sizes
# and modes, stat.
. "$(dirname "$0")/lib.sh"

SRC=$T/src
mkdir -p "$SRC"
: >"$SRC/empty"
printf x >"$SRC/one"
head -c 4096 /dev/urandom >"$SRC/4k"
head -c $((10 << 20)) /dev/urandom >"$SRC/10m"
printf 'hello\nworld\n' >"$SRC/text.txt"

mount_store || exit 1

for f in empty one 4k 10m text.txt; do
	check "cp '$SRC/$f' '$MNT/$f'" "cp $f into the mount"
	check "cmp '$SRC/$f' '$MNT/$f'" "cat of $f gives back what cp wrote"
	check "[ \"\$(stat -c %s '$MNT/$f')\" = \"\$(stat -c %s '$SRC/$f')\" ]" \
		"stat -c %s of $f is exact"
done
check "[ \"\$(cat '$MNT/text.txt')\" = \"\$(printf 'hello\nworld')\" ]" \
	"text record reads back with cat"

# ls -l: sizes and modes exact
check "chmod 640 '$MNT/4k'" "chmod 640"
check "[ \"\$(stat -c %a '$MNT/4k')\" = 640 ]" "stat -c %a says 640"
check "ls -l '$MNT' | awk '\$NF == \"4k\" { print \$1, \$5 }' | grep -qx -- '-rw-r----- 4096'" \
	"ls -l shows -rw-r----- and 4096 for the chmod'ed record"
check "ls -l '$MNT' | awk '\$NF == \"10m\" { print \$5 }' | grep -qx $((10 << 20))" \
	"ls -l shows the exact size of the 10 MiB record"
check "ls -l '$MNT' | awk '\$NF == \"empty\" { print \$5 }' | grep -qx 0" \
	"ls -l shows size 0 for the empty record"
check "[ \"\$(stat -c %a '$MNT/4k')\" = 640 ] && cp '$SRC/one' '$MNT/4k' && [ \"\$(stat -c %a '$MNT/4k')\" = 640 ]" \
	"the mode survives a new version"
check "cp '$SRC/4k' '$MNT/4k'" "restore 4k"

# nested namespaces
check "mkdir -p '$MNT/a/b/c'" "mkdir -p a/b/c"
check "[ -d '$MNT/a/b/c' ]" "a/b/c is a directory"
check "cp '$SRC/4k' '$MNT/a/b/c/rec'" "cp into a/b/c"
check "cmp '$SRC/4k' '$MNT/a/b/c/rec'" "a/b/c/rec reads back"
check "[ \"\$(ls '$MNT/a/b/c')\" = rec ]" "ls a/b/c lists rec"
check "[ \"\$(ls '$MNT/a')\" = b ]" "ls a lists b"
check "[ \"\$(version '$MNT/a/b/c/rec')\" = 1 ]" "a/b/c/rec is at version 1"

# mv
check "mv '$MNT/a/b/c/rec' '$MNT/a/moved'" "mv a/b/c/rec a/moved"
check "[ ! -e '$MNT/a/b/c/rec' ]" "the source of mv is gone"
check "cmp '$SRC/4k' '$MNT/a/moved'" "the target of mv has the content"
check "mv '$MNT/one' '$MNT/a/b/one'" "mv into a namespace"
check "cmp '$SRC/one' '$MNT/a/b/one' && [ ! -e '$MNT/one' ]" \
	"mv into a namespace moved the content"
check "mkdir '$MNT/ns1' && mv '$MNT/ns1' '$MNT/ns2' && [ -d '$MNT/ns2' ] && [ ! -e '$MNT/ns1' ]" \
	"mv of an empty namespace"
check "mkdir '$MNT/full' && cp '$SRC/text.txt' '$MNT/full/t' && mv '$MNT/full' '$MNT/full2'" \
	"mv of a namespace holding records works (whole or by copy)"
check "cmp '$SRC/text.txt' '$MNT/full2/t' && [ ! -e '$MNT/full' ]" \
	"mv of a namespace moved its records"

# rm, rmdir
check "rm '$MNT/a/moved'" "rm a record"
check "[ ! -e '$MNT/a/moved' ] && ! cat '$MNT/a/moved' 2>/dev/null" \
	"a removed record is gone"
out=$(rmdir "$MNT/a/b" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "rmdir of a non-empty namespace fails"
check "grep -q 'not empty' <<<\"\$out\"" "... with 'Directory not empty' ($out)"
check "[ -d '$MNT/a/b' ] && cmp '$SRC/one' '$MNT/a/b/one'" \
	"... and keeps its contents"
check "rmdir '$MNT/a/b/c'" "rmdir of an empty namespace"
check "[ ! -e '$MNT/a/b/c' ]" "the empty namespace is gone"
check "rm -r '$MNT/a' && [ ! -e '$MNT/a' ]" "rm -r of a namespace tree"
check "mkdir '$MNT/d' && [ -d '$MNT/d' ]" "mkdir"
check "! mkdir '$MNT/d' 2>/dev/null" "mkdir of an existing namespace fails"
check "! mkdir '$MNT/4k' 2>/dev/null" "mkdir over a record fails"

# the commit point is close(2), also for files created or truncated and
# closed without a write (the kernel's release comes after close returns)
bad=0
for ((i = 0; i < 30; i++)); do
	cp "$SRC/empty" "$MNT/e$i" && [[ -e $MNT/e$i ]] && cat "$MNT/e$i" >/dev/null &&
		[[ $(version "$MNT/e$i") == 1 ]] || bad=$((bad + 1))
done
check "[ $bad = 0 ]" "cp of an empty file: the record is there when cp returns ($bad misses)"
bad=0
for ((i = 0; i < 30; i++)); do
	touch "$MNT/t$i" && cat "$MNT/t$i" >/dev/null &&
		[[ $(version "$MNT/t$i") == 1 ]] || bad=$((bad + 1))
done
check "[ $bad = 0 ]" "touch: the record is there when touch returns ($bad misses)"
bad=0
for ((i = 0; i < 30; i++)); do
	echo "x$i" >"$MNT/t$i"
	: >"$MNT/t$i"
	[[ $(stat -c %s "$MNT/t$i") == 0 && -z $(cat "$MNT/t$i") ]] || bad=$((bad + 1))
done
check "[ $bad = 0 ]" ": > f truncates as soon as the shell moves on ($bad misses)"
check "echo hi >'$MNT/shell' && [ \"\$(version '$MNT/shell')\" = 1 ] && [ \"\$(cat '$MNT/shell')\" = hi ]" \
	"echo hi > f makes one version (no empty version first)"
check "{ echo a; echo b; } >'$MNT/shell' && [ \"\$(version '$MNT/shell')\" = 2 ] && [ \"\$(cat '$MNT/shell')\" = \"\$(printf 'a\nb')\" ]" \
	"a compound command's output is one version"
check "/bin/echo ext >'$MNT/shell' && [ \"\$(version '$MNT/shell')\" = 3 ]" \
	"an external command's output is one version"
rm -f "$MNT"/e[0-9]* "$MNT"/t[0-9]* "$MNT/shell"

# a record written once more is read back after a remount
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0 after fusermount3 -u"
mount_store || exit 1
for f in empty 4k 10m text.txt; do
	check "cmp '$SRC/$f' '$MNT/$f'" "$f reads back after a remount"
done
check "[ \"\$(stat -c %a '$MNT/4k')\" = 640 ]" "the mode survives a remount"
check "[ \"\$(ls '$MNT' | sort | tr '\n' ' ')\" = '10m 4k d empty full2 ns2 text.txt ' ]" \
	"ls lists exactly the records and namespaces"

finish
