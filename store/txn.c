/*
 * txn.c - a change of several records at once (store_txn, store.h): one
 * store revision, one journal record (REC_TXN), one git commit.
 *
 * The parts are collected first: each put's content goes into a stage at
 * once (hashed there; on the file backend its fd is closed again, so a
 * txn of many parts does not hold many fds). store_txn_commit then runs
 * the steps of commit.c for all parts together:
 *
 *   1. under s->mu: wait until none of the records has a change in
 *      flight, check every condition, drop the parts that change nothing
 *      (no-ops), mark the others busy -- all of them at once, and only
 *      once all are idle: a txn never holds one busy mark while it waits
 *      for another, so it cannot deadlock with single changes (which hold
 *      one, or two for a rename, taken the same way) or other txns;
 *   2. attach the content (small parts inline, the others by reference to
 *      their fsync'ed stage, linked for the history), encode one REC_TXN
 *      and append it: the commit point for every part at once;
 *   3. put every part in place (rename or unlink), then update the index
 *      and clear the busy marks.
 *
 * Recovery replays a REC_TXN part by part at the txn's seq (recover.c),
 * so after a crash either the record is in the journal and every part is
 * finished, or it is not and no part was ever put in place (step 3 starts
 * after the commit point; stages and blob links left in step 2 are
 * removed at the next open).
 */
#include "store_i.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A part's content travels inline when it is at most this big and the
   inline total stays under TXN_INLINE_BUDGET; else by reference. */
#define TXN_INLINE_PART (64u << 10)
#define TXN_INLINE_BUDGET ((size_t)JNL_MAX_RECORD / 2)
/* Encoded bytes of a part besides its ID, xattrs and inline content (the
   fixed fields of codec_encode, the stage name, the comm, the length). */
#define TXN_PART_FIXED 200u
/* Fewer by-reference parts than this are synced one by one; more with
   one syncfs. */
#define TXN_SYNC_EACH_MAX 8

struct txn_part {
	char *id;
	bool del;
	struct store_cond cond;
	int mode;	/* -1: keep */
	bool has_owner; /* else keep (a new record: the txn's who) */
	struct store_owner owner;
	bool symlink;
	bool has_mtime;
	struct timespec mtime;
	struct store_stage *st; /* puts: the content (owned) */
	uint8_t hash[16];
	uint64_t size, ino;
	/* commit */
	struct entry *e;
	uint8_t *xa; /* the xattrs the new version keeps (owned) */
	size_t xa_len;
	bool noop, inline_data, by_ref, linked;
	struct store_result res;
};

struct store_txn {
	struct store *s;
	struct txn_part *p;
	size_t n, cap;
	size_t est_bytes; /* encoded size without xattrs and content */
	bool used;	  /* committed (or tried): no more parts */
};

int store_txn_new(struct store *s, struct store_txn **out)
{
	struct store_txn *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->s = s;
	t->est_bytes = 16;
	*out = t;
	return 0;
}

static void part_clear(struct txn_part *p)
{
	free(p->id);
	free(p->xa);
	store_stage_free(p->st);
	memset(p, 0, sizeof(*p));
}

void store_txn_free(struct store_txn *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		part_clear(&t->p[i]);
	free(t->p);
	free(t);
}

size_t store_txn_count(const struct store_txn *t)
{
	return t->n;
}

const struct store_result *store_txn_part_result(const struct store_txn *t,
						 size_t i)
{
	return i < t->n ? &t->p[i].res : NULL;
}

/* File backend: close the stage's fd, keeping its file (and name). */
static void stage_park(struct store *s, struct store_stage *st)
{
	if (s->jnl && st->name[0] && st->fd >= 0) {
		close(st->fd);
		st->fd = -1;
	}
}

