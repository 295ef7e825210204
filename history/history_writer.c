/*
 * history_writer.c - the writer thread of the history and what waits for
 * it (start, notify, drain, throttle, pause, stop), and the blob links
 * in journal/blobs that the history no longer needs (hist_clean_blobs).
 */
#include "hist_i.h"
#include "history_remote.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_NS (100 * 1000000LL)
#define BACKOFF_MAX_NS (10 * 1000000000LL)
#define KICK_WAIT_MAX_NS (1000000000LL) /* a drain waits for a retry */

/* Wait on a CLOCK_MONOTONIC condition variable until `end` (ns). */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t end)
{
	struct timespec ts = {.tv_sec = (time_t)(end / 1000000000),
			      .tv_nsec = (long)(end % 1000000000)};

	return pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- the writer ------------------------------------------------------------
 */

static void *writer_main(void *arg)
{
	struct hist *h = arg;
	int64_t backoff = 0, next_try = 0, next_kick = 0;

	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		bool pending = h->target > h->done;
		uint64_t upto = 0, before = h->done;
		int64_t until = h->kicks ? next_kick : next_try;
		int rc;

		if (!pending || h->paused || hist_mono_ns() < until) {
			if (pending && !h->paused)
				wait_until(&h->wake, &h->mu, until);
			else
				pthread_cond_wait(&h->wake, &h->mu);
			continue;
		}
		h->begun++;
		h->in_batch = true;
		pthread_mutex_unlock(&h->mu);
		rc = hist_batch_run(h, &upto);
		/* the store's reserve is for a batch that frees space once
		   written: deletes and renames (SPEC section 8) */
		if (rc == -ENOSPC && h->o.space_low &&
		    h->o.space_low(h->o.arg, h->batch_frees))
			rc = hist_batch_run(h, &upto);
		pthread_mutex_lock(&h->mu);
		h->in_batch = false;
		h->attempts++;
		h->err = rc;
		if (rc == 0) {
			if (upto > h->done) {
				h->done = upto;
				hist_remote_kick(h); /* pushes in its thread */
			}
			backoff = next_try = next_kick = 0;
		} else {
			backoff = backoff ? 2 * backoff : BACKOFF_MIN_NS;
			if (backoff > BACKOFF_MAX_NS)
				backoff = BACKOFF_MAX_NS;
			next_try = hist_mono_ns() + backoff;
			next_kick =
				hist_mono_ns() + (backoff < KICK_WAIT_MAX_NS
							  ? backoff
							  : KICK_WAIT_MAX_NS);
		}
		pthread_cond_broadcast(&h->moved);
		if (rc == 0 && h->done == before && !h->stop)
			/* nothing readable up to target: should not happen;
			   do not spin */
			wait_until(&h->wake, &h->mu,
				   hist_mono_ns() + BACKOFF_MIN_NS);
	}
	h->running = false;
	pthread_cond_broadcast(&h->moved);
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* Start the writer if it is not running yet. h->mu held. */
static int start_locked(struct hist *h)
{
	int rc;

	if (h->started || h->stop || h->o.read_only)
		return h->o.read_only ? -EROFS : 0;
	rc = -pthread_create(&h->thread, NULL, writer_main, h);
	h->running = h->started = rc == 0;
	if (rc) /* logged: store_serve_start goes on without it */
		rlog_err("%s: cannot start the history writer: %s", h->path,
			 strerror(-rc));
	return rc;
}

int hist_start(struct hist *h)
{
	int rc;

	pthread_mutex_lock(&h->mu);
	rc = start_locked(h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void hist_notify(struct hist *h, uint64_t rev)
{
	pthread_mutex_lock(&h->mu);
	start_locked(h);
	if (rev > h->target) {
		h->target = rev;
		/* a writer collecting a batch reads it all at its deadline:
		   waking it for every commit would cost a switch each */
		if (!h->wake_at || rev >= h->wake_at)
			pthread_cond_signal(&h->wake);
	}
	pthread_mutex_unlock(&h->mu);
}

int hist_drain(struct hist *h, uint64_t rev, unsigned timeout_ms)
{
	int64_t end = hist_mono_ns() + (int64_t)timeout_ms * 1000000;
	uint64_t start;
	int rc = 0;

	pthread_mutex_lock(&h->mu);
	start_locked(h);
	if (rev > h->target)
		h->target = rev;
	/*
	 * Only the outcome of an attempt begun after this call counts: one
	 * already in flight may have failed on a fault since cleared. The
	 * writer is one thread, so attempts end in the order they begin.
	 */
	start = h->begun;
	h->kicks++;
	pthread_cond_signal(&h->wake);
	while (h->done < rev) {
		if (h->attempts > start && h->err) {
			rc = h->err;
			break;
		}
		if (!h->running) {
			rc = -EAGAIN;
			break;
		}
		if (!timeout_ms)
			pthread_cond_wait(&h->moved, &h->mu);
		else if (wait_until(&h->moved, &h->mu, end) == ETIMEDOUT &&
			 h->done < rev) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	h->kicks--;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int hist_throttle(struct hist *h, uint64_t rev, unsigned timeout_ms)
{
	int64_t end = hist_mono_ns() + (int64_t)timeout_ms * 1000000;
	int rc = 0;

	pthread_mutex_lock(&h->mu);
	start_locked(h);
	while (h->running && rev > h->done + h->o.lag_max) {
		if (wait_until(&h->moved, &h->mu, end) == ETIMEDOUT &&
		    rev > h->done + h->o.lag_max) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void hist_pause(struct hist *h)
{
	pthread_mutex_lock(&h->mu);
	h->paused++;
	while (h->in_batch)
		pthread_cond_wait(&h->moved, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

void hist_resume(struct hist *h)
{
	pthread_mutex_lock(&h->mu);
	if (h->paused)
		h->paused--;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->mu);
}

void hist_stop(struct hist *h)
{
	bool join_it;

	pthread_mutex_lock(&h->mu);
	join_it = h->started;
	h->started = false;
	h->stop = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->mu);
	if (join_it)
		pthread_join(h->thread, NULL);
}

/* ---- blob links -----------------------------------------------------------
 */

struct names {
	char **v;
	size_t n, cap;
};

/* A stage a change after the history still names. */
static int add_stage(void *arg, const struct store_change *ch)
{
	struct names *ns = arg;

	if (ch->op != STORE_CHANGE_PUT || !ch->stage)
		return 0;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 16;
		char **p = realloc(ns->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		ns->v = p;
		ns->cap = cap;
	}
	ns->v[ns->n] = strndup(ch->stage, ch->stage_len);
	return ns->v[ns->n++] ? 0 : -ENOMEM;
}

/* The stages the changes after h->done still name (a txn's parts too);
   frames that do not decode are skipped (recovery reports them). */
static int collect_stages(struct hist *h, uint64_t last, struct names *ns)
{
	const struct hist_source *src = &h->o.src;
	struct hist_frame f;
	void *cur = NULL;
	int rc;

	if (!src->open)
		return 0;
	rc = src->open(src->arg, h->done, &cur);
	while (rc == 0 && (rc = src->next(cur, last, &f)) == 1) {
		rc = src->changes(cur, add_stage, ns);
		if (rc == -EBADMSG)
			rc = 0;
	}
	if (cur)
		src->close(cur);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int hist_clean_blobs(struct hist *h, uint64_t last)
{
	struct names ns = {0};
	struct dirent *de;
	DIR *dir = NULL;
	int rc, removed = 0;

	if (h->blobs_fd < 0)
		return 0;
	rc = collect_stages(h, last, &ns);
	if (rc)
		goto out;
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
	rc = util_opendir_fd(h->blobs_fd, &dir);
	if (rc)
		goto out;
	while ((de = readdir(dir)) != NULL) {
		const char *name = de->d_name;

		if (!strcmp(name, ".") || !strcmp(name, "..") ||
		    (ns.n &&
		     bsearch(&name, ns.v, ns.n, sizeof(*ns.v), cmp_str)))
			continue;
		if (unlinkat(h->blobs_fd, name, 0) == 0)
			removed++;
		else /* logged: tidying, the caller goes on */
			rlog_warn("journal/%s/%s: cannot remove: %s",
				  HIST_BLOBS_DIR, name, strerror(errno));
	}
	if (removed && fsync(h->blobs_fd) < 0)
		rc = -errno;
out:
	if (dir)
		closedir(dir);
	for (size_t i = 0; i < ns.n; i++)
		free(ns.v[i]);
	free(ns.v);
	if (rc) /* logged: tidying; recovery ignores the result */
		rlog_err("journal/%s: cleanup failed: %s", HIST_BLOBS_DIR,
			 strerror(-rc));
	return rc;
}
