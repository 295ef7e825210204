/*
 * batch.c - -o sync=batch[:MS] (SPEC section 3): a new version is
 * acknowledged once its journal record is written in order, and made
 * durable within MS milliseconds by one fdatasync for everything written
 * meanwhile.
 *
 * Only the journal is ever ahead of the disk. The content of such a
 * version is put in place in records/ only after its record is durable:
 * were the stage renamed into place at once, a power cut could keep the
 * rename (ext4 commits it within seconds) and lose the journal record, and
 * records/ID would then hold a version the journal never had, with the
 * version it replaced gone from records/. So commit_put journals the
 * change with jnl_append_nosync, queues a batch_item and returns with the
 * record still busy: later changes to it wait (store_wait_idle), and
 * reads and stats of it wait until it is in place (store_wait_pending),
 * so they see the new version as the spec says, at most MS ms later.
 * A listing waits for the whole queue (sbatch_drain).
 *
 * The batch thread (started on first use, so after the daemon's fork)
 * sleeps until the oldest queued item is MS ms old or someone waits
 * (fsync, a checkpoint, a listing, a namespace change, close), calls
 * jnl_sync, then puts every item in place as commit_put does in step 3,
 * and notifies the history (which reads only durable records).
 *
 * Failpoints: "commit.publish", "commit.rename" (as in commit.c).
 */
#include "store_i.h"
#include "io.h"
#include "jnl.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct batch_item {
	struct batch_item *next;
	uint64_t seq;
	struct entry *e; /* busy and pending until put in place */
	struct store_meta meta;
	uint64_t ino;
	uint8_t *xa; /* owned; becomes the entry's */
	size_t xa_len;
	struct timespec due; /* CLOCK_MONOTONIC */
	char stage[STORE_STAGE_NAME_MAX];
	char id[];
};

struct store_batch {
	pthread_mutex_t mu;
	pthread_cond_t work; /* items queued, a drain, stop */
	pthread_cond_t done; /* items put in place */
	pthread_t thread;
	bool started;			 /* protected by mu */
	bool stop;			 /* protected by mu */
	struct batch_item *head, **tail; /* protected by mu */
	uint64_t queued, placed;	 /* tickets; protected by mu */
	unsigned draining;		 /* waiting drains; protected by mu */
};

int sbatch_init(struct store *s)
{
	struct store_batch *b;

	if (!s->opts.sync_batch_ms || !store_journaled(s) || s->opts.read_only)
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->mu, NULL);
	util_cond_init_mono(&b->work);
	pthread_cond_init(&b->done, NULL);
	b->tail = &b->head;
	s->batch = b;
	return 0;
}

struct batch_item *sbatch_item_new(struct store *s, const char *id)
{
	size_t n = strlen(id) + 1;
	struct batch_item *it;

	if (!s->batch)
		return NULL;
	it = calloc(1, sizeof(*it) + n);
	if (it)
		memcpy(it->id, id, n);
	return it;
}

void sbatch_item_free(struct batch_item *it)
{
	if (!it)
		return;
	free(it->xa);
	free(it);
}

void sbatch_item_set(struct batch_item *it, struct entry *e,
		     const struct store_meta *meta, uint64_t ino,
		     const char *stage, uint8_t *xa, size_t xa_len)
{
	it->e = e;
	it->meta = *meta;
	it->seq = meta->revision;
	it->ino = ino;
	snprintf(it->stage, sizeof(it->stage), "%s", stage);
	it->xa = xa;
	it->xa_len = xa_len;
}

/* commit_put's apply step for one durable item (change.c). */
static void place(struct store *s, struct batch_item *it, int sync_rc)
{
	struct store_stage st = {.s = s, .fd = -1};
	struct rec r = {.type = REC_PUT,
			.id = it->id,
			.id_len = strlen(it->id),
			.meta = it->meta,
			.xa = it->xa,
			.xa_len = it->xa_len};
	struct apply a = {.steps = APPLY_PLACE | APPLY_INDEX,
			  .unmark = true,
			  .st = &st,
			  .e = it->e,
			  .ino = it->ino,
			  .xa = it->xa};

	memcpy(st.name, it->stage, sizeof(st.name));
	it->xa = NULL;
	if (sync_rc) {
		commit_mark_broken(s, it->id, sync_rc);
		a.steps = APPLY_INDEX;
	}
	(void)change_apply(s, &r, it->seq, &a);
}

/* Sleep until the oldest item is due, or a drain or stop wants it now.
   b->mu held; returns with the queue taken (NULL when stopping). */
static struct batch_item *take(struct store_batch *b, uint64_t *tickets)
{
	struct batch_item *list;

