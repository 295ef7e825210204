/*
 * store_hist.c - the store's side of the history (history.h): opening it
 * with the store, the blob links of by-reference commits, notifying the
 * writer, backpressure, draining at close, the store_history_* API and
 * the history part of verify.
 *
 * Backpressure: the journal is the history's queue, and its segments are
 * kept until the history has them. So that a history that cannot keep up
 * does not make the journal grow without bound, a change waits (before it
 * takes any lock, at most opts.history_wait_ms) while the history is more
 * than opts.history_lag_max revisions behind. If it still lags after
 * that, the change goes on (logged): a stuck history slows the store down
 * but does not stop it.
 */
#include "store_i.h"
#include "admin.h"
#include "changes.h"
#include "store_history.h"
#include "change_decode.h"
#include "history.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define DEFAULT_WAIT_MS 10000
#define DEFAULT_DRAIN_MS 10000

static unsigned wait_ms(const struct store *s)
{
	return s->opts.history_wait_ms ? s->opts.history_wait_ms
				       : DEFAULT_WAIT_MS;
}

static unsigned drain_ms(const struct store *s)
{
	return s->opts.history_drain_ms ? s->opts.history_drain_ms
					: DEFAULT_DRAIN_MS;
}

static int open_record(void *arg, const char *id, int *fd)
{
	struct store *s = arg;

	return s->be->ops->open(s->be, id, fd);
}

/* The writer met a full disk: the reserve is for a batch that frees
   space (reserve.c). */
static bool space_low(void *arg, bool frees)
{
	struct store *s = arg;

	return reserve_release_freeing(s->reserve, frees,
				       "writing the history");
}

/* ---- the history's change source: the journal, decoded ---------------- */

struct hsrc {
	struct jnl_cursor *cur;
	uint64_t seq; /* the frame `next` went to */
	const void *payload;
	size_t len;
};

