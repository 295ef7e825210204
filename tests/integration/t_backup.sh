#!/usr/bin/env bash
# recfsctl backup (SPEC sections 1 and 7) and the control channel of the
# mount (user.recfs.ctl.VERB on the root, see recfs(1)):
#  - a backup of a mounted store while 4 writers run cp loops is a
#    complete store (0700/0600, no lock) that verifies clean, mounts, and
#    holds exactly the records of one store revision R, each at the
#    version the source had at R; its history.git passes git fsck, and
#    its history is the source's up to R;
#  - DEST must be new or empty; a DEST on the mount itself is refused
#    (the daemon would wait for itself) and the mount goes on;
#  - an `rsync -aX` round trip of the mount root runs no control verb;
#    the ctl names are not listed and read as ENODATA; other users get
#    EPERM;
#  - `recfsctl log` on the mount point prints what it prints on the
#    store, text and --json;
#  - a backup of an unmounted store.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
command -v python3 >/dev/null || { echo "Bail out! no python3" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

# status_field NAME [MNT]: a numeric field of .recfs/status.
status_field() {
	sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "${2:-$MNT}/.recfs/status"
}

# live_state DIR: "ID VERSION HASH" of every record under the mount DIR.
live_state() {
	(cd "$1" && find . -type f | sed 's|^\./||' | sort | while read -r f; do
		echo "$f $(version "$f") $(xattr user.recfs.hash "$f")"
	done)
}

# state_at REV: the same, computed from `recfsctl log --json` on stdin:
# the records live at store revision REV with the version each had then.
state_at() {
	python3 -c '
import json, sys
rev = int(sys.argv[1]); last = {}
for line in sys.stdin:
    v = json.loads(line)
    if v["revision"] <= rev:
        last[v["id"]] = v
for i in sorted(last):
    v = last[i]
    if not v["deleted"]:
        print(i, v["version"], v["hash"])
' "$1"
}

# log_upto REV: log --json lines (stdin) up to REV, without the commit
# ids (a history written again in batches may group versions otherwise).
log_upto() {
	python3 -c '
import json, sys
rev = int(sys.argv[1])
for line in sys.stdin:
    v = json.loads(line)
    if v["revision"] <= rev:
        v.pop("commit")
        print(json.dumps(v, sort_keys=True))
' "$1"
}

# ---- 1. a store with history, then writers ---------------------------------

mount_store || exit 1
mkdir -p "$MNT/ns/deep" "$MNT/w"
for i in $(seq 1 20); do
	echo "record $i" >"$MNT/r$i"
	echo "v2 of $i" >"$MNT/r$i"
done
echo deep >"$MNT/ns/deep/x"
head -c 3000000 /dev/urandom >"$MNT/big" # journaled by reference
setfattr -n user.color -v blue "$MNT/r1"
rm "$MNT/r20"
ctl0=$(status_field ctl)
rev0=$(revision)

# 4 writers, each a bounded cp loop over 5 records of its own
STOP=$T/stop
WPIDS=()
for w in 1 2 3 4; do
	(
		n=0
		while [[ ! -e $STOP ]] && ((n < 4000)); do
			n=$((n + 1))
			printf 'writer %d write %d\n' "$w" "$n" >"$T/src$w"
			cp "$T/src$w" "$MNT/w/w$w-$((n % 5))" 2>/dev/null
		done
	) &
	WPIDS+=($!)
done
# the writers are committing when the backup starts
await 20 "[ \$(revision) -gt $((rev0 + 20)) ]"
rev_before=$(revision)
t0=$(date +%s.%N)
out=$(timeout 120 "$RECFSCTL" backup "$MNT" "$T/bk" 2>&1)
rc=$?
t1=$(date +%s.%N)
# ... and still after it
rev_end=$(revision)
await 20 "[ \$(revision) -gt $rev_end ]"
rev_after=$(revision)
touch "$STOP"
for p in "${WPIDS[@]}"; do
	wait "$p" 2>/dev/null
done
note "backup under load: $(echo "$t1 - $t0" | bc) s; revision $rev_before" \
	"before it, $rev_after after"
note "daemon: $(grep -o 'backup of .* written to .*' "$(daemon_log)" | tail -1)"
check "[ $rc -eq 0 ]" "recfsctl backup of the mount under write load succeeds ($out)"
check "[ $rev_after -gt $rev_before ]" \
	"the writers were committing around the backup ($rev_before -> $rev_after)"
check "[ $(status_field ctl) -eq $((ctl0 + 1)) ]" \
	"the backup ran one control verb on the daemon"

# ---- 2. the copy is a complete, private store -------------------------------

check "[ \"\$(stat -c %a '$T/bk')\" = 700 ]" "DEST is mode 0700"
check "[ -z \"\$(find '$T/bk' -path '$T/bk/records' -prune -o -type f ! -perm 600 -print)\" ]" \
	"every file of the copy outside records/ is 0600"
check "[ -z \"\$(find '$T/bk' -path '$T/bk/records' -prune -o -type d ! -perm 700 -print)\" ]" \
	"every directory of the copy outside records/ is 0700"
check "[ ! -e '$T/bk/lock' ] && [ ! -e '$T/bk/format.json.tmp' ]" \
	"the copy has no lock and no temp format file"
check "[ -f '$T/bk/format.json' ] && [ -d '$T/bk/records' ] && [ -d '$T/bk/journal' ] && [ -d '$T/bk/tmp' ]" \
	"the copy has the format file, records, journal and tmp"
check "git --git-dir='$T/bk/history.git' fsck --strict >/dev/null 2>&1" \
	"git fsck of the copy's history.git"
check "[ \$(git --git-dir='$T/bk/history.git' log --oneline | wc -l) -gt 0 ]" \
	"git log of the copy's history.git lists commits"
check "'$RECFSCTL' verify '$T/bk' >/dev/null 2>&1" "recfsctl verify of the copy is clean"

# ---- 3. the copy holds one revision of the source ---------------------------

"$RECFSCTL" log --json "$MNT" >"$T/srclog.json" 2>"$T/srclog.err"
check "[ -s '$T/srclog.json' ]" "recfsctl log --json on the mount point lists versions"
mount_at "$T/bk" "$T/m2" || exit 1
R=$(revision "$T/m2")
note "the copy is at revision $R"
check "[ $R -ge $rev_before ] && [ $R -le $rev_after ]" \
	"the copy's revision ($R) is between the revisions before and after the backup"
live_state "$T/m2" >"$T/copy.state"
state_at "$R" <"$T/srclog.json" >"$T/expect.state"
check "[ \$(wc -l <'$T/copy.state') -gt 30 ]" "the copy holds the records ($(wc -l <"$T/copy.state"))"
check "diff '$T/expect.state' '$T/copy.state'" \
	"every record of the copy is at the version (and hash) the source had at revision $R, and no other record is there"
bad=0
while read -r id v h; do
	cmp -s "$T/m2/$id" "$MNT/$id@$v" || bad=$((bad + 1))
done <"$T/copy.state"
check "[ $bad -eq 0 ]" "each record of the copy has the content of that version in the source ($bad differ)"
check "[ \"\$(xattr user.color '$T/m2/r1')\" = blue ]" "user attributes are in the copy"
check "[ ! -e '$T/m2/r20' ] && cat '$T/m2/r20@1' | grep -q 'record 20'" \
	"a deleted record is absent from the copy, its versions readable"
umount_at "$T/m2"
"$RECFSCTL" log --json "$T/bk" >"$T/bklog.json" 2>/dev/null
check "diff <(log_upto $R <'$T/srclog.json') <(log_upto $R <'$T/bklog.json')" \
	"the copy's history is the source's up to revision $R"

# ---- 4. refusals -------------------------------------------------------------

mkdir -p "$T/full" && echo keep >"$T/full/f"
out=$("$RECFSCTL" backup "$MNT" "$T/full" 2>&1)
rc=$?
check "[ $rc -eq 1 ] && [[ '$out' == *'not an empty directory'* ]]" \
	"backup into a non-empty directory is refused ($out)"
check "[ \"\$(ls '$T/full')\" = f ] && [ \"\$(cat '$T/full/f')\" = keep ]" \
	"the non-empty directory is left as it was"
echo x >"$T/afile"
"$RECFSCTL" backup "$MNT" "$T/afile" >/dev/null 2>&1
check "[ $? -eq 1 ] && [ \"\$(cat '$T/afile')\" = x ]" "backup onto a file is refused"
out=$(timeout 30 "$RECFSCTL" backup "$MNT" "$MNT/w/inside" 2>&1)
rc=$?
check "[ $rc -eq 1 ] && [[ '$out' == *'inside the mount'* ]]" \
	"backup into the mount itself is refused ($out)"
timeout 30 setfattr -n user.recfs.ctl.backup -v "$MNT/w/inside" "$MNT" 2>/dev/null
rc=$?
check "[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ ! -e '$MNT/w/inside' ]" \
	"the daemon refuses a backup into its own mount too, without hanging (rc $rc)"
echo after >"$MNT/after"
check "[ \"\$(cat '$MNT/after')\" = after ]" "the mount still commits after the refusals"
mkdir "$T/empty"
check "'$RECFSCTL' backup '$MNT' '$T/empty' >/dev/null 2>&1 && '$RECFSCTL' verify '$T/empty' >/dev/null 2>&1" \
	"backup into an existing empty directory works and verifies"
check "[ \"\$(stat -c %a '$T/empty')\" = 700 ]" "an empty DEST is made 0700"

# ---- 5. the control channel is invisible to rsync, cp and other users ------

ctl1=$(status_field ctl)
rev1=$(revision)
check "! getfattr -d -m - '$MNT' 2>/dev/null | grep -q ctl" \
	"listxattr of the mount root shows no control name"
check "! getfattr -n user.recfs.ctl.backup '$MNT' >/dev/null 2>&1 && getfattr -n user.recfs.ctl.backup '$MNT' 2>&1 | grep -q 'No such attribute'" \
	"getxattr of a control name is ENODATA"
mkdir "$T/plain"
out=$(rsync -aX "$MNT/" "$T/plain/" 2>&1 && rsync -aX "$T/plain/" "$MNT/" 2>&1)
check "[ -z \"$out\" ]" "rsync -aX round trip of the mount root succeeds ($out)"
check "! getfattr -d -m - '$T/plain' 2>/dev/null | grep -q ctl" \
	"the rsync copy of the root has no control attribute"
check "[ $(status_field ctl) -eq $ctl1 ]" "the rsync -aX round trip ran no control verb"
check "[ $(revision) -eq $rev1 ]" "the rsync -aX round trip changed nothing"
cp -a "$MNT/." "$T/plain2" 2>/dev/null
check "[ $(status_field ctl) -eq $ctl1 ]" "cp -a of the mount root ran no control verb"
setfattr -n user.recfs.ctl.nosuch -v x "$MNT" 2>/dev/null
check "[ $? -ne 0 ] && [ $(status_field ctl) -eq $ctl1 ]" "an unknown verb fails and runs nothing"

# another user, on a mount others may use
mkdir -p "$T/s3" && chmod 755 "$T"
"$RECFSCTL" init "$T/s3" >/dev/null
mount_at "$T/s3" "$T/m3" -o allow_other || exit 1
chmod 777 "$T/m3"
mkdir "$T/nob" && chmod 777 "$T/nob"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
	setfattr -n user.recfs.ctl.backup -v "$T/nob/b" "$T/m3" 2>&1)
