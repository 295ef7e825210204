#!/usr/bin/env bash
# Owners and the usual permission rules (SPEC 3: "owner and group set by
# chown are kept, with the usual permission rules (with -o allow_other the
# kernel checks permissions); a write by anyone but the owner clears
# setuid and setgid, as on a local disk"):
#  - chown and chgrp as root are kept (stat -c %u:%g), also after a remount;
#  - on an -o allow_other mount, as an unprivileged user (recfstest, made
#    with useradd if missing): chown of one's own file to another uid and
#    chgrp to a group one is not in fail with EPERM; chgrp to one's own
#    group works; a write (>> or >) by a non-owner with write permission
#    clears setuid and setgid (6775 -> 775 writing as a group member,
#    6777 -> 777 as other), as on a local disk.
. "$(dirname "$0")/lib.sh"

if [[ $(id -u) != 0 ]]; then
	echo "1..0 # SKIP needs root (chown, useradd, allow_other)"
	exit 77
fi
TUSER=recfstest
if ! id -u "$TUSER" >/dev/null 2>&1; then
	useradd --system --user-group --no-create-home \
		--shell /usr/sbin/nologin "$TUSER" || exit 2
	note "created user $TUSER"
fi
TUID=$(id -u "$TUSER")
TGID=$(id -g "$TUSER")
# as_user CMD...: run CMD as the unprivileged user, only its own group
as_user() {
	setpriv --reuid="$TUID" --regid="$TGID" --clear-groups "$@"
}

chmod 711 "$T"
mount_store -o allow_other || exit 1
chmod 755 "$MNT"

# ---- root: chown and chgrp are kept ----------------------------------------
echo data >"$MNT/f"
mkdir -p "$MNT/ns"
echo deep >"$MNT/ns/g"
check "chown 1234:5678 '$MNT/f'" "chown 1234:5678 f as root"
check "[ \"\$(stat -c %u:%g '$MNT/f')\" = 1234:5678 ]" \
	"stat -c %u:%g f says 1234:5678 ($(stat -c %u:%g "$MNT/f"))"
chgrp 4321 "$MNT/f"
check "[ $? = 0 ] && [ \"\$(stat -c %u:%g '$MNT/f')\" = 1234:4321 ]" \
	"chgrp 4321 f: 1234:4321 ($(stat -c %u:%g "$MNT/f"))"
chown 42 "$MNT/ns/g"
check "[ $? = 0 ] && [ \"\$(stat -c %u '$MNT/ns/g')\" = 42 ]" \
	"chown 42 of a record in a namespace ($(stat -c %u:%g "$MNT/ns/g"))"
echo more >>"$MNT/f"
check "[ \"\$(stat -c %u:%g '$MNT/f')\" = 1234:4321 ]" \
	"the owner survives a new version ($(stat -c %u:%g "$MNT/f"))"
umount_store
mount_store -o allow_other || exit 1
check "[ \"\$(stat -c %u:%g '$MNT/f')\" = 1234:4321 ] && [ \"\$(stat -c %u '$MNT/ns/g')\" = 42 ]" \
	"after a remount: f is 1234:4321, ns/g is owned by 42 ($(stat -c %u:%g "$MNT/f") $(stat -c %u:%g "$MNT/ns/g"))"

# ---- an unprivileged user --------------------------------------------------
mkdir -p "$MNT/u"
chmod 777 "$MNT/u"
check "as_user sh -c 'echo mine >\"$MNT/u/own\"'" "$TUSER creates u/own"
check "[ \"\$(stat -c %u:%g '$MNT/u/own')\" = $TUID:$TGID ]" \
	"u/own belongs to $TUSER ($TUID:$TGID): $(stat -c %u:%g "$MNT/u/own")"
out=$(as_user chown 0 "$MNT/u/own" 2>&1)
rc=$?
check "[ $rc != 0 ] && grep -q 'Operation not permitted' <<<\"\$out\"" \
	"$TUSER: chown of its own file to uid 0 fails with EPERM ($out)"