static int hsrc_open(void *arg, uint64_t after, void **out)
{
	struct store *s = arg;
	struct hsrc *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = jnl_cursor_open(s->io, s->jnl_dirfd, after, &r->cur);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int hsrc_next(void *cur, uint64_t target, struct hist_frame *f)
{
	struct hsrc *r = cur;
	int rc = jnl_cursor_next(r->cur, target, &r->seq, &r->payload, &r->len);

	if (rc <= 0) {
		r->payload = NULL;
		return rc;
	}
	f->revision = r->seq;
	f->len = r->len;
	f->ends = change_frame_ends(r->payload, r->len);
	return 1;
}

static int hsrc_changes(void *cur,
			int (*fn)(void *arg, const struct store_change *ch),
			void *arg)
{
	struct hsrc *r = cur;

	if (!r->payload)
		return -EINVAL;
	return change_decode(r->payload, r->len, r->seq, fn, arg, NULL);
}

static uint64_t hsrc_pos(void *cur)
{
	return jnl_cursor_pos(((struct hsrc *)cur)->cur);
}

static int hsrc_seek(void *cur, uint64_t rev)
{
	struct hsrc *r = cur;

	r->payload = NULL;
	return jnl_cursor_seek(r->cur, rev);
}

static void hsrc_close(void *cur)
{
	struct hsrc *r = cur;

	jnl_cursor_close(r->cur);
	free(r);
}

int store_hist_open(struct store *s)
{
	struct hist_opts o = {
		.io = s->io,
		.store_path = s->path,
		.store_dirfd = s->dirfd,
		.jnl_dirfd = s->jnl_dirfd,
		.src = {hsrc_open, hsrc_next, hsrc_changes, hsrc_pos, hsrc_seek,
			hsrc_close, s},
		.read_only = s->opts.read_only,
		.batch_max = s->opts.history_batch_max,
		.delay_ms = s->opts.history_delay_ms,
		.lag_max = s->opts.history_lag_max,
		.open_record = open_record,
		.space_low = space_low,
		.arg = s,
	};
	int rc = hist_open(&s->hist, &o);

	if (rc == -ENOENT && s->opts.read_only)
		return 0; /* no history to read */
	if (rc == -ENOENT) {
		/*
		 * A store made before recfs had a history. Its history
		 * starts now, with the journal the store still has (what a
		 * crash left in it); earlier versions are not in it.
		 */
		/* logged: a note on an open that succeeds */
		rlog_info("%s: no %s yet: creating it; versions committed "
			  "before now are not in it",
			  s->path, HIST_DIR);
		rc = hist_init_repo(s->path, s->dirfd);
		if (rc == 0)
			rc = hist_open(&s->hist, &o);
	}
	if (rc == 0)
		rc = store_remote_open(s);
	if (rc == 0 && !s->opts.read_only) {
		s->blobs_fd =
			openat(s->jnl_dirfd, HIST_BLOBS_DIR,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (s->blobs_fd < 0)
			rc = rerr_set(-errno, "%s/%s/%s: %s", s->path,
				      STORE_JOURNAL_DIR, HIST_BLOBS_DIR,
				      strerror(errno));
	}
	return rc;
}

int store_hist_start(struct store *s)
{
	int rc;

	if (!s->hist || s->opts.read_only)
		return 0;
	rc = hist_start(s->hist);
	/* what recovery left in the journal (after a crash) is owed to the
	   history too, without waiting for the next change */
	if (rc == 0 && s->jnl)
		hist_notify(s->hist, jnl_last_seq(s->jnl));
	return rc;
}

void store_hist_changed(struct store *s, uint64_t rev)
{
	if (s->hist)
		hist_notify(s->hist, rev);
}

void store_hist_throttle(struct store *s)
{
	uint64_t rev;

	if (!s->hist || !store_journaled(s))
		return;
	rev = jnl_last_seq(s->jnl);
	/* logged: a note, the change goes on */
	if (hist_throttle(s->hist, rev, wait_ms(s)) == -ETIMEDOUT)
		rlog_warn("%s: the history is %" PRIu64 " revisions behind "
			  "and not catching up; going on (the journal grows)",
			  s->path, rev - hist_done(s->hist));
}

int store_hist_link(struct store *s, const struct store_stage *st)
{
	int rc;

	if (s->blobs_fd < 0)
		return 0;
	rc = s->be->ops->stage_link(s->be, st->name, s->blobs_fd, st->name);
	if (rc == 0)
		rc = io_fsync(s->io, "commit.blob.dirsync", s->blobs_fd);
	if (rc)
		rerr_set(rc,
			 "%s/%s/%s: cannot link the content for the "
			 "history: %s",
			 STORE_JOURNAL_DIR, HIST_BLOBS_DIR, st->name,
			 strerror(-rc));
	return rc;
}

int store_hist_link_many(struct store *s, const struct store_stage *const *st,
			 size_t n, size_t *linked)
{
	int rc = 0;

	*linked = 0;
	if (s->blobs_fd < 0)
		return 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = s->be->ops->stage_link(s->be, st[i]->name, s->blobs_fd,
					    st[i]->name);
		if (rc == 0)
			(*linked)++;
		else
			return rerr_set(rc,
					"%s/%s/%s: cannot link the content for "
					"the history: %s",
					STORE_JOURNAL_DIR, HIST_BLOBS_DIR,
					st[i]->name, strerror(-rc));
	}
	rc = io_fsync(s->io, "commit.blob.dirsync", s->blobs_fd);
	if (rc)
		rerr_set(rc,
			 "%s/%s: cannot make the links for the history "
			 "durable: %s",
			 STORE_JOURNAL_DIR, HIST_BLOBS_DIR, strerror(-rc));
	return rc;
}

void store_hist_unlink(struct store *s, const struct store_stage *st)
{
	if (s->blobs_fd >= 0)
		unlinkat(s->blobs_fd, st->name, 0);
}

uint64_t store_hist_keep(struct store *s, uint64_t rev)
{
	uint64_t done;

	if (!s->hist)
		return rev;
	done = hist_done(s->hist);
	return done < rev ? done : rev;
}

void store_hist_stop(struct store *s)
{
	uint64_t rev, done;
	int rc;

	if (!s->hist || s->opts.read_only)
		return;
	rev = store_revision(s);
	rc = hist_drain(s->hist, rev, drain_ms(s));
	hist_stop(s->hist);
	done = hist_done(s->hist);
	/* logged: store_close goes on; nothing is lost */
	if (done < rev)
		rlog_warn("%s: history: revisions %" PRIu64 "..%" PRIu64
			  " are not in git yet (%s); they stay in the journal "
			  "and the next open writes them",
			  s->path, done + 1, rev,
			  strerror(-(rc ? rc : -ETIMEDOUT)));
}

void store_hist_free(struct store *s)
{
	hist_close(s->hist);
	s->hist = NULL;
	if (s->blobs_fd >= 0)
		close(s->blobs_fd);
	s->blobs_fd = -1;
}

/* ---- the API ------------------------------------------------------------ */

/* Might version `version` of `id` still be on its way to git? */
static bool maybe_pending(struct store *s, const char *id, uint64_t version)
{
	struct entry *e;
	bool pending;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	pending = e && version <= e->meta.version &&
		  e->meta.revision > hist_done(s->hist);
	pthread_mutex_unlock(&s->mu);
	return pending;
}

/*
 * Without a history, a backend that keeps every version under its own
 * name (etcd: P/v/ID//N) reads ID@N directly. `v` gets what the version
 * itself tells: number, revision, size and hash.
 */
static int version_get(struct store *s, const char *id, uint64_t version,
		       void **buf, size_t *len, struct store_version *v)
{
	struct store_version hv = {.version = version, .hash_valid = true};
	uint8_t *p = NULL;
	ssize_t n;
	int fd = -1, rc = id_check(id);

	if (rc == 0)
		rc = s->be->ops->open_version(s->be, id, version, &fd,
					      &hv.revision);
	if (rc == 0)
		rc = store_hash_fd(s, fd, hv.hash, &hv.size);
	if (rc == 0 && !(p = malloc(hv.size ? hv.size : 1)))
		rc = -ENOMEM;
	if (rc == 0) {
		n = io_pread_all(s->io, "read.pread", fd, p, hv.size, 0);
		rc = n < 0 ? (int)n : (uint64_t)n == hv.size ? 0 : -EIO;
	}
	if (fd >= 0)
		close(fd);
	if (rc) {
		free(p);
		return rc;
	}
	*buf = p;
	*len = hv.size;
	if (v)
		*v = hv;
	return 0;
}

int store_history_get(struct store *s, const char *id, uint64_t version,
		      void **buf, size_t *len, struct store_version *v)
{
	struct store_version hv;
	int rc, drc;

	/* etcd keeps every version (P/v): read there first, the history
	   only for what is not there */
	if (s->be && s->be->own_commit) {
		rc = version_get(s, id, version, buf, len, v);
		if (rc != -ENOENT || !s->hist)
			return rc;
	}
	if (!s->hist)
		return -ENOTSUP;
	rc = id_check(id);
	if (rc)
		return rc;
	rc = hist_lookup(s->hist, id, version, &hv);
	if (rc == -ENOENT && version && maybe_pending(s, id, version)) {
		drc = hist_drain(s->hist, store_revision(s), wait_ms(s));
		rc = hist_lookup(s->hist, id, version, &hv);
		if (rc == -ENOENT && drc)
			rc = -EAGAIN;
	}
	if (rc)
		return rc;
	rc = hist_read(s->hist, &hv, buf, len);
	if (rc == 0 && v)
		*v = hv;
	return rc;
}

int store_history_each(struct store *s, const char *id, store_version_cb fn,
		       void *arg)
{
	int rc;

	if (!s->hist)
		return -ENOTSUP;
	if (id && (rc = id_check(id)) != 0)
		return rc;
	(void)store_hist_start(s);
	return hist_each(s->hist, id, fn, arg);
}

int store_history_ids(struct store *s, store_id_cb fn, void *arg)
{
	if (!s->hist)
		return -ENOTSUP;
	(void)store_hist_start(s);
	return hist_ids(s->hist, fn, arg);
}

bool store_has_history(const struct store *s)
{
	return s->hist != NULL;
}

int store_history_commit(struct store *s, const char *id, uint64_t version,
			 char out[41])
{
	struct store_version hv;
	int rc;

	if (!s->hist)
		return -ENOTSUP;
	rc = id_check(id);
	if (rc)
		return rc;
	(void)store_hist_start(s);
	rc = hist_lookup(s->hist, id, version, &hv);
	if (rc == -ENOENT && version && maybe_pending(s, id, version))
		return -EAGAIN;
	if (rc == 0)
		memcpy(out, hv.commit, 41);
	return rc;
}

int store_history_drain(struct store *s, unsigned timeout_ms)
{
	int rc;

	if (!s->hist)
		return -ENOTSUP;
	rc = hist_drain(s->hist, store_revision(s), timeout_ms);
	store_space_recover(s);
	return rc;
}

/*
 * On a full disk the journal holds what the history has not written yet
 * (inline content, until its segment is dropped) and journal/blobs holds
 * the content of deleted records: written to git, they can go. So in a
 * space episode (a space error met, or the reserve released), each
 * change and drain that finds the history further on checkpoints (which
 * drops the segments it has written: the 64 MiB of journal that make a
 * checkpoint otherwise may never come on a small disk), then tries to
 * make the reserve again.
 */
void store_space_recover(struct store *s)
{
	uint64_t rev, done;
	bool ckpt;
	int rc;

	if (!reserve_short(s->reserve) || !store_journaled(s))
		return;
	rev = jnl_last_seq(s->jnl);
	done = s->hist ? hist_done(s->hist) : rev;
	pthread_mutex_lock(&s->mu);
	ckpt = done > s->space_ckpt_done;
	pthread_mutex_unlock(&s->mu);
	if (ckpt) {
		/* it frees space: it may have the reserve */
		rc = store_checkpoint(s);
		if (rc == -ENOSPC &&
		    reserve_release_freeing(s->reserve, false,
					    "checkpointing the journal"))
			rc = store_checkpoint(s);
		pthread_mutex_lock(&s->mu);
		if (rc == 0 && done > s->space_ckpt_done)
			s->space_ckpt_done = done;
		pthread_mutex_unlock(&s->mu);
	}
	/* the episode ends once all of the journal could be dropped */
	pthread_mutex_lock(&s->mu);
	ckpt = s->space_ckpt_done >= rev;
	pthread_mutex_unlock(&s->mu);
	(void)reserve_restore(s->reserve, ckpt);
}

/* ---- verify ------------------------------------------------------------- */

struct live {
	char *id;
	struct store_meta meta;
};

struct lives {
	struct live *v;
	size_t n, cap;
	int err;
};

static int collect_live(void *arg, struct entry *e)
{
	struct lives *l = arg;

	if (e->meta.deleted || !e->meta.version)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct live *p = realloc(l->v, cap * sizeof(*p));

		if (!p)
			return l->err = -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n].id = strdup(e->id);
	if (!l->v[l->n].id)
		return l->err = -ENOMEM;
	l->v[l->n++].meta = e->meta;
	return 0;
}