rc=$?
check "[ $rc -ne 0 ] && [[ '$out' == *'not permitted'* ]]" \
	"another user asking for a backup gets EPERM ($out)"
check "[ ! -e '$T/nob/b' ] && [ $(status_field ctl "$T/m3") -eq 0 ]" \
	"and nothing was done"
check "grep -q 'refused to uid 65534' '$(daemon_log "$T/m3")'" "the refusal is logged"
umount_at "$T/m3"

# ---- 6. log on the mount point = log on the store ----------------------------

"$RECFSCTL" log "$MNT" >"$T/log.mnt" 2>&1
"$RECFSCTL" log --json "$MNT" >"$T/logj.mnt" 2>&1
"$RECFSCTL" log "$MNT" r1 >"$T/log1.mnt" 2>&1
umount_store
"$RECFSCTL" log "$STORE" >"$T/log.store" 2>&1
"$RECFSCTL" log --json "$STORE" >"$T/logj.store" 2>&1
"$RECFSCTL" log "$STORE" r1 >"$T/log1.store" 2>&1
check "[ \$(wc -l <'$T/log.mnt') -gt 30 ] && diff '$T/log.store' '$T/log.mnt'" \
	"recfsctl log on the mount point prints what it prints on the store"
check "diff '$T/logj.store' '$T/logj.mnt'" "the same with --json"
check "[ \$(wc -l <'$T/log1.mnt') -eq 3 ] && diff '$T/log1.store' '$T/log1.mnt'" \
	"the same for one record (header and its 2 versions)"

# ---- 7. backup of an unmounted store ----------------------------------------

check "'$RECFSCTL' verify '$STORE' >/dev/null 2>&1" "the source verifies clean after all this"
out=$("$RECFSCTL" backup "$STORE" "$T/bk2" 2>&1)
check "[ $? -eq 0 ] && [[ '$out' == *'at revision'* ]]" "backup of an unmounted store ($out)"
check "[ ! -e '$STORE/lock' ] || [ ! -s '$STORE/lock' ]" "the store's lock is released after it"
check "git --git-dir='$T/bk2/history.git' fsck --strict >/dev/null 2>&1 && '$RECFSCTL' verify '$T/bk2' >/dev/null 2>&1" \
	"that copy verifies and its history passes git fsck"
mount_store || exit 1
mount_at "$T/bk2" "$T/m4" || exit 1
check "[ \"\$(revision '$T/m4')\" = \"\$(revision)\" ]" "the copy is at the store's revision"
check "diff <(live_state '$MNT') <(live_state '$T/m4')" \
	"the copy holds every record at its version and hash"
check "diff -r '$MNT' '$T/m4'" "and the same content (diff -r)"
umount_at "$T/m4"
umount_store
finish
