#!/usr/bin/env bash
# Backups and restores with rsync: rsync -a MNT/ backup/, then rsync -a
# backup/ MNT2/ into a fresh mount gives identical content and mtimes; a
# second identical rsync creates no new version.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
mkdir -p "$MNT/x/y" "$MNT/empty-ns"
printf 'top\n' >"$MNT/top.txt"
head -c 100000 /dev/urandom >"$MNT/x/bin"
: >"$MNT/x/zero"
printf 'deep\n' >"$MNT/x/y/deep"
printf 'a name with spaces\n' >"$MNT/x/with space"
printf 'mail\n' >"$MNT/alice@example.com.json"
printf 'utf8\n' >"$MNT/x/caf$(printf '\xc3\xa9')"
chmod 600 "$MNT/x/y/deep"
touch -d '2020-01-02 03:04:05' "$MNT/top.txt"
touch -d '1999-12-31 23:59:59' "$MNT/x/bin"
sleep 1 # so that a fresh write would get another mtime

B=$T/backup
check "rsync -a '$MNT/' '$B/'" "rsync -a MNT/ backup/"
check "diff -r '$MNT' '$B'" "the backup equals the mount (diff -r)"
check "[ \"\$(stat -c %Y '$B/top.txt')\" = \"\$(stat -c %Y '$MNT/top.txt')\" ]" \
	"the backup keeps mtimes"
check "[ \"\$(ls -A '$B')\" = \"\$(ls -A '$MNT')\" ]" \
	"the backup has no .recfs and nothing extra"
umount_store

S2=$T/store2
M2=$T/mnt2
mount_at "$S2" "$M2" -o create || exit 1
check "rsync -a '$B/' '$M2/'" "rsync -a backup/ MNT2/ into a fresh mount"
check "diff -r '$B' '$M2'" "the restored mount equals the backup (diff -r)"
ok=1
while IFS= read -r -d '' f; do
	rel=${f#"$B"/}
	[[ -n $rel && $rel != "$f" ]] || continue
	if [[ $(stat -c %Y "$f") != $(stat -c %Y "$M2/$rel") ]]; then
		note "mtime of $rel: $(stat -c %Y "$f") != $(stat -c %Y "$M2/$rel")"
		ok=0
	fi
	if [[ $(stat -c %a "$f") != $(stat -c %a "$M2/$rel") ]]; then
		note "mode of $rel: $(stat -c %a "$f") != $(stat -c %a "$M2/$rel")"
		ok=0
	fi
done < <(find "$B" -type f -print0)
check "[ $ok = 1 ]" "every restored record has the backup's mtime and mode"
check "[ \"\$(stat -c %Y '$M2/x/bin')\" = \"\$(date -d '1999-12-31 23:59:59' +%s)\" ]" \
	"stat -c %Y of a restored record is the backed-up time"
check "[ \"\$(version '$M2/x/y/deep')\" = 1 ]" "restored records are version 1"
check "[ -d '$M2/empty-ns' ]" "the empty namespace is restored"
check "! ls -a '$M2' '$M2/x' | grep -E '^\..+\.......\$'" "no rsync temp file left"

rev=$(revision "$M2")
check "rsync -a '$B/' '$M2/'" "a second identical rsync -a backup/ MNT2/"
check "[ \"\$(revision '$M2')\" = '$rev' ]" \
	"... creates no new version (root revision stays $rev, now $(revision "$M2"))"
check "[ \"\$(version '$M2/x/y/deep')\" = 1 ] && [ \"\$(version '$M2/top.txt')\" = 1 ]" \
	"... records stay at version 1"
out=$(rsync -ai "$B/" "$M2/" 2>&1)
check "[ -z \"\$(grep -v '^\.d' <<<\"\$out\")\" ]" \
	"rsync -ai itemizes no file change on a third run ($(head -c 200 <<<"$out" | tr '\n' ' '))"

# a remount keeps it all
umount_at "$M2"
mount_at "$S2" "$M2" || exit 1
check "diff -r '$B' '$M2'" "the restored store equals the backup after a remount"
check "[ \"\$(stat -c %Y '$M2/top.txt')\" = \"\$(stat -c %Y '$B/top.txt')\" ]" \
	"mtimes survive a remount"
check "rsync -a '$B/' '$M2/' && [ \"\$(revision '$M2')\" = '$rev' ]" \
	"an rsync after the remount changes nothing either"

finish
