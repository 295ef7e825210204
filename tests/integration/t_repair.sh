#!/usr/bin/env bash
# recfsctl verify --repair (SPEC section 7), with corruption injected into
# an unmounted store:
#  - a record file overwritten in place, one replaced by other bytes of
#    another size, one removed: verify exits 1 naming each; --repair
#    restores each from the history blob of its current version; verify
#    is then clean, the contents are the committed ones, no version was
#    added and history.git did not move;
#  - a blob removed from history.git is written back from the record
#    that holds it (git fsck clean again);
#  - the file of a deleted record left in the store is removed when the
#    history keeps its content, and left (exit 1, named) when not;
#  - a record whose file is corrupt and whose history blob is gone is
#    reported as not repairable (exit 1) and its file is not touched.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
GIT="git --git-dir=$STORE/history.git"
SAVED=$T/saved
mkdir -p "$SAVED"

# verify [--repair]: run it; output in $T/out, status in $RC.
verify() {
	"$RECFSCTL" verify "$@" "$STORE" >"$T/out" 2>&1
	RC=$?
}

# loose OID: the path of a loose object of the store's history.
loose() {
	echo "$STORE/history.git/objects/${1:0:2}/${1:2}"
}

# loosen: the history's packs as loose objects (the writer packs them),
# so that a test can remove one object.
loosen() {
	local p
	for p in "$STORE"/history.git/objects/pack/pack-*.pack; do
		[ -e "$p" ] || continue
		mv "$p" "$p.x"
		rm -f "${p%.pack}.idx"
		$GIT unpack-objects -q <"$p.x" && rm "$p.x" || return 1
	done
}

# ---- a store with a history ----------------------------------------------

mount_store || exit 1
mkdir "$MNT/ns"
echo "a one" >"$MNT/a"
echo "a two" >"$MNT/a"
echo "b in a namespace" >"$MNT/ns/b"
head -c 2500000 /dev/urandom >"$MNT/big" # over the inline size
echo "c" >"$MNT/c"
echo "d, to be deleted" >"$MNT/d"
echo "e, to be deleted" >"$MNT/e"
echo "f" >"$MNT/f"
rm "$MNT/d" "$MNT/e"
for r in a ns/b big c f; do
	mkdir -p "$SAVED/$(dirname "$r")"
	cp "$MNT/$r" "$SAVED/$r"
done
cp "$MNT/d@1" "$SAVED/d"
umount_store
verify
check "[ $RC -eq 0 ]" "the store verifies clean to begin with"
head0=$($GIT rev-parse refs/heads/main)
log0=$("$RECFSCTL" log --json "$STORE" 2>/dev/null)

# ---- 1. record files ------------------------------------------------------

printf 'garbage' >"$STORE/records/a"        # in place, same inode
head -c 1000 /dev/urandom >"$T/x" && mv "$T/x" "$STORE/records/big"
rm "$STORE/records/ns/b"
verify
check "[ $RC -eq 1 ]" "verify finds the damage (exit 1)"
check "grep -q 'record a: content does not match version 2' '$T/out'" \
	"verify names record a and its version"
check "grep -q 'record big: content does not match' '$T/out'" "verify names record big"
check "grep -q 'record ns/b: version 1 is in the index but its file is missing' '$T/out'" \
	"verify names the missing record ns/b"
verify --repair
check "[ $RC -eq 0 ]" "verify --repair repairs it all (exit 0: $(tail -1 "$T/out"))"
check "grep -q 'record a: repaired: version 2 restored from the history' '$T/out'" \
	"--repair says it restored record a"
check "grep -q '3 repaired, 0 not repairable' '$T/out'" "--repair counts 3 repairs"
verify
check "[ $RC -eq 0 ]" "verify is clean after the repair"
for r in a ns/b big; do
	check "cmp -s '$SAVED/$r' '$STORE/records/$r'" "record $r has its committed content again"
done
check "[ \"\$($GIT rev-parse refs/heads/main)\" = '$head0' ]" \
	"the repair did not move the history (no commit)"
check "[ \"\$('$RECFSCTL' log --json '$STORE' 2>/dev/null)\" = '$log0' ]" \
	"the repair added no version"
check "[ \"\$(stat -c %a '$STORE/records/a')\" = 600 ]" "a repaired file is 0600"

# ---- 2. a blob missing from history.git ---------------------------------------

oid=$($GIT rev-parse refs/heads/main:c)
loosen
rm -f "$(loose "$oid")"
verify
check "[ $RC -eq 1 ] && grep -q 'record c: version 1 names blob $oid' '$T/out'" \
	"verify finds the missing blob of record c"
verify --repair
check "[ $RC -eq 0 ] && grep -q 'blob $oid of version 1 written back' '$T/out'" \
	"--repair writes the blob back from the record"
check "[ -f '$(loose "$oid")' ] && $GIT fsck --strict >/dev/null 2>&1" \
	"git fsck is clean again"
check "[ \"\$(stat -c %a '$(loose "$oid")')\" = 600 ]" "the written-back object is 0600"
verify
check "[ $RC -eq 0 ]" "verify is clean after it"

# ---- 3. files of deleted records ----------------------------------------------

cp "$SAVED/d" "$STORE/records/d"        # its version 1: kept in history
echo "never committed" >"$STORE/records/e" # not a version of e
verify
check "[ $RC -eq 1 ] && grep -q 'record d: deleted at version 1 but its file is still there' '$T/out'" \
	"verify finds the left-over file of deleted record d"
verify --repair
check "[ $RC -eq 1 ]" "--repair exits 1: e's file is not a version"
check "[ ! -e '$STORE/records/d' ] && grep -q 'record d: repaired: removed the file' '$T/out'" \
	"the file of d, whose content the history keeps, is removed"
check "grep -q 'record e: cannot be repaired' '$T/out' && [ \"\$(cat '$STORE/records/e')\" = 'never committed' ]" \
	"the file of e is named and left as it was (nothing lost)"
mv "$STORE/records/e" "$T/e.aside"
verify
check "[ $RC -eq 0 ]" "once it is moved away, verify is clean"

# ---- 4. not repairable ----------------------------------------------------

oid=$($GIT rev-parse refs/heads/main:f)
loosen
rm -f "$(loose "$oid")"
printf 'bad bytes' >"$STORE/records/f"
verify --repair
check "[ $RC -eq 1 ] && grep -q 'record f: cannot be repaired' '$T/out'" \
	"a corrupt record whose history blob is gone is reported as not repairable"
check "[ \"\$(cat '$STORE/records/f')\" = 'bad bytes' ]" "its file is left untouched"
check "grep -q 'not repairable: PROBLEMS LEFT' '$T/out'" "the summary says problems are left"

# ---- the repaired store mounts -------------------------------------------

printf 'f\n' >"$STORE/records/f" # its committed content, by hand
verify --repair
check "[ $RC -eq 0 ]" "with f's content back, --repair writes f's blob back too"
mount_store || exit 1
check "cmp -s '$SAVED/a' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 2 ]" \
	"the repaired store mounts, a at version 2 with its content"
check "cmp -s '$SAVED/big' '$MNT/big'" "big reads back as committed"
check "[ \"\$(cat '$MNT/a@1')\" = 'a one' ]" "old versions still read"
umount_store
finish
