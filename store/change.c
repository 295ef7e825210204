/*
 * change.c - the one pipeline every change to records goes through, and
 * its apply step, which live changes and recovery share.
 *
 *   begin    (the caller, under s->mu) change_wait_idle: wait until none
 *            of the records has a change in flight, holding no busy mark;
 *            check the conditions; change_mark: mark them busy, all at once;
 *   journal  change_journal: append the encoded record (fdatasync'ed,
 *            group-committed) -- the commit point;
 *   history  store_hist_changed(seq): the writer may read it;
 *   apply    change_apply: put the content in place and update the index
 *            entry from the decoded record at `seq`, clear the busy mark.
 *
 * change_apply is the same function for a new version, a txn part (so
 * rollback and import too), a rename, a delete, a metadata change, a
 * sync=batch item (batch.c) and recovery's replay (recover.c): what the
 * live path and replay do to the records directory and to the index
 * cannot disagree. Replay differs only in what it knows: it checks what
 * is in place first (a crash may have left it there) and has no open
 * stage, only the record's inline content or its stage's name.
 */
#include "store_i.h"
#include "admin.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int64_t commit_now_ns(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

uint64_t commit_live_version(const struct entry *e)
{
	return e && !e->meta.deleted ? e->meta.version : 0;
}

/* Checks every change starts with. s->broken is checked again under mu
   once the record is idle: the change it waited for may have broken the
   store (see commit_mark_broken). */
int commit_precheck(struct store *s, const char *id,
		    const struct store_cond *cond)
{
	int rc = id_check(id);

	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	if (s->broken)
		return s->broken;
	if (cond &&
	    (cond->kind == STORE_COND_IF_VERSION ||
	     cond->kind == STORE_COND_CREATE) &&
	    !s->be->cas) {
		return rerr_set(-ENOTSUP,
				"record %s: backend \"%s\" cannot "
				"compare-and-swap; refusing a conditional "
				"change",
				id, s->be->ops->name);
	}
	return 0;
}

/* Make sure a plain file the index does not know yet gets its entry (an
   adopted file is version 1), so versions continue from it. */
void commit_ensure_indexed(struct store *s, const char *id)
{
	struct store_meta m;

	(void)store_stat(s, id, &m, false);
}

