#!/usr/bin/env bash
# recfsctl watch (SPEC section 7): one JSON line per committed change, in
# revision order, each once: from --from 1 through the history and the
# journal, then 20 live changes that each arrive (within 10 s: a bound
# for a busy machine, not a latency); PREFIX keeps a namespace (not its
# look-alikes); unmount ends the watch with exit 0 after every change; after a remount `--from LAST+1` goes on
# exactly where it stopped and `--from K` delivers K.. once; a store
# directory is followed until SIGTERM (exit 0); bad arguments exit 2, a
# missing target 1.
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null || { echo "Bail out! no jq" >&2; exit 2; }
if plain; then
	echo "ok - recfsctl watch # SKIP plain directory"
	echo "1 passed, 0 failed"
	exit 0
fi

# ---- helpers ---------------------------------------------------------------

# status_rev: the revision in .recfs/status.
status_rev() {
	jq -r .revision "$MNT/.recfs/status" 2>/dev/null
}

# has_rev FILE REV: FILE holds a line of revision REV.
has_rev() {
	grep -q "^{\"revision\":$2," "$1"
}

# changes FILE [MIN]: "revision op id version" of each line of a watch's
# output (revision >= MIN), in the order printed.
changes() {
	jq -r --argjson min "${2:-0}" \
		'select(.revision >= $min) |
		 "\(.revision) \(.op) \(.id) \(.version)"' "$1"
}

# logged [MIN]: the same from `recfsctl log --json` (the history, each
# version once), in revision order.
logged() {
	"$RECFSCTL" log --json "$MNT" |
		jq -r --argjson min "${1:-0}" 'select(.revision >= $min) |
		 "\(.revision) \(if .deleted then "delete" else "put" end) \(.id) \(.version)"' |
		sort -n -s -k1,1
}

# in_order FILE: the revisions of FILE never go down.
in_order() {
	jq -r .revision "$1" | sort -n -c
}

# same_set A B: the same lines, whatever their order within a revision.
same_set() {
	diff <(sort <<<"$1") <(sort <<<"$2") >&2
}

# watch_bg OUT ARGS...: start `recfsctl watch ARGS` writing to OUT; its
# pid in WPID (killed at exit if still running).
watch_bg() {
	local out=$1
	shift
	"$RECFSCTL" watch "$@" >"$out" 2>"$out.err" &
	WPID=$!
	BG_PIDS+=("$WPID")
}

# ---- 30 changes: puts, appends, a delete, a rename, a CAS --------------------

mount_store || exit 1
mkdir "$MNT/ns"
for i in $(seq 1 10); do echo "v$i" >"$MNT/r$((i % 4))"; done
for i in $(seq 1 10); do echo "line $i" >>"$MNT/ns/log"; done
for i in $(seq 1 5); do echo "f$i" >"$MNT/ns/f$i"; done
echo "not ns" >"$MNT/nsx"
rm "$MNT/r0"
mv "$MNT/r1" "$MNT/ns/moved"
v=$(version "$MNT/r2")
echo cas >"$T/cas"
cp "$T/cas" "$MNT/r2@$v"
echo last >"$MNT/r3"
N=$(status_rev)
check '[[ $N == 30 ]]' "30 changes made 30 revisions (status says $N)"

# ---- from revision 1, then 20 live -------------------------------------------

watch_bg "$T/all" "$MNT" --from 1
ALL=$WPID
watch_bg "$T/ns" "$MNT" ns --from 1
NSW=$WPID
check 'await 20 "has_rev $T/all $N"' "watch --from 1 catches up to revision $N"

late=0
for i in $(seq 1 20); do
	case $i in
	5) rm "$MNT/ns/f1" ;;
	10) mv "$MNT/ns/f2" "$MNT/moved2" ;;
	15) v=$(version "$MNT/r2") && echo "cas $i" >"$T/cas" &&
		cp "$T/cas" "$MNT/r2@$v" ;;
	*) echo "live $i" >>"$MNT/ns/live$((i % 3))" ;;
	esac
	r=$(revision)
	if ! await 10 "has_rev $T/all $r"; then
		note "revision $r (live change $i) not seen within 10 s"
		late=$((late + 1))
	fi
done
N2=$(status_rev)
check '[[ $late == 0 && $N2 == $((N + 20)) ]]' \
	"20 live changes each arrive, within 10 s (revisions $((N + 1))..$N2)"
check '[[ $(jq -r .revision "$T/all" | uniq | tr "\n" " ") == "$(seq -s " " 1 "$N2") " ]]' \
	"every revision 1..$N2 appears, in order"
check 'in_order "$T/all"' "revisions never go down"
check 'same_set "$(changes "$T/all")" "$(logged)"' \
	"exactly the changes recfsctl log lists, each once"
