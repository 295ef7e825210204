#!/usr/bin/env bash
# Errors are reported by the library, not logged by it (issue 14): a
# failing recfsctl or recfs prints the reported cause -- the path or
# record and the reason -- once, on one line, instead of a log line from
# the library followed by a bare strerror from the tool.
. "$(dirname "$0")/lib.sh"

# say_once OUT: exactly one line, no library log line ("recfs: error:")
say_once() {
	[[ $(grep -c . <<<"$1") == 1 ]] && ! grep -q 'recfs: error:' <<<"$1"
}

# ---- a directory that is not a store
mkdir -p "$T/plain"
echo data >"$T/plain/f"
out=$("$RECFSCTL" stats "$T/plain" 2>&1)
rc=$?
check "[ $rc = 1 ]" "recfsctl stats of a plain directory fails"
check "say_once \"\$out\"" "... saying why once ($out)"
check "grep -qF 'recfsctl stats: $T/plain: not a recfs store (no format.json)' <<<\"\$out\"" \
	"... naming the path and the reason"
check "grep -qF '\`recfsctl init --adopt $T/plain\`' <<<\"\$out\"" \
	"... and the command that makes a store of it"

out=$("$RECFSCTL" init "$T/plain" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl init of a non-empty directory fails, once ($out)"
check "grep -qF 'recfsctl init: $T/plain: directory is not empty (found \"f\")' <<<\"\$out\"" \
	"... naming the directory and what is in it"

# ---- a format file of something else
mkdir -p "$T/other"
echo '{"format":"nope","version":1}' >"$T/other/format.json"
out=$("$RECFSCTL" verify "$T/other" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl verify of a foreign format file fails, once ($out)"
check "grep -qF 'recfsctl verify: $T/other/format.json: not a recfs store (\"format\" is not \"recfs\")' <<<\"\$out\"" \
	"... naming the file and the reason"

# ---- a store that exists, and one that is in use
"$RECFSCTL" init "$STORE" >/dev/null 2>&1
out=$("$RECFSCTL" init "$STORE" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl init of a store fails, once ($out)"
check "grep -qF 'recfsctl init: $STORE: already a recfs store' <<<\"\$out\"" \
	"... saying it is one"

# ---- a rollback past the current revision, an import of nothing
out=$("$RECFSCTL" rollback "$STORE" --to 5 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl rollback to a revision the store does not have fails, once ($out)"
check "grep -qF 'recfsctl rollback: $STORE: rollback to revision 5 failed: $STORE: revision 5 is after the current one (0)' <<<\"\$out\"" \
	"... naming the store, the revision and the current one"

out=$("$RECFSCTL" import "$STORE" "$T/nowhere" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl import of a missing directory fails, once ($out)"
check "grep -qF '$T/nowhere: cannot open the directory: No such file or directory' <<<\"\$out\"" \
	"... naming the directory and the cause"

# ---- a corrupt journal: recovery says where, once
seg=$STORE/journal/00000000000000099999.log
printf 'not a journal segment, not zeros either\n' >"$seg"
out=$("$RECFSCTL" stats "$STORE" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl stats of a store with a corrupt journal fails, once ($out)"
check "grep -qF 'recfsctl stats: $STORE: recovery: journal is corrupt' <<<\"\$out\" && grep -qF 'journal 00000000000000099999.log: ' <<<\"\$out\"" \
	"... naming the store and the journal file"
rm -f "$seg"

mount_store || exit 1
out=$("$RECFSCTL" verify --repair "$STORE" 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl verify --repair of a mounted store fails, once ($out)"
check "grep -qE '^recfsctl verify: $STORE: .*locked by pid ${DAEMON_PID[$MNT]} ' <<<\"\$out\"" \
	"... naming the store and the daemon holding its lock"

# ---- through the mount, the daemon's cause comes back to recfsctl (the
# control channel's setxattr carries only an errno: recfsctl reads
# user.recfs.ctl.error next)
out=$("$RECFSCTL" rollback "$MNT" --to 99 2>&1)
rc=$?
check "[ $rc = 1 ] && say_once \"\$out\"" "recfsctl rollback through the mount to a revision it does not have fails, once ($out)"
check "grep -qF 'revision 99 is after the current one' <<<\"\$out\" && ! grep -qF \"daemon's log says more\" <<<\"\$out\"" \
	"... with the daemon's cause, not a pointer to its log"
check "! getfattr --only-values -n user.recfs.ctl.error '$MNT' >/dev/null 2>&1" \
	"another process reads no cause (each process gets its own)"

# ---- the daemon says it once too
mkdir -p "$T/mnt2"
out=$(timeout 20 "$RECFS" "$T/plain" "$T/mnt2" -f 2>&1)
rc=$?
check "[ $rc != 0 ] && say_once \"\$out\"" "recfs of a plain directory fails, once ($out)"
check "grep -qF 'recfs: $T/plain: not a recfs store' <<<\"\$out\"" \
	"... naming the path and the reason"

finish