	for (;;) {
		if (b->head && (b->draining || b->stop))
			break;
		if (!b->head && b->stop)
			return NULL;
		if (!b->head)
			pthread_cond_wait(&b->work, &b->mu);
		else if (pthread_cond_timedwait(&b->work, &b->mu,
						&b->head->due) == ETIMEDOUT)
			break;
	}
	list = b->head;
	b->head = NULL;
	b->tail = &b->head;
	*tickets = b->queued;
	return list;
}

static void *sbatch_main(void *arg)
{
	struct store *s = arg;
	struct store_batch *b = s->batch;
	struct batch_item *list, *it;
	uint64_t tickets, last;
	int rc;

	pthread_mutex_lock(&b->mu);
	while ((list = take(b, &tickets)) != NULL) {
		pthread_mutex_unlock(&b->mu);
		/* every item queued was written before it was queued */
		rc = jnl_sync(s->jnl);
		last = 0;
		while ((it = list) != NULL) {
			list = it->next;
			place(s, it, rc);
			last = it->seq > last ? it->seq : last;
			sbatch_item_free(it);
		}
		if (rc == 0)
			store_hist_changed(s, last);
		pthread_mutex_lock(&b->mu);
		b->placed = tickets;
		pthread_cond_broadcast(&b->done);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

int sbatch_queue(struct store *s, struct batch_item *it)
{
	struct store_batch *b = s->batch;
	unsigned ms = s->opts.sync_batch_ms;
	int rc = 0;

	util_deadline_ms(&it->due, ms);
	pthread_mutex_lock(&b->mu);
	if (!b->started) {
		rc = -pthread_create(&b->thread, NULL, sbatch_main, s);
		b->started = rc == 0;
	}
	if (rc == 0) {
		*b->tail = it;
		b->tail = &it->next;
		it->next = NULL;
		b->queued++;
		pthread_cond_signal(&b->work);
	}
	pthread_mutex_unlock(&b->mu);
	if (rc)
		rerr_set(rc,
			 "record %s: cannot start the sync=batch thread: %s",
			 it->id, strerror(-rc));
	return rc;
}

/*
 * commit_put (commit.c), sync=batch, after step 2: hand step 3 of the journaled
 * change `r` to batch.c, which does it once the record is durable; the stage
 * and the xattrs (*xa) are its now. Returns 0 (queued: *bi taken, the entry
 * stays busy), 1 if it could not be queued but the change is durable now
 * (the caller goes on with step 3), or -EIO (it could not be made
 * durable: the store is broken).
 */
int sbatch_defer(struct store *s, struct entry *e, struct store_stage *st,
		 const struct rec *r, struct batch_item **bi, uint8_t **xa,
		 uint64_t ino)
{
	int rc;

	sbatch_item_set(*bi, e, &r->meta, ino, st->name, *xa, r->xa_len);
	pthread_mutex_lock(&s->mu);
	e->pending = true;
	pthread_mutex_unlock(&s->mu);
	st->published = true; /* tmp/<stage> is the queue's now */
	rc = sbatch_queue(s, *bi);
	if (rc == 0) {
		*xa = NULL;
		*bi = NULL;
		return 0;
	}
	st->published = false;
	sbatch_item_set(*bi, NULL, &r->meta, 0, "", NULL, 0); /* *xa stays */
	pthread_mutex_lock(&s->mu);
	e->pending = false;
	pthread_mutex_unlock(&s->mu);
	rc = jnl_sync(s->jnl);
	if (rc) {
		commit_mark_broken(s, r->id, rc);
		return rc;
	}
	store_hist_changed(s, r->meta.revision);
	return 1;
}

void sbatch_drain(struct store *s)
{
	struct store_batch *b = s->batch;
	uint64_t want;

	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	want = b->queued;
	b->draining++;
	pthread_cond_signal(&b->work);
	while (b->placed < want)
		pthread_cond_wait(&b->done, &b->mu);
	b->draining--;
	pthread_mutex_unlock(&b->mu);
}

void sbatch_free(struct store *s)
{
	struct store_batch *b = s->batch;

	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->work);
	pthread_mutex_unlock(&b->mu);
	if (b->started)
		pthread_join(b->thread, NULL); /* it places what is queued */
	pthread_cond_destroy(&b->work);
	pthread_cond_destroy(&b->done);
	pthread_mutex_destroy(&b->mu);
	free(b);
	s->batch = NULL;
}

void store_wait_pending(struct store *s, const char *id)
{
	struct entry *e;

	if (!s->batch)
		return;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	while (e && e->pending)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

int store_sync(struct store *s)
{
	int rc;

	if (!store_journaled(s))
		return 0;
	sbatch_drain(s);
	rc = jnl_sync(s->jnl);
	return rc;
}
