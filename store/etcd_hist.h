/*
 * etcd_hist.h - the git history of a store on etcd (SPEC section 9,
 * recfs(5) A STORE ON ETCD): one mount at a time writes it, elected with
 * a lease on P/hist/leader; it follows the changes in etcd revision order
 * (etcd_hsrc.c, the history writer's change source) into history.git in a
 * local directory of its own (-o history_dir=DIR), pushes it to the
 * history remote, and records in P/hist/done the last revision git (the
 * remote, if one is set) has. Not for use outside store/.
 *
 * Terms: each time this mount wins the election it fetches the remote's
 * branches (a takeover gets the commits of the writer before it), opens
 * the history afresh (its "done" is the Recfs-Upto of main's head, so
 * nothing git already has is written twice) and starts the writer; when
 * it loses the lease it stops the writer after its batch. s->hist points
 * at the history of the last term (kept until close, for reads).
 */
#ifndef RECFS_ETCD_HIST_H
#define RECFS_ETCD_HIST_H

#include "etcd.h"
#include "history.h"
#include "store_i.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define EHIST_TTL_S 3	     /* the leader lease's TTL */
#define EHIST_NAME_MAX 128   /* HOST-PID */
#define EHIST_RETIRED_MAX 64 /* terms of one mount kept until close */

struct ehist {
	struct store *s;
	struct etcd *e;
	char *prefix; /* P, without a trailing '/' */
	size_t plen;
	char *dir; /* the local directory of history.git */
	int dirfd, jnlfd;
	char *url; /* the history remote, or NULL */
	char me[EHIST_NAME_MAX];
	pthread_t thread;
	bool started;
	pthread_mutex_t mu; /* protects what follows */
	pthread_cond_t cv;
	bool stop, leader;
	int64_t lease;
	char writer[EHIST_NAME_MAX]; /* the leader as last seen ("": none) */
	uint64_t done_put;	     /* P/hist/done as last put or read */
	struct hist *retired[EHIST_RETIRED_MAX];
	size_t nretired;
	struct etcd_watch *w; /* the leader's: wakes the writer */
};

/* Open the history side of the etcd store `s` (s->path the URI) in
   `dir` (made if missing, 0700). Reported (err.h). */
int ehist_open(struct store *s, const char *dir, struct ehist **out);
/* Start the election thread (after the daemon forked). */
int ehist_start(struct ehist *eh);
/* Leave: drain and stop the writer if leader, mark P/hist/done, revoke
   the lease (another mount takes over at once). */
void ehist_stop(struct ehist *eh);
void ehist_free(struct ehist *eh);
/* Who writes the history (*me: this mount); "" if none is known. */
void ehist_writer(struct ehist *eh, char *out, size_t n, bool *me);

/* etcd_hsrc.c: the writer's change source. */
struct hist_source ehist_source(struct ehist *eh);

#endif
