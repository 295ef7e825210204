/*
 * txn.c - a change of several records at once (store_txn, txn.h): one
 * store revision, one git commit, of any size.
 *
 * The parts are collected first: each put's content goes into a stage at
 * once (hashed there; on the file backend its fd is closed again and it
 * is referenced by name), and each part is appended to the txn's spool
 * file (spool.c), so a txn of a million parts holds neither a million fds
 * nor its parts in memory. store_txn_commit then runs the pipeline of
 * change.c for all parts together:
 *
 *   1. under s->mu: wait until none of the records has a change in
 *      flight, holding no busy mark (change_wait_idle), then in one pass
 *      check every condition, find the parts that change nothing
 *      (no-ops) and mark the records busy -- all of them at once, so a
 *      txn never holds one mark while it waits for another and cannot
 *      deadlock with single changes or other txns;
 *   2. to 4. (txn_commit.c) encode the parts into journal frames, journal
 *      them as one record (the commit point of every part at once), feed
 *      the history, and apply every part with change_apply, reading the
 *      encoded parts back from a second spool.
 *
 * Recovery replays every frame of the record at its seq (recover.c), so
 * after a crash either the record is in the journal and every part is
 * finished, or it is not and no part was ever put in place.
 */
#include "txn_i.h"
#include "io.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int store_txn_new(struct store *s, struct store_txn **out)
{
	struct store_txn *t = calloc(1, sizeof(*t));
	int rc;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->s = s;
	t->data_fd = -1;
	rc = spool_open(s, &t->req);
	if (rc) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int txn_part_read(struct store_txn *t, struct part *p)
{
	int rc;

	p->at = spool_tell(&t->req);
	rc = spool_read(&t->req, &p->h, sizeof(p->h));
	if (rc == 0 && (p->h.id_len > ID_MAX_LEN ||
			p->h.stage_len >= STORE_STAGE_NAME_MAX))
		rc = -EBADMSG;
	if (rc == 0)
		rc = spool_read(&t->req, p->id, p->h.id_len);
	if (rc == 0)
		rc = spool_read(&t->req, p->stage, p->h.stage_len);
	p->id[rc ? 0 : p->h.id_len] = '\0';
	p->stage[rc ? 0 : p->h.stage_len] = '\0';
	return rc;
}

int txn_part_save(struct store_txn *t, const struct part *p)
{
	return spool_pwrite(&t->req, &p->h, sizeof(p->h), p->at);
}

/* Copy `size` bytes from `in` at `ioff` to `out` at `ooff`. */
static int copy_range(struct store *s, int in, uint64_t ioff, int out,
		      uint64_t ooff, uint64_t size)
{
	uint8_t buf[16384];

	while (size) {
		size_t k = size < sizeof(buf) ? (size_t)size : sizeof(buf);
		ssize_t n = io_pread_all(s->io, "stage.read", in, buf, k,
					 (off_t)ioff);

		if (n >= 0 && (size_t)n != k)
			n = -EIO; /* the stage changed under us */
		if (n >= 0)
			n = io_pwrite_all(s->io, "stage.write", out, buf, k,
					  (off_t)ooff);
		if (n < 0)
			return (int)n;
		ioff += k;
		ooff += k;
		size -= k;
	}
	return 0;
}

int txn_stage(struct store_txn *t, const char *name, uint64_t data_off,
	      uint64_t size, struct store_stage *named,
	      struct store_stage **out, struct store_stage **made)
{
	int rc;

	*made = NULL;
	*out = named;
	memset(named, 0, sizeof(*named));
	named->s = t->s;
	named->fd = -1;
	if (name[0]) {
		snprintf(named->name, sizeof(named->name), "%s", name);
		return 0;
	}
	rc = store_stage_new(t->s, made);
	if (rc == 0)
		rc = copy_range(t->s, t->data_fd, data_off, (*made)->fd, 0,
				size);
	*out = *made;
	return rc;
}

/* Remove the stages the txn still owns: all, or the no-ops' after a
   commit (the others are in place, or recovery's). */
static void drop_stages(struct store_txn *t)
{
	struct store_stage named = {.s = t->s, .fd = -1};
	struct part p;

	if (t->req.fd < 0 || spool_rewind(&t->req))
		return;
	for (size_t i = 0; i < t->n; i++) {
		if (txn_part_read(t, &p))
			break;
		if (!p.h.stage_len || (t->committed && !p.h.noop))
			continue;
		memcpy(named.name, p.stage, sizeof(named.name));
		t->s->be->ops->stage_drop(t->s->be, &named);
	}
}

void store_txn_free(struct store_txn *t)
{
	if (!t)
		return;
	drop_stages(t);
	if (t->data_fd >= 0)
		close(t->data_fd);
	spool_close(&t->req);
	free(t);
}

size_t store_txn_count(const struct store_txn *t)
{
	return t->n;
}

const struct store_result *store_txn_part_result(const struct store_txn *t,
						 size_t i)
{
	struct store_txn *w = (struct store_txn *)t; /* reads the spool */
	struct part p;

	if (i >= t->n || !t->req.reading || spool_rewind(&w->req))
		return NULL;
	for (size_t k = 0; k <= i; k++)
		if (txn_part_read(w, &p))
			return NULL;
	w->res = p.h.res;
	return &w->res;
}

/* Append a part for `id` (st: its stage, or NULL). */
static int part_add(struct store_txn *t, const char *id, struct part_hdr *h,
		    const struct store_stage *st)
{
	int rc;

	if (t->used || t->req.reading)
		return -EINVAL;
	rc = id_check(id);
	if (rc)
		return rerr_set(rc, "record %s: not a valid ID for a txn part",
				id);
	h->id_len = (uint16_t)strlen(id);
	h->stage_len = st ? (uint8_t)strlen(st->name) : 0;
	rc = spool_write(&t->req, h, sizeof(*h));
	if (rc == 0)
		rc = spool_write(&t->req, id, h->id_len);
	if (rc == 0 && h->stage_len)
		rc = spool_write(&t->req, st->name, h->stage_len);
	if (rc)
		t->err = rc; /* a part half written: the txn cannot commit */
	else
		t->n++;
	return rc;
}

/* File backend: the stage is kept by name (closed by the caller, its
   file kept). Memory backend: its content is copied to data_fd. */
static int stage_keep(struct store_txn *t, struct store_stage *st,
		      struct part_hdr *h)
{
	if (st->name[0])
		return 0;
	if (t->data_fd < 0) {
		t->data_fd = memfd_create("recfs-txn-data", MFD_CLOEXEC);
		if (t->data_fd < 0)
			return -errno;
	}
	h->data_off = t->data_size;
	t->data_size += h->size;
	return copy_range(t->s, st->fd, 0, t->data_fd, h->data_off, h->size);
}

static void args_to_part(const struct store_commit_args *args,
			 struct part_hdr *h)
{
	h->mode = -1;
	if (!args)
		return;
	h->cond = args->cond;
	h->mode = args->mode;
	h->symlink = args->symlink;
	if (args->owner) {
		h->has_owner = true;
		h->owner = *args->owner;
	}
	if (args->mtime) {
		h->has_mtime = true;
		h->mtime = *args->mtime;
	}
}

int store_txn_put_stage(struct store_txn *t, const char *id,
			struct store_stage *st,
			const struct store_commit_args *args)
{
	struct store *s = t->s;
	struct part_hdr h = {0};
	struct stat sb;
	int rc = 0;

	if (args && args->cond.kind == STORE_COND_APPEND) {
		rc = rerr_set(-EINVAL,
			      "record %s: appends are not supported in a txn",
			      id);
	} else if (fstat(st->fd, &sb) < 0) {
		rc = -errno;
	} else if ((uint64_t)sb.st_size > s->opts.max_record_size) {
		rc = -EFBIG;
	} else if (args && args->symlink &&
		   (uint64_t)sb.st_size > STORE_SYMLINK_MAX) {
		rc = -ENAMETOOLONG;
	}
	if (rc == 0)
		rc = id_check(id);
	if (rc == 0)
		rc = store_stage_hash(s, st, h.hash, &h.size);
	if (rc == 0)
		rc = stage_keep(t, st, &h);
	if (rc) {
		store_stage_free(st);
		return rc;
	}
	args_to_part(args, &h);
	h.ino = (uint64_t)sb.st_ino;
	rc = part_add(t, id, &h, st);
	/* by name from now on: its file stays (the txn removes it) */
	st->published = rc == 0 && st->name[0];
	store_stage_free(st);
	return rc;
}

int store_txn_put(struct store_txn *t, const char *id, const void *buf,
		  size_t len, const struct store_commit_args *args)
{
	struct store_stage *st = NULL;
	ssize_t n;
	int rc;

	if (t->used)
		return -EINVAL;
	rc = id_check(id);
	if (rc)
		return rc;
	if (len > t->s->opts.max_record_size)
		return -EFBIG;
	rc = store_stage_new(t->s, &st);
	if (rc)
		return rc;
	n = io_pwrite_all(t->s->io, "stage.write", st->fd, buf, len, 0);
	if (n < 0) {
		store_stage_free(st);
		return (int)n;
	}
	return store_txn_put_stage(t, id, st, args);
}

int store_txn_delete(struct store_txn *t, const char *id,
		     const struct store_cond *cond)
{
	struct part_hdr h = {.del = true, .mode = -1};

	if (cond && cond->kind != STORE_COND_ANY &&
	    cond->kind != STORE_COND_IF_VERSION)
		return -EINVAL;
	if (cond)
		h.cond = *cond;
	return part_add(t, id, &h, NULL);
}

/* ---- commit: step 1 ------------------------------------------------------ */

static bool part_is_noop(const struct part_hdr *p, const struct entry *e)
{
	return commit_live_version(e) && e->meta.hash_valid &&
	       memcmp(e->meta.hash, p->hash, 16) == 0 &&
	       e->meta.size == p->size && e->meta.symlink == p->symlink &&
	       (!p->has_owner ||
		(p->owner.uid == e->meta.uid && p->owner.gid == e->meta.gid)) &&
	       (p->mode < 0 || (uint32_t)(p->mode & 07777) == e->meta.mode) &&
	       (!p->has_mtime || (p->mtime.tv_sec == e->meta.mtime.tv_sec &&
				  p->mtime.tv_nsec == e->meta.mtime.tv_nsec));
}

/* What step 1 found. */
struct begin {
	struct store_txn *t;
	struct part p;
	int err;
	size_t nchange, noops, failed;
	uint64_t current;
	bool content; /* a put changes something: new content */
};

/* change_wait_idle's ID of part i (read in order). */
static const char *spool_id(void *arg, size_t i)
{
	struct begin *b = arg;
	int rc = i == 0 ? spool_rewind(&b->t->req) : 0;

	if (rc == 0)
		rc = txn_part_read(b->t, &b->p);
	if (rc && !b->err)
		b->err = rc;
	return b->p.id;
}

/* Check part `p` and mark its record busy (a no-op's too, for now: a
   record marked already is in the txn twice). s->mu held. */
static int check_mark(struct store *s, struct begin *b, struct part *p)
{
	struct entry *e = idx_add(&s->ix, p->id, p->h.id_len);
	uint64_t cur;
	int rc;

	if (!e)
		return -ENOMEM;
	if (e->busy)
		return rerr_set(-EINVAL, "record %s: twice in one txn", p->id);
	cur = commit_live_version(e);
	rc = commit_check_cond(p->id, &p->h.cond, cur, &p->h.res);
	b->current = p->h.res.current;
	if (rc)
		return rc;
	if (p->h.del && !cur)
		return rerr_set(-ENOENT,
				"record %s: cannot delete in a txn: no such "
				"record",
				p->id);
	p->h.noop = !p->h.del && part_is_noop(&p->h, e);
	if (p->h.noop) {
		p->h.res.noop = true;
		p->h.res.version = cur;
		p->h.res.revision = e->meta.revision;
		b->noops++;
	} else {
		e->pending_ino = p->h.del ? 0 : p->h.ino;
		b->nchange++;
		b->content |= !p->h.del;
	}
	e->busy = p->h.marked = true;
	return txn_part_save(b->t, p);
}

/* Clear the busy marks the txn holds: every one, or the no-ops' only.
   s->mu held. */
static void unmark(struct store_txn *t, bool noops_only)
{
	struct store *s = t->s;
	struct part p;
	struct entry *e;

	if (spool_rewind(&t->req))
		return; /* not reached: the spool is read already */
	for (size_t i = 0; i < t->n && txn_part_read(t, &p) == 0; i++) {
		if (!p.h.marked || (noops_only && !p.h.noop))
			continue;
		e = idx_find(&s->ix, p.id, p.h.id_len);
		if (e)
			commit_unbusy(s, e);
		p.h.marked = false;
		(void)txn_part_save(t, &p);
	}
}

/* Step 1, s->mu held. Returns 0 (b->nchange parts marked) or -errno
   with no mark held (b->failed: the part that failed). */
static int begin(struct store_txn *t, struct begin *b)
{
	struct store *s = t->s;
	int rc;

	rc = change_wait_idle(s, t->n, spool_id, b, NULL);
	if (rc == 0)
		rc = b->err;
	if (rc == 0)
		rc = spool_rewind(&t->req);
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		b->failed = i;
		rc = txn_part_read(t, &b->p);
		if (rc == 0)
			rc = check_mark(s, b, &b->p);
	}
	if (rc) {
		unmark(t, false);
		return rc;
	}
	b->failed = SIZE_MAX;
	if (b->noops)
		unmark(t, true);
	return 0;
}

