#!/usr/bin/env bash
# The kill -9 campaign, short (tools/torture, 10 iterations): writers
# through the mount, SIGKILL of the daemon at a random moment, remount,
# and every acknowledged change is there, exact, nothing torn, no litter,
# verify clean. The full campaign: tools/torture --iterations 100.
. "$(dirname "$0")/lib.sh"

src=$(cd "$(dirname "$0")/../.." && pwd)
"$src/tools/torture" --build "$RECFS_BUILD_ROOT" --no-build \
	--iterations 10 --run 1.5 >"$T/out" 2>&1
rc=$?
sed 's/^/# /' "$T/out"
line=$(tail -n 1 "$T/out")
check "[ $rc = 0 ]" "tools/torture --iterations 10 exits 0 ($line)"
check "[[ '$line' =~ ^iterations=10\ acked=[1-9][0-9]*\ lost=0\ torn=0\$ ]]" \
	"its summary: 10 iterations, changes acked, none lost or torn"
finish