/* The blob of version `v` of a live record is missing from git: write
   it back from the record's file if that holds this version. Returns 0
   if it did. */
static int restore_blob(struct store *s, const struct live *l,
			const struct store_version *v)
{
	uint8_t hash[16];
	uint64_t size;
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (hist_blob_exists(s->hist, v->blob) != 0)
		return -EEXIST; /* not missing (or cannot tell) */
	rc = store_get(s, l->id, &buf, &len, NULL);
	if (rc == 0) {
		XXH128_canonical_t got;

		XXH128_canonicalFromHash(&got, XXH3_128bits(buf, len));
		memcpy(hash, got.digest, 16);
		size = len;
		if (!v->hash_valid || memcmp(hash, v->hash, 16) != 0 ||
		    size != v->size)
			rc = -EBADMSG;
	}
	if (rc == 0)
		rc = hist_blob_restore(s->hist, v->blob, buf, len);
	free(buf);
	if (rc)
		verify_problem("record %s: blob %s of version %" PRIu64
			       " cannot be written back: %s",
			       l->id, v->blob, v->version,
			       rc == -EBADMSG ? "the record's file does not "
						"hold that version"
					      : rerr_what(rc));
	else /* logged: a note on a repair that succeeded */
		rlog_info("record %s: repaired: blob %s of version %" PRIu64
			  " written back to the history from the record",
			  l->id, v->blob, v->version);
	return rc;
}

