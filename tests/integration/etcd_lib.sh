# tests/integration/etcd_lib.sh - real etcd members for the mount tests,
# sourced after lib.sh (which makes $T and kills $BG_PIDS at exit, whatever
# the cause). The shell twin of tests/etcd_helpers.c:
#
#   etcd_start N          start an N-member cluster on free 127.0.0.1
#                         ports, data in $T/etcd, and wait until every
#                         member is healthy; sets ETCD_ENDPOINTS
#                         ("127.0.0.1:P,127.0.0.1:Q,...") and ETCD_EP[i]
#   etcd_stop_member I    SIGTERM member I (its pid only) and wait for it
#   etcd_kill_member I    SIGKILL member I and wait for it
#   etcd_start_member I   start stopped member I again (same ports, data)
#                         and wait until it is healthy
#   etcd_healthy I        is member I healthy? (for await)
#   etcdctl_ ARGS...      etcdctl on every member (ETCD_ENDPOINTS)
#
# The members' logs are $T/etcd/mI.log. Every member is in BG_PIDS, so
# lib.sh's cleanup kills it at exit.

command -v etcd >/dev/null || {
	echo "Bail out! no etcd program (tools/deps install: etcd-server)" >&2
	exit 2
}

ETCD_N=0
ETCD_EP=()
ETCD_PEER=()
ETCD_PID=()
ETCD_ENDPOINTS=

# _etcd_ports N: N free 127.0.0.1 ports, one a line (all held open at
# once while chosen, so they differ).
_etcd_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

_etcd_cluster() {
	local i c=
	for ((i = 0; i < ETCD_N; i++)); do
		c+="${c:+,}m$i=http://127.0.0.1:${ETCD_PEER[i]}"
	done
	echo "$c"
}

# _etcd_spawn I: start member I in the background.
_etcd_spawn() {
	local i=$1
	etcd --name "m$i" --data-dir "$T/etcd/m$i" \
		--listen-client-urls "http://${ETCD_EP[i]}" \
		--advertise-client-urls "http://${ETCD_EP[i]}" \
		--listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
		--initial-cluster "$(_etcd_cluster)" \
		--initial-cluster-state new --initial-cluster-token "$T" \
		--logger zap --log-outputs stderr \
		>>"$T/etcd/m$i.log" 2>&1 &
	ETCD_PID[i]=$!
	BG_PIDS+=("$!")
}

etcd_healthy() {
	curl -s -m 2 "http://${ETCD_EP[$1]}/health" 2>/dev/null |
		grep -q '"health":"true"'
}

# _etcd_await I: wait until member I is healthy (it may not die meanwhile).
_etcd_await() {
	if ! await 30 "etcd_healthy $1 || ! alive ${ETCD_PID[$1]}" ||
		! alive "${ETCD_PID[$1]}"; then
		echo "Bail out! etcd member $1 (${ETCD_EP[$1]}) not healthy:" >&2
		tail -n 5 "$T/etcd/m$1.log" >&2
		exit 2
	fi
}

etcd_start() {
	local i ports
	ETCD_N=$1
	mkdir -p "$T/etcd"
	mapfile -t ports < <(_etcd_ports $((2 * ETCD_N)))
	for ((i = 0; i < ETCD_N; i++)); do
		ETCD_EP[i]=127.0.0.1:${ports[2 * i]}
		ETCD_PEER[i]=${ports[2 * i + 1]}
	done
	ETCD_ENDPOINTS=$(IFS=,; echo "${ETCD_EP[*]}")
	for ((i = 0; i < ETCD_N; i++)); do
		_etcd_spawn "$i"
	done
	for ((i = 0; i < ETCD_N; i++)); do
		_etcd_await "$i"
	done
}

# _etcd_end I SIGNAL: send SIGNAL to member I and wait for it to exit.
_etcd_end() {
	local pid=${ETCD_PID[$1]:-}
	[[ -n $pid ]] || return 0
	kill "-$2" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	ETCD_PID[$1]=
}

etcd_stop_member() {
	_etcd_end "$1" TERM
}

etcd_kill_member() {
	_etcd_end "$1" KILL
}

etcd_start_member() {
	[[ -z ${ETCD_PID[$1]:-} ]] || return 0
	_etcd_spawn "$1"
	_etcd_await "$1"
}

etcdctl_() {
	ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" \
		--command-timeout=5s "$@"
}