out=$(as_user chown 1234 "$MNT/u/own" 2>&1)
rc=$?
check "[ $rc != 0 ] && grep -q 'Operation not permitted' <<<\"\$out\"" \
	"$TUSER: chown of its own file to uid 1234 fails with EPERM ($out)"
out=$(as_user chgrp 0 "$MNT/u/own" 2>&1)
rc=$?
check "[ $rc != 0 ] && grep -q 'Operation not permitted' <<<\"\$out\"" \
	"$TUSER: chgrp to group 0, which it is not in, fails with EPERM ($out)"
check "[ \"\$(stat -c %u:%g '$MNT/u/own')\" = $TUID:$TGID ]" \
	"... and u/own is still $TUID:$TGID ($(stat -c %u:%g "$MNT/u/own"))"
check "as_user chgrp $TGID '$MNT/u/own' && as_user chmod 640 '$MNT/u/own' && [ \"\$(stat -c %a '$MNT/u/own')\" = 640 ]" \
	"$TUSER: chgrp to its own group and chmod of its own file work"
out=$(as_user chmod 644 "$MNT/f" 2>&1)
check "! as_user chmod 644 '$MNT/f' 2>/dev/null && [ \"\$(stat -c %u:%g '$MNT/f')\" = 1234:4321 ]" \
	"$TUSER: chmod of another's file fails ($out)"

# a write by a non-owner clears setuid and setgid: 6775 with the user's
# group (the brief's case; needs chgrp to work), and 6777 owned by root
# (needs no chgrp)
for how in append trunc; do
	for m in 6775 6777; do
		s=$MNT/u/suid-$how-$m
		echo data >"$s"
		chown 0:"$TGID" "$s"
		chmod $m "$s"
		check "[ \"\$(stat -c %a:%u:%g '$s')\" = $m:0:$TGID ]" \
			"root: suid-$how-$m is $m, root:$TGID ($(stat -c %a:%u:%g "$s"))"
		if [[ $how == append ]]; then
			check "as_user sh -c 'echo more >>\"$s\"'" \
				"$TUSER (not the owner, may write) appends to suid-$how-$m"
		else
			check "as_user sh -c 'echo new >\"$s\"'" \
				"$TUSER (not the owner, may write) rewrites suid-$how-$m (O_TRUNC)"
		fi
		check "[ \"\$(stat -c %a '$s')\" = ${m#6} ]" \
			"... which clears setuid and setgid: ${m#6} ($(stat -c %a "$s"))"
	done
done
umount_store
mount_store -o allow_other || exit 1
check "[ \"\$(stat -c %a '$MNT/u/suid-append-6777')\" = 777 ] && [ \"\$(cat '$MNT/u/suid-append-6777')\" = \"\$(printf 'data\nmore')\" ]" \
	"after a remount: suid-append-6777 is 777 and holds both lines ($(stat -c %a "$MNT/u/suid-append-6777"))"

# ---- old versions: readable only by whom both their own mode and owner and
# the current ones allow (SPEC 5; issue 17: ID@N took the current mode)
(umask 077 && echo topsecret >"$MNT/secret")
echo harmless >"$MNT/secret"
chmod 644 "$MNT/secret"
check "[ \"\$(as_user cat '$MNT/secret@2' 2>&1)\" = harmless ]" \
	"$TUSER reads secret@2, written while the record was public"
out=$(as_user cat "$MNT/secret@1" 2>&1)
check "! grep -q topsecret <<<'$out' && grep -q 'Permission denied' <<<'$out'" \
	"$TUSER cannot read secret@1, written while it was private ($out)"
check "[ \"\$(cat '$MNT/secret@1')\" = topsecret ]" "... its owner (root) can"
echo public >"$MNT/later"
chmod 600 "$MNT/later"
out=$(as_user cat "$MNT/later@1" 2>&1)
check "! grep -q public <<<'$out'" \
	"$TUSER cannot read later@1 once the record is private ($out)"
chown "$TUID" "$MNT/secret"
out=$(as_user cat "$MNT/secret@1" 2>&1)
check "! grep -q topsecret <<<'$out'" \
	"... nor secret@1 after the record is given to $TUSER: root wrote it private ($out)"

finish