/* The tree of refs/heads/main, read once: (ID, blob) sorted by ID. */
struct tree_ent {
	char *id;
	char blob[41];
	bool link; /* mode 120000 */
};

struct tree_ents {
	struct tree_ent *v;
	size_t n, cap;
	void *live_arg[2]; /* for tree_entry_live */
	int err;
};

static int tree_ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tree_ent *)a)->id,
		      ((const struct tree_ent *)b)->id);
}

static const struct tree_ent *tree_find(const struct tree_ents *t,
					const char *id)
{
	struct tree_ent key = {.id = (char *)id};

	return t->n ? bsearch(&key, t->v, t->n, sizeof(*t->v), tree_ent_cmp)
		    : NULL;
}

static void tree_ents_free(struct tree_ents *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].id);
	free(t->v);
}

/* A live record: is its current version in the history, and in the tree
   of refs/heads/main with that content? */
static void verify_live(struct store *s, const struct live *l,
			const struct tree_ents *t,
			struct store_verify_report *rep, bool repair)
{
	const struct tree_ent *in_tree;
	struct store_version v;

	if (hist_lookup(s->hist, l->id, l->meta.version, &v) != 0 ||
	    v.missing) {
		/* adopted stores have many: name a few */
		/* logged: a note (not a problem), verify goes on */
		if (rep->hist_absent++ < 10)
			rlog_info("record %s: version %" PRIu64 " is not in "
				  "the history (it predates it)",
				  l->id, l->meta.version);
		return;
	}
	in_tree = tree_find(t, l->id);
	if (!in_tree || strcmp(in_tree->blob, v.blob) != 0) {
		verify_problem("record %s: the history's last tree does not "
			       "hold version %" PRIu64 " (blob %s)",
			       l->id, l->meta.version, v.blob);
		rep->hist_bad++;
	} else if (in_tree->link != l->meta.symlink ||
		   v.symlink != l->meta.symlink) {
		verify_problem("record %s: version %" PRIu64 " is %s, but %s "
			       "in the history",
			       l->id, l->meta.version,
			       l->meta.symlink ? "a symlink" : "a file",
			       l->meta.symlink ? "a file" : "a symlink");
		rep->hist_bad++;
	} else if (l->meta.hash_valid && v.hash_valid &&
		   memcmp(l->meta.hash, v.hash, 16) != 0) {
		verify_problem("record %s: version %" PRIu64 " has another "
			       "hash in the history",
			       l->id, l->meta.version);
		rep->hist_bad++;
	}
	if (repair && restore_blob(s, l, &v) == 0)
		rep->repaired++;
}

