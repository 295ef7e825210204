#!/usr/bin/env bash
# SIGTERM to the daemon during a write loop: a clean exit (status 0, a
# shutdown line in the log), the lock released, and every write that
# returned 0 is there after a remount.
. "$(dirname "$0")/lib.sh"

mount_store || exit 1
pid=${DAEMON_PID[$MNT]}
OKLOG=$T/ok.log # outside the mount
: >"$OKLOG"
# into a namespace: once the mount is gone, MNT/ns does not exist, so no
# write can land in the bare mount point directory
mkdir "$MNT/ns"
W=$MNT/ns
# cp, not `echo >`: the commit is at close(2), and bash ignores the
# close error of a redirection (echo's status is write's), while cp
# reports it: only cp's 0 means "committed".
SRC=$T/src
(
	for ((i = 1; i <= 5000; i++)); do
		echo "$i" >"$SRC"
		if cp "$SRC" "$W/r$i" 2>/dev/null; then
			echo "$i" >>"$OKLOG"
		else
			echo "fail $i" >>"$OKLOG"
			# the mount is gone: stop
			[[ -d $W ]] || break
		fi
	done
) &
writer=$!
# wait until a good number of writes went through (bounded, 60 s: a busy
# machine), then SIGTERM
await 60 "[[ \$(grep -c '^[0-9]' '$OKLOG') -ge 200 ]]"
check "[ \$(grep -c '^[0-9]' '$OKLOG') -ge 200 ]" "the write loop is running"
kill -TERM "$pid"
wait_daemon "$MNT"
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0 on SIGTERM (got $DAEMON_RC)"
log=$(daemon_log)
check "tail -n1 '$log' | grep -q shutdown" \
	"the log ends with a shutdown line ($(tail -n1 "$log"))"
check "! mountpoint -q '$MNT'" "the mount point is unmounted"
# the writer stops on its own once the mount is gone; bounded
await 20 "! alive $writer"
if alive "$writer"; then
	kill "$writer" 2>/dev/null
fi
wait "$writer" 2>/dev/null
oks=$(grep -c '^[0-9]' "$OKLOG")
note "$oks writes returned 0, $(grep -c fail "$OKLOG") failed"
check "[ ! -s '$STORE/lock' ] || ! grep -q '\"pid\"' '$STORE/lock'" \
	"the lock record is cleared ($(cat "$STORE/lock" 2>/dev/null))"
mount_store
check "mountpoint -q '$MNT'" "remount works (the lock was released)"
missing=0
bad=
while read -r i; do
	if [[ $(cat "$W/r$i" 2>/dev/null) != "$i" ]]; then
		missing=$((missing + 1))
		bad+=" r$i"
	fi
done < <(grep '^[0-9]' "$OKLOG")
check "[ $missing = 0 ]" "every write that returned 0 is there with its content ($missing missing:${bad:0:100})"
check "[ \"\$(ls '$W' | wc -l)\" -ge $oks ]" "ls lists at least $oks records"
check "[ $oks -lt 5000 ]" "the loop was stopped by the shutdown ($oks writes)"
umount_store
check "[ \"$DAEMON_RC\" = 0 ]" "the daemon exits 0 at unmount"
"$RECFSCTL" verify "$STORE" >"$T/verify" 2>&1
rc=$?
check "[ $rc = 0 ]" "recfsctl verify is clean ($(tail -n2 "$T/verify" | tr '\n' ' '))"

# SIGINT too, while idle
mount_store || exit 1
echo x >"$MNT/after"
kill -INT "${DAEMON_PID[$MNT]}"
wait_daemon "$MNT"
check "[ \"$DAEMON_RC\" = 0 ] && tail -n1 '$(daemon_log)' | grep -q shutdown" \
	"SIGINT: exit 0 and a shutdown line"
mount_store
check "[ \"\$(cat '$MNT/after')\" = x ]" "the write before SIGINT is there"

finish
