/*
 * verify.c - store_verify: every record's content against its hash, every
 * indexed record present, and (store_hist.c) the history; with repair
 * (store_verify_repair), what can be put right from the history without
 * losing anything committed and without rewriting history.
 *
 * A record file is repaired the way recovery restores one: the content of
 * its current version (from its history blob, checked against the
 * version's hash) is staged, synced and swapped into place, with the gate
 * held exclusively and the record idle, so no commit races it. Its
 * version, revision and metadata stay as they are: this is the same
 * version, not a new one.
 */
#include "store_i.h"
#include "admin.h"
#include "store_history.h"
#include "history.h"
#include "id.h"
#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* The walk over the record files: their IDs, into ids[]. */
struct verify_walk {
	struct store *s;
	char path[ID_MAX_LEN + 2];
	char **ids;
	size_t n, cap;
};

/*
 * Hold record `id` still for a repair: the gate taken for writing and
 * the batches drained (the caller releases the gate), then s->mu taken
 * (the caller releases it once it has checked the entry) and `id` idle.
 * Returns its entry, NULL if there is none.
 */
static struct entry *repair_hold(struct store *s, const char *id)
{
	struct entry *e;

	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s);
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e)
		store_wait_idle(s, e);
	return e;
}

/* Put the content of version `m->version` of `id` back from the history.
   Returns 0, or -errno with the reason logged. */
static int restore_record(struct store *s, const char *id,
			  const struct store_meta *m)
{
	struct store_stage *st = NULL;
	struct store_version v;
	XXH128_canonical_t got;
	struct entry *e;
	struct stat sb;
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (!s->hist) {
		verify_problem("record %s: cannot be repaired: the store has "
			       "no history",
			       id);
		return -ENOENT;
	}
	rc = hist_lookup(s->hist, id, m->version, &v);
	if (rc == 0)
		rc = hist_read(s->hist, &v, &buf, &len);
	if (rc) {
		verify_problem("record %s: cannot be repaired: version %" PRIu64
			       " is not readable in the history (%s)",
			       id, m->version,
			       rc == -ENOENT ? "not in it" : rerr_what(rc));
		return rc;
	}
	XXH128_canonicalFromHash(&got, XXH3_128bits(buf, len));
	if (m->hash_valid &&
	    (memcmp(got.digest, m->hash, 16) != 0 || len != m->size)) {
		verify_problem("record %s: cannot be repaired: the history's "
			       "version %" PRIu64 " (blob %s) has another "
			       "content than the index says",
			       id, m->version, v.blob);
		rc = -EBADMSG;
		goto out;
	}
	rc = store_stage_of(s, "repair.write", buf, len, &st);
	if (rc == 0)
		rc = s->be->ops->stage_sync(s->be, st);
	if (rc == 0 && fstat(st->fd, &sb) < 0)
		rc = -errno;
	if (rc)
		goto out;
	e = repair_hold(s, id);
	/* still the version we are repairing? */
	if (!e || e->meta.deleted || e->meta.version != m->version)
		rc = -ESTALE;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		rc = s->be->ops->mkparents(s->be, id);
	if (rc == 0)
		rc = s->be->ops->publish(s->be, st, id);
	if (rc == 0)
		rc = s->be->ops->sync(s->be);
	if (rc == 0) {
		pthread_mutex_lock(&s->mu);
		e->ino = (uint64_t)sb.st_ino;
		pthread_mutex_unlock(&s->mu);
	}
	pthread_rwlock_unlock(&s->gate);
	if (rc)
		verify_problem("record %s: repair failed: %s", id,
			       rerr_what(rc));
	else /* logged: a note on a repair that succeeded */
		rlog_info("record %s: repaired: version %" PRIu64 " restored "
			  "from the history (commit %.12s, blob %.12s)",
			  id, m->version, v.commit, v.blob);
out:
	store_stage_free(st);
	free(buf);
	return rc;
}

/* Is `hash` the hash of a version of `id` in the history? */
struct find_hash {
	const uint8_t *hash;
	uint64_t size;
	uint64_t version;
};