bool store_is_live(struct store *s, const char *id)
{
	struct entry *e;
	bool live;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	live = e && !e->meta.deleted && e->meta.version;
	pthread_mutex_unlock(&s->mu);
	return live;
}

static int tree_entry_live(void *arg, const char *id, const char *blob,
			   bool link)
{
	void **a = arg;
	struct store *s = a[0];
	struct store_verify_report *rep = a[1];

	if (!store_is_live(s, id)) {
		verify_problem("record %s: in the history's last tree (blob "
			       "%s) but not a live record",
			       id, blob);
		rep->hist_bad++;
	}
	return 0;
}

/* hist_tree_each: check the entry (tree_entry_live) and keep it. */
static int collect_tree(void *arg, const char *id, const char *blob, bool link)
{
	struct tree_ents *t = arg;
	struct tree_ent *v;
	int rc = tree_entry_live(t->live_arg, id, blob, link);

	if (rc)
		return rc;
	v = util_grow(t->v, &t->cap, t->n, sizeof(*v), 1024);
	if (!v || !(v[t->n].id = strdup(id))) {
		if (v)
			t->v = v;
		t->err = -ENOMEM;
		return -ENOMEM;
	}
	t->v = v;
	snprintf(v[t->n].blob, sizeof(v[t->n].blob), "%s", blob);
	v[t->n].link = link;
	t->n++;
	return 0;
}

