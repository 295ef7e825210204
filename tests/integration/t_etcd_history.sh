#!/usr/bin/env bash
# The git history of a store on etcd (issue 16, phase 4): the mount
# elected through etcd (P/hist/leader, on a lease) writes history.git in
# its -o history_dir and pushes it to the history remote (a local bare
# repository here); kill -9 of that mount during a stream of commits from
# another: the other takes over within seconds, fetches what the first
# pushed, and goes on strictly after it. Real etcd on loopback.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etcd_lib.sh"

etcd_start 1
URI="etcd://$ETCD_ENDPOINTS/recfs/h"
REMOTE=$T/remote.git
git init -q --bare "$REMOTE" || exit 2
M1=$T/m1
M2=$T/m2

# trailers GITDIR: "ID VERSION [deleted]" for every trailer block of main
trailers() {
	git --git-dir="$1" log --format='%B%x00' main 2>/dev/null |
		python3 -c '
import sys
for msg in sys.stdin.read().split("\0"):
    for block in msg.split("\n\n"):
        f = dict(l.split(": ", 1) for l in block.strip().splitlines()
                 if ": " in l)
        if "Recfs-Id" in f and "Recfs-Version" in f:
            print(f["Recfs-Id"], f["Recfs-Version"],
                  "deleted" if f.get("Recfs-Deleted") else "")'
}
# once GITDIR: no trailer block twice
once() {
	[[ -z $(trailers "$1" | sort | uniq -d) ]]
}
# has GITDIR ID VERSION: version VERSION of ID has its trailer block
has() {
	trailers "$1" | grep -qx "$2 $3 "
}
done_above() {
	[ "$(etcdctl_ get recfs/h/hist/done --print-value-only)" -gt "$1" ]
}
status_of() {
	cat "$1/.recfs/status" 2>/dev/null
}
is_writer() {
	status_of "$1" | grep -q '"writer_is_me":true'
}

# ---- one mount writes the history ------------------------------------------
mount_at "$URI" "$M1" -o create,history_dir="$T/h1",history_remote="$REMOTE" ||
	exit 1
check "await 15 'is_writer $M1'" "the only mount is elected to write the history"
check "etcdctl_ get recfs/h/hist/leader --print-value-only | grep -q -- '-'" \
	"P/hist/leader names it ($(etcdctl_ get recfs/h/hist/leader --print-value-only))"
for i in 1 2 3; do
	printf 'a%s\n' "$i" >"$M1/a"
done
printf 'b\n' >"$M1/b"
rm "$M1/b"
mkdir "$M1/d"
printf 'x\n' >"$M1/d/x"
mv "$M1/d/x" "$M1/d/y"
setfattr -n user.k -v v "$M1/a"
check "await 15 'has $T/h1/history.git a 3 && has $T/h1/history.git d/y 1'" \
	"history.git gets every version"
check "cmp <(printf 'a1\n') '$M1/a@1'" "a@1 reads"
check "getfattr -n user.recfs.commit '$M1/a' 2>/dev/null | grep -qE '[0-9a-f]{40}'" \
	"user.recfs.commit names the git commit on the writer"
umount_at "$M1"
check "[ '$DAEMON_RC' = 0 ]" "unmount is clean"
G=$T/h1/history.git
check "trailers $G | sort | tr '\n' ';' | grep -qx 'a 1 ;a 2 ;a 3 ;b 1 ;b 1 deleted;d/x 1 ;d/x 1 deleted;d/y 1 ;'" \
	"every version's trailer block is there ($(trailers "$G" | sort | tr '\n' ';'))"
check "once $G" "... each exactly once"
check "git --git-dir=$G log --format=%B main | grep -q '^Recfs-From: d/x' && git --git-dir=$G log --format=%B main | grep -q '^Recfs-Uid: '" \
	"a rename says its source; blocks say who wrote them"
check "git --git-dir=$G fsck --strict 2>&1 | grep -v '^Checking' | grep -vq . ; [ \${PIPESTATUS[0]} = 0 ]" \
	"git fsck is clean"
check "[ \"\$(git --git-dir=$REMOTE rev-parse main)\" = \"\$(git --git-dir=$G rev-parse main)\" ]" \
	"the remote has main"
