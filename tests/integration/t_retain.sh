#!/usr/bin/env bash
# Retention (SPEC section 7, recfsctl retain) through a mounted store:
# --keep 3 on a record with 1,000 versions leaves 998-1000 readable and
# the others ENOENT (ID@N and .recfs/history), their trailers in
# `recfsctl log` and stock `git log`, a smaller history.git that
# `git fsck --strict` finds clean; stats says what a prune would free;
# --prune, the daemon's periodic prune (-o retain_period), --days, --off,
# prefixes, bad input (exit 2 / 1), and offline on the store directory
# with a clean verify afterwards.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
W=$T/written
mkdir -p "$W"
GIT=$STORE/history.git

# history_bytes: what history.git holds on disk (bytes).
history_bytes() {
	du -sb "$GIT" | cut -f1
}

# gone ID@N: reading it fails with ENOENT.
gone() {
	local err
	err=$(cat "$MNT/$1" 2>&1 >/dev/null) && return 1
	[[ $err == *"No such file or directory"* ]]
}

# same ID N: version N of ID reads back as written (W/ID.N).
same() {
	cmp -s "$MNT/$1@$2" "$W/${1//\//_}.$2"
}

# holds DIR FILE: a file under DIR holds FILE's first 32 bytes.
holds() {
	local pat f
	pat=$(head -c 32 "$2" | od -An -tx1 -v | tr -d ' \n')
	while IFS= read -r -d '' f; do
		od -An -tx1 -v "$f" | tr -d ' \n' | grep -q "$pat" && return 0
	done < <(find "$1" -type f -print0)
	return 1
}