static int stage_unpark(struct store *s, struct store_stage *st)
{
	int fd;

	if (st->fd >= 0)
		return 0;
	fd = io_openat(s->io, "txn.stage.open", be_file_tmp_fd(s->be), st->name,
		       O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	st->fd = fd;
	return 0;
}

/* A new part for `id`: checks what can be checked before the commit. */
static int part_add(struct store_txn *t, const char *id, struct txn_part **out)
{
	struct txn_part *p;
	size_t need;
	int rc;

	if (t->used)
		return -EINVAL;
	rc = id_check(id);
	if (rc) {
		rlog_err("record %s: not a valid ID for a txn part", id);
		return rc;
	}
	need = TXN_PART_FIXED + strlen(id);
	if (t->est_bytes + need > JNL_MAX_RECORD) {
		rlog_err("record %s: the change would not fit in one journal "
			 "record of %u bytes (%zu parts already)",
			 id, JNL_MAX_RECORD, t->n);
		return -E2BIG;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct txn_part *np = realloc(t->p, cap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		t->p = np;
		t->cap = cap;
	}
	p = &t->p[t->n];
	memset(p, 0, sizeof(*p));
	p->id = strdup(id);
	if (!p->id)
		return -ENOMEM;
	p->mode = -1;
	t->est_bytes += need;
	t->n++;
	*out = p;
	return 0;
}

int store_txn_put_stage(struct store_txn *t, const char *id,
			struct store_stage *st,
			const struct store_commit_args *args)
{
	struct store *s = t->s;
	struct txn_part *p = NULL;
	struct stat sb;
	int rc;

	if (args && (args->cond.kind == STORE_COND_APPEND)) {
		rlog_err("record %s: appends are not supported in a txn", id);
		rc = -EINVAL;
		goto fail;
	}
	if (fstat(st->fd, &sb) < 0) {
		rc = -errno;
		goto fail;
	}
	if ((uint64_t)sb.st_size > s->opts.max_record_size) {
		rc = -EFBIG;
		goto fail;
	}
	if (args && args->symlink && (uint64_t)sb.st_size > STORE_SYMLINK_MAX) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	rc = part_add(t, id, &p);
	if (rc)
		goto fail;
	p->st = st;
	p->ino = (uint64_t)sb.st_ino;
	if (args) {
		p->cond = args->cond;
		p->mode = args->mode;
		p->symlink = args->symlink;
		if (args->owner) {
			p->has_owner = true;
			p->owner = *args->owner;
		}
		if (args->mtime) {
			p->has_mtime = true;
			p->mtime = *args->mtime;
		}
	}
	rc = store_stage_hash(s, st, p->hash, &p->size);
	if (rc) {
		p->st = NULL; /* freed below */
		part_clear(p);
		t->n--;
		t->est_bytes -= TXN_PART_FIXED + strlen(id);
		goto fail;
	}
	stage_park(s, st);
	return 0;
fail:
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
	struct txn_part *p = NULL;
	int rc;

	if (cond && cond->kind != STORE_COND_ANY &&
	    cond->kind != STORE_COND_IF_VERSION)
		return -EINVAL;
	rc = part_add(t, id, &p);
	if (rc)
		return rc;
	p->del = true;
	if (cond)
		p->cond = *cond;
	return 0;
}

/* ---- commit ------------------------------------------------------------- */

static bool part_is_noop(const struct txn_part *p, const struct entry *e)
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

static int cmp_part_id(const void *a, const void *b)
{
	const struct txn_part *const *x = a, *const *y = b;

	return strcmp((*x)->id, (*y)->id);
}

/* No ID twice: a txn makes one new version of each record at most. */
static int check_unique(struct store_txn *t, size_t *dup)
{
	struct txn_part **v = malloc(t->n * sizeof(*v));
	int rc = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		v[i] = &t->p[i];
	qsort(v, t->n, sizeof(*v), cmp_part_id);
	for (size_t i = 1; i < t->n && !rc; i++) {
		if (strcmp(v[i - 1]->id, v[i]->id) == 0) {
			rlog_err("record %s: twice in one txn", v[i]->id);
			*dup = (size_t)(v[i] - t->p);
			rc = -EINVAL;
		}
	}
	free(v);
	return rc;
}

static const char *part_id(void *arg, size_t i)
{
	return ((struct store_txn *)arg)->p[i].id;
}

/*
 * Step 1, s->mu held: wait until every record is idle (restarting after
 * each wait: the others may have become busy meanwhile), then check the
 * conditions and mark the changing parts busy. *failed: the part that
 * fails. Returns 0 (*nchange parts to change) or -errno, with no mark.
 */
static int begin(struct store_txn *t, size_t *nchange, size_t *failed)
{
	struct store *s = t->s;
	size_t i;
	int rc;

	rc = change_wait_idle(s, t->n, part_id, t, NULL);
	if (rc)
		return rc;
	*nchange = 0;
	for (i = 0; i < t->n; i++) {
		struct txn_part *p = &t->p[i];
		uint64_t cur;

		p->e = idx_find(&s->ix, p->id, strlen(p->id));
		cur = commit_live_version(p->e);
		*failed = i;
		rc = commit_check_cond(&p->cond, cur, &p->res);
		if (rc)
			return rc;
		if (p->del && !cur) {
			rlog_err("record %s: cannot delete in a txn: no such "
				 "record",
				 p->id);
			return -ENOENT;
		}
		p->noop = !p->del && part_is_noop(p, p->e);
		if (p->noop) {
			p->res.noop = true;
			p->res.version = cur;
			p->res.revision = p->e->meta.revision;
			continue;
		}
		if (!p->e && !(p->e = idx_add(&s->ix, p->id, strlen(p->id))))
			return -ENOMEM;
		free(p->xa);
		p->xa = NULL;
		p->xa_len = 0;
		if (!p->del && cur && p->e->xa_len) {
			p->xa = malloc(p->e->xa_len);
			if (!p->xa)
				return -ENOMEM;
			memcpy(p->xa, p->e->xa, p->e->xa_len);
			p->xa_len = p->e->xa_len;
		}
		(*nchange)++;
	}
	*failed = SIZE_MAX;
	for (i = 0; i < t->n; i++) {
		struct txn_part *p = &t->p[i];

		if (p->noop)
			continue;
		p->e->busy = true;
		p->e->pending_ino = p->del ? 0 : p->ino;
	}
	return 0;
}

/* The sub-record of a changing part (content attached later). */
static void part_rec(const struct txn_part *p, const struct store_who *who,
		     const struct timespec *now, int64_t time_ns, struct rec *r)
{
	const struct entry *e = p->e;
	uint64_t cur = commit_live_version(e);

	memset(r, 0, sizeof(*r));
	r->id = p->id;
	r->id_len = strlen(p->id);
	r->time_ns = time_ns;
	if (who)
		r->who = *who;
	if (p->del) {
		r->type = REC_DEL;
		r->meta = e->meta;
		r->meta.deleted = true;
		return;
	}
	r->type = REC_PUT;
	r->meta.version = e->meta.version + 1;
	memcpy(r->meta.hash, p->hash, 16);
	r->meta.hash_valid = true;
	r->meta.size = p->size;
	r->meta.mtime = p->has_mtime ? p->mtime : *now;
	r->meta.mode = p->mode >= 0 ? (uint32_t)p->mode & 07777
		       : cur	    ? e->meta.mode
				    : 0644;
	commit_pick_owner(p->has_owner ? &p->owner : NULL, who, e, &r->meta);
	r->meta.symlink = p->symlink;
	r->xa = p->xa;
	r->xa_len = p->xa_len;
}

/*
 * Step 2's content: inline (read into *data at *data_off) while the budget
 * lasts, else by reference to the stage (made durable and linked for the
 * history by sync_refs).
 */
static int part_content(struct store_txn *t, struct txn_part *p, struct rec *r,
			uint8_t *data, size_t *data_off, size_t budget)
{
	struct store *s = t->s;
	ssize_t n;
	int rc;

	if (!s->jnl)
		return 0;
	if (p->size > TXN_INLINE_PART || *data_off + p->size > budget) {
		r->stage = p->st->name;
		r->stage_len = strlen(p->st->name);
		p->by_ref = true;
		return 0;
	}
	rc = stage_unpark(s, p->st);
	if (rc)
		return rc;
	n = io_pread_all(s->io, "stage.read", p->st->fd, data + *data_off,
			 p->size, 0);
	if (n < 0)
		rc = (int)n;
	else if ((uint64_t)n != p->size)
		rc = -EIO; /* the stage changed under us */
	if (rc == 0) {
		r->has_data = true;
		r->data = data + *data_off;
		r->data_len = p->size;
		*data_off += p->size;
		p->inline_data = true;
	}
	stage_park(s, p->st);
	return rc;
}

/*
 * Make the by-reference stages durable before the journal names them, and
 * link them for the history: one at a time for a few, else with one
 * syncfs of the store's file system and one fsync of the blobs directory
 * (a bulk import stages thousands of files).
 */
static int sync_refs(struct store_txn *t)
{
	struct store *s = t->s;
	const struct store_stage **v = NULL;
	size_t n = 0, k = 0;
	int rc = 0;

	for (size_t i = 0; i < t->n; i++)
		n += t->p[i].by_ref;
	if (n == 0)
		return 0;
	if (n < TXN_SYNC_EACH_MAX) {
		for (size_t i = 0; i < t->n && rc == 0; i++) {
			struct txn_part *p = &t->p[i];

			if (!p->by_ref)
				continue;
			rc = stage_unpark(s, p->st);
			if (rc == 0)
				rc = s->be->ops->stage_sync(s->be, p->st);
			/* a link made before its dirsync failed is removed
			   too */
			p->linked = rc == 0;
			if (rc == 0)
				rc = store_hist_link(s, p->st);
			stage_park(s, p->st);
		}
		return rc;
	}
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].by_ref)
			v[k++] = t->p[i].st;
	rc = io_syncfs(s->io, "txn.syncfs", be_file_tmp_fd(s->be));
	if (rc == 0)
		rc = store_hist_link_many(s, v, n, &k);
	else
		k = 0;
	/* the first k are linked (removed again if the txn fails) */
	for (size_t i = 0; i < t->n && k; i++) {
		if (t->p[i].by_ref) {
			t->p[i].linked = true;
			k--;
		}
	}
	free(v);
	return rc;
}

