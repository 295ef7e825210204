#!/usr/bin/env bash
# sqlite3 on a record (SPEC 3: "programs that share a file under POSIX
# locks (sqlite) see each other's commits"), in rollback-journal (DELETE)
# and WAL mode:
#  (a) A keeps the database open (a sqlite3 coprocess), B commits a row,
#      A then writes: B's row survives, A's transaction commits on top of
#      it or fails with an error; A also sees a later commit of B;
#      integrity_check is ok.
#  (b) two sqlite3 processes x 200 transactions each on one database:
#      all 400 rows, integrity ok.
. "$(dirname "$0")/lib.sh"

NTX=${RECFS_SQLITE_NTX:-200}
SQL_TIMEOUT=50 # seconds for any one sqlite3 run

mount_store || exit 1

# sq DB SQL...: one sqlite3 run (busy timeout 10 s, stop at the first error)
sq() {
	local db=$1
	shift
	timeout "$SQL_TIMEOUT" sqlite3 -bail -cmd '.timeout 10000' "$db" "$@"
}

# A, the long-lived sqlite3: a_start DB, a_run SQL (output in A_OUT),
# a_stop.
a_start() {
	coproc ASQ { exec sqlite3 -cmd '.timeout 10000' "$1" 2>&1; }
	A_PID=$ASQ_PID
	BG_PIDS+=("$A_PID")
}
a_run() {
	local line
	A_OUT=
	printf '%s\nSELECT %s;\n' "$1" "'--end--'" >&"${ASQ[1]}"
	while IFS= read -r -t 15 line <&"${ASQ[0]}"; do
		[[ $line == --end-- ]] && return 0
		A_OUT+=$line$'\n'
	done
	A_OUT+="(no answer from sqlite3 A within 15 s)"
	return 1
}
a_stop() {
	local i
	printf '.quit\n' >&"${ASQ[1]}" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		alive "$A_PID" || break
		sleep 0.05
	done
	kill -KILL "$A_PID" 2>/dev/null
	wait "$A_PID" 2>/dev/null
}

for mode in delete wal; do
	db=$MNT/a-$mode.db
	note "---- (a) one open connection, one committer, journal_mode=$mode"
	check "[ \"\$(sq '$db' 'PRAGMA journal_mode=$mode;' 'CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT);' \"INSERT INTO t(who) VALUES('init');\" 2>&1)\" = $mode ]" \
		"($mode) create the database with one row"
	a_start "$db"
	a_run "SELECT count(*) FROM t;"
	check "[ \"$A_OUT\" = $'1\n' ]" \
		"($mode) A opens the database and reads 1 row ($A_OUT)"
	out=$(sq "$db" "INSERT INTO t(who) VALUES('B');" 2>&1)
	check "[ $? = 0 ]" "($mode) B commits a row while A has the database open ($out)"
	a_run "BEGIN IMMEDIATE; INSERT INTO t(who) VALUES('A'); COMMIT;"
	a_err=$A_OUT
	note "($mode) A's write transaction said: ${a_err:-nothing (committed)}"
	if [[ -n $a_err ]]; then
		# failed: roll back what may be left open, then go on
		a_run "ROLLBACK;"
	fi
	out=$(sq "$db" "INSERT INTO t(who) VALUES('B2');" 2>&1)
	check "[ $? = 0 ]" "($mode) B commits a second row ($out)"
	a_run "SELECT who FROM t ORDER BY id;"
	a_rows=$(tr '\n' ' ' <<<"$A_OUT")
	check "grep -qw B2 <<<'$a_rows' && grep -qw B <<<'$a_rows'" \
		"($mode) A, through its open database, sees B's commits (A reads: $a_rows)"
	a_stop
	rows=$(sq "$db" "SELECT who FROM t ORDER BY id;" 2>&1 | tr '\n' ' ')
	check "[ \"\$(sq '$db' 'PRAGMA integrity_check;' 2>&1)\" = ok ]" \
		"($mode) PRAGMA integrity_check is ok ($(sq "$db" 'PRAGMA integrity_check;' 2>&1 | head -3 | tr '\n' ' '))"
	check "grep -qw B <<<'$rows' && grep -qw B2 <<<'$rows' && grep -qw init <<<'$rows'" \
		"($mode) B's rows survive A's transaction (rows: $rows)"
	if [[ -z $a_err ]]; then
		check "[ \"\$(grep -ow A <<<'$rows' | wc -l)\" = 1 ]" \
			"($mode) A's transaction, which reported success, committed on top of B's row (rows: $rows)"
	else
		check "! grep -qw A <<<'$rows'" \
			"($mode) A's transaction, which failed, left nothing behind (rows: $rows)"
	fi
done

for mode in delete wal; do
	db=$MNT/b-$mode.db
	note "---- (b) two processes x $NTX transactions, journal_mode=$mode"
	check "[ \"\$(sq '$db' 'PRAGMA journal_mode=$mode;' 'CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, n INTEGER);' 2>&1)\" = $mode ]" \
		"($mode) create the database"
	for p in p1 p2; do
		for ((i = 1; i <= NTX; i++)); do
			echo "BEGIN IMMEDIATE; INSERT INTO t(who, n) VALUES('$p', $i); COMMIT;"
		done >"$T/$p.sql"
	done
	t0=$(date +%s%N)
	sq "$db" <"$T/p1.sql" >"$T/p1.out" 2>&1 &
	pid1=$!
	sq "$db" <"$T/p2.sql" >"$T/p2.out" 2>&1 &
	pid2=$!
	wait "$pid1"
	rc1=$?
	wait "$pid2"
	rc2=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	note "($mode) 2 x $NTX transactions took $ms ms"
	check "[ $rc1 = 0 ] && [ $rc2 = 0 ]" \
		"($mode) both sqlite3 processes exit 0 (rc $rc1 and $rc2: $(head -c 200 "$T/p1.out" | tr '\n' ' ') $(head -c 200 "$T/p2.out" | tr '\n' ' '))"
	counts=$(sq "$db" "SELECT count(*), count(DISTINCT who || ':' || n), sum(who = 'p1'), sum(who = 'p2') FROM t;" 2>&1)
	check "[ '$counts' = '$((2 * NTX))|$((2 * NTX))|$NTX|$NTX' ]" \
		"($mode) all $((2 * NTX)) rows are there, $NTX of each process, no duplicate (count|distinct|p1|p2 = $counts)"
	ic=$(sq "$db" 'PRAGMA integrity_check;' 2>&1 | head -3 | tr '\n' ' ')
	check "[ '$ic' = 'ok ' ]" "($mode) PRAGMA integrity_check is ok ($ic)"
done

# a fresh mount reads the same databases
umount_store
mount_store || exit 1
for mode in delete wal; do
	counts=$(sq "$MNT/b-$mode.db" "SELECT count(*) FROM t;" 2>&1)
	check "[ '$counts' = $((2 * NTX)) ] && [ \"\$(sq '$MNT/b-$mode.db' 'PRAGMA integrity_check;' 2>&1)\" = ok ]" \
		"($mode) after a remount: $((2 * NTX)) rows, integrity ok ($counts)"
done

finish