static int match_hash(void *arg, const char *id, const struct store_version *v)
{
	struct find_hash *f = arg;

	if (!v->deleted && v->hash_valid && v->size == f->size &&
	    memcmp(v->hash, f->hash, 16) == 0) {
		f->version = v->version;
		return 1;
	}
	return 0;
}

/* The file of a deleted record is still there: remove it if what it
   holds is kept in the history, else leave it. */
static int drop_leftover(struct store *s, const char *id,
			 const uint8_t hash[16], uint64_t size)
{
	struct find_hash f = {hash, size, 0};
	struct entry *e;
	int rc;

	rc = s->hist ? hist_each(s->hist, id, match_hash, &f) : 0;
	if (rc != 1) {
		verify_problem("record %s: cannot be repaired: its left-over "
			       "file is not a version in the history; move it "
			       "out of the store (or copy it back in through a "
			       "mount)",
			       id);
		return -ENOENT;
	}
	e = repair_hold(s, id);
	rc = e && e->meta.deleted ? 0 : -ESTALE;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		rc = s->be->ops->remove(s->be, id);
	if (rc == 0)
		rc = s->be->ops->sync(s->be);
	pthread_rwlock_unlock(&s->gate);
	if (rc == 0) /* logged: a note on a repair that succeeded */
		rlog_info("record %s: repaired: removed the file left by its "
			  "delete (it holds version %" PRIu64 ", kept in the "
			  "history)",
			  id, f.version);
	return rc;
}

/* Hash the file of record `id` as it is now. */
static int hash_file(struct store *s, const char *id, uint8_t hash[16],
		     uint64_t *size)
{
	int fd = -1, rc = s->be->ops->open(s->be, id, &fd);

	if (rc == 0)
		rc = store_hash_fd(s, fd, hash, size);
	if (fd >= 0)
		close(fd);
	return rc;
}

