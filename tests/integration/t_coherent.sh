#!/usr/bin/env bash
# After close(2) returns in process A, process B sees the new version
# (SPEC 3: "Once close(2) of a commit has returned, every later open,
# stat, read or getfattr from any process sees the new version"):
#  - tests/integration/coherent: 10,000 rounds; A (a process) writes the
#    record in turn with O_TRUNC, overwrite + ftruncate and O_APPEND, and
#    one round in 8 by tmp + rename; after each close/rename B (a second,
#    long-lived process (no exec per round: 10,000 execs are too slow),
#    direct syscalls: stat, getxattr user.recfs.version, open afresh,
#    fstat, read) checks size, version and content; stale answers: 0;
#  - tests/integration/racers: 4 readers open and read the record while
#    a writer rewrites it with a new size each time; no read is cut at
#    the size of an older version (recfs only: on a disk, O_TRUNC shows
#    readers an empty or half-written file);
#  - the real programs, fewer rounds (each is 3 execs): the shell writes
#    (printf > f) and getfattr, cat and stat -c %s, each its own process,
#    must show the new version at once.
. "$(dirname "$0")/lib.sh"

COHERENT=$(helper coherent)
ROUNDS=${RECFS_COHERENT_ROUNDS:-10000}
SHELL_ROUNDS=${RECFS_COHERENT_SHELL_ROUNDS:-200}

mount_store || exit 1
xopt=-x
plain && xopt=

t0=$(date +%s%N)
timeout 250 "$COHERENT" -n "$ROUNDS" $xopt "$MNT/c" >"$T/coherent.out" 2>&1
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
sed 's/^/# /' "$T/coherent.out" | tail -14
check "[ $rc = 0 ] && grep -q '^reader: $((ROUNDS + 1)) rounds, 0 stale answers' '$T/coherent.out'" \
	"$ROUNDS rounds of write/close in A, then stat/getxattr/open/fstat/read in B: no stale answer ($ms ms; $(grep '^reader:' "$T/coherent.out"))"

if ! plain; then
	timeout 60 "$(helper racers)" -r 4 -s "${RECFS_RACERS_SECONDS:-8}" "$MNT/r" \
		>"$T/racers.out" 2>&1
	rc=$?
	sed 's/^/# /' "$T/racers.out" | tail -12
	check "[ $rc = 0 ]" "4 readers racing a writer that changes the size: no read cut at an old size ($(grep '^writer:' "$T/racers.out"))"
fi

# the real programs
stale_size=0 stale_cat=0 stale_version=0
v0=$(version "$MNT/s" 2>/dev/null)
printf 'round 0\n' >"$MNT/s"
v0=$(version "$MNT/s")
t0=$(date +%s%N)
for ((i = 1; i <= SHELL_ROUNDS; i++)); do
	pad=$(printf "%$((i % 11))s" '')
	printf 'round %d%s\n' "$i" "$pad" >"$MNT/s" # the shell is A
	want="round $i$pad"
	[[ $(stat -c %s "$MNT/s") == $((${#want} + 1)) ]] || stale_size=$((stale_size + 1))
	[[ $(cat "$MNT/s") == "$want" ]] || stale_cat=$((stale_cat + 1))
	if ! plain; then
		[[ $(getfattr --only-values -n user.recfs.version "$MNT/s" 2>/dev/null) == $((v0 + i)) ]] ||
			stale_version=$((stale_version + 1))
	fi
done
ms=$((($(date +%s%N) - t0) / 1000000))
check "[ $stale_size = 0 ]" \
	"$SHELL_ROUNDS rounds of printf > s, then stat -c %s s: $stale_size stale sizes ($ms ms in all)"
check "[ $stale_cat = 0 ]" "... then cat s: $stale_cat stale contents"
check_recfs "[ $stale_version = 0 ]" \
	"... then getfattr -n user.recfs.version s: $stale_version stale versions"

finish
