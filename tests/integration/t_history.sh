#!/usr/bin/env bash
# History (SPEC section 5): every committed version of every record is in
# STORE/history.git with one trailer block, readable with stock git after
# `git clone`; ID@N and .recfs/history/ID/N read old versions (deleted
# records too); user.recfs.commit turns into a real commit id; rollback
# only grows the history; 8 x 50 concurrent `recfsctl update` increments
# all land; a kill -9 while the history lags loses no acknowledged version.
. "$(dirname "$0")/lib.sh"

command -v git >/dev/null || { echo "Bail out! no git" >&2; exit 2; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
W=$T/written # copies of everything written: W/<n> for expectation n
mkdir -p "$W"

# ---- helpers ---------------------------------------------------------------

# status_lag: the history lag from .recfs/status (empty if unreadable).
status_lag() {
	sed -n 's/.*"history":{"lag":\([0-9]*\).*/\1/p' "$MNT/.recfs/status" \
		2>/dev/null
}

# wait_lag0: wait (bounded, 60 s: a busy machine) for .recfs/status to
# say lag 0.
wait_lag0() {
	await 60 '[[ $(status_lag) == 0 ]]'
}

# wait_commit FILE: wait (bounded, 60 s: a busy machine) until
# user.recfs.commit of FILE is a 40-hex id; prints it (or the last value
# seen).
wait_commit() {
	local rc
	await 60 "[[ \$(xattr user.recfs.commit '$1') =~ ^[0-9a-f]{40}\$ ]]"
	rc=$?
	xattr user.recfs.commit "$1"
	return $rc
}

# Expected versions, in order: parallel arrays indexed by n.
#   E_ID E_VER E_REV E_DEL(0/1) E_HASH E_COMMIT; content of a put in W/n.
E_ID=() E_VER=() E_REV=() E_DEL=() E_HASH=() E_COMMIT=()

# expect_put ID SRC: ID was just written (with SRC's content): record its
# version, revision, hash, and wait for its history commit.
expect_put() {
	local n=${#E_ID[@]} id=$1
	cp "$2" "$W/$n"
	E_ID[n]=$id
	E_VER[n]=$(version "$MNT/$id")
	E_REV[n]=$(xattr user.recfs.revision "$MNT/$id")
	E_HASH[n]=$(xattr user.recfs.hash "$MNT/$id")
	E_DEL[n]=0
	E_COMMIT[n]=$(wait_commit "$MNT/$id")
	wait_lag0
}

# expect_del ID VERSION: ID, at VERSION, was just deleted (the store
# revision is that of the delete: this script is the only writer).
expect_del() {
	local n=${#E_ID[@]}
	E_ID[n]=$1
	E_VER[n]=$2
	E_REV[n]=$(revision)
	E_HASH[n]=
	E_DEL[n]=1
	E_COMMIT[n]=
	wait_lag0
}

# blocks GITDIR: every trailer block of every commit reachable from any
# ref, one line each: commit id version revision deleted blob hash from to
# (tab-separated, "-" for an absent field).
blocks() {
	python3 - "$1" <<'PY'
import subprocess, sys
out = subprocess.run(["git", "--git-dir=" + sys.argv[1], "log", "--all",
                      "--format=%x00%H%n%B"], capture_output=True,
                     text=True, check=True).stdout
keys = ["Id", "Version", "Revision", "Deleted", "Blob", "Hash", "From", "To"]
for chunk in out.split("\0")[1:]:
    commit, _, body = chunk.partition("\n")
    for para in body.split("\n\n"):
        f = {}
        for line in para.strip("\n").split("\n"):
            k, sep, v = line.partition(": ")
            if sep and k.startswith("Recfs-"):
                f[k[6:]] = v
        if "Id" in f:
            print("\t".join([commit] + [f.get(k, "-") for k in keys]))
PY
}

# ---- 1. a sequence of writes, each waited into the history ----------------

mount_store || exit 1

# commit count of refs/heads/main in the store's repository, now
ncommits() {
	git --git-dir="$STORE/history.git" rev-list --count refs/heads/main \
		2>/dev/null || echo 0
}

printf 'a version 1\n' >"$T/src"
cp "$T/src" "$MNT/a"
# user.recfs.commit: "pending" or a commit id; a commit id within seconds
c=$(xattr user.recfs.commit "$MNT/a")
check "[[ '$c' == pending || '$c' =~ ^[0-9a-f]{40}$ ]]" \
	"user.recfs.commit right after a write is pending or a commit id ($c)"
expect_put a "$T/src"
check "[[ '${E_COMMIT[0]}' =~ ^[0-9a-f]{40}$ ]]" \
	"user.recfs.commit becomes a 40-hex commit id (${E_COMMIT[0]})"
check "[ \"\$(git --git-dir='$STORE/history.git' cat-file -t '${E_COMMIT[0]}')\" = commit ]" \
	"... and that commit exists in history.git"

for i in 2 3 4; do
	printf 'a version %d\n%s\n' "$i" "$RANDOM$RANDOM" >"$T/src"
	cp "$T/src" "$MNT/a"
	expect_put a "$T/src"
done
mkdir -p "$MNT/ns"
for i in 1 2; do
	printf 'ns/b version %d\n' "$i" >"$T/src"
	cp "$T/src" "$MNT/ns/b"
	expect_put ns/b "$T/src"
done
for i in 1 2; do # > 1 MiB
	head -c $((1536 * 1024 + i)) /dev/urandom >"$T/src"
	cp "$T/src" "$MNT/big"
	expect_put big "$T/src"
done
rm "$MNT/ns/b"
expect_del ns/b 2
# mv onto a new name in the namespace: target version 1, source deleted
printf 'c version 1\n' >"$T/src"
cp "$T/src" "$MNT/c"
expect_put c "$T/src"
mv "$MNT/c" "$MNT/ns/d"
expect_put ns/d "$T/src"
expect_del c 1
# mv onto an existing record: a new version of it
printf 'e version 1\n' >"$T/src"
cp "$T/src" "$MNT/e"
expect_put e "$T/src"
mv "$MNT/e" "$MNT/a"
expect_put a "$T/src"
expect_del e 1
# a record created again after its delete continues its versions? (only
# recorded: whatever version it gets must be in history)
printf 'ns/b again\n' >"$T/src"
cp "$T/src" "$MNT/ns/b"
expect_put ns/b "$T/src"
NEXP=${#E_ID[@]}
note "$NEXP versions written (puts and deletes)"
check "[ \"\$(version '$MNT/a')\" = 5 ]" "a is at version 5 after 4 writes and a mv onto it"

# ---- 2. reading old versions through the mount -----------------------------

bad=()
for ((n = 0; n < NEXP; n++)); do
	((E_DEL[n])) && continue
	id=${E_ID[n]} v=${E_VER[n]}
	cmp -s "$W/$n" "$MNT/$id@$v" || bad+=("$id@$v")
	cmp -s "$W/$n" "$MNT/.recfs/history/$id/$v" || bad+=("history/$id/$v")
done
check "[ -z '${bad[*]}' ]" \
	"cat mnt/ID@N and .recfs/history/ID/N equal what was written as version N for every N (bad: ${bad[*]})"
check "[ \"\$(ls '$MNT/.recfs/history/a' | sort -n | tr '\n' ' ')\" = '1 2 3 4 5 ' ]" \
	"ls .recfs/history/a lists 1 2 3 4 5"
check "[ \"\$(ls '$MNT/.recfs/history/big' | sort -n | tr '\n' ' ')\" = '1 2 ' ]" \
	"ls .recfs/history/big lists 1 2"
# deleted records: c (renamed away), e (renamed onto a)
check "[ ! -e '$MNT/c' ] && cmp -s '$MNT/.recfs/history/c/1' - <<<'c version 1'" \
	"deleted c: .recfs/history/c/1 still reads its content"
check "cmp -s '$MNT/c@1' - <<<'c version 1'" "deleted c: c@1 still reads"
check "cmp -s '$MNT/.recfs/history/e/1' - <<<'e version 1' && [ \"\$(ls '$MNT/.recfs/history/e')\" = 1 ]" \
	"deleted e: history/e lists 1 and reads it"
# a version that never existed: ENOENT
enoent() {
	python3 - "$1" <<'PY'
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
except OSError as e:
    sys.exit(0 if e.errno == errno.ENOENT else 1)
sys.exit(1)
PY
}
check "enoent '$MNT/a@6'" "open a@6 (never existed) fails with ENOENT"
check "enoent '$MNT/a@99' && enoent '$MNT/.recfs/history/a/6'" \
	"open a@99 and .recfs/history/a/6 fail with ENOENT"
check "enoent '$MNT/c@2' && enoent '$MNT/nosuch@1'" \
	"open c@2 (deleted at 1) and nosuch@1 fail with ENOENT"

NC1=$(ncommits)
git --git-dir="$STORE/history.git" rev-list refs/heads/main >"$T/commits1"
umount_store
check "[ '$DAEMON_RC' = 0 ]" "first unmount: daemon exits 0"

# ---- 3. the history with stock git -----------------------------------------

check "git clone -q '$STORE/history.git' '$T/clone'" "git clone STORE/history.git"
G=$T/clone/.git
blocks "$G" >"$T/blocks"
check "[ -s '$T/blocks' ]" "git log --all --format=%B has trailer blocks"
# exactly one block per (ID, version, put|delete)
check "[ \"\$(cut -f2,3,5 '$T/blocks' | sort | uniq -d)\" = '' ]" \
	"no (Recfs-Id, Recfs-Version, Deleted) block appears twice"
check "[ \"\$(wc -l <'$T/blocks')\" = $NEXP ]" \
	"exactly $NEXP trailer blocks: one per committed version and delete ($(wc -l <"$T/blocks"))"
bad=()
for ((n = 0; n < NEXP; n++)); do
	id=${E_ID[n]} v=${E_VER[n]}
	if ((E_DEL[n])); then
		m=$(awk -F'\t' -v i="$id" -v v="$v" -v r="${E_REV[n]}" \
			'$2 == i && $3 == v && $4 == r && $5 == "true" && $6 == "-"' \
			"$T/blocks" | wc -l)
		((m == 1)) || bad+=("del:$id@$v")
		continue
	fi
	line=$(awk -F'\t' -v i="$id" -v v="$v" '$2 == i && $3 == v && $5 == "-"' \
		"$T/blocks")
	IFS=$'\t' read -r commit _ _ rev _ blob hash _ <<<"$line"
	if [[ -z $line || $(wc -l <<<"$line") != 1 || $rev != "${E_REV[n]}" ||
		$hash != "${E_HASH[n]}" || $commit != "${E_COMMIT[n]}" ]]; then
		bad+=("$id@$v")
		note "block $id@$v: got '$line', want rev ${E_REV[n]} hash ${E_HASH[n]} commit ${E_COMMIT[n]}"
		continue
	fi
	git --git-dir="$G" cat-file -p "$blob" | cmp -s - "$W/$n" ||
		bad+=("blob:$id@$v")
done
check "[ -z '${bad[*]}' ]" \
	"every version has its block with the right Revision, Hash (user.recfs.hash at write), commit (user.recfs.commit) and Blob content (bad: ${bad[*]})"
check "awk -F'\t' '\$2 == \"ns/d\" && \$8 == \"c\"' '$T/blocks' | grep -q . && awk -F'\t' '\$2 == \"c\" && \$5 == \"true\" && \$9 == \"ns/d\"' '$T/blocks' | grep -q ." \
	"the rename c -> ns/d is recorded (Recfs-From: c, and c Deleted with Recfs-To: ns/d)"
# git log -- ID: the commits that changed ID are those with a block for ID
bad=()
for id in a ns/b big c ns/d e; do
	want=$(awk -F'\t' -v i="$id" '$2 == i {print $1}' "$T/blocks" | sort -u)
	got=$(git -C "$T/clone" log --format=%H -- "$id" | sort -u)
	[[ -n $want && $want == "$got" ]] || bad+=("$id")
done
check "[ -z '${bad[*]}' ]" \
	"git log --format=%H -- ID lists exactly the commits with a block for ID, for every ID (bad: ${bad[*]})"
check "git -C '$T/clone' log -p -- big >/dev/null && git -C '$T/clone' log -p -- ns/b | grep -q '^+ns/b version 2'" \
	"git log -p -- ID works (ns/b shows its version 2 diff)"
check "[ \"\$(git -C '$T/clone' show HEAD:a)\" = 'e version 1' ] && ! git -C '$T/clone' cat-file -e HEAD:c 2>/dev/null" \
	"the tree of the last commit is the store (a holds e's content, c is gone)"
check "git -C '$T/clone' fsck --no-progress --no-dangling >/dev/null 2>&1" \
	"git fsck of the clone is clean"

# ---- 4. rollback -------------------------------------------------------------

mount_store || exit 1
check "[ \"\$(ncommits)\" -ge '$NC1' ]" "remount: the commit count did not decrease"
check "'$RECFSCTL' rollback '$MNT' a --to 1" "recfsctl rollback mnt a --to 1"
check "cmp -s '$W/0' '$MNT/a' && [ \"\$(version '$MNT/a')\" = 6 ]" \
	"a holds version 1's content as a new version 6"
a6=$(wait_commit "$MNT/a")
check "[[ '$a6' =~ ^[0-9a-f]{40}$ ]] && [ \"\$(git --git-dir='$STORE/history.git' show '$a6:a')\" = 'a version 1' ]" \
	"version 6 of a is committed to history with version 1's content"
wait_lag0
NC2=$(ncommits)
check "[ '$NC2' -gt '$NC1' ]" "the commit count grew ($NC1 -> $NC2)"
check "cp '$MNT/big@1' '$MNT/big'" "cp mnt/big@1 mnt/big"
check "cmp -s '$MNT/big' '$(for ((n = 0; n < NEXP; n++)); do [[ ${E_ID[n]} == big && ${E_VER[n]} == 1 ]] && echo "$W/$n"; done)' && [ \"\$(version '$MNT/big')\" = 3 ]" \
	"big holds version 1's content as a new version 3"
wait_commit "$MNT/big" >/dev/null
wait_lag0
NC3=$(ncommits)
check "[ '$NC3' -gt '$NC2' ]" "the commit count grew again ($NC2 -> $NC3)"
check "git --git-dir='$STORE/history.git' rev-list refs/heads/main | sort | comm -23 <(sort '$T/commits1') - | wc -l | grep -qx 0" \
	"every commit from before the rollbacks is still reachable from main"
check "cmp -s '$W/1' '$MNT/a@2' && cmp -s '$MNT/a@1' '$MNT/a@6'" \
	"old versions still read after the rollback (a@2, a@1 = a@6)"

# ---- 5. 8 x 50 concurrent recfsctl update ------------------------------------

upd() {
	local k rc=0
	for ((k = 0; k < 50; k++)); do
		"$RECFSCTL" update "$MNT" counter -- sh -c 'read n; echo $((n+1))' \
			|| rc=1
	done
	return $rc
}
pids=()
for ((p = 0; p < 8; p++)); do
	upd >"$T/upd.$p" 2>&1 &
	pids+=($!)
done
rcs=0
for p in "${pids[@]}"; do
	wait "$p" || rcs=$((rcs + 1))
done
check "[ $rcs = 0 ]" "8 x 50 recfsctl update all succeed ($rcs failed: $(cat "$T"/upd.* | head -3 | tr '\n' ' '))"
check "[ \"\$(cat '$MNT/counter')\" = 400 ]" "counter is exactly 400 ($(cat "$MNT/counter"))"
check "[ \"\$(version '$MNT/counter')\" = 400 ]" "counter is at version 400"

# ---- 6. kill -9 while the history lags ---------------------------------------

# a burst of acknowledged writes (close returned 0), then kill -9 at once
python3 - "$MNT" "$T/acked" <<'PY'
import os, sys
mnt, acked = sys.argv[1], open(sys.argv[2], "w")
for i in range(300):
    name = "burst%03d" % i
    fd = os.open(os.path.join(mnt, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"burst %d\n" % i)
    os.close(fd)
    acked.write(name + "\n")
    acked.flush()
PY
lag=$(status_lag)
kill -KILL "${DAEMON_PID[$MNT]}"
note "history lag just before kill -9: ${lag:-?} revisions"
wait_daemon "$MNT"
fusermount3 -uz "$MNT" 2>/dev/null
check "[ \"\$(wc -l <'$T/acked')\" = 300 ]" "300 burst writes acknowledged before the kill"
check "! mountpoint -q '$MNT'" "after kill -9 and fusermount3 -uz nothing is mounted"
mount_store
check "mountpoint -q '$MNT'" "remount after kill -9"
check "wait_lag0" ".recfs/status history lag reaches 0 after the remount"
note "status: $(cat "$MNT/.recfs/status")"
check "[ \"\$(cat '$MNT/counter')\" = 400 ] && cmp -s '$MNT/burst299' - <<<'burst 299'" \
	"the records survived (counter 400, burst299)"
umount_store
check "[ '$DAEMON_RC' = 0 ]" "unmount after the crash: daemon exits 0"
blocks "$STORE/history.git" >"$T/blocks2"
{
	sed 's/$/@1/' "$T/acked"
	for ((i = 1; i <= 400; i++)); do echo "counter@$i"; done
	echo a@6
	echo big@3
	for ((n = 0; n < NEXP; n++)); do
		((E_DEL[n])) || echo "${E_ID[n]}@${E_VER[n]}"
	done
} | sort -u >"$T/acked_all"
missing=$(awk -F'\t' '$5 == "-" {print $2 "@" $3}' "$T/blocks2" | sort -u |
	comm -13 - "$T/acked_all")
check "[ -z '$missing' ]" \
	"every acknowledged version (300 burst, 400 counter, earlier ones) has its trailer block (missing: $(head -c 300 <<<"$missing" | tr '\n' ' '))"
check "[ \"\$(awk -F'\t' '\$5 == \"-\" {print \$2 \"@\" \$3}' '$T/blocks2' | sort | uniq -d)\" = '' ]" \
	"still no version with two blocks"
check "git --git-dir='$STORE/history.git' rev-list refs/heads/main | sort | comm -23 <(sort '$T/commits1') - | wc -l | grep -qx 0 && [ \"\$(ncommits)\" -ge '$NC3' ]" \
	"history only grew: every earlier commit is reachable, count >= $NC3"

finish