/* ---- commit ------------------------------------------------------------- */

/* The checks of every part that need no lock (`place`: gate held). */
static int check_parts(struct store_txn *t, bool place, size_t *failed)
{
	struct store *s = t->s;
	struct part p;
	int rc = spool_rewind(&t->req);

	for (size_t i = 0; i < t->n && rc == 0; i++) {
		*failed = i;
		rc = txn_part_read(t, &p);
		if (rc == 0 && !place)
			rc = commit_precheck(s, p.id, &p.h.cond);
		if (rc == 0 && !place)
			commit_ensure_indexed(s, p.id);
		if (rc == 0 && place && !p.h.del) {
			rc = commit_check_place(s, p.id);
			if (rc)
				rerr_set(rc, "record %s: cannot be written: %s",
					 p.id, strerror(-rc));
		}
	}
	if (rc == 0)
		*failed = SIZE_MAX;
	return rc;
}

static void fail_result(struct store_txn *t, const struct begin *b,
			struct store_txn_result *res)
{
	res->failed = b->failed;
	if (b->failed < t->n)
		res->current = b->current;
	res->noops = 0;
}

int store_txn_commit(struct store_txn *t, const struct store_who *who,
		     struct store_txn_result *res)
{
	struct store *s = t->s;
	struct store_txn_result scratch;
	struct begin b = {.t = t, .failed = SIZE_MAX};
	uint64_t seq = 0;
	int rc;

	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	res->failed = SIZE_MAX;
	if (t->used)
		return -EINVAL;
	t->used = true;
	if (t->err)
		return t->err;
	if (t->n == 0)
		return spool_rewind(&t->req);
	rc = check_parts(t, false, &b.failed);
	if (rc)
		goto fail;
	store_hist_throttle(s);
	pthread_rwlock_rdlock(&s->gate);
	rc = check_parts(t, true, &b.failed);
	if (rc == 0) {
		pthread_mutex_lock(&s->mu);
		rc = begin(t, &b);
		pthread_mutex_unlock(&s->mu);
	}
	if (rc == 0 && b.nchange)
		rc = txn_journal_apply(t, who, &seq);
	if ((rc || t->apply_err) && b.nchange && b.failed == SIZE_MAX) {
		pthread_mutex_lock(&s->mu);
		unmark(t, false);
		pthread_mutex_unlock(&s->mu);
	}
	pthread_rwlock_unlock(&s->gate);
	if (rc)
		goto fail;
	t->committed = true;
	res->revision = seq;
	res->changes = b.nchange;
	res->noops = b.noops;
	if (b.nchange)
		commit_maybe_checkpoint(s);
	return 0;
fail:
	fail_result(t, &b, res);
	return rc;
}
