# tests/integration/lib.sh - common part of the mount tests (t_*.sh).
#
# Sourced by each script, which is runnable alone:
#   tests/integration/t_basic.sh BUILD_ROOT
# or with RECFS_BUILD_ROOT set (meson test sets it). Builds nothing: it
# uses BUILD_ROOT/fusefs/recfs and BUILD_ROOT/tools/recfsctl.
#
# It makes a temp dir $T holding $STORE and $MNT (and more stores and
# mount points on request), mounts with `recfs -f` in the background so
# the daemon's pid is known and its log (stderr) lands in a file in $T,
# and on exit, whatever the cause, unmounts everything it mounted, kills
# only the daemons it started, and removes $T. A daemon log holding a
# sanitizer report fails the script.
#
# A script calls `check EXPR DESCRIPTION` for each property (EXPR is
# eval'd in a subshell, so it sees the script's variables and functions;
# it passes if it exits 0) and ends with `finish`, which unmounts, prints
# "N passed, N failed" and exits non-zero if any check failed. Scripts must
# not use a bare `wait`: the daemons are children of the script too.
#
# RECFS_TEST_PLAINDIR=1 runs a script against plain directories instead:
# mount_at only makes the directory and umount_at does nothing, so the
# same script shows what a local disk does (a test that fails there is
# wrong, not recfs). Checks of what only recfs has (user.recfs.*, ID@N)
# go through check_recfs, which skips them there.

set -u

RECFS_BUILD_ROOT=${RECFS_BUILD_ROOT:-${1:-}}
if [[ -z $RECFS_BUILD_ROOT ]]; then
	echo "usage: $0 BUILD_ROOT (or set RECFS_BUILD_ROOT)" >&2
	exit 2
fi
RECFS_BUILD_ROOT=$(cd "$RECFS_BUILD_ROOT" && pwd) || exit 2
RECFS=$RECFS_BUILD_ROOT/fusefs/recfs
RECFSCTL=$RECFS_BUILD_ROOT/tools/recfsctl
for _b in "$RECFS" "$RECFSCTL"; do
	if [[ ! -x $_b ]]; then
		echo "Bail out! $_b is not built (ninja -C $RECFS_BUILD_ROOT)" >&2
		exit 2
	fi
done
RECFS_TEST_PLAINDIR=${RECFS_TEST_PLAINDIR:-0}
if [[ $RECFS_TEST_PLAINDIR == 1 ]]; then
	echo "# RECFS_TEST_PLAINDIR=1: plain directories, no recfs mount"