/* The apply step of every changing part, at `seq`: a failure to put one
   in place breaks the store (recovery finishes the change) but not the
   other parts. */
static void apply_parts(struct store_txn *t, struct rec *recs, uint64_t seq)
{
	size_t k = 0;

	for (size_t i = 0; i < t->n; i++) {
		struct txn_part *p = &t->p[i];
		struct apply a = {.steps = APPLY_PLACE | APPLY_INDEX,
				  .unmark = true,
				  .st = p->st,
				  .e = p->e,
				  .ino = p->ino,
				  .xa = p->xa};

		if (p->noop)
			continue;
		p->xa = NULL;
		recs[k].meta.revision = seq;
		(void)change_apply(t->s, &recs[k], seq, &a);
		p->res.version = recs[k].meta.version;
		p->res.revision = seq;
		k++;
	}
}

/* Steps 2 and 3 for the `nchange` marked parts. Returns 0 (*seq set) or
   -errno from before the commit point. */
static int journal_and_publish(struct store_txn *t, size_t nchange,
			       const struct store_who *who, uint64_t *seq)
{
	struct store *s = t->s;
	struct rec *recs = calloc(nchange, sizeof(*recs));
	uint8_t *data = NULL, *enc = NULL;
	size_t k = 0, hdr = 16, data_off = 0, budget = 0, len = 0;
	struct timespec now;
	int64_t time_ns = commit_now_ns(&now);
	struct iovec iov;
	bool content = false;
	int rc = 0;

	if (!recs)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		struct txn_part *p = &t->p[i];

		if (p->noop)
			continue;
		content |= !p->del;
		part_rec(p, who, &now, time_ns, &recs[k++]);
		hdr += TXN_PART_FIXED + strlen(p->id) + p->xa_len;
	}
	if (hdr > JNL_MAX_RECORD) {
		rlog_err("record %s: a txn of %zu changes would not fit in "
			 "one journal record of %u bytes",
			 t->p[0].id, nchange, JNL_MAX_RECORD);
		rc = -E2BIG;
		goto out;
	}
	if (s->jnl) {
		budget = JNL_MAX_RECORD - hdr < TXN_INLINE_BUDGET
				 ? JNL_MAX_RECORD - hdr
				 : TXN_INLINE_BUDGET;
		data = malloc(budget ? budget : 1);
		if (!data) {
			rc = -ENOMEM;
			goto out;
		}
	}
	k = 0;
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		struct txn_part *p = &t->p[i];

		if (p->noop)
			continue;
		if (!p->del)
			rc = part_content(t, p, &recs[k], data, &data_off,
					  budget);
		k++;
	}
	if (rc == 0 && s->jnl)
		rc = sync_refs(t);
	if (rc == 0 && s->jnl)
		rc = codec_encode_txn(recs, nchange, &enc, &len);
	if (rc == 0 && len > JNL_MAX_RECORD)
		rc = -E2BIG; /* not reached: hdr bounds it */
	iov.iov_base = enc;
	iov.iov_len = len;
	if (rc == 0 && content) /* new content: not from the reserve */
		rc = reserve_check_content(s->reserve);
	if (rc == 0)
		rc = commit_journal(s, &iov, 1, seq);
	if (rc) {
		rlog_err("record %s: txn of %zu changes failed: %s", t->p[0].id,
			 nchange, strerror(-rc));
		for (size_t i = 0; i < t->n; i++)
			if (t->p[i].linked)
				store_hist_unlink(s, t->p[i].st);
		goto out;
	}
	store_hist_changed(s, *seq);

	apply_parts(t, recs, *seq);