int store_verify_history(struct store *s, struct store_verify_report *rep,
			 bool repair)
{
	struct hist_verify_report hr;
	uint64_t bad0 = rep->hist_bad, repaired0 = rep->repaired;
	struct lives l = {0};
	struct tree_ents t = {.live_arg = {s, rep}};
	int rc = 0;

	if (!s->hist)
		return 0;
	if (!s->opts.read_only) {
		rc = hist_drain(s->hist, store_revision(s), drain_ms(s));
		if (rc)
			return rerr_set(rc,
					"%s: the history does not catch up "
					"(%s): cannot verify it",
					s->path, rerr_what(rc));
	}
	rc = hist_verify(s->hist, &hr);
	if (rc)
		return rerr_prefix(rc, "%s: history", s->path);
	rep->hist_versions = hr.versions;
	rep->hist_bad += hr.no_blob;
	if (hist_done(s->hist) < store_revision(s)) {
		/* writing them is what a read-only verify must not do; the
		   journal keeps them, so nothing is lost (logged: a note, the
		   verify succeeds) */
		rlog_warn("%s: the history is %" PRIu64 " revisions behind "
			  "the journal (the next mount, or verify --repair, "
			  "writes them): its last tree was not compared with "
			  "the records",
			  s->path, store_revision(s) - hist_done(s->hist));
		return 0;
	}
	pthread_mutex_lock(&s->mu);
	idx_each(&s->ix, collect_live, &l);
	pthread_mutex_unlock(&s->mu);
	rc = l.err;
	/* the tree once, not once per record: a tree of more than 4 KiB is
	   not in libgit2's object cache and would be inflated every time */
	if (rc == 0)
		rc = hist_tree_each(s->hist, collect_tree, &t);
	if (rc == 0 && t.n)
		qsort(t.v, t.n, sizeof(*t.v), tree_ent_cmp);
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		verify_live(s, &l.v[i], &t, rep, repair);
	if (rc == 0 && repair) {
		/* what is left: the blobs still missing (checked again if
		   some were written back), and the other problems, which are
		   not repaired (that would take rewriting history) */
		uint64_t other = rep->hist_bad - bad0 - hr.no_blob;
		uint64_t left = hr.no_blob;

		if (rep->repaired != repaired0 &&
		    (rc = hist_verify(s->hist, &hr)) == 0)
			left = hr.no_blob;
		rep->unrepairable += other + left;
	}
	if (rep->hist_absent > 10) /* logged: a note */
		rlog_info("%s: %" PRIu64 " live records are not in the history "
			  "(adopted, or from before it)",
			  s->path, rep->hist_absent);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].id);
	free(l.v);
	tree_ents_free(&t);
	return rc;
}