/* The namespace of `id` must exist and `id` must not be one. Gate held. */
int commit_check_place(struct store *s, const char *id)
{
	const char *slash = strrchr(id, '/');
	char ns[ID_MAX_LEN + 1];
	struct stat st;
	int rc;

	rc = s->be->ops->stat(s->be, id, &st);
	if (rc == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	if (rc && rc != -ENOENT)
		return rc; /* e.g. -ELOOP: a symlink planted in the store */
	if (!slash)
		return 0;
	memcpy(ns, id, (size_t)(slash - id));
	ns[slash - id] = '\0';
	rc = s->be->ops->stat(s->be, ns, &st);
	if (rc)
		return rc == -ENOENT || rc == -ENOTDIR ? -ENOENT : rc;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int commit_check_cond(const char *id, const struct store_cond *c, uint64_t cur,
		      struct store_result *res)
{
	bool ok = true;

	if (c->kind == STORE_COND_IF_VERSION)
		ok = cur == c->version;
	else if (c->kind == STORE_COND_CREATE)
		ok = cur == 0;
	if (ok)
		return 0;
	res->current = cur;
	if (c->kind == STORE_COND_CREATE)
		return rerr_set(-ESTALE,
				"record %s: exists already (version %llu); "
				"expected none",
				id, (unsigned long long)cur);
	return rerr_set(-ESTALE,
			"record %s: is at version %llu, not the expected "
			"%llu",
			id, (unsigned long long)cur,
			(unsigned long long)c->version);
}

void commit_mark_broken(struct store *s, const char *id, int err)
{
	/* logged: the change itself succeeded (it is journaled), so no
	   caller hears of this failure */
	rlog_err("record %s: change is journaled but could not be put in "
		 "place (%s); refusing further changes until the store is "
		 "reopened, which finishes it",
		 id, strerror(-err));
	pthread_mutex_lock(&s->mu);
	if (!s->broken)
		s->broken = -EIO;
	pthread_mutex_unlock(&s->mu);
}

void commit_unbusy(struct store *s, struct entry *e)
{
	e->busy = false;
	e->pending = false;
	e->pending_ino = 0;
	pthread_cond_broadcast(&s->cv);
}

void store_commit_failed(struct store *s, const char *id, int err)
{
	/* logged: the daemon calls this to log a failure it does not return
	   (a draft that failed before its commit), once */
	rlog_err("record %s: commit failed: %s (%s); the previous version "
		 "is kept",
		 id, strerror(-err),
		 strerrorname_np(-err) ? strerrorname_np(-err) : "?");
	reserve_note(s->reserve, err, "committing");
}

void commit_maybe_checkpoint(struct store *s)
{
	const char *why;
	int rc;

	if (reserve_short(s->reserve)) {
		store_space_recover(s);
		return;
	}
	if (!store_journaled(s) ||
	    jnl_segment_bytes(s->jnl) < s->opts.checkpoint_bytes)
		return;
	if (pthread_mutex_trylock(&s->ckpt_mu) != 0)
		return; /* another thread is at it */
	pthread_mutex_unlock(&s->ckpt_mu);
	rc = store_checkpoint(s);
	/* logged: the commit that got here succeeded; no caller hears */
	why = rc ? rerr_take(rc) : NULL;
	if (rc)
		rlog_err("%s", why ? why : strerror(-rc));
}

uint8_t *change_memdup(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

int change_enter(struct store *s, const char *id, const struct store_cond *cond)
{
	int rc = commit_precheck(s, id, cond);

	if (rc)
		return rc;
	store_hist_throttle(s);
	commit_ensure_indexed(s, id);
	pthread_rwlock_rdlock(&s->gate);
	return 0;
}

/* ---- begin ----------------------------------------------------------------
 */

int change_wait_idle(struct store *s, size_t n,
		     const char *(*id_at)(void *arg, size_t i), void *arg,
		     struct entry **es)
{
	size_t i;

again:
	for (i = 0; i < n; i++) {
		const char *id = id_at(arg, i);
		struct entry *e = idx_find(&s->ix, id, strlen(id));

		if (e && e->busy) {
			store_wait_idle(s, e);
			goto again;
		}
		if (es)
			es[i] = e;
	}
	return s->broken;
}

static const char *id_of(void *arg, size_t i)
{
	return ((const char *const *)arg)[i];
}

int change_wait_ids(struct store *s, const char *const *ids, size_t n,
		    struct entry **es)
{
	return change_wait_idle(s, n, id_of, (void *)ids, es);
}

/* ---- journal ----------------------------------------------------------------
 */

/* commit_journal, or with `nosync` only written (sync=batch). */
static int journal(struct store *s, const struct iovec *iov, int n, bool nosync,
		   uint64_t *seq)
{
	int rc;

	if (!store_journaled(s)) {
		pthread_mutex_lock(&s->mu);
		*seq = ++s->revision;
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	rc = io_point(s->io, "commit.journal");
	if (rc == 0 && nosync)
		rc = jnl_append_nosync(s->jnl, iov, n, seq);
	else if (rc == 0)
		rc = jnl_append(s->jnl, iov, n, seq);
	return rc;
}

int commit_journal(struct store *s, const struct iovec *iov, int n,
		   uint64_t *seq)
{
	return journal(s, iov, n, false, seq);
}

static int reload_state(void *arg, const struct rec *r)
{
	struct apply a = {.steps = APPLY_INDEX};

	return change_apply(arg, r, r->meta.revision, &a);
}

/* The index entries of `r`'s records read again from the backend, whose
   compare failed (another writer, or an earlier change whose outcome was
   unknown): the next change of them starts from what is there. They
   stay busy (this change's). */
static void own_reload(struct store *s, const struct rec *r)
{
	struct rec part;
	size_t off = 0;

	if (r->type == REC_TXN) {
		while (codec_txn_next(r, &off, &part) == 1)
			own_reload(s, &part);
		return;
	}
	(void)s->be->ops->reload(s->be, r->id, r->id_len, reload_state, s);
	if (r->type == REC_RENAME)
		(void)s->be->ops->reload(s->be, r->from, r->from_len,
					 reload_state, s);
}

/* A backend durable by itself makes the change durable and numbers it:
   the store's revision follows. A change it refuses as stale fails with
   ESTALE, conditional or not; the records are read again first, so that
   the caller's next try can succeed. */
static int change_own_commit(struct store *s, const struct rec *r,
			     uint64_t *seq)
{
	int rc = s->be->ops->commit(s->be, r, seq);

	if (rc == -ESTALE && s->be->ops->reload)
		own_reload(s, r);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	if (*seq > s->revision)
		s->revision = *seq;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int change_journal(struct store *s, const struct rec *r, bool nosync,
		   uint64_t *seq)
{
	bool frees = r->type == REC_DEL || r->type == REC_RENAME;
	struct iovec iov[2];
	uint8_t *hdr = NULL;
	size_t len;
	int rc, n = 1;

	if (s->be->own_commit) /* etcd: the backend's txn (backend.h) */
		return change_own_commit(s, r, seq);
	if (!store_journaled(s))
		return commit_journal(s, NULL, 0, seq);
	if (r->type == REC_PUT) {
		rc = reserve_check_content(s->reserve);
		if (rc)
			return rc;
	}
	rc = codec_encode(r, &hdr, &len);
	if (rc)
		return rc;
	iov[0].iov_base = hdr;
	iov[0].iov_len = len;
	if (r->has_data) {
		iov[1].iov_base = (void *)r->data;
		iov[1].iov_len = r->data_len;
		n = 2;
	}
	rc = journal(s, iov, n, nosync, seq);
	/* a delete or a rename adds no content: on a full disk it may use
	   the reserve, since it is how space is freed (reserve.c) */
	if (rc == -ENOSPC && frees &&
	    reserve_release(s->reserve, r->type == REC_DEL
						? "deleting a record"
						: "renaming a record"))
		rc = journal(s, iov, n, nosync, seq);
	else
		reserve_note(s->reserve, rc, "committing");
	if (rc == 0 && frees)
		reserve_note_freeing(s->reserve);
	free(hdr);
	return rc;
}

/*
 * Steps 2 to 4 of a change whose record `r` is complete and whose
 * records are marked busy (a.e is r->id's entry): journal, history,
 * apply. On failure the marks are cleared and `what` is logged.
 */
int change_journal_apply(struct store *s, struct rec *r, struct apply *a,
			 const char *what, uint64_t *seq)
{
	int rc = change_journal(s, r, false, seq);

	if (rc) {
		if (r->type == REC_RENAME)
			rerr_prefix(rc, "record %.*s: %s to %.*s",
				    (int)r->from_len, r->from, what,
				    (int)r->id_len, r->id);
		else
			rerr_prefix(rc, "record %.*s: %s", (int)r->id_len,
				    r->id, what);
		pthread_mutex_lock(&s->mu);
		commit_unbusy(s, a->e);
		if (r->type == REC_RENAME)
			commit_unbusy(s,
				      idx_find(&s->ix, r->from, r->from_len));
		pthread_mutex_unlock(&s->mu);
		free(a->xa);
		a->xa = NULL;
		return rc;
	}
	store_hist_changed(s, *seq);
	r->meta.revision = *seq;
	a->steps = APPLY_PLACE | APPLY_INDEX;
	a->unmark = true;
	return change_apply(s, r, *seq, a);
}

/* ---- apply: the content
 * ------------------------------------------------------ */

/*
 * Does the file of `id` hold content with this hash and size? 1 yes, 0 no
 * (or no such file), -errno when it cannot be read: recovery stops then
 * rather than guess (an unreadable file is not a lost version).
 */
int change_content_is(struct store *s, const char *id,
		      const struct store_meta *m)
{
	uint8_t hash[16];
	uint64_t size;
	int fd = -1, rc;

	rc = s->be->ops->open(s->be, id, &fd);
	if (rc == -ENOENT || rc == -EISDIR || rc == -ENOTDIR || rc == -ELOOP)
		return 0;
	if (rc)
		goto out;
	rc = store_hash_fd(s, fd, hash, &size);
	if (rc == 0)
		rc = size == m->size && memcmp(hash, m->hash, 16) == 0;
	close(fd);
out:
	if (rc < 0)
		rerr_prefix(rc,
			    "record %s: cannot be read to check version "
			    "%llu",
			    id, (unsigned long long)m->version);
	return rc;
}

/* Write `r`'s inline content as `id`. */
static int put_inline(struct store *s, const char *id, const struct rec *r)
{
	struct store_stage *st = NULL;
	int rc = store_stage_of(s, "recover.write", r->data, r->data_len, &st);

	if (rc)
		return rc;
	rc = s->be->ops->publish(s->be, st, id);
	store_stage_free(st);
	return rc;
}

/* Move the stage `r` names into place as `id`. -ENOENT if it is gone. */
static int put_named_stage(struct store *s, const char *id, const struct rec *r)
{
	struct store_stage st = {.s = s, .fd = -1};

	memcpy(st.name, r->stage, r->stage_len);
	st.name[r->stage_len] = '\0';
	return s->be->ops->publish(s->be, &st, id);
}

static void copy_id(char *dst, const char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Put the content of `r` (PUT, RENAME) in place as `id`. */
static int put_version(struct store *s, const struct rec *r, const char *id,
		       struct apply *a)
{
	char from[ID_MAX_LEN + 1];
	int rc;

	if (r->type == REC_PUT && a->st) {
		rc = io_point(s->io, "commit.publish");
		if (rc == 0)
			rc = s->be->ops->publish(s->be, a->st, id);
		/* the journal names a by-reference stage: recovery needs it */
		if (rc && r->stage)
			a->st->published = true;
		return rc;
	}
	if (r->type == REC_PUT)
		return r->has_data ? put_inline(s, id, r)
				   : put_named_stage(s, id, r);
	copy_id(from, r->from, r->from_len);
	if (a->replay) {
		rc = change_content_is(s, from, &r->meta);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
	}
	return s->be->ops->move(s->be, from, id, !a->replay);
}

/* A new version in place as `id`. Replay: only if `r` is the last change
   of `id` and its content is not there yet; content that is gone is
   counted as lost. */
static int place_version(struct store *s, const struct rec *r, const char *id,
			 struct apply *a)
{
	struct entry *e;
	int rc;

	if (!a->replay)
		return put_version(s, r, id, a);
	e = idx_find(&s->ix, id, r->id_len);
	if (!e || e->meta.revision != a->seq)
		return 0; /* a later record decides this one's content */
	rc = change_content_is(s, id, &r->meta);
	if (rc)
		return rc < 0 ? rc : 0;
	rc = s->be->ops->mkparents(s->be, id);
	if (rc == 0)
		rc = put_version(s, r, id, a);
	if (rc == -ENOENT) {
		/* logged: recovery goes on and succeeds (counted in lost) */
		rlog_err("record %s: version %llu cannot be restored: its "
			 "content is gone from the store",
			 id, (unsigned long long)r->meta.version);
		a->lost++;
		return 0;
	}
	a->fixed += rc == 0;
	return rc;
}

/*
 * The records directory after `r`. Live: a failure after the commit point
 * breaks the store (recovery finishes the change) and is not returned.
 * Replay: other errors are returned (recovery stops).
 */
static int place(struct store *s, const struct rec *r, struct apply *a)
{
	char id[ID_MAX_LEN + 1];
	struct entry *e;
	int rc = 0;

	copy_id(id, r->id, r->id_len);
	if (r->type == REC_DEL) {
		e = a->replay ? idx_find(&s->ix, id, r->id_len) : NULL;
		if (!a->replay || (e && e->meta.revision == a->seq))
			rc = s->be->ops->remove(s->be, id);
		if (rc == -ENOENT || (a->replay && rc == -EISDIR))
			rc = 0;
	} else {
		rc = place_version(s, r, id, a);
		if (rc == 0 && r->type == REC_RENAME && a->replay)
			rc = change_drop_rename_source(s, r, a->seq);
	}
	if (rc && !a->replay) {
		commit_mark_broken(s, id, rc);
		return 0;
	}
	if (rc)
		rerr_prefix(rc, "record %s: recovery of version %llu", id,
			    (unsigned long long)r->meta.version);
	return rc;
}

/*
 * The source of a rename whose last change is that rename must be gone.
 * place_version moves it, but finds nothing to do when the target already
 * holds the same bytes (a crash before the move of `mv a b` where b was a
 * copy of a): then the source file must be removed here.
 */
int change_drop_rename_source(struct store *s, const struct rec *r,
			      uint64_t seq)
{
	char from[ID_MAX_LEN + 1];
	struct entry *e;
	int rc;

	copy_id(from, r->from, r->from_len);
	e = idx_find(&s->ix, from, r->from_len);
	if (!e || e->meta.revision != seq)
		return 0; /* a later record decides its content */
	rc = s->be->ops->remove(s->be, from);
	return rc == -ENOENT || rc == -EISDIR ? 0 : rc;
}

/* ---- apply: the index
 * ---------------------------------------------------------- */

/* Give `e` the xattrs `xa` (taken over if `own`, else copied). */
static int set_xa(struct entry *e, const uint8_t *xa, size_t len, uint8_t *own)
{
	uint8_t *copy = own;

	if (len && !copy) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, xa, len);
	}
	free(e->xa);
	e->xa = len ? copy : NULL;
	e->xa_len = (uint32_t)len; /* xa_validate bounds it */
	if (!len)
		free(copy);
	return 0;
}

static void set_deleted(struct entry *e, uint64_t version, uint64_t seq)
{
	e->meta.version = version;
	e->meta.deleted = true;
	e->meta.revision = seq;
	e->ino = 0;
	set_xa(e, NULL, 0, NULL);
}

/* The index after `r` at `seq`; s->mu held. */
static int index_rec(struct store *s, const struct rec *r, uint64_t seq,
		     struct apply *a)
{
	struct entry *e = a->e ? a->e : idx_add(&s->ix, r->id, r->id_len);
	struct entry *f = NULL;
	uint8_t *xa = a->xa;
	uint64_t ino = a->ino;

	a->xa = NULL;
	if (!e || (r->type == REC_RENAME &&
		   !(f = idx_add(&s->ix, r->from, r->from_len)))) {
		free(xa);
		return -ENOMEM;
	}
	switch (r->type) {
	case REC_RENAME:
		ino = a->replay ? 0 : f->ino;
		set_deleted(f, r->from_version, seq);
		/* fall through */
	case REC_PUT:
		e->meta = r->meta;
		e->meta.revision = seq;
		e->meta.deleted = false;
		e->ino = ino;
		return set_xa(e, r->xa, r->xa_len, xa);
	case REC_DEL:
		free(xa);
		set_deleted(e, r->meta.version, seq);
		return 0;
	case REC_META:
		/* a REC_META of an older binary has no owner block: 0:0,
		   which every record's owner was then */
		e->meta.mtime = r->meta.mtime;
		e->meta.mode = r->meta.mode;
		e->meta.uid = r->meta.uid;
		e->meta.gid = r->meta.gid;
		return set_xa(e, r->xa, r->xa_len, xa);
	case REC_STATE:
		e->meta = r->meta;
		e->ino = r->ino;
		return set_xa(e, r->xa, r->xa_len, xa);
	default:
		free(xa);
		return -EBADMSG;
	}
}

/* The busy marks of `r`'s records off; s->mu held. */
static void unmark(struct store *s, const struct rec *r, struct apply *a)
{
	struct entry *e = a->e ? a->e : idx_find(&s->ix, r->id, r->id_len);

	if (e)
		commit_unbusy(s, e);
	if (r->type == REC_RENAME &&
	    (e = idx_find(&s->ix, r->from, r->from_len)) != NULL)
		commit_unbusy(s, e);
}

int change_apply(struct store *s, const struct rec *r, uint64_t seq,
		 struct apply *a)
{
	int rc = 0;

	a->seq = seq;
	if (r->type == REC_TXN || r->type == REC_TXN_PART) {
		struct rec part;
		size_t off = 0;

		while (rc == 0 && (rc = codec_txn_next(r, &off, &part)) == 1)
			rc = change_apply(s, &part, seq, a);
		return rc;
	}
	/* an own_commit backend has the content in place already */
	if ((a->steps & APPLY_PLACE) && r->type != REC_META &&
	    r->type != REC_STATE && !s->be->own_commit)
		rc = place(s, r, a);
	if (rc == 0 && (a->steps & APPLY_INDEX)) {
		pthread_mutex_lock(&s->mu);
		rc = index_rec(s, r, seq, a);
		if (a->unmark)
			unmark(s, r, a);
		pthread_mutex_unlock(&s->mu);
	}
	free(a->xa);
	a->xa = NULL;
	return rc;
}
