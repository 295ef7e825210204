#!/usr/bin/env bash
# Whole-store changes (SPEC sections 5 and 7): `recfsctl rollback STORE
# --to REVISION|DATE` brings every record back to its state at a revision
# as one store change (new versions only: the history grows), and
# `recfsctl import STORE DIR` loads a directory tree as one change, one git
# commit with one trailer block per record. On a mount point the daemon
# does them (its control channel): last section.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
GIT="git --git-dir=$STORE/history.git"

# blocks_at REV: trailer blocks of revision REV in the whole history.
blocks_at() {
	$GIT log --format=%B refs/heads/main | grep -c "^Recfs-Revision: $1\$"
}

# ---- a history to roll back ---------------------------------------------

check "'$RECFSCTL' init '$STORE' >/dev/null" "recfsctl init"
mount_store || exit 1
mkdir -p "$MNT/ns"
echo a-1 >"$MNT/a"
echo b-1 >"$MNT/b"
echo c-1 >"$MNT/ns/c"
echo keep >"$MNT/keep"
R=$(revision)
check "[ '$R' = 4 ]" "four changes make revision 4 (got $R)"
echo a-2 >"$MNT/a"
echo a-3 >"$MNT/a"
rm "$MNT/b"
echo d-1 >"$MNT/d"
mv "$MNT/ns/c" "$MNT/e"
NOW=$(revision)
check "[ '$NOW' = 9 ]" "five more changes: revision 9 (got $NOW)"

# --dry-run needs the store directory
out=$("$RECFSCTL" rollback --dry-run "$MNT" --to "$R" 2>&1)
rc=$?
check "[ $rc = 1 ]" "rollback --dry-run on a mount point exits 1 (got $rc)"
check "grep -q 'store directory' <<<'$out'" "and says why: $out"
check "[ '$(revision)' = '$NOW' ]" "nothing changed through the mount"
# while mounted the store directory is locked
check "! '$RECFSCTL' rollback '$STORE' --to '$R' >/dev/null 2>&1" \
	"rollback of a mounted store directory fails (locked)"
umount_store

HIST0=$($GIT log --format=%B refs/heads/main | grep -c '^Recfs-Id: ')
check "[ '$HIST0' = 10 ]" "ten versions in the history before (got $HIST0)"

# usage errors
"$RECFSCTL" rollback "$STORE" --to yesterday >/dev/null 2>&1
check "[ $? = 2 ]" "--to yesterday is a usage error (exit 2)"
"$RECFSCTL" rollback "$STORE" --to 2026-13-01 >/dev/null 2>&1
check "[ $? = 2 ]" "--to with month 13 is a usage error"
check "! '$RECFSCTL' rollback '$STORE' --to 99 >/dev/null 2>&1" \
	"--to a revision after the current one fails"

out=$("$RECFSCTL" rollback --dry-run "$STORE" --to "$R")
check "grep -q 'would give 3 records a new version and delete 2' <<<'$out'" \
	"--dry-run says what would change: $out"
out=$("$RECFSCTL" rollback "$STORE" --to "$R")
check "[ $? = 0 ]" "recfsctl rollback STORE --to $R"
check "grep -q 'as revision 10: 3 records given a new version, 2 deleted' \
	<<<'$out'" "one store change, revision 10: $out"
check "[ \$(blocks_at 10) = 5 ]" "revision 10 has five trailer blocks"
check "[ \$($GIT log --format=%H refs/heads/main | wc -l) -ge 2 ]" \
	"the history has its commits"
check "[ \$($GIT log --format=%B -1 refs/heads/main | grep -c '^Recfs-Id: ') = 5 ]" \
	"all five in the last commit"
HIST1=$($GIT log --format=%B refs/heads/main | grep -c '^Recfs-Id: ')
check "[ '$HIST1' = 15 ]" "the history only grew: 15 versions (got $HIST1)"
# the versions 1..9 are all still there
check "[ \$($GIT log --format=%B refs/heads/main | grep -c '^Recfs-Revision: [1-9]\$') = 10 ]" \
	"the old trailer blocks are untouched"
check "'$RECFSCTL' verify '$STORE' >/dev/null" "recfsctl verify is clean"