void verify_problem(const char *fmt, ...)
{
	char msg[RERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* logged: verify lists every problem, which one error cannot */
	rlog_err("%s", msg);
	rerr_set(-EBADMSG, "%s", msg);
}

/* Count a problem found; with repair, try `fixed` (its result). */
static void tally(struct store_verify_report *rep, bool repair, int fixed)
{
	rep->bad++;
	if (!repair)
		return;
	if (fixed == 0)
		rep->repaired++;
	else
		rep->unrepairable++;
}

/*
 * The record pass: the walk lists every record file (verify_cb), then
 * VERIFY_THREADS threads hash them (a cold disk serves several reads at
 * once; each thread holds s->mu only to copy one index entry), and what
 * they found wrong is reported and repaired afterwards, in ID order, by
 * the calling thread alone. A file whose record has no hash yet (adopted,
 * not read since) is not read: there is nothing to compare it with.
 */
#define VERIFY_THREADS 4

enum vproblem { VP_LEFTOVER, VP_MISMATCH };

struct vprob {
	size_t i; /* into ids[] */
	enum vproblem what;
	uint8_t hash[16];
	uint64_t size;
	struct store_meta meta;
};

struct vpool {
	struct store *s;
	char **ids; /* sorted */
	size_t n;
	atomic_size_t next;
	atomic_uint_fast64_t unindexed;
	atomic_bool stop;
	pthread_mutex_t mu; /* probs, err */
	struct vprob *probs;
	size_t np, cap;
	int err;
};

static void pool_fail(struct vpool *p, int rc)
{
	pthread_mutex_lock(&p->mu);
	if (!p->err)
		p->err = rc;
	pthread_mutex_unlock(&p->mu);
	atomic_store(&p->stop, true);
}

static int pool_problem(struct vpool *p, const struct vprob *v)
{
	struct vprob *q;
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	q = util_grow(p->probs, &p->cap, p->np, sizeof(*q), 16);
	if (q) {
		p->probs = q;
		p->probs[p->np++] = *v;
	} else {
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* Hash record file ids[i] and compare it with the index. */
static int check_one(struct vpool *p, size_t i)
{
	struct store *s = p->s;
	const char *id = p->ids[i];
	struct vprob v = {.i = i};
	struct entry *e;
	int fd = -1, rc;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e)
		v.meta = e->meta;
	pthread_mutex_unlock(&s->mu);
	if (!e) {
		atomic_fetch_add(&p->unindexed, 1);
		return 0;
	}
	if (!v.meta.deleted && !v.meta.hash_valid)
		return 0;
	rc = s->be->ops->open(s->be, id, &fd);
	if (rc == 0)
		rc = store_hash_fd(s, fd, v.hash, &v.size);
	if (fd >= 0)
		close(fd);
	if (rc)
		return rc;
	if (v.meta.deleted)
		v.what = VP_LEFTOVER;
	else if (memcmp(v.hash, v.meta.hash, 16) || v.size != v.meta.size)
		v.what = VP_MISMATCH;
	else
		return 0;
	return pool_problem(p, &v);
}

static void *pool_worker(void *arg)
{
	struct vpool *p = arg;
	size_t i;
	int rc;

	while (!atomic_load(&p->stop) &&
	       (i = atomic_fetch_add(&p->next, 1)) < p->n) {
		rc = check_one(p, i);
		if (rc)
			pool_fail(p, rc);
	}
	return NULL;
}

/* Report (and with repair, repair) one problem a worker found. */
static void settle(struct store *s, const char *id, struct vprob *v,
		   struct store_verify_report *rep, bool repair)
{
	const struct store_meta *m = &v->meta;
	char want[64], got[64];
	int rc;

	if (v->what == VP_LEFTOVER) {
		verify_problem("record %s: deleted at version %llu but its "
			       "file is still there",
			       id, (unsigned long long)m->version);
		tally(rep, repair,
		      repair ? drop_leftover(s, id, v->hash, v->size) : -1);
		return;
	}
	store_hash_format(m->hash, want);
	store_hash_format(v->hash, got);
	verify_problem("record %s: content does not match version %llu "
		       "(expected %s, %llu bytes; found %s, %llu bytes)",
		       id, (unsigned long long)m->version, want,
		       (unsigned long long)m->size, got,
		       (unsigned long long)v->size);
	rc = repair ? restore_record(s, id, m) : -1;
	if (rc == 0 && (rc = hash_file(s, id, v->hash, &v->size)) == 0 &&
	    (memcmp(v->hash, m->hash, 16) || v->size != m->size))
		rc = -EIO; /* re-verified: still wrong */
	tally(rep, repair, rc);
}

static int verify_cb(void *arg, const char *name, bool is_ns)
{
	struct verify_walk *w = arg;
	size_t len = strlen(w->path), n = strlen(name);
	char **ids;
	int rc = 0;

	if (len + n + 2 > sizeof(w->path))
		return 0;
	if (len)
		w->path[len++] = '/';
	memcpy(w->path + len, name, n + 1);
	if (is_ns) {
		rc = store_list(w->s, w->path, verify_cb, w);
	} else if (!(ids = util_grow(w->ids, &w->cap, w->n, sizeof(*ids),
				     1024))) {
		rc = -ENOMEM;
	} else {
		w->ids = ids;
		if (!(w->ids[w->n] = strdup(w->path)))
			rc = -ENOMEM;
		else
			w->n++;
	}
	w->path[len ? len - 1 : 0] = '\0';
	return rc;
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int prob_cmp(const void *a, const void *b)
{
	const struct vprob *x = a, *y = b;

	return x->i < y->i ? -1 : x->i > y->i;
}

static int check_records(struct vpool *p, struct store_verify_report *rep,
			 bool repair)
{
	pthread_t t[VERIFY_THREADS];
	size_t nt = 0, want = p->n / 64 + 1;

	if (want > VERIFY_THREADS)
		want = VERIFY_THREADS;
	pthread_mutex_init(&p->mu, NULL);
	for (; nt < want; nt++)
		if (pthread_create(&t[nt], NULL, pool_worker, p) != 0)
			break;
	if (nt == 0)
		pool_worker(p); /* no thread to be had: this one */
	for (size_t k = 0; k < nt; k++)
		pthread_join(t[k], NULL);
	pthread_mutex_destroy(&p->mu);
	rep->records += p->n;
	rep->unindexed += atomic_load(&p->unindexed);
	if (p->err)
		return p->err;
	if (p->np)
		qsort(p->probs, p->np, sizeof(*p->probs), prob_cmp);
	for (size_t k = 0; k < p->np; k++)
		settle(p->s, p->ids[p->probs[k].i], &p->probs[k], rep, repair);
	return 0;
}

struct missing_walk {
	struct store *s;
	const struct verify_walk *found; /* sorted */
	struct store_verify_report *rep;
	bool repair;
	char **ids; /* with repair: the missing ones, repaired after the walk */
	struct store_meta *metas;
	size_t n, cap;
	int err;
};

static int remember(struct missing_walk *m, const struct entry *e)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 16;
		char **ids = realloc(m->ids, cap * sizeof(*ids));
		struct store_meta *metas;

		if (!ids)
			return m->err = -ENOMEM;
		m->ids = ids;
		metas = realloc(m->metas, cap * sizeof(*metas));
		if (!metas)
			return m->err = -ENOMEM;
		m->metas = metas;
		m->cap = cap;
	}
	m->ids[m->n] = strdup(e->id);
	if (!m->ids[m->n])
		return m->err = -ENOMEM;
	m->metas[m->n++] = e->meta;
	return 0;
}

static int check_present(void *arg, struct entry *e)
{
	struct missing_walk *m = arg;
	const char *key = e->id;
	struct stat st;

	if (e->meta.deleted || !e->meta.version)
		return 0;
	if (m->found->n && bsearch(&key, m->found->ids, m->found->n,
				   sizeof(*m->found->ids), id_cmp))
		return 0; /* the walk saw its file */
	if (m->s->be->ops->stat(m->s->be, e->id, &st) == 0 &&
	    S_ISREG(st.st_mode))
		return 0;
	verify_problem("record %s: version %llu is in the index but its file "
		       "is missing",
		       e->id, (unsigned long long)e->meta.version);
	if (m->repair)
		return remember(m, e);
	m->rep->bad++;
	return 0;
}

/* Repair the records check_present found missing; frees the list. */
static void restore_missing(struct missing_walk *m)
{
	for (size_t i = 0; i < m->n; i++) {
		tally(m->rep, true,
		      restore_record(m->s, m->ids[i], &m->metas[i]));
		free(m->ids[i]);
	}
	free(m->ids);
	free(m->metas);
}

static int verify_all(struct store *s, struct store_verify_report *rep,
		      bool repair)
{
	struct verify_walk w = {.s = s};
	struct missing_walk m = {
		.s = s, .found = &w, .rep = rep, .repair = repair};
	struct vpool p = {.s = s};
	int rc;

	memset(rep, 0, sizeof(*rep));
	rerr_clear();
	if (repair && s->opts.read_only)
		return rerr_set(-EROFS, "%s: cannot repair: opened read-only",
				s->path);
	rc = store_list(s, "", verify_cb, &w);
	if (rc)
		goto out;
	if (w.n)
		qsort(w.ids, w.n, sizeof(*w.ids), id_cmp);
	p.ids = w.ids;
	p.n = w.n;
	rc = check_records(&p, rep, repair);
	if (rc)
		goto out;
	pthread_mutex_lock(&s->mu);
	idx_each(&s->ix, check_present, &m);
	pthread_mutex_unlock(&s->mu);
	rc = m.err;
	restore_missing(&m);
	if (rc)
		goto out;
	rc = store_verify_history(s, rep, repair);
	if (rc)
		goto out;
	if (repair)
		rc = rep->unrepairable ? -EBADMSG : 0;
	else
		rc = rep->bad || rep->hist_bad ? -EBADMSG : 0;
	if (rc)
		rerr_prefix(
			rc, "%s: %llu problems%s; the last", s->path,
			(unsigned long long)(repair ? rep->unrepairable
						    : rep->bad + rep->hist_bad),
			repair ? " left" : "");
out:
	for (size_t i = 0; i < w.n; i++)
		free(w.ids[i]);
	free(w.ids);
	free(p.probs);
	return rc;
}

int store_verify(struct store *s, struct store_verify_report *rep)
{
	return verify_all(s, rep, false);
}

int store_verify_repair(struct store *s, struct store_verify_report *rep)
{
	return verify_all(s, rep, true);
}
