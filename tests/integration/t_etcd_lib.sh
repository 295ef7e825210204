#!/usr/bin/env bash
# etcd_lib.sh, the real etcd members the etcd mount tests run on: a
# 3-member cluster starts healthy on loopback ports, keeps a quorum with a
# member stopped, and a restarted member catches up. (No mount: this
# checks the harness itself; lib.sh's cleanup kills the members.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etcd_lib.sh"

etcd_start 3
check "[[ $ETCD_ENDPOINTS =~ ^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]]" \
	"three loopback endpoints ($ETCD_ENDPOINTS)"
check "etcd_healthy 0 && etcd_healthy 1 && etcd_healthy 2" "all healthy"
check "etcdctl_ put k one >/dev/null" "etcdctl put on the cluster"
check "[ \"\$(etcdctl_ get --print-value-only k)\" = one ]" "and get"

pid0=${ETCD_PID[0]}
etcd_stop_member 0
check "! alive $pid0" "a stopped member is gone (pid $pid0)"
check "! etcd_healthy 0" "... and not healthy"
check "etcdctl_ put k two >/dev/null" "two of three members still commit"
etcd_start_member 0
check "alive ${ETCD_PID[0]} && etcd_healthy 0" "member 0 restarted"
check "await 10 '[ \"\$(ETCDCTL_API=3 etcdctl --endpoints ${ETCD_EP[0]} get --print-value-only k)\" = two ]'" \
	"... and has what was committed meanwhile"
etcd_kill_member 1
etcd_kill_member 2
check "! etcdctl_ put k three --command-timeout=2s >/dev/null 2>&1" \
	"one of three members cannot commit"
finish