elif [[ ! -c /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
	echo "Bail out! no /dev/fuse or fusermount3: cannot run mount tests" >&2
	exit 2
fi

export LC_ALL=C
# sanitizer builds: report, and make UBSan fatal, in the daemon's log
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

T=$(mktemp -d "${TMPDIR:-/tmp}/recfs-it.XXXXXX") || exit 2
STORE=$T/store
MNT=$T/mnt
mkdir -p "$MNT"

PASSED=0
FAILED=0
DAEMON_RC=     # exit status of the last daemon umount_store waited for
declare -A DAEMON_PID=() # mount point -> pid of its recfs -f
declare -A DAEMON_LOG=() # mount point -> its log file
LOGS=()        # every daemon log (each scanned when its daemon exits)
TMPFS=()       # tmpfs mounts made by mount_tmpfs
BG_PIDS=()     # background programs a script started (tail -f, a sqlite3
               # coprocess): killed at exit before anything is unmounted

# ---- checks ----------------------------------------------------------------

# check EXPR DESCRIPTION: eval EXPR in a subshell; pass if it exits 0.
# (A subshell: do not mount or set variables in EXPR.)
check() {
	local expr=$1 desc=${2//$'\n'/ }
	if (eval "$expr"); then
		PASSED=$((PASSED + 1))
		echo "ok - $desc"
	else
		FAILED=$((FAILED + 1))
		echo "not ok - $desc"
		echo "#   failed: $expr"
	fi
}

# check_recfs EXPR DESCRIPTION: a check of what only a recfs mount has;
# skipped (and not counted) under RECFS_TEST_PLAINDIR=1.
check_recfs() {
	if plain; then
		echo "ok - ${2//$'\n'/ } # SKIP plain directory"
		return 0
	fi
	check "$@"
}

# plain: true under RECFS_TEST_PLAINDIR=1.
plain() {
	[[ $RECFS_TEST_PLAINDIR == 1 ]]
}

# await SECONDS EXPR: poll EXPR (eval'd) every 20 ms until it exits 0;
# non-zero if it did not within SECONDS (a fraction is fine).
await() {
	local deadline now
	deadline=$(($(date +%s%N) + 10#${1/./} * 10 ** (9 - $(_decimals "$1"))))
	while :; do
		(eval "$2") && return 0
		now=$(date +%s%N)
		((now < deadline)) || return 1
		sleep 0.02
	done
}
_decimals() {
	case $1 in
	*.*) local f=${1#*.}; echo ${#f} ;;
	*) echo 0 ;;
	esac
}

# helper NAME: the path of a test program built in tests/integration
# (fsx, fdcheck, ...); bails out if it is not built.
helper() {
	local p=$RECFS_BUILD_ROOT/tests/integration/$1
	if [[ ! -x $p ]]; then
		echo "Bail out! $p is not built (ninja -C $RECFS_BUILD_ROOT)" >&2
		exit 2
	fi
	echo "$p"
}

# note TEXT: a diagnostic line.
note() {
	echo "# $*"
}

# xattr NAME FILE: the value of an extended attribute (empty if none).
xattr() {
	getfattr --only-values -n "$1" -- "$2" 2>/dev/null
}

# version FILE / revision [DIR]: the computed attributes.
version() {
	xattr user.recfs.version "$1"
}
revision() {
	xattr user.recfs.revision "${1:-$MNT}"
}

# ---- mounts ----------------------------------------------------------------

# Is pid $1 still running (not a zombie)?
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

# Scan one daemon log for sanitizer reports: a failed check if any.
scan_log() {
	local log=$1
	[[ -f $log ]] || return 0
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error' \
		"$log"; then
		FAILED=$((FAILED + 1))
		echo "not ok - no sanitizer report in $(basename "$log")"
		sed 's/^/#   /' "$log"
	fi
}

# mount_at STORE MNT [recfs options...]: start `recfs STORE MNT -f ...` in
# the background and wait (bounded) until MNT is a mount point. Returns
# non-zero, with the daemon's log printed, if it does not come up.
mount_at() {
	local store=$1 mnt=$2
	shift 2
	local log pid
	if plain; then
		mkdir -p "$mnt"
		return 0
	fi
	log=$T/recfs-$(basename "$mnt")-$((${#LOGS[@]} + 1)).log
	LOGS+=("$log")
	mkdir -p "$mnt"
	# Its own session, so that a ^C meant for the test reaches the
	# command the test runs (and then the test's trap), not the daemon
	# under it; setsid execs in place, so $! is the daemon's pid. A
	# background job of a script starts with SIGINT ignored and libfuse
	# leaves an ignored signal alone: env restores the default, which a
	# daemon started from a terminal has.
	setsid env --default-signal=INT "$RECFS" "$store" "$mnt" -f "$@" \
		>"$log" 2>&1 &
	pid=$!
	DAEMON_PID[$mnt]=$pid
	DAEMON_LOG[$mnt]=$log
	# up to 60 s: a busy machine may take long to start (and recover)
	# a store; one that fails to mount exits, which ends the wait at once
	await 60 "mountpoint -q '$mnt' || ! alive $pid"
	if mountpoint -q "$mnt"; then
		return 0
	fi
	echo "# recfs $store $mnt -f $* did not mount; its log:"
	sed 's/^/#   /' "$log"
	if alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	unset "DAEMON_PID[$mnt]"
	return 1
}

# mount_store [recfs options...]: mount $STORE on $MNT. A store that does
# not exist yet is created (-o create).
mount_store() {
	if [[ ! -d $STORE ]]; then
		set -- -o create "$@"
	fi
	mount_at "$STORE" "$MNT" "$@"
}

# wait_daemon MNT: wait (bounded) for the daemon of MNT to exit; sets
# DAEMON_RC to its exit status (or 255 if it had to be killed).
wait_daemon() {
	local mnt=$1 pid
	pid=${DAEMON_PID[$mnt]:-}
	DAEMON_RC=
	[[ -n $pid ]] || return 0
	# up to 60 s: the daemon may have a checkpoint and the history to
	# finish, and a busy machine gives it little time
	await 60 "! alive $pid"
	if alive "$pid"; then
		echo "# recfs (pid $pid) did not exit: killed"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		DAEMON_RC=255
		if mountpoint -q "$mnt" || [[ ! -d $mnt ]]; then
			fusermount3 -uz "$mnt" 2>/dev/null
		fi
	else
		wait "$pid" 2>/dev/null
		DAEMON_RC=$?
	fi
	unset "DAEMON_PID[$mnt]"
	scan_log "${DAEMON_LOG[$mnt]}"
}

# umount_at MNT: unmount, wait for the daemon; sets DAEMON_RC.
umount_at() {
	local mnt=$1
	if mountpoint -q "$mnt"; then
		# busy a moment (a process still closing a file): try again
		# for up to 5 s (a busy machine), then detach
		fusermount3 -u "$mnt" 2>/dev/null ||
			await 5 "fusermount3 -u '$mnt' 2>/dev/null" ||
			fusermount3 -uz "$mnt" 2>/dev/null
	fi
	wait_daemon "$mnt"
}

umount_store() {
	umount_at "$MNT"
}

# daemon_log [MNT]: path of the log of the daemon last mounted on MNT.
daemon_log() {
	echo "${DAEMON_LOG[${1:-$MNT}]:-/dev/null}"
}

# mount_tmpfs DIR SIZE: a small tmpfs (unmounted at exit).
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1" || return 1
	TMPFS+=("$1")
}

# ---- the end ---------------------------------------------------------------

cleanup() {
	local rc=$? mnt pid i d
	trap - EXIT INT TERM HUP
	for pid in "${BG_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for mnt in "${!DAEMON_PID[@]}"; do
		if mountpoint -q "$mnt"; then
			fusermount3 -u "$mnt" 2>/dev/null ||
				fusermount3 -uz "$mnt" 2>/dev/null
		fi
		pid=${DAEMON_PID[$mnt]}
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
		if alive "$pid"; then
			kill -TERM "$pid" 2>/dev/null
			await 0.5 "! alive $pid" || kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
	done
	for ((i = ${#TMPFS[@]} - 1; i >= 0; i--)); do
		umount "${TMPFS[i]}" 2>/dev/null || umount -l "${TMPFS[i]}"
	done
	# never recurse into something still mounted
	while read -r d; do
		umount -l "$d" 2>/dev/null || fusermount3 -uz "$d" 2>/dev/null
	done < <(awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/mounts |
		sort -r)
	rm -rf --one-file-system "$T"
	exit "$rc"
}
trap cleanup EXIT
# (bash runs an INT trap only once the foreground command died of SIGINT)
trap 'echo "# killed"; exit 130' INT TERM HUP

# finish: the summary line; the exit status says if anything failed.
finish() {
	local mnt
	for mnt in "${!DAEMON_PID[@]}"; do
		umount_at "$mnt"
	done
	echo "$PASSED passed, $FAILED failed"
	if ((FAILED > 0 || PASSED == 0)); then
		exit 1
	fi
	exit 0
}
