/*
 * commit.c - where a write is committed. Every change to a record (new
 * version, delete, rename, metadata) goes the same way:
 *
 *   1. under s->mu: wait until no other change to the record is in flight,
 *      check the condition (CAS), mark the record busy, pick the version;
 *   2. without any lock but the record's busy mark: journal the change
 *      (jnl_append: group-committed and fdatasync'ed) -- the commit point;
 *   3. put the content in place (rename), then under s->mu update the
 *      index and clear the busy mark.
 *
 * The busy mark is per record and lives in its index entry, so a change
 * stalled in step 2 or 3 holds up only later changes to the same record;
 * there is no lock table. Changes hold s->gate shared so that checkpoints
 * and namespace changes see none in flight.
 *
 * For the history (history.h): a by-reference stage is hard-linked as
 * journal/blobs/<stage> before step 2 (attach_content), and the writer is
 * notified after it (store_hist_changed); a change first waits while the
 * history lags too far behind (store_hist_throttle, no lock held).
 *
 * A failure before the commit point leaves the previous version intact and
 * returns the error. After it the change is durable whatever happens; if
 * putting it in place fails, the store refuses further changes (-EIO)
 * until it is reopened, when recovery finishes the change.
 */
#include "store_i.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

int64_t commit_now_ns(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
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
		rlog_err("record %s: backend \"%s\" cannot compare-and-swap; "
			 "refusing a conditional change",
			 id, s->be->ops->name);
		return -ENOTSUP;
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

static uint64_t live_version(const struct entry *e)
{
	return e && !e->meta.deleted ? e->meta.version : 0;
}

int commit_check_cond(const struct store_cond *c, uint64_t cur,
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
	return -ESTALE;
}

void commit_mark_broken(struct store *s, const char *id, int err)
{
	rlog_err("record %s: change is journaled but could not be put in "
		 "place (%s); refusing further changes until the store is "
		 "reopened, which finishes it",
		 id, strerror(-err));
	pthread_mutex_lock(&s->mu);
	if (!s->broken)
		s->broken = -EIO;
	pthread_mutex_unlock(&s->mu);
}

/* commit_journal, or with `nosync` only written (sync=batch). */
static int journal(struct store *s, const struct iovec *iov, int n, bool nosync,
		   uint64_t *seq)
{
	int rc;

	if (!s->jnl) {
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

/* Step 2: journal `r` (no-op for a memory store); *seq is its revision.
   `nosync`: written, not durable yet (sync=batch, batch.c). */
static int log_rec(struct store *s, const struct rec *r, bool nosync,
		   uint64_t *seq)
{
	bool frees = r->type == REC_DEL || r->type == REC_RENAME;
	struct iovec iov[2];
	uint8_t *hdr = NULL;
	size_t len;
	int rc, n = 1;

	if (!s->jnl)
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

void commit_unbusy(struct store *s, struct entry *e)
{
	e->busy = false;
	e->pending = false;
	e->pending_ino = 0;
	pthread_cond_broadcast(&s->cv);
}

void store_commit_failed(struct store *s, const char *id, int err)
{
	rlog_err("record %s: commit failed: %s (%s); the previous version "
		 "is kept",
		 id, strerror(-err),
		 strerrorname_np(-err) ? strerrorname_np(-err) : "?");
	reserve_note(s->reserve, err, "committing");
}

void commit_maybe_checkpoint(struct store *s)
{
	if (reserve_short(s->reserve)) {
		store_space_recover(s);
		return;
	}
	if (!s->jnl || jnl_segment_bytes(s->jnl) < s->opts.checkpoint_bytes)
		return;
	if (pthread_mutex_trylock(&s->ckpt_mu) != 0)
		return; /* another thread is at it */
	pthread_mutex_unlock(&s->ckpt_mu);
	(void)store_checkpoint(s);
}

static uint8_t *memdup(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

/* Append all of `in` to `out` at offset `off`. */
static int append_fd(struct store *s, int in, int out, uint64_t off)
{
	enum { CHUNK = 256 * 1024 };
	uint8_t *buf = malloc(CHUNK);
	uint64_t pos = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = io_pread_all(s->io, "stage.read", in, buf, CHUNK,
					 (off_t)pos);

		if (n <= 0) {
			rc = (int)n;
			break;
		}
		n = io_pwrite_all(s->io, "stage.write", out, buf, (size_t)n,
				  (off_t)(off + pos));
		if (n < 0) {
			rc = (int)n;
			break;
		}
		pos += (uint64_t)n;
	}
	free(buf);
	return rc;
}

/*
 * O_APPEND rebase: a new stage holding the current content of `id` (the
 * record is busy: nothing changes it meanwhile) followed by `app`.
 */
static int rebase(struct store *s, const char *id, uint64_t cur,
		  struct store_stage *app, struct store_stage **out,
		  struct store_meta *meta)
{
	struct store_stage *st = NULL;
	struct stat sb;
	int fd = -1, rc;

	rc = store_stage_new(s, &st);
	if (rc)
		return rc;
	if (cur) {
		rc = s->be->ops->open(s->be, id, &fd);
		if (rc == 0) {
			ssize_t n = io_copy_fd(s->io, "stage.copy", fd, st->fd);

			rc = n < 0 ? (int)n : 0;
		}
		if (rc)
			goto out;
	}
	if (fstat(st->fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	rc = append_fd(s, app->fd, st->fd, (uint64_t)sb.st_size);
	if (rc == 0)
		rc = store_hash_fd(s, st->fd, meta->hash, &meta->size);
	if (rc == 0 && meta->size > s->opts.max_record_size)
		rc = -EFBIG;
out:
	if (fd >= 0)
		close(fd);
	if (rc) {
		store_stage_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

/* The user xattrs a new version gets: the current version's (`set`
   false), or `xa` in their place. */
struct new_xattrs {
	bool set;
	bool merge; /* over the record's own, not in place of them */
	const uint8_t *xa;
	size_t len;
};

static bool same_xattrs(const struct entry *e, const struct new_xattrs *x)
{
	uint8_t *m = NULL;
	size_t n = 0;
	bool same;

	if (!x->set)
		return true;
	if (!x->merge)
		return x->len == e->xa_len &&
		       (!x->len || memcmp(x->xa, e->xa, x->len) == 0);
	if (xa_merge(e->xa, e->xa_len, x->xa, x->len, &m, &n) != 0)
		return false;
	same = n == e->xa_len && (!n || memcmp(m, e->xa, n) == 0);
	free(m);
	return same;
}

static bool is_noop(const struct entry *e, const struct store_meta *m,
		    const struct store_commit_args *a,
		    const struct new_xattrs *x)
{
	return live_version(e) && e->meta.hash_valid && same_xattrs(e, x) &&
	       memcmp(e->meta.hash, m->hash, 16) == 0 &&
	       e->meta.size == m->size && e->meta.symlink == a->symlink &&
	       (a->mode < 0 || (uint32_t)(a->mode & 07777) == e->meta.mode) &&
	       (!a->owner || (a->owner->uid == e->meta.uid &&
			      a->owner->gid == e->meta.gid)) &&
	       (!a->mtime || (a->mtime->tv_sec == e->meta.mtime.tv_sec &&
			      a->mtime->tv_nsec == e->meta.mtime.tv_nsec));
}

void commit_pick_owner(const struct store_owner *owner,
		       const struct store_who *who, const struct entry *e,
		       struct store_meta *m)
{
	if (owner) {
		m->uid = owner->uid;
		m->gid = owner->gid;
	} else if (live_version(e)) {
		m->uid = e->meta.uid;
		m->gid = e->meta.gid;
	} else {
		/* a new record, or one re-created after a delete: its
		   creator's; the group is not known here (the frontend
		   passes `owner` when it knows it) */
		m->uid = who ? who->uid : 0;
		m->gid = 0;
	}
}

/*
 * Content of a PUT record: inline, or by reference to a synced stage,
 * which is also linked for the history (*linked: the caller removes the
 * link if the change fails).
 */
static int attach_content(struct store *s, struct store_stage *st,
			  struct rec *r, uint8_t **data, bool *linked)
{
	ssize_t n;
	int rc;

	if (!s->jnl)
		return 0;
	if (r->meta.size > CODEC_INLINE_MAX) {
		r->stage = st->name;
		r->stage_len = strlen(st->name);
		rc = s->be->ops->stage_sync(s->be, st);
		/* a link made before its dirsync failed is removed too */
		*linked = rc == 0;
		if (rc == 0)
			rc = store_hist_link(s, st);
		return rc;
	}
	*data = malloc(r->meta.size ? r->meta.size : 1);
	if (!*data)
		return -ENOMEM;
	n = io_pread_all(s->io, "stage.read", st->fd, *data, r->meta.size, 0);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != r->meta.size)
		return -EIO; /* the stage changed under us */
	r->has_data = true;
	r->data = *data;
	r->data_len = r->meta.size;
	return 0;
}

/* Copy of the xattrs the new version gets (NULL if none); mu held. */
static int pick_xattrs(const struct entry *e, uint64_t cur,
		       const struct new_xattrs *x, uint8_t **out, size_t *len)
{
	const uint8_t *from = x->set ? x->xa : cur ? e->xa : NULL;
	size_t n = x->set ? x->len : cur ? e->xa_len : 0;

	*out = NULL;
	*len = 0;
	if (x->set && x->merge && cur)
		return xa_merge(e->xa, e->xa_len, x->xa, x->len, out, len);
	if (!n)
		return 0;
	*out = memdup(from, n);
	if (!*out)
		return -ENOMEM;
	*len = n;
	return 0;
}

static int commit_put(struct store *s, const char *id, struct store_stage *st,
		      const struct store_commit_args *args,
		      const struct new_xattrs *x, struct store_result *res)
{
	static const struct store_commit_args any = {.mode = -1};
	struct store_stage *rebased = NULL;
	struct store_result scratch;
	struct rec r = {.type = REC_PUT};
	uint8_t *data = NULL, *xa = NULL;
	size_t xa_len = 0;
	struct entry *e = NULL;
	struct batch_item *bi = NULL;
	struct stat sb;
	uint64_t seq, cur;
	bool append, linked = false;
	int rc;

	args = args ? args : &any;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	append = args->cond.kind == STORE_COND_APPEND;
	rc = commit_precheck(s, id, &args->cond);
	if (rc)
		return rc;
	store_hist_throttle(s);
	if (fstat(st->fd, &sb) < 0)
		return -errno;
	if (args->symlink &&
	    (append || (uint64_t)sb.st_size > STORE_SYMLINK_MAX))
		return append ? -EINVAL : -ENAMETOOLONG;
	if (!append) {
		if ((uint64_t)sb.st_size > s->opts.max_record_size)
			return -EFBIG;
		rc = store_stage_hash(s, st, r.meta.hash, &r.meta.size);
		if (rc)
			return rc;
	}
	commit_ensure_indexed(s, id);
	pthread_rwlock_rdlock(&s->gate);
	rc = commit_check_place(s, id);
	if (rc)
		goto out_gate;

	/* step 1 */
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e)
		store_wait_idle(s, e);
	cur = live_version(e);
	rc = s->broken ? s->broken : commit_check_cond(&args->cond, cur, res);
	if (rc == 0 && !append && is_noop(e, &r.meta, args, x)) {
		res->noop = true;
		res->version = cur;
		res->revision = e->meta.revision;
		pthread_mutex_unlock(&s->mu);
		goto out_gate;
	}
	if (rc == 0 && !e && !(e = idx_add(&s->ix, id, strlen(id))))
		rc = -ENOMEM;
	if (rc == 0)
		rc = pick_xattrs(e, cur, x, &xa, &xa_len);
	if (rc) {
		e = NULL;
		pthread_mutex_unlock(&s->mu);
		goto out_gate;
	}
	e->busy = true;
	e->pending_ino = (uint64_t)sb.st_ino;
	r.meta.version = e->meta.version + 1;
	r.meta.mode = args->mode >= 0 ? (uint32_t)args->mode & 07777
		      : cur	      ? e->meta.mode
				      : 0644;
	commit_pick_owner(args->owner, args->who, e, &r.meta);
	r.meta.symlink = args->symlink;
	r.xa = xa;
	r.xa_len = xa_len;
	pthread_mutex_unlock(&s->mu);

	if (append) {
		rc = rebase(s, id, cur, st, &rebased, &r.meta);
		if (rc)
			goto out;
		st = rebased;
		if (fstat(st->fd, &sb) < 0) {
			rc = -errno;
			goto out;
		}
		pthread_mutex_lock(&s->mu);
		e->pending_ino = (uint64_t)sb.st_ino;
		pthread_mutex_unlock(&s->mu);
	}

	/* step 2: the commit point */
	r.id = id;
	r.id_len = strlen(id);
	r.time_ns = commit_now_ns(&r.meta.mtime);
	if (args->mtime)
		r.meta.mtime = *args->mtime;
	r.meta.hash_valid = true;
	if (args->who)
		r.who = *args->who;
	bi = sbatch_item_new(s, id);
	rc = attach_content(s, st, &r, &data, &linked);
	if (rc == 0)
		rc = log_rec(s, &r, bi != NULL, &seq);
	if (rc) {
		rlog_err("record %s: commit of version %llu failed: %s", id,
			 (unsigned long long)r.meta.version, strerror(-rc));
		if (linked)
			store_hist_unlink(s, st);
		goto out;
	}
	r.meta.revision = seq;
	if (bi) {
		/* sync=batch: acknowledged now, in place once durable */
		rc = sbatch_defer(s, e, st, &r, &bi, &xa, (uint64_t)sb.st_ino);
		if (rc == 0) {
			e = NULL; /* busy until batch.c puts it in place */
			res->version = r.meta.version;
			res->revision = seq;
			goto out;
		}
		if (rc < 0)
			goto out;
	} else {
		store_hist_changed(s, seq);
	}

	/* step 3 */
	rc = io_point(s->io, "commit.publish");
	if (rc == 0)
		rc = s->be->ops->publish(s->be, st, id);
	if (rc) {
		commit_mark_broken(s, id, rc);
		/* the journal names a by-reference stage: recovery needs it */
		if (r.stage)
			st->published = true;
		rc = 0;
	}
	pthread_mutex_lock(&s->mu);
	e->meta = r.meta;
	e->ino = (uint64_t)sb.st_ino;
	free(e->xa);
	e->xa = xa;
	e->xa_len = r.xa_len;
	xa = NULL;
	commit_unbusy(s, e);
	pthread_mutex_unlock(&s->mu);
	e = NULL;
	res->version = r.meta.version;
	res->revision = seq;
out:
	if (e) {
		pthread_mutex_lock(&s->mu);
		commit_unbusy(s, e);
		pthread_mutex_unlock(&s->mu);
	}
out_gate:
	pthread_rwlock_unlock(&s->gate);
	sbatch_item_free(bi);
	free(data);
	free(xa);
	store_stage_free(rebased);
	if (rc == 0 && !res->noop)
		commit_maybe_checkpoint(s);
	return rc;
}

int store_commit(struct store *s, const char *id, struct store_stage *st,
		 const struct store_commit_args *args, struct store_result *res)
{
	static const struct new_xattrs keep = {.set = false};

	return commit_put(s, id, st, args, &keep, res);
}

int commit_with_xattrs(struct store *s, const char *id, struct store_stage *st,
		       const struct store_commit_args *args, const uint8_t *xa,
		       size_t xa_len, bool merge, struct store_result *res)
{
	struct new_xattrs x = {
		.set = true, .merge = merge, .xa = xa, .len = xa_len};

	if (args && args->cond.kind == STORE_COND_APPEND)
		return -EINVAL; /* an append keeps what the record has */
	return commit_put(s, id, st, args, &x, res);
}

int store_put(struct store *s, const char *id, const void *buf, size_t len,
	      const struct store_commit_args *args, struct store_result *res)
{
	struct store_stage *st = NULL;
	ssize_t n;
	int rc;

	rc = id_check(id);
	if (rc)
		return rc;
	if (len > s->opts.max_record_size)
		return -EFBIG;
	rc = store_stage_new(s, &st);
	if (rc)
		return rc;
	n = io_pwrite_all(s->io, "stage.write", st->fd, buf, len, 0);
	rc = n < 0 ? (int)n : store_commit(s, id, st, args, res);
	store_stage_free(st);
	return rc;
}

int store_delete(struct store *s, const char *id, const struct store_cond *cond,
		 const struct store_who *who, struct store_result *res)
{
	static const struct store_cond any = {STORE_COND_ANY, 0};
	struct store_result scratch;
	struct rec r = {.type = REC_DEL};
	struct entry *e = NULL;
	struct stat st;
	uint64_t seq, cur;
	int rc;

	cond = cond ? cond : &any;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	if (cond->kind != STORE_COND_ANY && cond->kind != STORE_COND_IF_VERSION)
		return -EINVAL;
	rc = commit_precheck(s, id, cond);
	if (rc)
		return rc;
	store_hist_throttle(s);
	commit_ensure_indexed(s, id);
	pthread_rwlock_rdlock(&s->gate);
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e)
		store_wait_idle(s, e);
	cur = live_version(e);
	if (s->broken)
		rc = s->broken;
	else
		rc = cur ? commit_check_cond(cond, cur, res) : -ENOENT;
	if (rc) {
		e = NULL;
		pthread_mutex_unlock(&s->mu);
		if (rc == -ENOENT && s->be->ops->stat(s->be, id, &st) == 0 &&
		    S_ISDIR(st.st_mode))
			rc = -EISDIR;
		goto out_gate;
	}
	e->busy = true;
	r.meta = e->meta;
	pthread_mutex_unlock(&s->mu);

	r.id = id;
	r.id_len = strlen(id);
	r.meta.deleted = true;
	r.time_ns = commit_now_ns(&(struct timespec){0});
	if (who)
		r.who = *who;
	rc = log_rec(s, &r, false, &seq);
	if (rc) {
		rlog_err("record %s: delete failed: %s", id, strerror(-rc));
		goto out;
	}
	store_hist_changed(s, seq);
	rc = s->be->ops->remove(s->be, id);
	if (rc && rc != -ENOENT)
		commit_mark_broken(s, id, rc);
	rc = 0;
	pthread_mutex_lock(&s->mu);
	e->meta.deleted = true;
	e->meta.revision = seq;
	e->ino = 0;
	free(e->xa);
	e->xa = NULL;
	e->xa_len = 0;
	res->version = e->meta.version;
	res->revision = seq;
	commit_unbusy(s, e);
	pthread_mutex_unlock(&s->mu);
	e = NULL;
out:
	if (e) {
		pthread_mutex_lock(&s->mu);
		commit_unbusy(s, e);
		pthread_mutex_unlock(&s->mu);
	}
out_gate:
	pthread_rwlock_unlock(&s->gate);
	if (rc == 0)
		commit_maybe_checkpoint(s);
	return rc;
}

/* Step 1 of a rename: both records idle, conditions hold; marks both
   busy. mu held. */
static int rename_begin(struct store *s, const char *from, const char *to,
			const struct store_cond *to_cond,
			struct store_result *res, struct entry **ef,
			struct entry **et)
{
	uint64_t cur;
	int rc;

	for (;;) {
		*ef = idx_find(&s->ix, from, strlen(from));
		*et = idx_find(&s->ix, to, strlen(to));
		if (*ef && (*ef)->busy)
			store_wait_idle(s, *ef);
		else if (*et && (*et)->busy)
			store_wait_idle(s, *et);
		else
			break;
	}
	if (s->broken)
		return s->broken;
	if (!live_version(*ef))
		return -ENOENT;
	cur = live_version(*et);
	rc = commit_check_cond(to_cond, cur, res);
	if (rc)
		return rc;
	if (!*et && !(*et = idx_add(&s->ix, to, strlen(to))))
		return -ENOMEM;
	(*ef)->busy = (*et)->busy = true;
	return 0;
}

int store_rename(struct store *s, const char *from, const char *to,
		 const struct store_cond *to_cond, const struct store_who *who,
		 struct store_result *res)
{
	static const struct store_cond any = {STORE_COND_ANY, 0};
	struct store_result scratch;
	struct rec r = {.type = REC_RENAME};
	struct entry *ef = NULL, *et = NULL;
	struct store_meta fm;
	uint8_t *xa = NULL;
	uint64_t seq;
	int rc;

	to_cond = to_cond ? to_cond : &any;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	if (to_cond->kind == STORE_COND_APPEND)
		return -EINVAL;
	rc = commit_precheck(s, from, NULL);
	if (rc == 0)
		rc = commit_precheck(s, to, to_cond);
	if (rc)
		return rc;
	store_hist_throttle(s);
	/* the hash goes into the journal: recovery checks moves with it */
	rc = store_stat(s, from, &fm, true);
	if (rc)
		return rc;
	if (strcmp(from, to) == 0) {
		res->version = fm.version;
		res->revision = fm.revision;
		res->noop = true;
		return 0;
	}
	commit_ensure_indexed(s, to);
	pthread_rwlock_rdlock(&s->gate);
	rc = commit_check_place(s, to);
	if (rc)
		goto out_gate;
	pthread_mutex_lock(&s->mu);
	rc = rename_begin(s, from, to, to_cond, res, &ef, &et);
	if (rc == 0 && ef->xa_len && !(xa = memdup(ef->xa, ef->xa_len)))
		rc = -ENOMEM;
	if (rc) {
		if (et && et->busy && ef && ef->busy) {
			commit_unbusy(s, ef);
			commit_unbusy(s, et);
		}
		pthread_mutex_unlock(&s->mu);
		goto out_gate;
	}
	r.meta = ef->meta;
	r.meta.version = et->meta.version + 1;
	r.meta.deleted = false;
	r.from_version = ef->meta.version;
	r.xa = xa;
	r.xa_len = xa ? ef->xa_len : 0;
	pthread_mutex_unlock(&s->mu);

	r.id = to;
	r.id_len = strlen(to);
	r.from = from;
	r.from_len = strlen(from);
	r.time_ns = commit_now_ns(&(struct timespec){0});
	if (who)
		r.who = *who;
	rc = log_rec(s, &r, false, &seq);
	if (rc) {
		rlog_err("record %s: rename to %s failed: %s", from, to,
			 strerror(-rc));
	} else {
		int mv;

		store_hist_changed(s, seq);
		mv = s->be->ops->move(s->be, from, to, true);
		if (mv)
			commit_mark_broken(s, to, mv);
	}
	pthread_mutex_lock(&s->mu);
	if (rc == 0) {
		r.meta.revision = seq;
		et->meta = r.meta;
		et->ino = ef->ino;
		free(et->xa);
		et->xa = xa;
		et->xa_len = r.xa_len;
		xa = NULL;
		ef->meta.deleted = true;
		ef->meta.revision = seq;
		ef->ino = 0;
		free(ef->xa);
		ef->xa = NULL;
		ef->xa_len = 0;
		res->version = r.meta.version;
		res->revision = seq;
	}
	commit_unbusy(s, ef);
	commit_unbusy(s, et);
	pthread_mutex_unlock(&s->mu);
out_gate:
	pthread_rwlock_unlock(&s->gate);
	free(xa);
	if (rc == 0)
		commit_maybe_checkpoint(s);
	return rc;
}

/* A metadata change: mtime/mode/owner and/or one xattr set or removed. */
struct meta_change {
	const struct timespec *mtime; /* NULL: keep */
	int mode;		      /* -1: keep */
	uint32_t uid, gid;	      /* (uint32_t)-1: keep */
	const char *xname;	      /* NULL: no xattr change */
	const void *xvalue;	      /* NULL: remove xname */
	size_t xsize;
	int xflags;
};

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static int change_meta(struct store *s, const char *id,
		       const struct meta_change *c)
{
	struct rec r = {.type = REC_META};
	struct entry *e = NULL;
	uint8_t *xa = NULL;
	size_t xa_len = 0;
	bool same;
	uint64_t seq;
	int rc;

	rc = commit_precheck(s, id, NULL);
	if (rc)
		return rc;
	store_hist_throttle(s);
	commit_ensure_indexed(s, id);
	pthread_rwlock_rdlock(&s->gate);
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e)
		store_wait_idle(s, e);
	if (s->broken)
		rc = s->broken;
	else
		rc = live_version(e) ? 0 : -ENOENT;
	if (rc == 0 && c->xname)
		rc = xa_update(e->xa, e->xa_len, c->xname, c->xvalue, c->xsize,
			       c->xflags, &xa, &xa_len);
	if (rc) {
		pthread_mutex_unlock(&s->mu);
		goto out_gate;
	}
	r.meta = e->meta;
	if (c->mtime)
		r.meta.mtime = *c->mtime;
	if (c->mode >= 0)
		r.meta.mode = (uint32_t)c->mode & 07777;
	if (c->uid != (uint32_t)-1)
		r.meta.uid = c->uid;
	if (c->gid != (uint32_t)-1)
		r.meta.gid = c->gid;
	if (!c->xname) {
		xa_len = e->xa_len;
		if (xa_len && !(xa = memdup(e->xa, xa_len)))
			rc = -ENOMEM;
	}
	same = same_time(&r.meta.mtime, &e->meta.mtime) &&
	       r.meta.mode == e->meta.mode && r.meta.uid == e->meta.uid &&
	       r.meta.gid == e->meta.gid && xa_len == e->xa_len &&
	       (!xa_len || memcmp(xa, e->xa, xa_len) == 0);
	if (rc || same) {
		pthread_mutex_unlock(&s->mu);
		goto out_gate;
	}
	e->busy = true;
	pthread_mutex_unlock(&s->mu);

	r.id = id;
	r.id_len = strlen(id);
	r.xa = xa;
	r.xa_len = xa_len;
	r.time_ns = commit_now_ns(&(struct timespec){0});
	rc = log_rec(s, &r, false, &seq);
	if (rc)
		rlog_err("record %s: metadata change failed: %s", id,
			 strerror(-rc));
	else
		store_hist_changed(s, seq);
	pthread_mutex_lock(&s->mu);
	if (rc == 0) {
		e->meta.mtime = r.meta.mtime;
		e->meta.mode = r.meta.mode;
		e->meta.uid = r.meta.uid;
		e->meta.gid = r.meta.gid;
		free(e->xa);
		e->xa = xa;
		e->xa_len = xa_len;
		xa = NULL;
	}
	commit_unbusy(s, e);
	pthread_mutex_unlock(&s->mu);
out_gate:
	pthread_rwlock_unlock(&s->gate);
	free(xa);
	return rc;
}

int store_set_meta(struct store *s, const char *id,
		   const struct timespec *mtime, int mode)
{
	struct meta_change c = {
		.mtime = mtime, .mode = mode, .uid = -1u, .gid = -1u};

	return change_meta(s, id, &c);
}

int store_xattr_set(struct store *s, const char *id, const char *name,
		    const void *value, size_t size, int flags)
{
	struct meta_change c = {.mode = -1,
				.uid = -1u,
				.gid = -1u,
				.xname = name,
				.xvalue = value ? value : "",
				.xsize = size,
				.xflags = flags};

	return change_meta(s, id, &c);
}

int store_xattr_remove(struct store *s, const char *id, const char *name)
{
	struct meta_change c = {
		.mode = -1, .uid = -1u, .gid = -1u, .xname = name};

	return change_meta(s, id, &c);
}

int store_set_owner(struct store *s, const char *id, uint32_t uid, uint32_t gid)
{
	struct meta_change c = {.mode = -1, .uid = uid, .gid = gid};

	return change_meta(s, id, &c);
}