check '[[ $(jq -r "select(.revision == 28 and .op == \"delete\") | .op + \" \" + .id + \" \" + .to" "$T/all") == "delete r1 ns/moved" ]]' \
	"a rename: the delete of its source names the target"
check '[[ $(jq -r "select(.id == \"ns/log\" and .version == 10) | .size" "$T/all") == $((10 * 7 + 1)) ]]' \
	"appends: each a version, with its size"
check 'jq -e "select(.op == \"put\") | .hash | test(\"^xxh3-128:[0-9a-f]{32}$\")" "$T/all" >/dev/null' \
	"puts carry their hash"

await 10 "has_rev $T/ns $(jq -r 'select(.id | startswith("ns/")) | .revision' "$T/all" | tail -1)"
check 'same_set "$(changes "$T/ns")" "$(changes "$T/all" | awk "\$3 == \"ns\" || \$3 ~ /^ns\\//")"' \
	"PREFIX ns: exactly the changes of ns/..."
check '! grep -q "\"id\":\"nsx\"" "$T/ns" && grep -q "\"id\":\"nsx\"" "$T/all"' \
	"PREFIX ns does not match nsx"

# ---- unmount ends the watch ------------------------------------------------------

fusermount3 -u "$MNT"
check 'await 20 "! alive $ALL && ! alive $NSW"' "unmount ends the watches"
wait "$ALL"
rc_all=$?
wait "$NSW"
rc_ns=$?
check '[[ $rc_all == 0 && $rc_ns == 0 ]]' \
	"... with exit 0 ($rc_all, $rc_ns; $(cat "$T/all.err"))"
wait_daemon "$MNT"
LAST=$(jq -r .revision "$T/all" | tail -1)
check '[[ $LAST == $N2 ]]' "the watch printed up to the last revision ($LAST)"

# ---- a store directory, and across a remount ----------------------------------

watch_bg "$T/fromstore" "$STORE" --from 1
SW=$WPID
check 'await 20 "has_rev $T/fromstore $N2"' \
	"watch STORE --from 1 (unmounted) catches up"
mount_store || exit 1
oldest=$(ls "$STORE/journal" | grep -m1 '\.log$')
check '(( 10#${oldest%.log} > 10 ))' \
	"the journal no longer holds revision 10 (oldest segment $oldest)"
K=10
watch_bg "$T/next" "$MNT" --from $((LAST + 1))
NEXT=$WPID
watch_bg "$T/k" "$MNT" --from $K
KW=$WPID
for i in 1 2 3; do echo "after $i" >"$MNT/after$i"; done
N3=$(status_rev)
check 'await 20 "has_rev $T/next $N3 && has_rev $T/k $N3"' \
	"after a remount both watches reach revision $N3"
check 'diff <(jq -r .revision "$T/next" | uniq) <(seq $((LAST + 1)) "$N3")' \
	"--from LAST+1 goes on exactly where the first watch stopped"
check 'diff <(jq -r .revision "$T/k" | uniq) <(seq $K "$N3")' \
	"--from $K (from the history) delivers $K..$N3 in order"
check 'same_set "$(changes "$T/k")" "$(logged $K)"' \
	"--from $K: each change once"
check 'same_set "$(cat "$T/all" "$T/next" | changes /dev/stdin)" "$(logged)"' \
	"the first watch and its continuation: every change once"
check 'await 20 "has_rev $T/fromstore $N3"' \
	"watch STORE goes on across the mount"
check 'in_order "$T/fromstore" && same_set "$(changes "$T/fromstore")" "$(logged)"' \
	"the watch of the store directory: every change once, in order"
umount_store
check 'await 20 "! alive $NEXT && ! alive $KW"' "unmount ends them too"
check 'alive $SW' "... but not the watch of the store directory"
kill -TERM "$SW"
check 'await 20 "! alive $SW"' "SIGTERM ends it"
wait "$SW"
rc=$?
check '[[ $rc == 0 ]]' "... with exit 0"

# ---- bad input ----------------------------------------------------------------

check '"$RECFSCTL" watch "$STORE" --from abc 2>/dev/null; [[ $? == 2 ]]' \
	"--from abc: exit 2"
check '"$RECFSCTL" watch "$STORE" --from 0 2>/dev/null; [[ $? == 2 ]]' \
	"--from 0: exit 2"
check '"$RECFSCTL" watch "$STORE" "a/../b" 2>/dev/null; [[ $? == 2 ]]' \
	"a PREFIX that is no ID: exit 2"
check '"$RECFSCTL" watch "$T/nothing" 2>"$T/e2"; [[ $? == 1 ]] && grep -q "neither" "$T/e2"' \
	"a missing target: exit 1, saying why"
check '"$RECFSCTL" watch --help | grep -q "usage: recfsctl watch"' "--help"

finish