upto=$(git --git-dir="$G" log -1 --format=%B main | sed -n 's/^Recfs-Upto: //p')
# P/hist/done is never ahead of git; after a clean unmount it is git's
# last revision, unless the mount lost its term on the way (the final
# drain and push outlasting the lease's 3 s TTL: it logs that), when it
# stays behind and the next writer skips what git has (tested below)
done_=$(etcdctl_ get recfs/h/hist/done --print-value-only)
check "[ '$done_' = '$upto' ] || { [ '$done_' -lt '$upto' ] && grep -q 'no longer writes the history: P/hist/leader is not' '$(daemon_log "$M1")'; }" \
	"P/hist/done is the Recfs-Upto of main's head ($done_, $upto), or behind it after a lost term"
check "[ -z \"\$(etcdctl_ get recfs/h/hist/leader --print-value-only)\" ]" \
	"an unmount gives the leadership up at once"

# ---- git ahead of P/hist/done (a crash between the two): nothing twice ------
etcdctl_ put recfs/h/hist/done 3 >/dev/null
# ---- two mounts: one writer; kill -9 it; the other takes over ---------------
mount_at "$URI" "$M1" -o history_dir="$T/h1",history_remote="$REMOTE" || exit 1
check "await 15 'is_writer $M1'" "the first mount writes the history"
printf 'a4\n' >"$M1/a"
check "await 15 'has $T/h1/history.git a 4'" \
	"with P/hist/done behind git (3 < $upto), it goes on after git's last revision"
check "once $T/h1/history.git" "... and writes nothing twice"
check "await 10 'done_above $upto'" \
	"P/hist/done moves on past it"
mount_at "$URI" "$M2" -o history_dir="$T/h2",history_remote="$REMOTE" || exit 1
check "await 5 \"status_of $M2 | grep -q '\\\"writer_is_me\\\":false'\"" \
	"the second does not"
check "status_of $M2 | grep -q \"\\\"writer\\\":\\\"\$(etcdctl_ get recfs/h/hist/leader --print-value-only)\\\"\"" \
	"... and its status names the writer ($(status_of "$M2" | grep -o '"writer":"[^"]*"'))"
N=60
(
	for ((i = 1; i <= N; i++)); do
		printf '%s\n' "$i" >"$M2/s" || exit 1
		sleep 0.05
	done
) &
streamer=$!
await 20 "has $T/h1/history.git s 5"
kill -KILL "${DAEMON_PID[$M1]}"
t0=$(date +%s%N)
fusermount3 -uz "$M1" 2>/dev/null
wait "${DAEMON_PID[$M1]}" 2>/dev/null
unset "DAEMON_PID[$M1]"
took=-1
if await 15 "is_writer $M2"; then
	took=$((($(date +%s%N) - t0) / 1000000))
fi
check "[ $took -ge 0 ] && [ $took -le 10000 ]" \
	"the second mount takes over within 10 s of kill -9 ($took ms; lease TTL 3 s)"
wait "$streamer"
src=$?
check "[ $src = 0 ]" "the stream of $N commits goes on meanwhile"
check "cmp <(printf '1\n') '$M2/s@1'" "s@1 reads on the new writer"
umount_at "$M2"
check "[ '$DAEMON_RC' = 0 ]" "unmount is clean"
G2=$T/h2/history.git
missing=
for ((i = 1; i <= N; i++)); do
	has "$REMOTE" s "$i" || missing+=" $i"
done
check "[ -z '$missing' ]" "the remote has every version of s (missing:$missing)"
check "once $REMOTE" "... each trailer block exactly once"
check "[ \"\$(git --git-dir=$REMOTE rev-list --merges main | wc -l)\" = 0 ]" \
	"history is linear (no merge)"
check "git --git-dir=$REMOTE fsck --strict >/dev/null 2>&1" "git fsck of the remote is clean"
# Recfs-Upto along main, oldest first: strictly increasing (no revision
# written twice, nothing rewritten)
uptos=$(git --git-dir="$REMOTE" log --reverse --format='%B%x00' main |
	python3 -c '
import sys
u = [int(l.split(": ")[1]) for m in sys.stdin.read().split("\0")
     for l in m.splitlines() if l.startswith("Recfs-Upto: ")]
print("ok" if all(a < b for a, b in zip(u, u[1:])) else "bad %s" % u)')
check "[ '$uptos' = ok ]" "Recfs-Upto grows along main ($uptos)"
check "[ \"\$(git --git-dir=$REMOTE rev-parse main)\" = \"\$(git --git-dir=$G2 rev-parse main)\" ]" \
	"the remote has the second writer's main"
finish
