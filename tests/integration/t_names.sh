#!/usr/bin/env bash
# Hostile names are refused; a symlink planted in the store is not
# followed; symlinks, hard links and FIFOs cannot be made in the mount.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
long=$(printf 'n%.0s' $(seq 256))

# SPEC 2: .git is an ordinary name (git init works in a mount)
check "mkdir '$MNT/ns' && mkdir '$MNT/ns/.git' && echo ref >'$MNT/ns/.git/HEAD' && [ \"\$(cat '$MNT/ns/.git/HEAD')\" = ref ]" \
	".git inside a namespace is an ordinary name"
check "! touch '$MNT/$long' 2>/dev/null" "a 256-byte name fails"
check "touch '$MNT/${long:1}' && [ -e '$MNT/${long:1}' ] && rm '$MNT/${long:1}'" \
	"a 255-byte name works"
check "! touch '$MNT/x@5' 2>/dev/null" "touch x@5 fails when x does not exist"
check "[ ! -e '$MNT/x' ] && [ ! -e '$MNT/x@5' ]" "... and creates nothing"
check "! touch '$MNT/a@01' 2>/dev/null" "touch a@01 fails"
check "[ -z \"\$(ls -A '$MNT' | grep -v '^ns\$')\" ]" \
	"the refused names left nothing ($(ls -A "$MNT" | tr '\n' ' '))"
check "[ -f '$STORE/records/ns/.git/HEAD' ]" \
	".git is stored under its own name in records/"
check "! touch '$MNT/.recfs/x' 2>/dev/null && ! mkdir '$MNT/.recfs/y' 2>/dev/null" \
	"nothing can be made in .recfs"
check "! mkdir '$MNT/.recfs' 2>/dev/null" "mkdir .recfs fails"
check "echo ok >'$MNT/alice@example.com.json' && [ \"\$(cat '$MNT/alice@example.com.json')\" = ok ]" \
	"@ elsewhere in a name is an ordinary ID"
check "echo ok >'$MNT/with space and é' && [ \"\$(cat '$MNT/with space and é')\" = ok ]" \
	"spaces and UTF-8 are ordinary"

# symlinks planted in the store are not followed
ln -s /etc/passwd "$STORE/records/evil"
ln -s /etc "$STORE/records/evildir"
out=$(cat "$MNT/evil" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cat of a symlink planted while mounted fails"
check "! grep -q 'root:' <<<\"\$out\"" "... and shows nothing of /etc/passwd"
check "! cat '$MNT/evildir/passwd' 2>/dev/null | grep -q root:" \
	"a planted directory symlink is not followed"
check "! { echo pwn >'$MNT/evildir/pwned'; } 2>/dev/null && [ ! -e /etc/pwned ]" \
	"nothing can be written through a planted directory symlink"
check "! { echo pwn >>'$MNT/evil'; } 2>/dev/null; ! grep -q pwn /etc/passwd" \
	"appending to a planted symlink does not reach its target"
umount_store
ln -s /etc/passwd "$STORE/records/evil2"
mount_store || exit 1
out=$(cat "$MNT/evil2" 2>&1)
rc=$?
check "[ $rc -ne 0 ]" "cat of a symlink planted while unmounted fails"
check "! grep -q 'root:' <<<\"\$out\"" "... and shows nothing of /etc/passwd"
check "! cat '$MNT/evil' 2>/dev/null | grep -q root:" \
	"the first planted symlink is still refused after a remount"
check "! grep -rqs root: '$MNT'" "grep -r over the mount finds nothing of /etc/passwd"
check "! cp '$MNT/evil2' '$T/copy' 2>/dev/null || ! grep -q root: '$T/copy'" \
	"cp of a planted symlink copies nothing of /etc/passwd"
rm -f "$STORE/records/evil" "$STORE/records/evil2" "$STORE/records/evildir"

# symlinks are records (SPEC 2); hard links, FIFOs, device nodes are not
echo data >"$MNT/target"
out=$(ln -s target "$MNT/sl" 2>&1)
check "[ -L '$MNT/sl' ] && [ \"\$(readlink '$MNT/sl')\" = target ]" \
	"ln -s makes a symlink record ($out)"
check "[ \"\$(cat '$MNT/sl')\" = data ]" "... which the kernel follows"
out=$(ln "$MNT/target" "$MNT/hl" 2>&1)
check "[ -n \"\$(grep 'Operation not permitted' <<<\"\$out\")\" ] && [ ! -e '$MNT/hl' ]" \
	"ln fails with EPERM ($out)"
out=$(mkfifo "$MNT/fifo" 2>&1)
check "[ -n \"\$(grep 'Operation not permitted' <<<\"\$out\")\" ] && [ ! -e '$MNT/fifo' ]" \
	"mkfifo fails with EPERM ($out)"
out=$(mknod "$MNT/null" c 1 3 2>&1)
check "[ -n \"\$(grep 'Operation not permitted' <<<\"\$out\")\" ] && [ ! -e '$MNT/null' ]" \
	"mknod of a device fails with EPERM ($out)"
out=$(python3 -c "import os, socket; s = socket.socket(socket.AF_UNIX); s.bind('$MNT/sock')" 2>&1)
check "[ ! -S '$MNT/sock' ]" "a unix socket cannot be bound in the mount"
check "[ \"\$(cat '$MNT/target')\" = data ]" "the link target is unchanged"

finish
