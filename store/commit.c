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
#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

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
	return commit_live_version(e) && e->meta.hash_valid &&
	       same_xattrs(e, x) && memcmp(e->meta.hash, m->hash, 16) == 0 &&
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
	} else if (commit_live_version(e)) {
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

	/* an own_commit backend (etcd) takes the content inline too */
	if (!store_journaled(s) && !s->be->own_commit)
		return 0;
	if (r->meta.size > CODEC_INLINE_MAX && store_journaled(s)) {
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
	*out = change_memdup(from, n);
	if (!*out)
		return -ENOMEM;
	*len = n;
	return 0;
}

/* Clear the busy mark of `e` (a change that failed before its commit
   point). */
static void release(struct store *s, struct entry *e)
{
	pthread_mutex_lock(&s->mu);
	commit_unbusy(s, e);
	pthread_mutex_unlock(&s->mu);
}

/* A new version of a record (commit_put) on its way through the
   pipeline. */
struct put {
	struct store *s;
	const char *id;
	struct store_stage *st; /* the content (the rebased one if append) */
	struct store_stage *rebased;
	const struct store_commit_args *args;
	const struct new_xattrs *x;
	const struct scratch_origin *origin;
	struct store_result *res;
	struct rec r;
	struct entry *e; /* busy while `marked` */
	bool marked, append, linked;
	uint8_t *xa, *data;
	size_t xa_len;
	struct stat sb;
	uint64_t cur;
	struct batch_item *bi;
};

/* The checks of the content; its hash (not of an append, whose content
   is known only once rebased). */
static int put_check(struct put *p)
{
	struct store *s = p->s;
	const struct store_commit_args *a = p->args;

	if (fstat(p->st->fd, &p->sb) < 0)
		return -errno;
	if (a->symlink &&
	    (p->append || (uint64_t)p->sb.st_size > STORE_SYMLINK_MAX))
		return p->append ? -EINVAL : -ENAMETOOLONG;
	if (p->append)
		return 0;
	if ((uint64_t)p->sb.st_size > s->opts.max_record_size)
		return -EFBIG;
	return store_stage_hash(s, p->st, p->r.meta.hash, &p->r.meta.size);
}

/* Step 1 (s->mu held): the record idle, the condition, no-op, mark it
   busy and pick the new version's metadata. 1: a no-op (res set). */
static int put_begin(struct put *p)
{
	struct store *s = p->s;
	const struct store_commit_args *a = p->args;
	struct store_meta *m = &p->r.meta;
	int rc;

	rc = change_wait_ids(s, &p->id, 1, &p->e);
	p->cur = commit_live_version(p->e);
	if (rc == 0)
		rc = commit_check_cond(p->id, &a->cond, p->cur, p->res);
	if (rc == 0 && !p->append && is_noop(p->e, m, a, p->x)) {
		p->res->noop = true;
		p->res->version = p->cur;
		p->res->revision = p->e->meta.revision;
		return 1;
	}
	if (rc == 0 && !p->e && !(p->e = idx_add(&s->ix, p->id, strlen(p->id))))
		rc = -ENOMEM;
	if (rc == 0)
		rc = pick_xattrs(p->e, p->cur, p->x, &p->xa, &p->xa_len);
	if (rc)
		return rc;
	p->marked = p->e->busy = true;
	p->e->pending_ino = (uint64_t)p->sb.st_ino;
	m->version = p->e->meta.version + 1;
	m->mode = a->mode >= 0 ? (uint32_t)a->mode & 07777
		  : p->cur     ? p->e->meta.mode
			       : 0644;
	commit_pick_owner(a->owner, a->who, p->e, m);
	m->symlink = a->symlink;
	p->r.xa = p->xa;
	p->r.xa_len = p->xa_len;
	return 0;
}

/* An append: its content is the current one followed by the stage's. */
static int put_rebase(struct put *p)
{
	struct store *s = p->s;
	int rc;

	rc = rebase(s, p->id, p->cur, p->st, &p->rebased, &p->r.meta);
	if (rc)
		return rc;
	p->st = p->rebased;
	if (fstat(p->st->fd, &p->sb) < 0)
		return -errno;
	pthread_mutex_lock(&s->mu);
	p->e->pending_ino = (uint64_t)p->sb.st_ino;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* Step 2: the commit point. */
static int put_journal(struct put *p, uint64_t *seq)
{
	struct store *s = p->s;
	struct rec *r = &p->r;
	int rc;

	r->id = p->id;
	r->id_len = strlen(p->id);
	r->time_ns = commit_now_ns(&r->meta.mtime);
	if (p->args->mtime)
		r->meta.mtime = *p->args->mtime;
	r->meta.hash_valid = true;
	if (p->args->who)
		r->who = *p->args->who;
	p->bi = sbatch_item_new(s, p->id);
	if (p->origin) {
		r->origin = p->origin->path;
		r->origin_len = strlen(p->origin->path);
		r->origin_ino = p->origin->ino;
		r->origin_ctime_ns = p->origin->ctime_ns;
	}
	rc = attach_content(s, p->st, r, &p->data, &p->linked);
	if (rc == 0)
		rc = change_journal(s, r, p->bi != NULL, seq);
	if (rc) {
		rerr_prefix(rc, "record %s: commit of version %llu", p->id,
			    (unsigned long long)r->meta.version);
		if (p->linked)
			store_hist_unlink(s, p->st);
		return rc;
	}
	r->meta.revision = *seq;
	if (r->origin)
		scratch_origin_remove(s, r);
	return 0;
}

/* After the commit point: the history, then the apply step (or, with
   sync=batch, hand it to batch.c). */
static int put_finish(struct put *p, uint64_t seq)
{
	struct store *s = p->s;
	struct apply a = {.steps = APPLY_PLACE | APPLY_INDEX, .unmark = true};
	int rc = 1;

	if (p->bi)
		rc = sbatch_defer(s, p->e, p->st, &p->r, &p->bi, &p->xa,
				  (uint64_t)p->sb.st_ino);
	else
		store_hist_changed(s, seq);
	if (rc <= 0) {
		/* queued (busy until batch.c puts it in place), or -EIO */
		p->marked = rc < 0;
		return rc;
	}
	a.st = p->st;
	a.e = p->e;
	a.ino = (uint64_t)p->sb.st_ino;
	a.xa = p->xa;
	p->xa = NULL;
	p->marked = false;
	return change_apply(s, &p->r, seq, &a);
}

static int commit_put(struct store *s, const char *id, struct store_stage *st,
		      const struct store_commit_args *args,
		      const struct new_xattrs *x,
		      const struct scratch_origin *origin,
		      struct store_result *res)
{
	static const struct store_commit_args any = {.mode = -1};
	struct store_result scratch;
	struct put p = {.s = s, .id = id, .st = st, .x = x, .origin = origin};
	uint64_t seq;
	int rc;

	p.args = args ? args : &any;
	p.res = res ? res : &scratch;
	memset(p.res, 0, sizeof(*p.res));
	p.r.type = REC_PUT;
	p.append = p.args->cond.kind == STORE_COND_APPEND;
	rc = id_check(id);
	if (rc == 0)
		rc = put_check(&p);
	if (rc == 0)
		rc = change_enter(s, id, &p.args->cond);
	if (rc)
		return rc;
	rc = commit_check_place(s, id);
	if (rc == 0) {
		pthread_mutex_lock(&s->mu);
		rc = put_begin(&p);
		pthread_mutex_unlock(&s->mu);
	}
	if (rc == 0 && p.append)
		rc = put_rebase(&p);
	if (rc == 0)
		rc = put_journal(&p, &seq);
	if (rc == 0)
		rc = put_finish(&p, seq);
	if (rc == 0) {
		p.res->version = p.r.meta.version;
		p.res->revision = seq;
	}
	if (p.marked)
		release(s, p.e);
	pthread_rwlock_unlock(&s->gate);
	sbatch_item_free(p.bi);
	free(p.data);
	free(p.xa);
	store_stage_free(p.rebased);
	if (rc == 0 && !p.res->noop)
		commit_maybe_checkpoint(s);
	return rc < 0 ? rc : 0;
}

int store_commit(struct store *s, const char *id, struct store_stage *st,
		 const struct store_commit_args *args, struct store_result *res)
{
	static const struct new_xattrs keep = {.set = false};

	return commit_put(s, id, st, args, &keep, NULL, res);
}

int commit_with_xattrs(struct store *s, const char *id, struct store_stage *st,
		       const struct store_commit_args *args, const uint8_t *xa,
		       size_t xa_len, const struct scratch_origin *origin,
		       struct store_result *res)
{
	struct new_xattrs x = {
		.set = true, .merge = true, .xa = xa, .len = xa_len};

	if (args && args->cond.kind == STORE_COND_APPEND)
		return -EINVAL; /* an append keeps what the record has */
	return commit_put(s, id, st, args, &x, origin, res);
}

int store_put(struct store *s, const char *id, const void *buf, size_t len,
	      const struct store_commit_args *args, struct store_result *res)
{
	struct store_stage *st = NULL;
	int rc;

	rc = id_check(id);
	if (rc)
		return rc;
	if (len > s->opts.max_record_size)
		return -EFBIG;
	rc = store_stage_of(s, "stage.write", buf, len, &st);
	if (rc)
		return rc;
	rc = store_commit(s, id, st, args, res);
	store_stage_free(st);
	return rc;
}

/* Journal and apply `r`, a change made now (by `who`, if given) that
   `a` prepared; its version and revision into *res. */
static int journal_now(struct store *s, struct rec *r, struct apply *a,
		       const struct store_who *who, const char *what,
		       struct store_result *res)
{
	uint64_t seq;
	int rc;

	r->time_ns = commit_now_ns(&(struct timespec){0});
	if (who)
		r->who = *who;
	rc = change_journal_apply(s, r, a, what, &seq);
	if (rc == 0) {
		res->version = r->meta.version;
		res->revision = seq;
	}
	return rc;
}

/* Step 1 of a delete (s->mu held): the record idle, live, the condition;
   marks it busy. */
static int delete_begin(struct store *s, const char *id,
			const struct store_cond *cond, struct store_result *res,
			struct entry **e)
{
	uint64_t cur;
	int rc = change_wait_ids(s, &id, 1, e);

	cur = commit_live_version(*e);
	if (rc == 0)
		rc = cur ? commit_check_cond(id, cond, cur, res) : -ENOENT;
	if (rc == 0)
		(*e)->busy = true;
	return rc;
}

int store_delete(struct store *s, const char *id, const struct store_cond *cond,
		 const struct store_who *who, struct store_result *res)
{
	static const struct store_cond any = {STORE_COND_ANY, 0};
	struct store_result scratch;
	struct rec r = {.type = REC_DEL};
	struct apply a = {0};
	struct stat st;
	int rc;

	cond = cond ? cond : &any;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	if (cond->kind != STORE_COND_ANY && cond->kind != STORE_COND_IF_VERSION)
		return -EINVAL;
	rc = change_enter(s, id, cond);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	rc = delete_begin(s, id, cond, res, &a.e);
	if (rc == 0)
		r.meta = a.e->meta;
	pthread_mutex_unlock(&s->mu);
	if (rc == -ENOENT && s->be->ops->stat(s->be, id, &st) == 0 &&
	    S_ISDIR(st.st_mode))
		rc = -EISDIR;
	if (rc)
		goto out;
	r.id = id;
	r.id_len = strlen(id);
	r.meta.deleted = true;
	rc = journal_now(s, &r, &a, who, "delete", res);
out:
	pthread_rwlock_unlock(&s->gate);
	if (rc == 0)
		commit_maybe_checkpoint(s);
	return rc;
}

/* Step 1 of a rename (s->mu held): both records idle, the conditions;
   marks both busy; *xa: a copy of the source's xattrs. */
static int rename_begin(struct store *s, const char *from, const char *to,
			const struct store_cond *to_cond,
			struct store_result *res, struct entry **ef,
			struct entry **et, uint8_t **xa)
{
	const char *ids[2] = {from, to};
	struct entry *es[2];
	int rc = change_wait_ids(s, ids, 2, es);

	*ef = es[0];
	*et = es[1];
	if (rc)
		return rc;
	if (!commit_live_version(*ef))
		return -ENOENT;
	rc = commit_check_cond(to, to_cond, commit_live_version(*et), res);
	if (rc)
		return rc;
	if (!*et && !(*et = idx_add(&s->ix, to, strlen(to))))
		return -ENOMEM;
	if ((*ef)->xa_len && !(*xa = change_memdup((*ef)->xa, (*ef)->xa_len)))
		return -ENOMEM;
	(*ef)->busy = (*et)->busy = true;
	return 0;
}

/* The checks of a rename that need no lock; 1: from and to are one. */
static int rename_check(struct store *s, const char *from, const char *to,
			const struct store_cond *to_cond,
			struct store_result *res)
{
	struct store_meta fm;
	int rc;

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
		return 1;
	}
	commit_ensure_indexed(s, to);
	return 0;
}

int store_rename(struct store *s, const char *from, const char *to,
		 const struct store_cond *to_cond, const struct store_who *who,
		 struct store_result *res)
{
	static const struct store_cond any = {STORE_COND_ANY, 0};
	struct store_result scratch;
	struct rec r = {.type = REC_RENAME};
	struct entry *ef = NULL;
	struct apply a = {0};
	int rc;

	to_cond = to_cond ? to_cond : &any;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	rc = rename_check(s, from, to, to_cond, res);
	if (rc)
		return rc < 0 ? rc : 0;
	pthread_rwlock_rdlock(&s->gate);
	rc = commit_check_place(s, to);
	if (rc)
		goto out;
	pthread_mutex_lock(&s->mu);
	rc = rename_begin(s, from, to, to_cond, res, &ef, &a.e, &a.xa);
	if (rc == 0) {
		r.meta = ef->meta;
		r.meta.version = a.e->meta.version + 1;
		r.meta.deleted = false;
		r.from_version = ef->meta.version;
		r.xa = a.xa;
		r.xa_len = a.xa ? ef->xa_len : 0;
	}
	pthread_mutex_unlock(&s->mu);
	if (rc)
		goto out;
	r.id = to;
	r.id_len = strlen(to);
	r.from = from;
	r.from_len = strlen(from);
	rc = journal_now(s, &r, &a, who, "rename", res);
out:
	free(a.xa);
	pthread_rwlock_unlock(&s->gate);
	if (rc == 0)
		commit_maybe_checkpoint(s);
	return rc;
}
