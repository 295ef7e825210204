#!/usr/bin/env bash
# Security review (Proof campaign): what a hostile user, a hostile name or
# a hostile file planted in the store can and cannot do.
#
#  1. The store stays private after a session of writes through the mount
#     with umask 000: STORE is 0700, every file in it 0600, every
#     directory 0700 -- except the namespace directories under records/,
#     which carry the mode the mount shows for that namespace (it is what
#     default_permissions checks for other users; see below). Nothing in
#     the store is reachable by another user.
#  2. Hostile names: .git in any case is an ordinary name (SPEC 2); newlines, control bytes
#     and UTF-8 are ordinary records; 255 vs 256 bytes and 32 vs 33 levels;
#     the ID@N forms.
#  3. Links and special files planted in STORE/records while unmounted:
#     a HARD LINK is an ordinary regular file to recfs (it reads as version
#     1 of the record, like an adopted file), but recfs never writes into
#     an existing inode: every change makes a new file that replaces the
#     link, so a hard link to a file outside the store cannot be used to
#     change that file (write, append, partial write, truncate, chmod,
#     touch, setfattr, rm, mv, sed -i). A symlinked namespace is refused
#     (ELOOP), never followed. A FIFO or device node is not a record: it is
#     not listed, reading it fails at once (never blocks).
#  4. Oversized xattrs (65 KiB value, 300-byte name, 100 attributes) fail
#     with E2BIG / ERANGE / ENOSPC, on records, scratch files and files not
#     committed yet alike, and leave the record as it was.
#  5. -o allow_other,default_permissions: the kernel enforces the record
#     modes for other users (0600 unreadable, 0644 read-only); and
#     allow_other alone implies default_permissions (without it, FUSE
#     checks nothing and every user could read and write every record).
. "$(dirname "$0")/lib.sh"

nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

# inode FILE
inode() {
	stat -c %i -- "$1"
}

# ---- 1. modes of the store after a session ---------------------------------

umask 000
mount_store || exit 1
printf 'one\n' >"$MNT/a"
printf 'two\n' >>"$MNT/a"
cp /etc/hostname "$MNT/host" 2>/dev/null || echo host >"$MNT/host"
mkdir "$MNT/ns" "$MNT/ns/deep"
mkdir -m 700 "$MNT/private"
printf 'n\n' >"$MNT/ns/deep/n"
head -c $((3 << 20)) /dev/urandom >"$T/big"
cp "$T/big" "$MNT/big" # by reference: a synced stage, not inline
chmod 644 "$MNT/a"
chmod 600 "$MNT/host"
setfattr -n user.color -v blue "$MNT/a"
sed -i 's/one/ONE/' "$MNT/a"
mv "$MNT/host" "$MNT/ns/host"
rm "$MNT/big"
mkdir -p "$T/src/sub"
echo r >"$T/src/sub/r"
rsync -a "$T/src/" "$MNT/synced/" 2>/dev/null
umask 022