out:
	free(recs);
	free(data);
	free(enc);
	return rc;
}

static void unmark(struct store_txn *t)
{
	struct store *s = t->s;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < t->n; i++)
		if (!t->p[i].noop && t->p[i].e && t->p[i].e->busy)
			commit_unbusy(s, t->p[i].e);
	pthread_mutex_unlock(&s->mu);
}

int store_txn_commit(struct store_txn *t, const struct store_who *who,
		     struct store_txn_result *res)
{
	struct store *s = t->s;
	struct store_txn_result scratch;
	size_t nchange = 0, failed = SIZE_MAX;
	bool marked = false;
	uint64_t seq = 0;
	int rc = 0;

	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	res->failed = SIZE_MAX;
	if (t->used)
		return -EINVAL;
	t->used = true;
	if (t->n == 0)
		return 0;
	rc = check_unique(t, &failed);
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		rc = commit_precheck(s, t->p[i].id, &t->p[i].cond);
		failed = rc ? i : failed;
	}
	if (rc)
		goto out_nogate;
	store_hist_throttle(s);
	for (size_t i = 0; i < t->n; i++)
		commit_ensure_indexed(s, t->p[i].id);
	pthread_rwlock_rdlock(&s->gate);
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		if (t->p[i].del)
			continue;
		rc = commit_check_place(s, t->p[i].id);
		if (rc) {
			failed = i;
			rlog_err("record %s: cannot be written: %s", t->p[i].id,
				 strerror(-rc));
		}
	}
	if (rc)
		goto out;

	pthread_mutex_lock(&s->mu);
	rc = begin(t, &nchange, &failed);
	marked = rc == 0 && nchange > 0;
	pthread_mutex_unlock(&s->mu);
	if (rc || nchange == 0)
		goto out;

	/* the apply step clears the marks of a change that was journaled */
	rc = journal_and_publish(t, nchange, who, &seq);
	marked = rc != 0;
	if (rc == 0) {
		res->revision = seq;
		res->changes = nchange;
	}
out:
	if (marked)
		unmark(t);
	pthread_rwlock_unlock(&s->gate);
out_nogate:
	for (size_t i = 0; i < t->n; i++)
		res->noops += t->p[i].noop;
	if (rc) {
		res->failed = failed;
		if (failed < t->n)
			res->current = t->p[failed].res.current;
		res->noops = 0;
	}
	if (rc == 0 && nchange)
		commit_maybe_checkpoint(s);
	return rc;
}