mount_store || exit 1
check "[ \"\$(cat '$MNT/a')\" = a-1 ]" "a has its content of revision $R"
check "[ \$(version '$MNT/a') = 4 ]" "as a new version (4)"
check "[ \"\$(cat '$MNT/b')\" = b-1 ] && [ \$(version '$MNT/b') = 2 ]" \
	"b is re-created as version 2"
check "[ \"\$(cat '$MNT/ns/c')\" = c-1 ] && [ \$(version '$MNT/ns/c') = 2 ]" \
	"ns/c is back (version 2)"
check "[ ! -e '$MNT/d' ] && [ ! -e '$MNT/e' ]" \
	"d and e, made after revision $R, are gone"
check "[ \$(version '$MNT/keep') = 1 ]" "keep is untouched"
check "[ \"\$(cat '$MNT/a@2')\" = a-2 ]" "a@2 still reads from the history"
check "[ '$(revision)' = 10 ]" "the mount says revision 10"
umount_store

# to the current revision: nothing
out=$("$RECFSCTL" rollback "$STORE" --to 10)
check "grep -q 'nothing changed' <<<'$out'" "rollback --to the current revision: $out"
# by date: @EPOCH and ISO 8601 (UTC)
out=$("$RECFSCTL" rollback "$STORE" --to @1)
check "grep -q '@1 is revision 0' <<<'$out'" "@1 maps to revision 0: $out"
check "grep -q '0 records given a new version, 4 deleted' <<<'$out'" \
	"and rolls back to the empty store"
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
out=$("$RECFSCTL" rollback --dry-run "$STORE" --to "$later")
check "grep -q \"$later is revision 11\" <<<'$out'" "$later is the last revision"
out=$("$RECFSCTL" rollback "$STORE" --to 10)
check "grep -q '4 records given a new version, 0 deleted' <<<'$out'" \
	"and back to revision 10: $out"
check "'$RECFSCTL' verify '$STORE' >/dev/null" "recfsctl verify is clean again"

# ---- import ---------------------------------------------------------------

SRC=$T/src
mkdir -p "$SRC/x/y" "$SRC/z"
echo top >"$SRC/top"
echo xy >"$SRC/x/y/deep"
echo x1 >"$SRC/x/one"
echo a-1 >"$SRC/a" # what a is now: unchanged
head -c 3000000 /dev/urandom >"$SRC/z/big"
ln -s /etc/passwd "$SRC/link"
echo bad >"$SRC/bad@7"
out=$("$RECFSCTL" import "$STORE" "$SRC" 2>"$T/import.err")
check "[ $? = 0 ]" "recfsctl import STORE DIR"
# a symlink becomes a symlink record (SPEC 2), never followed
check "grep -q '5 records given a new version, 1 unchanged, 1 skipped' <<<'$out'" \
	"four files and a symlink imported, one unchanged, one skipped: $out"
check "grep -q 'bad@7' '$T/import.err'" \
	"the skipped file is named on stderr"
IREV=$(sed -n 's/.*as revision \([0-9]*\).*/\1/p' <<<"$out")
check "[ -n '$IREV' ] && [ \$(blocks_at '$IREV') = 5 ]" \
	"the import is one revision with five trailer blocks"
msg=$($GIT log -1 --format=%B refs/heads/main)
check "[ \$(grep -c '^Recfs-Id: ' <<<'$msg') = 5 ]" \
	"git log shows one commit with one trailer block per record"
check "[ \"\$($GIT cat-file -p refs/heads/main:link)\" = /etc/passwd ] && $GIT ls-tree refs/heads/main link | grep -q '^120000 '" \
	"the symlink is a git symlink to its target"
check "[ -f '$STORE/records/link' ] && [ ! -L '$STORE/records/link' ]" \
	"... and a plain file in the store"
for id in top x/y/deep x/one z/big link; do
	check "grep -qx 'Recfs-Id: $id' <<<'$msg'" "  with $id"
done
check "'$RECFSCTL' verify '$STORE' >/dev/null" "verify after the import"
out=$("$RECFSCTL" import "$STORE" "$SRC" 2>/dev/null)
check "grep -q 'nothing changed' <<<'$out'" "a second import changes nothing"

