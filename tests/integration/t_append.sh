#!/usr/bin/env bash
# Appends are rebased: 8 processes x 100 `echo ... >> log` all land.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
L=$MNT/log
P=8
N=100

pids=()
for ((p = 0; p < P; p++)); do
	(
		for ((i = 0; i < N; i++)); do
			echo "line-$p-$i" >>"$L" || echo "append $p $i failed" >&2
		done
	) 2>"$T/err.$p" &
	pids+=($!)
done
wait "${pids[@]}" # not a bare wait: the daemon is a child too
check "[ ! -s \"\$(cat '$T'/err.* >'$T/errs'; echo '$T/errs')\" ]" \
	"every append returned 0 ($(cat "$T"/err.* | head -3 | tr '\n' ' '))"
check "[ \"\$(wc -l <'$L')\" -eq $((P * N)) ]" \
	"wc -l gives $((P * N)) (got $(wc -l <"$L"))"
missing=0
for ((p = 0; p < P; p++)); do
	for ((i = 0; i < N; i++)); do
		echo "line-$p-$i"
	done
done | sort >"$T/want"
sort "$L" >"$T/got"
check "cmp -s '$T/want' '$T/got'" \
	"each of the $((P * N)) distinct lines is there exactly once ($(comm -3 "$T/want" "$T/got" | head -3 | tr '\n' ' '))"
check "! grep -qv '^line-[0-9]-[0-9]*\$' '$L'" "no torn or mixed lines"
for ((p = 0; p < P; p++)); do
	check "grep '^line-$p-' '$L' | cut -d- -f3 | sort -n -c 2>/dev/null || [ \"\$(grep '^line-$p-' '$L' | cut -d- -f3 | tr '\n' ' ')\" = \"\$(seq -s ' ' 0 $((N - 1))) \" ]" \
		"the lines of process $p are in its order ($(grep "^line-$p-" "$L" | cut -d- -f3 | awk 'NR - 1 != $1 { printf "%s@%d ", $1, NR - 1 }' | head -c 100))"
done
v=$(version "$L")
check "[ \"$v\" -ge 1 ] && [ \"$v\" -le $((P * N)) ]" \
	"the log's version ($v) is between 1 and $((P * N))"

# `>>` racing to create a record: each creator appends too. A LOOKUP
# reply that reaches the kernel late sets its i_size back, and an append
# at the kernel's offset overwrote the line before it: about 1 round in
# 300 lost a line before the fix (draft.c, append_at), so many rounds.
R=${RECFS_APPEND_ROUNDS:-150}
bad=0
for ((r = 0; r < R; r++)); do
	pids=()
	for ((p = 0; p < P; p++)); do
		echo "c-$p" >>"$MNT/race$r" &
		pids+=($!)
	done
	wait "${pids[@]}"
	n=$(sort -u "$MNT/race$r" | grep -c '^c-[0-9]$')
	if [[ $n != "$P" || $(wc -c <"$MNT/race$r") != $((P * 4)) ]]; then
		note "race$r: $(od -c "$MNT/race$r" | head -3 | tr '\n' ' ')"
		bad=$((bad + 1))
	fi
done
check "[ $bad = 0 ]" "$P processes creating a record with >> all land, $R times ($bad bad)"
check "[ \"\$(version '$MNT/race0')\" -le $P ]" "... at most one version per append"

umount_store
mount_store || exit 1
check "[ \"\$(wc -l <'$L')\" -eq $((P * N)) ]" "all lines are there after a remount"

finish