# bad_modes DIR: what in DIR is not 0600 (files) or 0700 (directories,
# except namespaces under records/), or is neither a file nor a directory
bad_modes() {
	find "$1" \( ! -type f ! -type d \) -o \( -type f ! -perm 0600 \) \
		-o \( -type d ! -perm 0700 ! -path "$1/records/*" \)
}
# ns_modes_match: each namespace directory has the mode the mount shows
ns_modes_match() {
	local d rel
	while IFS= read -r -d '' d; do
		rel=${d#"$STORE/records/"}
		[[ $(stat -c %a "$d") = $(stat -c %a "$MNT/$rel") ]] || return 1
	done < <(find "$STORE/records" -mindepth 1 -type d -print0)
}
check "[ \"\$(stat -c %a '$STORE')\" = 700 ]" "STORE is 0700 (daemon umask 000)"
check "[ -z \"\$(bad_modes '$STORE')\" ]" \
	"while mounted: files 0600, directories 0700 ($(bad_modes "$STORE" | head -3 | tr '\n' ' '))"
check "ns_modes_match" \
	"namespace directories carry exactly the mode the mount shows"
check "[ \"\$(stat -c %a '$STORE/records/private')\" = 700 ]" \
	"mkdir -m 700 makes a 0700 namespace"
umount_store
check "[ -z \"\$(bad_modes '$STORE')\" ]" \
	"after unmount (snapshot, history): files 0600, directories 0700 ($(bad_modes "$STORE" | head -3 | tr '\n' ' '))"
chmod 711 "$T"
check "! nobody ls '$STORE' >/dev/null 2>&1 && ! nobody cat '$STORE/records/ns/deep/n' 2>/dev/null" \
	"another user reaches nothing in the store, not even 0755 namespaces"
chmod 700 "$T"

# ---- 2. hostile names ------------------------------------------------------

mount_store || exit 1
nl_name=$'line1\nline2'
ctl_name=$'ctl\x01\x1b[31mred\x7f'
utf_name='café-日本語 ümlaut'
quote_name='q"uo\te'\''s'
for n in "$nl_name" "$ctl_name" "$utf_name" "$quote_name"; do
	shown=$(printf '%q' "$n")
	check 'printf "%s" "$n" >"$MNT/$n" && [ "$(cat "$MNT/$n")" = "$n" ]' \
		"name $shown is an ordinary record"
	check '[ -f "$STORE/records/$n" ] && [ "$(cat "$STORE/records/$n")" = "$n" ]' \
		"... stored under exactly that name"
	check 'ls -A "$MNT" | grep -qxF -- "$(printf "%s" "$n" | head -n1)"' \
		"... and listed"
done
check "[ \"\$(version \"\$MNT/\$nl_name\")\" = 1 ]" \
	"a name with a newline has its version attribute"
mkdir -p "$MNT/ns"
for n in .git .GIT .gIt ns/.Git; do
	check "echo x >'$MNT/$n' && [ -f '$STORE/records/$n' ]" \
		"$n is an ordinary name (SPEC 2)"
done
check "echo x >'$MNT/ns/.recfs' && [ -f '$STORE/records/ns/.recfs' ]" \
	".recfs below the root is an ordinary name"
u255=$(printf '日%.0s' $(seq 85)) # 255 bytes of UTF-8
u258=$(printf '日%.0s' $(seq 86)) # 258 bytes
check "echo x >'$MNT/$u255' && [ -f '$STORE/records/$u255' ]" \
	"a 255-byte UTF-8 component works"
check "! { echo x >'$MNT/$u258'; } 2>/dev/null && [ ! -e '$STORE/records/$u258' ]" \
	"a 258-byte UTF-8 component fails and creates nothing"
d32=$(printf 'd%s/' $(seq 31))
check "mkdir -p '$MNT/$d32' && echo deep >'$MNT/${d32}r32' && [ \"\$(cat '$MNT/${d32}r32')\" = deep ]" \
	"an ID of 32 components works"
check "mkdir '$MNT/${d32}n32'" "a namespace of 32 components works"
check "! { echo x >'$MNT/${d32}n32/r33'; } 2>/dev/null && ! mkdir '$MNT/${d32}n32/n33' 2>/dev/null" \
	"33 components fail (record and namespace)"
check "[ -z \"\$(ls -A '$STORE/records/${d32}n32')\" ]" "... and create nothing"
check "echo v1 >'$MNT/c@0' && [ -f '$STORE/records/c' ] && [ ! -e '$STORE/records/c@0' ]" \
	"c@0 creates record c, not a file c@0"
check "! { echo v2 >'$MNT/c@0'; } 2>/dev/null && [ \"\$(cat '$MNT/c')\" = v1 ]" \
	"c@0 again fails (create-only) and c is unchanged"
check "[ \"\$(cat '$MNT/c@1')\" = v1 ]" "c@1 reads version 1"
for n in 'c@01' 'c@99999999999999999999' '@5'; do
	check "! { echo x >'$MNT/$n'; } 2>/dev/null && [ ! -e '$STORE/records/$n' ]" \
		"$n is refused and creates nothing"
done
for n in 'c@' 'c@1a' 'mail@example.com' 'ns@3x'; do
	check "echo x >'$MNT/$n' && [ -f '$STORE/records/$n' ]" \
		"$n is an ordinary ID"
done
check "! mkdir '$MNT/dir@7' 2>/dev/null && [ ! -e '$STORE/records/dir@7' ]" \
	"mkdir of a conditional name fails and creates nothing"
umount_store
if command -v git >/dev/null; then
	check "git -C '$STORE/history.git' ls-tree -r -z --name-only main | tr '\\0' '\\n' | grep -qxF line2" \
		"the history's tree holds the name with a newline"
	check "[ -z \"\$(git -C '$STORE/history.git' ls-tree -r -z --name-only main | tr '\\0' '\\n' | grep -iE '(^|/)\\.git(/|\$)')\" ]" \
		"nothing named .git in the history's tree (recfs(5): .git~recfs)"
	check "git -C '$STORE/history.git' ls-tree -r -z --name-only main | tr '\\0' '\\n' | grep -qxF ns/.Git~recfs" \
		"... ns/.Git is there as ns/.Git~recfs"
fi
check "'$RECFSCTL' verify '$STORE' >/dev/null 2>&1" \
	"recfsctl verify is clean after the hostile names"

# ---- 3. planted hard links, symlinks, FIFOs, device nodes ------------------

printf 'outside original\n' >"$T/outside"
chmod 644 "$T/outside"
touch -d '2001-02-03 04:05:06' "$T/outside"
out_ino=$(inode "$T/outside")
out_mtime=$(stat -c %Y "$T/outside")
# outside_intact: content, mode, mtime and xattrs of the outside file
outside_intact() {
	[[ $(cat "$T/outside") = 'outside original' ]] &&
		[[ $(stat -c %a "$T/outside") = 644 ]] &&
		[[ $(stat -c %Y "$T/outside") = "$out_mtime" ]] &&
		[[ -z $(getfattr -d "$T/outside" 2>/dev/null) ]]
}
for i in 1 2 3 4 5 6 7 8 9; do
	ln "$T/outside" "$STORE/records/hl$i"
done
mkdir "$T/victim"
echo 'victim file' >"$T/victim/file"
ln -s "$T/victim" "$STORE/records/slns"
mkfifo "$STORE/records/fifo"
have_dev=0
if mknod "$STORE/records/null" c 1 3 2>/dev/null; then
	have_dev=1
fi
mount_store || exit 1

check "[ \"\$(cat '$MNT/hl1')\" = 'outside original' ]" \
	"a planted hard link reads as an ordinary record"
check "[ \"\$(version '$MNT/hl1')\" = 1 ]" "... version 1, like an adopted file"
check "echo new >'$MNT/hl1' && [ \"\$(cat '$MNT/hl1')\" = new ]" \
	"echo new > the hard link commits version 2"
check "outside_intact" "... and the outside file is unchanged"
check "[ \"\$(inode '$STORE/records/hl1')\" != '$out_ino' ]" \
	"... because the record is a new inode that replaced the link"
check "echo more >>'$MNT/hl2' && outside_intact" "append (>>): outside unchanged"
check "printf X | dd of='$MNT/hl3' bs=1 seek=2 conv=notrunc 2>/dev/null && [ \"\$(head -c 4 '$MNT/hl3')\" = ouXs ] && outside_intact" \
	"partial write in the middle: outside unchanged"
check "truncate -s 3 '$MNT/hl4' && [ \"\$(stat -c %s '$MNT/hl4')\" = 3 ] && outside_intact" \
	"truncate: outside unchanged"
check "chmod 600 '$MNT/hl5' && touch -d 2020-01-01 '$MNT/hl5' && setfattr -n user.x -v 1 '$MNT/hl5' && outside_intact" \
	"chmod, touch, setfattr: outside unchanged"
check "rm '$MNT/hl6' && outside_intact" "rm: outside unchanged"
check "mv '$MNT/hl7' '$MNT/moved' && echo changed >'$MNT/moved' && outside_intact" \
	"mv, then a write: outside unchanged"
check "sed -i 's/original/EDITED/' '$MNT/hl8' && grep -q EDITED '$MNT/hl8' && outside_intact" \
	"sed -i: outside unchanged"
check "rsync -a '$T/src/sub/r' '$MNT/hl9' && outside_intact" \
	"rsync onto it: outside unchanged"
check "[ \"\$(find '$STORE/records' -samefile '$T/outside')\" = '$STORE/records/hl5' ]" \
	"only the record never rewritten (metadata changes only) still shares the inode"

check "! ls '$MNT/slns' >/dev/null 2>&1 && ! cat '$MNT/slns/file' 2>/dev/null" \
	"a symlinked namespace is refused (not listed into, not read through)"
check "! { echo pwn >'$MNT/slns/new'; } 2>/dev/null && [ ! -e '$T/victim/new' ]" \
	"... nothing can be created through it"
check "! mkdir '$MNT/slns/d' 2>/dev/null && [ ! -e '$T/victim/d' ]" \
	"... no namespace can be made through it"
check "! rm '$MNT/slns/file' 2>/dev/null && [ \"\$(cat '$T/victim/file')\" = 'victim file' ]" \
	"... nothing can be removed through it"
check "! ls '$MNT' | grep -qx slns" "... and it is not listed"
check "[ -L '$STORE/records/slns' ] && [ \"\$(ls '$T/victim')\" = file ]" \
	"... the symlink and its target are as they were"

check "! ls '$MNT' | grep -qx fifo" "a planted FIFO is not listed"
# does not block: a read that blocks is stopped by the timeout (exit 124)
# however long the machine takes, one that fails fails before it
timeout 30 cat "$MNT/fifo" >/dev/null 2>&1
rc=$?
check "[ $rc -ne 0 ]" "reading a planted FIFO fails (exit $rc)"
check "[ $rc -ne 124 ]" "... at once (it does not block)"
check "timeout 30 sh -c 'echo x >\"$MNT/fifo\"' 2>/dev/null; [ \$? -ne 124 ]" \
	"writing a record over a planted FIFO does not block"
check "[ ! -p '$STORE/records/fifo' ] || ! timeout 2 cat '$STORE/records/fifo' 2>/dev/null" \
	"... and nothing was written into the FIFO"
if ((have_dev)); then
	check "! ls '$MNT' | grep -qx null && ! timeout 5 cat '$MNT/null' 2>/dev/null" \
		"a planted device node is not listed and cannot be read"
fi

# A record replaced by a FIFO while unmounted: the index still knows the
# name, so reads get as far as opening it. They must not block, and the
# FIFO should not even be opened (a writer blocked on it is not released).
echo content >"$MNT/wasrec"
umount_store
rm "$STORE/records/wasrec"
mkfifo "$STORE/records/wasrec"
mount_store || exit 1
(timeout 60 sh -c "exec 3>'$STORE/records/wasrec'; echo opened >'$T/fifo-writer'" \
	2>/dev/null &)
# wait until that writer is blocked in its open of the FIFO
fifo_writer_waits() {
	local p
	for p in $(pgrep -f "^sh -c exec 3>'$STORE/records/wasrec'"); do
		[[ $(cat "/proc/$p/wchan" 2>/dev/null) == wait_for_partner ]] &&
			return 0
	done
	return 1
}
await 20 fifo_writer_waits ||
	note "the FIFO writer was not seen waiting (/proc/PID/wchan)"
timeout 30 cat "$MNT/wasrec" >/dev/null 2>&1
rc=$?
check "[ $rc -ne 0 ] && [ $rc -ne 124 ]" \
	"a record replaced by a FIFO fails to read, at once (exit $rc; 124: it blocked)"
sleep 0.5
check "[ ! -e '$T/fifo-writer' ]" \
	"the daemon does not open a FIFO found under a record's name (store/be_file.c f_open looks through O_PATH first)"
# release the writer above, if it still waits, so that nothing is left
timeout 10 cat "$STORE/records/wasrec" >/dev/null 2>&1 || true

# ---- 4. oversized xattrs ---------------------------------------------------

printf 'precious\n' >"$MNT/x"
setfattr -n user.keep -v 1 "$MNT/x"
xv=$(version "$MNT/x")
# setx FILE NAME SIZE: setfattr a value of SIZE bytes; prints the error
setx() {
	python3 - "$1" "$2" "$3" <<-'EOF'
	import errno, os, sys
	try:
	    os.setxattr(sys.argv[1], sys.argv[2], b"v" * int(sys.argv[3]))
	except OSError as e:
	    print(errno.errorcode[e.errno]); sys.exit(1)
	print("OK")
	EOF
}
check "[ \"\$(setx '$MNT/x' user.big $((65 * 1024)))\" = E2BIG ]" \
	"a 65 KiB value fails with E2BIG"
check "[ \"\$(setx '$MNT/x' user.big 65536)\" = ENOSPC ]" \
	"a 64 KiB value (over the 64 KiB per record with its name) fails with ENOSPC"
check "[ \"\$(setx '$MNT/x' user.$(printf 'n%.0s' $(seq 295)) 1)\" = ERANGE ]" \
	"a 300-byte name fails with ERANGE"
# tally: "ERR=count ..." of the lines on stdin
tally() {
	sort | uniq -c | awk '{printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1}'
}
errs=$(for i in $(seq 100); do setx "$MNT/x" "user.a$i" 1; done | tally)
check "[ '$errs' = 'ENOSPC=37 OK=63' ]" \
	"100 attributes: the 64 the record may hold, then ENOSPC ($errs)"
# record_intact: content, version and attributes as they were
record_intact() {
	[[ $(cat "$MNT/x") = precious ]] && [[ $(version "$MNT/x") = "$xv" ]] &&
		[[ $(xattr user.keep "$MNT/x") = 1 ]] &&
		[[ $(getfattr -d -m '^user\.a' "$MNT/x" 2>/dev/null | grep -c '^user\.a') = 63 ]]
}
check "record_intact" "the record is intact (content, version, attributes)"
umount_store
mount_store || exit 1
check "record_intact" "... also after a remount"

# the same limits on a scratch file and on a file not committed yet: these
# lists live in the daemon's memory until their commit
echo s >"$MNT/.scratch.ABC123"
check "[ \"\$(setx '$MNT/.scratch.ABC123' user.big 65536)\" = ENOSPC ]" \
	"scratch file: a 64 KiB value fails with ENOSPC"
errs=$(for i in $(seq 70); do setx "$MNT/.scratch.ABC123" "user.a$i" 1; done |
	tally)
check "[ '$errs' = 'ENOSPC=6 OK=64' ]" \
	"scratch file: 64 attributes, then ENOSPC ($errs)"
check "mv '$MNT/.scratch.ABC123' '$MNT/from-scratch' && [ \"\$(getfattr -d -m '^user\\.a' '$MNT/from-scratch' 2>/dev/null | grep -c '^user\\.a')\" = 64 ]" \
	"... renamed onto a record, it commits with its 64 attributes"
pend=$(python3 - "$MNT/pending" <<-'EOF'
	import errno, os, sys
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
	os.write(fd, b"p\n")
	res = {}
	for i in range(70):
	    try:
	        os.setxattr(sys.argv[1], "user.p%d" % i, b"v")
	        res["OK"] = res.get("OK", 0) + 1
	    except OSError as e:
	        k = errno.errorcode[e.errno]
	        res[k] = res.get(k, 0) + 1
	os.close(fd)
	print(" ".join("%s=%d" % kv for kv in sorted(res.items())))
	EOF
)
check "[ '$pend' = 'ENOSPC=6 OK=64' ]" \
	"a file created but not committed yet takes 64 attributes at most ($pend)"
check "[ \"\$(cat '$MNT/pending')\" = p ]" "... and commits"
umount_store

# ---- 5. allow_other with default_permissions -------------------------------

can_share=0
if [[ $(id -u) = 0 ]] || grep -qs '^user_allow_other' /etc/fuse.conf; then
	can_share=1
fi
if ((can_share)) && command -v setpriv >/dev/null; then
	chmod 711 "$T"
	mount_store -o allow_other,default_permissions || exit 1
	chmod 755 "$MNT"
	echo secret >"$MNT/priv"
	chmod 600 "$MNT/priv"
	echo public >"$MNT/pub"
	chmod 644 "$MNT/pub"
	echo 'old, public' >"$MNT/was-public"
	chmod 644 "$MNT/was-public"
	echo 'new, private' >"$MNT/was-public"
	chmod 600 "$MNT/was-public"
	mkdir -m 700 "$MNT/secretns"
	echo plan >"$MNT/secretns/plan"
	chmod 644 "$MNT/secretns/plan"
	pv=$(version "$MNT/priv")
	# let the history catch up, so that the views below have every version
	await 60 "[[ \$(xattr user.recfs.commit '$MNT/was-public') != pending &&
		\$(xattr user.recfs.commit '$MNT/secretns/plan') != pending ]]"

	out=$(nobody cat "$MNT/priv" 2>&1)
	check "! nobody cat '$MNT/priv' >/dev/null 2>&1 && grep -q 'Permission denied' <<<\"\$out\"" \
		"another user cannot read a 0600 record: EACCES ($out)"
	check "[ \"\$(nobody cat '$MNT/pub')\" = public ]" \
		"another user can read a 0644 record"
	out=$(nobody sh -c "echo hack >'$MNT/pub'" 2>&1)
	check "grep -q 'Permission denied' <<<\"\$out\" && [ \"\$(cat '$MNT/pub')\" = public ]" \
		"another user cannot write a 0644 record: EACCES ($out)"
	check "! nobody sh -c \"echo hack >>'$MNT/pub'\" 2>/dev/null && ! nobody truncate -s 0 '$MNT/pub' 2>/dev/null" \
		"... nor append to it or truncate it"
	check "! nobody rm '$MNT/pub' 2>/dev/null && ! nobody mv '$MNT/pub' '$MNT/pub2' 2>/dev/null" \
		"... nor remove or rename it (the root is 0755)"
	check "! nobody chmod 666 '$MNT/pub' 2>/dev/null && ! nobody setfattr -n user.x -v 1 '$MNT/pub' 2>/dev/null" \
		"... nor chmod it or set an attribute"
	check "! nobody touch '$MNT/new' 2>/dev/null && [ ! -e '$STORE/records/new' ]" \
		"... nor create a record in a 0755 namespace"
	check "[ \"\$(cat '$MNT/pub')\" = public ] && [ \"\$(version '$MNT/priv')\" = '$pv' ]" \
		"the records are unchanged"
	check "! nobody cat '$MNT/priv@$pv' >/dev/null 2>&1" \
		"ID@N of a 0600 record is not readable by another user"
	# the history views (ID@N, .recfs/history/ID/N) must not undo the
	# modes: an old version of a record made private, the current version
	# of a private record, a record in a private namespace
	for p in was-public@1 was-public@2 .recfs/history/was-public/1 \
		.recfs/history/was-public/2 ".recfs/history/priv/$pv" \
		.recfs/history/secretns/plan/1; do
		check "! nobody cat '$MNT/$p' 2>/dev/null | grep -q ." \
			"another user cannot read $p"
	done
	check "! nobody ls -R '$MNT/.recfs/history' 2>/dev/null | grep -q plan" \
		"... nor list the records of a 0700 namespace through .recfs/history"
	umount_store

	# allow_other alone: recfs adds default_permissions
	mount_store -o allow_other || exit 1
	check "grep -E \"[[:space:]]${MNT}[[:space:]]\" /proc/mounts | grep -q default_permissions" \
		"-o allow_other mounts with default_permissions"
	check "! nobody cat '$MNT/priv' >/dev/null 2>&1" \
		"... so a 0600 record stays private"
	check "! nobody sh -c \"echo hack >'$MNT/pub'\" 2>/dev/null && [ \"\$(cat '$MNT/pub')\" = public ]" \
		"... and a 0644 record read-only"
	umount_store
	chmod 700 "$T"
else
	note "skipped allow_other checks: not root and no user_allow_other in /etc/fuse.conf"
fi

finish