mount_store || exit 1
check "cmp '$SRC/z/big' '$MNT/z/big'" "the big file reads back"
check "[ \"\$(cat '$MNT/x/y/deep')\" = xy ]" "nested files are records"
umount_store

# ---- through a mount point --------------------------------------------------

mount_store || exit 1
echo m-1 >"$MNT/m"
MR=$(revision)
echo m-2 >"$MNT/m"
echo n-1 >"$MNT/n"
rm "$MNT/top"
exec 7<"$MNT/m" # a reader open across the rollback follows it (SPEC 3)
ls "$MNT" >/dev/null # a listing the kernel may keep (dir.c)
out=$("$RECFSCTL" rollback "$MNT" --to "$MR" 2>&1)
check "[ $? = 0 ]" "recfsctl rollback MNT --to $MR: $out"
check "grep -q 'done as revision' <<<'$out'" "says the new revision"
check "[ \"\$(cat '$MNT/m')\" = m-1 ] && [ \$(version '$MNT/m') = 3 ]" \
	"m is back to m-1 as version 3"
check "[ ! -e '$MNT/n' ]" "n, made after revision $MR, is gone"
check "! ls '$MNT' | grep -qx n && ls '$MNT' | grep -qx top" \
	"... and a listing of the root (the kernel kept it) no longer has n, has top again"
mkdir -p "$T/imp/sub"
echo new >"$T/imp/sub/added"
mkdir -p "$MNT/sub"
ls "$MNT/sub" >/dev/null # kept by the kernel, then changed behind it
"$RECFSCTL" import "$MNT" "$T/imp" >/dev/null 2>&1
check "ls '$MNT/sub' | grep -qx added" \
	"an import through the mount shows in a listing the kernel had kept"
check "[ \"\$(cat '$MNT/top')\" = top ]" "top is back"
check "[ \"\$(cat <&7)\" = m-1 ]" "the reader open before reads m-1, as the rollback left it"
exec 7<&-
# the kernel kept the name n (deleted behind its back): it must forget
# it, or an open(O_CREAT) without O_TRUNC would be sent as a plain open
check "printf n-2 | dd of='$MNT/n' conv=notrunc status=none && [ \"\$(cat '$MNT/n')\" = n-2 ]" \
	"dd conv=notrunc creates n again right after the rollback"
v=$(version "$MNT/n")
check "rm '$MNT/n@$v' && printf n-3 | dd of='$MNT/n' conv=notrunc status=none && [ \"\$(cat '$MNT/n')\" = n-3 ]" \
	"and right after rm n@$v"
rm -f "$MNT/n"
out=$("$RECFSCTL" rollback "$MNT" --to "$(revision)" 2>&1)
check "grep -q 'nothing changed' <<<'$out'" "rollback to now through the mount: $out"
SRC2=$T/src2
mkdir -p "$SRC2/q"
echo q1 >"$SRC2/q/one"
echo q2 >"$SRC2/q/two"
before=$(revision)
out=$(cd "$T" && "$RECFSCTL" import "$MNT" src2 2>&1)
check "[ $? = 0 ]" "recfsctl import MNT DIR (a relative DIR): $out"
check "[ \$(revision) = \$((before + 1)) ]" "one store change"
check "[ \"\$(cat '$MNT/q/one')\" = q1 ] && [ \"\$(cat '$MNT/q/two')\" = q2 ]" \
	"the imported records read back through the mount"
check "! '$RECFSCTL' import '$MNT' '$MNT' >/dev/null 2>&1" \
	"importing the mount into itself is refused"
check "! '$RECFSCTL' rollback '$MNT' --to 999 >/dev/null 2>&1" \
	"rollback through the mount to a future revision fails"
umount_store
check "'$RECFSCTL' verify '$STORE' >/dev/null" "verify after the changes through the mount"
msg=$($GIT log -1 --format=%B refs/heads/main)
check "grep -q '^Recfs-Comm: recfsctl' <<<'$msg'" \
	"the import through the mount is recorded as made by recfsctl"

finish
