#!/usr/bin/env bash
# The history's git remote (SPEC section 9) through a mount: with
# -o history_remote=BARE, `recfsctl push MNT` gives a local bare
# repository every version (a `git clone` of it has each version's
# trailer), later commits reach it in the background, the URL is kept in
# history.git's config, an unmounted store pushes with `recfsctl push
# STORE`, a missing remote fails naming it, and a remote that has
# diverged refuses: exit 1, "refused" in .recfs/status, remote unchanged.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
GIT=$STORE/history.git
REMOTE=$T/remote.git
git init -q --bare -b main "$REMOTE" || exit 2
WRITTEN=0

# put ID N: write N versions of ID.
put() {
	local i
	for ((i = 1; i <= $2; i++)); do
		echo "$1 version $i $RANDOM" >"$MNT/$1" || return 1
		WRITTEN=$((WRITTEN + 1))
	done
}

# ref GITDIR REF: the commit REF names ("" if none).
ref() {
	git --git-dir="$1" rev-parse -q --verify "$2" 2>/dev/null
}

# clone_versions: the versions a fresh clone of the remote has trailers of.
clone_versions() {
	rm -rf "$T/clone"
	git clone -q "$REMOTE" "$T/clone" 2>/dev/null || return 1
	git -C "$T/clone" log --format=%B origin/main | grep -c '^Recfs-Version:'
}

# status_remote FIELD [MNT]: a field of history_remote in .recfs/status.
status_remote() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["history_remote"][sys.argv[2]])' \
		"${2:-$MNT}/.recfs/status" "$1"
}

mount_store -o "history_remote=$REMOTE" || exit 1
for i in $(seq 1 20); do put "r$i" 1; done
put many 30
check "[[ \$(version '$MNT/many') == 30 ]]" "30 versions of many written"

# ---- push through the daemon -------------------------------------------------

"$RECFSCTL" push "$MNT" >"$T/push.out" 2>&1
check "[[ $? == 0 ]]" "recfsctl push MNT succeeds: $(cat "$T/push.out")"
check "grep -q '$REMOTE' '$T/push.out'" "it names the remote"
check "[[ \$(ref '$REMOTE' refs/heads/main) == \$(ref '$GIT' refs/heads/main) ]]" \
	"the remote's main is the history's"
check "[[ \$(clone_versions) == $WRITTEN ]]" \
	"a clone of the remote has all $WRITTEN versions"
check "[[ \$(ref '$REMOTE' refs/heads/recfs-versions) == \$(ref '$GIT' refs/heads/recfs-versions) ]]" \
	"the side branch is pushed too"
check "git --git-dir='$REMOTE' fsck --strict >/dev/null 2>&1" \
	"the remote passes git fsck --strict"
check "[[ \$(status_remote state) == ok ]]" ".recfs/status: state ok"
check "[[ \$(status_remote pushed) == \$(ref '$GIT' refs/heads/main) ]]" \
	".recfs/status: the pushed commit"
check "[[ \$(status_remote url) == '$REMOTE' ]]" ".recfs/status: the URL"
check "[[ \$(status_remote pushed_upto) == \$(revision '$MNT') ]]" \
	".recfs/status: pushed up to the current revision"
check "[[ \$(git --git-dir='$GIT' config remote.origin.url) == '$REMOTE' ]]" \
	"the URL is kept in history.git's config"

# ---- in the background ------------------------------------------------------

put late 5
"$RECFSCTL" log "$MNT" late >/dev/null # the daemon drains its history
check "await 30 \"[[ \\\$(ref '$REMOTE' refs/heads/main) == \\\$(ref '$GIT' refs/heads/main) ]]\"" \
	"later commits reach the remote without recfsctl push"
check "[[ \$(clone_versions) == $WRITTEN ]]" "the clone has all $WRITTEN versions"

# ---- a store directory ------------------------------------------------------

umount_store
check "'$RECFSCTL' push '$STORE' >/dev/null 2>&1" \
	"recfsctl push STORE (the kept remote) succeeds"
"$RECFSCTL" push "$STORE" --remote "$T/missing.git" >"$T/miss.out" 2>&1
check "[[ $? == 1 ]]" "a missing remote: exit 1"
check "grep -q '$T/missing.git' '$T/miss.out'" \
	"the message names the remote: $(head -c 300 "$T/miss.out")"
"$RECFSCTL" push >/dev/null 2>&1
check "[[ $? == 2 ]]" "no TARGET: exit 2"

# ---- a remote that has diverged ------------------------------------------------

mount_store || exit 1 # no option: the kept remote
git clone -q "$REMOTE" "$T/other" 2>/dev/null
(cd "$T/other" && echo x >foreign && git add foreign &&
	git -c user.name=o -c user.email=o@o commit -qm foreign &&
	git push -q origin main 2>/dev/null)
theirs=$(ref "$REMOTE" refs/heads/main)
check "[[ -n '$theirs' && '$theirs' != \$(ref '$GIT' refs/heads/main) ]]" \
	"someone else pushed to the remote"
put after 3
"$RECFSCTL" push "$MNT" >"$T/nff.out" 2>&1
check "[[ $? == 1 ]]" "a diverged remote: recfsctl push exits 1"
check "grep -q 'refused' '$T/nff.out' && grep -q '$REMOTE' '$T/nff.out'" \
	"the message says refused and names the remote: $(head -c 300 "$T/nff.out")"
check "[[ \$(ref '$REMOTE' refs/heads/main) == '$theirs' ]]" \
	"the remote is unchanged (not forced)"
check "[[ \$(status_remote state) == refused ]]" ".recfs/status: refused"
check "grep -q 'refused' '$(daemon_log)'" "the daemon logs the refusal"
check "[[ \$(grep -c 'push to .* failed' '$(daemon_log)') == 1 ]]" \
	"logged once"

# ---- a remote that is not there yet ---------------------------------------------

LATE=$T/late.git
MNT2=$T/mnt2
mount_at "$T/store2" "$MNT2" -o create -o "history_remote=$LATE" || exit 1
start=$(date +%s%N)
for i in $(seq 1 20); do echo "v$i" >"$MNT2/f$i" || break; done
ms=$((($(date +%s%N) - start) / 1000000))
check "[[ \$(version '$MNT2/f20') == 1 ]]" "20 commits with the remote missing"
check "((ms < 5000))" "they took $ms ms (the push never blocks a commit)"
"$RECFSCTL" log "$MNT2" >/dev/null # drained: batches, failed pushes
check "await 10 \"[[ \\\$(status_remote state '$MNT2') == error ]]\"" \
	".recfs/status: state error"
check "[[ \$(status_remote url '$MNT2') == '$LATE' ]]" ".recfs/status: its URL"
"$RECFSCTL" push "$MNT2" >"$T/late.out" 2>&1
check "[[ $? == 1 ]] && grep -q '$LATE' '$T/late.out'" \
	"recfsctl push fails naming the remote: $(head -c 200 "$T/late.out")"
git init -q --bare -b main "$LATE"
check "await 90 \"[[ -n \\\$(ref '$LATE' refs/heads/main) && \\\$(ref '$LATE' refs/heads/main) == \\\$(ref '$T/store2/history.git' refs/heads/main) ]]\"" \
	"once it is there, the remote catches up by itself"
check "grep -q 'works again' '$(daemon_log "$MNT2")'" "the daemon logs the recovery"
finish