# put ID N: write version N of ID (random bytes, kept in W).
put() {
	local f=$W/${1//\//_}.$2
	head -c 300 /dev/urandom >"$f"
	cp "$f" "$MNT/$1"
}

mount_store || exit 1
mkdir "$MNT/logs"
for ((i = 1; i <= 1000; i++)); do put big "$i"; done
for ((i = 1; i <= 5; i++)); do put logs/a "$i"; put logsx "$i"; done
check '[[ $(version "$MNT/big") == 1000 ]]' "1000 versions of big written"

# ---- keep 3 of 1000 --------------------------------------------------------

"$RECFSCTL" log "$MNT" big >/dev/null # the daemon drains its history
before=$(history_bytes)
check 'holds "$STORE" "$W/big.1"' \
	"(before the prune the store holds big@1's bytes: the byte search works)"
out=$("$RECFSCTL" retain "$MNT" big --keep 3 2>&1)
rc=$?
after=$(history_bytes)
echo "# history.git: $before bytes before, $after bytes after (du -sb)"
check '[[ $rc == 0 ]]' "retain MNT big --keep 3 exits 0 ($out)"
# 997 x 300 random bytes (incompressible) pruned: at least 250,000 freed
check '((before - after > 250000))' \
	"history.git is smaller by more than the pruned content: $before -> $after bytes"
check 'same big 998 && same big 999 && same big 1000' \
	"big@998..1000 read back as written"
check 'for n in 1 2 500 996 997; do gone "big@$n" || exit 1; done' \
	"big@1, @2, @500, @996, @997: ENOENT"
check 'gone .recfs/history/big/1 && gone .recfs/history/big/997' \
	".recfs/history/big/1 and /997: ENOENT"
check '[[ $(ls "$MNT/.recfs/history/big" | sort -n | tr "\n" " ") == "998 999 1000 " ]]' \
	".recfs/history/big lists 998 999 1000"
check '[[ $("$RECFSCTL" log "$MNT" big | grep -c "(pruned)") == 997 ]]' \
	"recfsctl log: the 997 pruned versions are listed, marked pruned"
check '[[ $("$RECFSCTL" log --json "$MNT" big | jq -s "map(select(.pruned)) | length") == 997 ]]' \
	"recfsctl log --json: pruned true on 997 versions"
check '[[ $(git -C "$GIT" log --format=%B refs/heads/main | grep -c "^Recfs-Pruned: ") == 997 ]]' \
	"stock git log: 997 trailer blocks marked Recfs-Pruned"
check 'git -C "$GIT" log --format=%B | grep -q "^Recfs-Id: big$"' \
	"stock git log: the trailers (who, when, hash) are still there"
check 'git -C "$GIT" fsck --strict --no-dangling' "git fsck --strict is clean"
check '[[ $(git -C "$GIT" log --oneline -1) == *"retention prune, history epoch 2"* ]]' \
	"the last commit starts history epoch 2"
check 'git clone -q --bare "$GIT" "$T/clone.git"' "git clone of the pruned history works"
check 'same logs/a 1 && same logsx 1' "records without a policy keep every version"

# ---- stats, --prune, the periodic prune -------------------------------------

put big 1001
put big 1002
"$RECFSCTL" log "$MNT" big >/dev/null
stats=$("$RECFSCTL" stats --json "$MNT")
check '[[ $(jq .prunable_versions <<<"$stats") == 2 && $(jq ".history_bytes > 0" <<<"$stats") == true ]]' \
	"stats: history size and 2 prunable versions ($stats)"
check '"$RECFSCTL" retain "$MNT" --prune >/dev/null' "retain MNT --prune exits 0"
check 'gone big@998 && gone big@999 && same big 1000 && same big 1002' \
	"--prune: big@998, @999 ENOENT, @1000..1002 readable"
check '[[ $("$RECFSCTL" stats --json "$MNT" | jq .prunable_versions) == 0 ]]' \
	"stats: nothing prunable after the prune"

umount_store
check '[[ $DAEMON_RC == 0 ]]' "the daemon exits 0 after the prunes"
mount_store -o retain_period=1 || exit 1
put big 1003
check 'await 15 "gone big@1000"' \
	"-o retain_period=1: the daemon prunes big@1000 by itself"
check 'same big 1003' "the current version is kept"

# ---- days, prefixes, off ------------------------------------------------------

check '"$RECFSCTL" retain "$MNT" logs --days 1 >/dev/null && same logs/a 1' \
	"--days 1: versions replaced today are kept"
check '"$RECFSCTL" retain "$MNT" logs/ --keep 1 >/dev/null' \
	"retain MNT logs/ --keep 1 exits 0"
check 'gone logs/a@4 && same logs/a 5 && same logsx 1' \
	"prefix logs covers logs/a (pruned to 1), not logsx"
check '[[ $("$RECFSCTL" retain "$MNT" | sort | tr "\t\n" ": ") == "big:--keep 3 logs:--keep 1 " ]]' \
	"retain MNT lists the policies"
check '"$RECFSCTL" retain "$MNT" big --off >/dev/null' "retain MNT big --off exits 0"
check '[[ $("$RECFSCTL" retain "$MNT" | tr "\t\n" ": ") == "logs:--keep 1 " ]]' \
	"--off removed the policy of big"
put big 1004
check '"$RECFSCTL" retain "$MNT" --prune >/dev/null && same big 1003' \
	"without a policy big@1003 stays"

# ---- bash completion (from recfsctl's help) -----------------------------------

COMPL=$(dirname "$0")/../../tools/recfsctl.bash-completion
complete_line() { # LINE: what the completion offers for its last word
	PATH=$(dirname "$RECFSCTL"):$PATH bash --norc --noprofile -c '
		source "$1" || exit 1
		read -r -a COMP_WORDS <<<"$2"
		[[ $2 == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_recfsctl
		printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPL" "$1"
}
check '[[ $(complete_line "recfsctl ret") == retain ]]' "recfsctl ret<TAB>: retain"
check '[[ $(complete_line "recfsctl retain $MNT bi") == big ]]' \
	"recfsctl retain MNT bi<TAB>: the record big"
check '[[ $(complete_line "recfsctl retain $MNT big --" | tr "\n" " ") == *--days*--keep*--off*--prune* ]]' \
	"recfsctl retain MNT big --<TAB>: --keep --days --off --prune"
check '! complete_line "recfsctl retain $MNT big --keep " | grep -q .' \
	"nothing is offered for the value of --keep"

# ---- bad input ------------------------------------------------------------------

bad() { # bad EXIT ARGS...: recfsctl retain ARGS exits EXIT and says why
	local want=$1 out rc
	shift
	out=$("$RECFSCTL" retain "$@" 2>&1)
	rc=$?
	[[ $rc == "$want" && -n $out ]] || {
		echo "#   exit $rc: $out"
		return 1
	}
}
check 'bad 2 "$MNT" big --keep 0' "--keep 0: exit 2"
check 'bad 2 "$MNT" big --keep -3' "--keep -3: exit 2"
check 'bad 2 "$MNT" big --days abc' "--days abc: exit 2"
check 'bad 2 "$MNT" big --keep 3x' "--keep 3x: exit 2"
check 'bad 2 "$MNT" "logs/*" --keep 3' "a glob as prefix: exit 2"
check 'bad 2 "$MNT" ../x --keep 3' "../x as prefix: exit 2"
check 'bad 2 "$MNT" big --keep 3 --days 2' "--keep and --days: exit 2"
check 'bad 2 "$MNT" big --prune' "--prune with a PREFIX: exit 2"
check 'bad 1 "$MNT" nope --off' "--off of a prefix without a policy: exit 1"
check 'bad 1 "$T/nowhere" big --keep 3' "neither a mount nor a store: exit 1"
umount_store

# ---- offline ----------------------------------------------------------------------

check '"$RECFSCTL" retain "$STORE" logsx --keep 2 | grep -q "pruned 3 versions of 1 records"' \
	"retain STORE logsx --keep 2 (unmounted) prunes 3 versions"
check '! "$RECFSCTL" show "$STORE" logsx@3 >/dev/null 2>&1 && "$RECFSCTL" show "$STORE" logsx@4 | cmp -s - "$W/logsx.4"' \
	"offline: logsx@3 is gone, logsx@4 reads back"
check '"$RECFSCTL" verify "$STORE" >/dev/null' "verify is clean after the prunes"
check 'git -C "$GIT" fsck --strict --no-dangling' "git fsck --strict is clean at the end"
check 'holds "$STORE/records" "$W/big.1004"' \
	"(the byte search finds big's current content in records/)"
check '! holds "$STORE" "$W/big.1" && ! holds "$STORE" "$W/big.997"' \
	"the bytes of big@1 and big@997 are nowhere in the store (journal, history.git)"

finish
