#!/usr/bin/env bash
# Scratch names: sed -i, vim saves (real vim if installed, and the two
# save sequences simulated with the shell) and an rsync restore leave no
# scratch file behind and make exactly one new version per changed file.
. "$(dirname "$0")/lib.sh"

# no_scratch DIR: ls -a shows none of the scratch names
no_scratch() {
	! ls -a "$1" | grep -E '^(sed......|4913|\..*\.......|\..*\.sw[a-z]|.*~)$'
}

mount_store || exit 1
mkdir -p "$MNT/ns"
for d in "$MNT" "$MNT/ns"; do
	printf 'alpha\nbeta\n' >"$d/f"
	printf 'gamma\n' >"$d/g"
	chmod 640 "$d/f"
	setfattr -n user.keep -v me "$d/f"
done

for d in "$MNT" "$MNT/ns"; do
	w=${d#"$MNT"}
	w=${w:-/}
	# sed -i
	v=$(version "$d/f")
	check "sed -i s/a/b/ '$d/f'" "sed -i on f in $w"
	check "[ \"\$(cat '$d/f')\" = \"\$(printf 'blpha\nbetb')\" ]" \
		"sed -i changed f in $w"
	check "[ \"\$(version '$d/f')\" = $((v + 1)) ]" \
		"sed -i made exactly one new version of f in $w"
	check "no_scratch '$d'" "sed -i left no scratch file in $w"
	check "[ \"\$(stat -c %a '$d/f')\" = 640 ]" "sed -i kept the mode in $w"
	check "[ \"\$(xattr user.keep '$d/f')\" = me ]" \
		"sed -i kept the user attribute in $w"
	v=$(version "$d/g")
	check "sed -i s/zzz/y/ '$d/g' && [ \"\$(version '$d/g')\" = $v ]" \
		"sed -i that changes nothing makes no new version in $w"
	check "no_scratch '$d'" "... and leaves no scratch file"

	# vim with backupcopy=no: 4913 probe, f -> f~, write f, fsync, copy
	# mode and attributes from f~ (as vim +xattr does), rm f~
	v=$(version "$d/f")
	check "( set -e; cd '$d'; : >4913; rm 4913; mv f f~; printf 'vim1\n' | dd of=f conv=fsync status=none; chmod 640 f; setfattr -n user.keep -v \"\$(getfattr --only-values -n user.keep f~)\" f; rm f~ )" \
		"vim-style save (rename) of f in $w"
	check "[ \"\$(cat '$d/f')\" = vim1 ]" "the rename save wrote f in $w"
	check "[ \"\$(version '$d/f')\" = $((v + 1)) ]" \
		"the rename save made exactly one new version in $w"
	check "no_scratch '$d'" "the rename save left no scratch file in $w"
	check "[ \"\$(xattr user.keep '$d/f')\" = me ] && [ \"\$(stat -c %a '$d/f')\" = 640 ]" \
		"the rename save kept mode and user attribute in $w"

	# vim with backupcopy=yes: cp f f~, write f in place (O_TRUNC), rm f~
	v=$(version "$d/f")
	check "( set -e; cd '$d'; : >4913; rm 4913; cp f f~; printf 'vim2\n' | dd of=f conv=fsync,notrunc status=none; truncate -s 5 f; rm f~ )" \
		"vim-style save (backupcopy=yes) of f in $w"
	check "[ \"\$(cat '$d/f')\" = vim2 ]" "the copy save wrote f in $w"
	check "[ \"\$(version '$d/f')\" = $((v + 1)) ]" \
		"the copy save made exactly one new version in $w"
	check "no_scratch '$d'" "the copy save left no scratch file in $w"
	check "[ \"\$(stat -c %a '$d/f')\" = 640 ]" "the copy save kept the mode in $w"
	check "[ \"\$(xattr user.keep '$d/f')\" = me ]" \
		"the copy save kept the user attribute in $w"
	v=$(version "$d/f")
	check "( set -e; cd '$d'; cp f f~; python3 -c 'import os; fd = os.open(\"f\", os.O_WRONLY | os.O_TRUNC); os.write(fd, b\"vim3\\n\"); os.fsync(fd); os.close(fd)'; rm f~ )" \
		"vim-style save (write with O_TRUNC, fsync) of f in $w"
	check "[ \"\$(cat '$d/f')\" = vim3 ] && [ \"\$(version '$d/f')\" = $((v + 1)) ]" \
		"the O_TRUNC save made exactly one new version in $w"
	check "no_scratch '$d'" "the O_TRUNC save left no scratch file in $w"
done

# the real vim, if there is one
if command -v vim >/dev/null 2>&1; then
	printf 'one a\ntwo a\n' >"$MNT/ns/v"
	v=$(version "$MNT/ns/v")
	check "HOME='$T' vim -u NONE -i NONE -N -es -c '%s/a/b/' -c 'wq' '$MNT/ns/v' </dev/null" \
		"vim :wq on a record"
	check "[ \"\$(cat '$MNT/ns/v')\" = \"\$(printf 'one b\ntwo b')\" ]" \
		"vim wrote the record"
	check "[ \"\$(version '$MNT/ns/v')\" = $((v + 1)) ]" \
		"vim made exactly one new version"
	check "no_scratch '$MNT/ns'" "vim left no swap, 4913 or backup file"
	v=$(version "$MNT/ns/v")
	check "HOME='$T' vim -u NONE -i NONE -N -es -c 'set backupcopy=yes' -c '%s/b/c/' -c 'wq' '$MNT/ns/v' </dev/null && [ \"\$(version '$MNT/ns/v')\" = $((v + 1)) ]" \
		"vim with backupcopy=yes made exactly one new version"
	check "no_scratch '$MNT/ns'" "... and left no scratch file"
else
	note "SKIP the real vim: not installed (the simulated saves ran)"
fi

# an rsync restore of a backup taken before the changes
rsync -a "$MNT/" "$T/backup/"
printf 'changed\n' >"$MNT/ns/g"
printf 'changed\n' >"$MNT/g"
vg=$(version "$MNT/ns/g")
vf=$(version "$MNT/ns/f")
check "rsync -a '$T/backup/' '$MNT/'" "rsync restore"
check "diff -r '$T/backup' '$MNT'" "the restore brought back the backup's content"
check "[ \"\$(version '$MNT/ns/g')\" = $((vg + 1)) ]" \
	"the restore made exactly one new version of a changed record"
check "[ \"\$(version '$MNT/ns/f')\" = $vf ]" \
	"the restore made no new version of an unchanged record"
check "no_scratch '$MNT' && no_scratch '$MNT/ns'" "the restore left no .NAME.XXXXXX file"

# a rename commits as the process that renamed (issue 17: Recfs-Comm was
# empty), and the status counts it like any commit
c0=$(sed -n 's/.*"commits":\([0-9]*\).*/\1/p' "$MNT/.recfs/status")
echo renamed >"$MNT/.who.AB12cd"
mv "$MNT/.who.AB12cd" "$MNT/who"
echo moved >"$MNT/who2"
mv "$MNT/who2" "$MNT/who3"
c1=$(sed -n 's/.*"commits":\([0-9]*\).*/\1/p' "$MNT/.recfs/status")
check "\"$RECFSCTL\" log '$MNT' who --json | tail -n 1 | grep -q '\"comm\":\"mv\"'" \
	"a scratch file renamed onto a record records comm mv in the history"
check "\"$RECFSCTL\" log '$MNT' who3 --json | tail -n 1 | grep -q '\"comm\":\"mv\"'" \
	"a record renamed records comm mv in the history"
check "[ \$(($c1 - $c0)) = 3 ]" "the status counts the commit and both renames ($c0 -> $c1)"

# nothing of the scratch files reached the store
umount_store
check "! find '$STORE/records' | grep -E '/(sed......|4913|\..*\.......|\..*\.sw[a-z]|.*~)$'" \
	"no scratch name in STORE/records"
check "[ -z \"\$(ls -A '$STORE/tmp' 2>/dev/null)\" ]" \
	"STORE/tmp is empty after unmount ($(ls -A "$STORE/tmp" 2>/dev/null | head -3 | tr '\n' ' '))"

finish
