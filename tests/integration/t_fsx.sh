#!/usr/bin/env bash
# fsx (tests/integration/fsx.c) on a record: random pwrite, pread,
# ftruncate, close/reopen (O_TRUNC, O_APPEND), fsync, shared writable
# mmap + msync, and reads through a second descriptor, checked against an
# in-memory model. Several seeds with mmap on the mount, one without mmap
# and one without mmap and O_APPEND (to tell their bugs from the others),
# and one seed on a plain directory
# on the same disk as the reference. A failure prints the seed, the op
# number and a hexdump; rerun it alone with
#   build/tests/integration/fsx -v -n OPS -s SEED MNT/file
. "$(dirname "$0")/lib.sh"

FSX=$(helper fsx)
SEEDS=${RECFS_FSX_SEEDS:-"1 2 3 4 5"}
OPS=${RECFS_FSX_OPS:-3000}

# fsx_run FILE SEED [OPTIONS]: run fsx, its report in $T/fsx-SEED.out
fsx_run() {
	local file=$1 seed=$2 out
	shift 2
	out=$T/fsx-$seed${1:-}.out
	timeout 120 "$FSX" -n "$OPS" -s "$seed" "$@" "$file" >"$out" 2>&1
	local rc=$?
	if ((rc != 0)); then
		sed 's/^/#   /' "$out" | head -60
	fi
	return $rc
}

mkdir -p "$T/plain"
fsx_run "$T/plain/fsx" 1
check "[ $? = 0 ]" "fsx seed 1, $OPS ops, mmap on, on a plain directory: $(tail -1 "$T/fsx-1.out")"

mount_store || exit 1
for seed in $SEEDS; do
	t0=$(date +%s%N)
	fsx_run "$MNT/fsx-$seed" "$seed"
	check "[ $? = 0 ]" "fsx seed $seed, $OPS ops, mmap on, on the mount: $(tail -1 "$T/fsx-$seed.out") ($((($(date +%s%N) - t0) / 1000000)) ms)"
done
fsx_run "$MNT/fsx-nommap" 1 -M
check "[ $? = 0 ]" "fsx seed 1, $OPS ops, mmap off, on the mount: $(tail -1 "$T/fsx-1-M.out")"
fsx_run "$MNT/fsx-plainio" 1 -MA
check "[ $? = 0 ]" "fsx seed 1, $OPS ops, mmap and O_APPEND off, on the mount: $(tail -1 "$T/fsx-1-MA.out")"

finish
