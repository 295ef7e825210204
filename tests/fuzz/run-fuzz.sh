#!/bin/sh
# run-fuzz.sh FUZZER SECONDS CORPUS [ARTIFACT_DIR]
#
# Run the libFuzzer binary FUZZER for SECONDS (>= 1) over the seed corpus
# directory CORPUS, which is only read. libFuzzer writes the new inputs it
# finds into the FIRST corpus directory it is given, so that is a fresh
# temporary directory, removed on exit: the source tree is never modified.
# Crash, leak and timeout inputs are saved as ARTIFACT_DIR/NAME-crash-...
# (default: the current directory). Exits with the fuzzer's status: 0 when
# nothing was found, non-zero on a crash; 2 on a usage error.
set -u

usage() {
	echo "usage: run-fuzz.sh FUZZER SECONDS CORPUS [ARTIFACT_DIR]" >&2
	exit 2
}

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
	usage
fi
fuzzer=$1
seconds=$2
corpus=$3
artifacts=${4:-.}

# -max_total_time=0 would mean "forever": require a positive number.
case $seconds in
'' | *[!0-9]* | 0*) echo "run-fuzz.sh: bad SECONDS '$seconds'" >&2; usage ;;
esac
[ -x "$fuzzer" ] || { echo "run-fuzz.sh: $fuzzer: not executable" >&2; exit 2; }
[ -d "$corpus" ] || { echo "run-fuzz.sh: $corpus: no such directory" >&2; exit 2; }
mkdir -p "$artifacts" || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/recfs-fuzz.XXXXXX") || exit 2
pid=
# On exit, and so on a signal (e.g. meson's timeout), stop the fuzzer if it
# is still running and remove the temporary corpus. The fuzzer runs in the
# background because `wait`, unlike a foreground command, returns at once
# when a trapped signal arrives.
trap 'if [ -n "$pid" ]; then kill "$pid"; wait "$pid"; fi; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

name=$(basename "$fuzzer")
# -timeout: one input running longer than that is a hang, saved as a
# timeout-... input like a crash (without it libFuzzer waits 20 minutes).
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=25 \
	-artifact_prefix="$artifacts/$name-" "$tmp" "$corpus" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
exit "$rc"
