/*
 * etcd_helpers.h - real etcd members for tests and benchmarks: a cluster of
 * 1..ETCD_MAX_MEMBERS members of the `etcd` program on free 127.0.0.1
 * ports, in a temp directory, started and awaited until healthy (polled,
 * no fixed sleeps), and always stopped: by etcd_cluster_stop, at exit,
 * and, should the process die, by the kernel (each member dies with the
 * thread that started it: PR_SET_PDEATHSIG). Members are stopped by
 * their pid only. Needs no Criterion (tools/benchmarks/etcd.c uses it).
 * Not thread-safe: start and stop clusters from one thread.
 */
#ifndef RECFS_TEST_ETCD_HELPERS_H
#define RECFS_TEST_ETCD_HELPERS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#define ETCD_MAX_MEMBERS 5

struct etcd_member {
	pid_t pid; /* 0: stopped */
	int client_port;
	int peer_port;
	char endpoint[32]; /* "127.0.0.1:PORT" */
};

struct etcd_cluster {
	char dir[PATH_MAX]; /* the temp directory: data, logs */
	size_t n;
	struct etcd_member m[ETCD_MAX_MEMBERS];
	const char *endpoints[ETCD_MAX_MEMBERS]; /* m[i].endpoint */
	char uri_members[ETCD_MAX_MEMBERS * 32]; /* "H:P,H:P,..." */
};

/*
 * Start a new cluster of `n` members with their data in a new directory
 * under `root` (NULL: $RECFS_TEST_TMPDIR, else /dev/shm, else /tmp) and
 * wait until every member reports itself healthy. Returns 0, or -1 with
 * the cause (and the tail of a member's log) in msg[len]; nothing is
 * left running or on disk then.
 */
int etcd_cluster_start(struct etcd_cluster *c, size_t n, const char *root,
		       char *msg, size_t len);

/* Stop member i (SIGTERM; SIGKILL if it has not exited within 10 s) and
   wait for it. Returns 0 or -1. */
int etcd_member_stop(struct etcd_cluster *c, size_t i);

/* Freeze (SIGSTOP) or thaw (SIGCONT) running member i: a member that
   accepts connections and answers nothing. Returns 0 or -1. */
int etcd_member_freeze(struct etcd_cluster *c, size_t i, int frozen);

/* Start stopped member i again on its ports and data, and wait until the
   cluster is healthy. Returns 0 or -1 with the cause in msg. */
int etcd_member_start(struct etcd_cluster *c, size_t i, char *msg, size_t len);

/* Wait up to `ms` until each running member reports itself healthy.
   Returns 0 or -1 with the cause in msg. */
int etcd_cluster_wait_healthy(struct etcd_cluster *c, unsigned ms, char *msg,
			      size_t len);

/* Stop every member and remove the directory. Safe to call twice. */
void etcd_cluster_stop(struct etcd_cluster *c);

/* A port of 127.0.0.1 nobody listens on now (for "unreachable"). */
int etcd_free_port(void);

#endif
