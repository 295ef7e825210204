/*
 * history_read.c - reading the history: versions from the index, content
 * from the repository, and the checks of verify. Any thread may call
 * these while the writer runs: the index is read under ix_lock (copied
 * out in small chunks, so a long listing does not hold up the writer),
 * the entries of history.idx without it (they never change once they are
 * part of the index), and the readers' own git_repository is used under
 * rmu (libgit2 objects are not shared between threads).
 */
#include "hist_i.h"
#include <git2/sys/odb_backend.h>
#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define EACH_CHUNK 256

/* ---- the chains of records with many versions (see struct hchain) ------ */

static void span_free(struct hspan *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int span_add(struct hspan *s, struct hlink l)
{
	struct hlink *v = util_grow(s->v, &s->cap, s->n, sizeof(*v), 256);

	if (!v)
		return -ENOMEM;
	s->v = v;
	s->v[s->n++] = l;
	return 0;
}

/*
 * Read r's chain from the entry at `off` down into s (newest first):
 * down to the entry at or below `stop` if `stop` is not 0, else until
 * past `version` (an entry older than it is the last one read) or the
 * end. *next: the entry below the last one read (0: the end).
 */
static int span_walk(struct hist *h, uint64_t off, uint64_t stop,
		     uint64_t version, struct hspan *s, uint64_t *next)
{
	uint64_t prev, v = UINT64_MAX;
	uint8_t flags;
	int rc = 0;

	while (rc == 0 && off && (stop ? off > stop : v >= version) &&
	       s->n < HIST_CHAIN_MAX) {
		rc = hidx_ent_step(h, off, &prev, &v, &flags);
		if (rc)
			break;
		rc = span_add(
			s,
			(struct hlink){off, v << 1 | !!(flags & HENT_DELETED)});
		off = prev;
	}
	*next = off;
	return rc;
}

static struct hchain *chain_of(struct hist *h, const struct hrec *r)
{
	for (unsigned i = 0; i < HIST_CHAINS; i++)
		if (h->chains[i].r == r)
			return &h->chains[i];
	return NULL;
}

static void chain_clear(struct hchain *c)
{
	span_free(&c->hi);
	span_free(&c->lo);
	c->r = NULL;
	c->rest = 0;
}

void hist_chains_free(struct hist *h)
{
	for (unsigned i = 0; i < HIST_CHAINS; i++)
		chain_clear(&h->chains[i]);
}

static size_t chain_n(const struct hchain *c)
{
	return c->hi.n + c->lo.n;
}

/* Held entry i, counted from the newest (0) down. */
static const struct hlink *chain_at(const struct hchain *c, size_t i)
{
	return i < c->hi.n ? &c->hi.v[c->hi.n - 1 - i] : &c->lo.v[i - c->hi.n];
}

static uint64_t chain_off(const struct hchain *c, size_t i)
{
	return chain_at(c, i)->off;
}

static uint64_t chain_ver(const struct hchain *c, size_t i)
{
	return chain_at(c, i)->ver;
}

/*
 * Version `version` of r in slot c, down from the entry at `off`
 * (chain_mu held). Returns 0 (*at: its entry), 1 (older entries are
 * needed: *at is where they start) or -ENOENT; 2 if `off` is newer than
 * what c holds.
 */
static int chain_pick(const struct hchain *c, uint64_t off, uint64_t version,
		      uint64_t *at)
{
	size_t n = chain_n(c), lo = 0, hi = n, i;

	if (off > chain_off(c, 0))
		return 2;
	while (lo < hi) { /* offsets decrease down the chain */
		size_t mid = lo + (hi - lo) / 2;

		if (chain_off(c, mid) > off)
			lo = mid + 1;
		else
			hi = mid;
	}
	hi = n;
	while (lo < hi) { /* ... and so do versions */
		size_t mid = lo + (hi - lo) / 2;

		if (chain_ver(c, mid) >> 1 > version)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* newest first, as down the chain: a delete repeats the version
	   it deleted */
	for (i = lo; i < n && chain_ver(c, i) >> 1 == version; i++) {
		if (!(chain_ver(c, i) & 1)) {
			*at = chain_off(c, i);
			return 0;
		}
	}
	if (i == n && c->rest) {
		*at = c->rest;
		return 1;
	}
	return -ENOENT;
}

/* What a walk read for a slot: a new one, or entries it lacks. */
enum chain_read { CHAIN_NEW, CHAIN_NEWER, CHAIN_OLDER };

/*
 * Add what a walk read (s, newest first; `next` the entry below it) to
 * r's slot (chain_mu held), if the slot is still as it was when the walk
 * began at `from` (its newest entry for CHAIN_NEWER, its `rest` for
 * CHAIN_OLDER); else drop it. Any walk is also a slot of its own: one
 * with no slot for r, or one that would outgrow HIST_CHAIN_MAX, starts
 * again with it. Returns 0 or -ENOMEM.
 */
static int chain_put(struct hist *h, const struct hrec *r, enum chain_read kind,
		     uint64_t from, struct hspan *s, uint64_t next)
{
	struct hchain *c = chain_of(h, r);
	int rc = 0;

	if (c && chain_n(c) + s->n > HIST_CHAIN_MAX)
		chain_clear(c);
	c = chain_of(h, r);
	if (!c) {
		c = &h->chains[h->chain_next++ % HIST_CHAINS];
		chain_clear(c);
		c->r = r;
		c->lo = *s;
		*s = (struct hspan){0};
		c->rest = next;
		return 0;
	}
	if (kind == CHAIN_NEWER && chain_off(c, 0) == from) {
		for (size_t i = s->n; rc == 0 && i > 0; i--)
			rc = span_add(&c->hi, s->v[i - 1]);
	} else if (kind == CHAIN_OLDER && from && c->rest == from) {
		for (size_t i = 0; rc == 0 && i < s->n; i++)
			rc = span_add(&c->lo, s->v[i]);
		if (rc == 0)
			c->rest = next;
	}
	if (rc)
		chain_clear(c); /* half added: not to be trusted */
	return rc;
}

/*
 * file_find past HIST_CHAIN_WALK entries: on through r's slot, reading
 * into it what it lacks. Returns 0 (*at: the entry), 1 (walk on from
 * *at without it), -ENOENT or -errno.
 */
static int chain_find(struct hist *h, const struct hrec *r, uint64_t off,
		      uint64_t version, uint64_t *at)
{
	for (int round = 0; round < 4; round++) {
		enum chain_read kind = CHAIN_NEW;
		struct hspan s = {0};
		uint64_t from = 0, start = off, stop = 0, next;
		struct hchain *c;
		int rc = 0;

		pthread_mutex_lock(&h->chain_mu);
		c = chain_of(h, r);
		if (c)
			rc = chain_pick(c, off, version, at);
		if (rc == 2) { /* newer than what it holds */
			kind = CHAIN_NEWER;
			from = stop = chain_off(c, 0);
		} else if (rc == 1) { /* older */
			kind = CHAIN_OLDER;
			from = start = *at;
		}
		pthread_mutex_unlock(&h->chain_mu);
		if (c && (rc == 0 || rc == -ENOENT))
			return rc;
		rc = span_walk(h, start, stop, version, &s, &next);
		if (rc == 0) {
			pthread_mutex_lock(&h->chain_mu);
			rc = chain_put(h, r, kind, from, &s, next);
			pthread_mutex_unlock(&h->chain_mu);
		}
		span_free(&s);
		if (rc == -ENOMEM)
			break; /* no memory for it: walk on without */
		if (rc)
			return rc;
	}
	*at = off; /* or the slot keeps changing under us */
	return 1;
}

/*
 * Version `version` of record r (with content) in history.idx: down the
 * chain from the entry at `off`, through r's slot once the walk is long.
 * Returns 0, -ENOENT, or -errno.
 */
static int file_find(struct hist *h, const struct hrec *r, uint64_t off,
		     uint64_t version, hist_version *out)
{
	unsigned steps = 0;
	uint64_t prev, v;
	uint8_t flags;
	int rc;

	/* versions only grow down the chain from its end, a delete
	   repeating the version it deleted */
	while (off) {
		if (++steps == HIST_CHAIN_WALK) {
			rc = chain_find(h, r, off, version, &off);
			if (rc == 0)
				return hidx_ent_read(h, r, off, out);
			if (rc < 0)
				return rc;
		}
		rc = hidx_ent_step(h, off, &prev, &v, &flags);
		if (rc)
			return rc;
		if (v < version)
			break;
		if (v == version && !(flags & HENT_DELETED))
			return hidx_ent_read(h, r, off, out);
		off = prev;
	}
	return -ENOENT;
}

static int lookup(struct hist *h, const char *id, uint64_t version,
		  hist_version *out)
{
	const struct hrec *r;
	const struct hent *e;
	uint64_t last = 0, vlast = 0, at;
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&h->ix_lock);
	r = hidx_rec(&h->ix, id, strlen(id));
	e = r ? hidx_find(&h->ix, id, strlen(id), version) : NULL;
	if (e) {
		hidx_export(&h->ix, e, out);
		rc = 0;
	} else if (r) {
		last = r->last;
		vlast = r->vlast <= h->vdx.n ? r->vlast : 0;
	}
	pthread_rwlock_unlock(&h->ix_lock);
	/* entries in the file never change: read them without the lock
	   (records are never freed while the history is open); by
	   history.vdx's jumps, or else down history.idx's chain */
	if (last) {
		rc = hvdx_find(h, r, last, vlast, version, &at);
		if (rc == 0)
			rc = hidx_ent_read(h, r, at, out);
		else if (rc == 1)
			rc = file_find(h, r, last, version, out);
	}
	/* a pruned version's trailer is kept, its content is gone */
	if (rc == 0 && out->pruned)
		rc = -ENOENT;
	return rc;
}

/* The index and history.idx are replaced by a prune (history_prune.c)
   while epoch_lock is held exclusive: lookups and walks hold it shared. */
int hist_lookup(struct hist *h, const char *id, uint64_t version,
		hist_version *out)
{
	int rc;

	pthread_rwlock_rdlock(&h->epoch_lock);
	rc = lookup(h, id, version, out);
	pthread_rwlock_unlock(&h->epoch_lock);
	return rc;
}

int hist_read(struct hist *h, const hist_version *v, void **buf, size_t *len)
{
	git_blob *blob = NULL;
	XXH128_canonical_t got;
	git_oid oid;
	void *p = NULL;
	size_t n = 0;
	int rc;

	if (v->deleted || v->missing || !v->blob[0])
		return -ENOENT;
	if (git_oid_fromstr(&oid, v->blob) < 0)
		return -EINVAL;
	pthread_mutex_lock(&h->rmu);
	rc = git_blob_lookup(&blob, h->rrepo, &oid);
	if (rc < 0) {
		rc = hist_git_error(rc, "reading a version", NULL);
	} else {
		git_object_size_t size = git_blob_rawsize(blob);

		n = (size_t)size;
		p = (uint64_t)size == (uint64_t)n ? malloc(n ? n : 1) : NULL;
		if (p)
			memcpy(p, git_blob_rawcontent(blob), n);
		else
			rc = -ENOMEM;
	}
	git_blob_free(blob);
	pthread_mutex_unlock(&h->rmu);
	if (rc)
		return rc;
	XXH128_canonicalFromHash(&got, XXH3_128bits(p, n));
	if ((v->hash_valid && memcmp(got.digest, v->hash, 16) != 0) ||
	    n != v->size) {
		free(p);
		return rerr_set(-EIO,
				"%s: blob %s (version %" PRIu64
				", revision %" PRIu64
				") does not match its hash or size",
				h->path, v->blob, v->version, v->revision);
	}
	*buf = p;
	*len = n;
	return 0;
}

/* A chunk of versions copied out of the index. */
struct each_item {
	const char *id; /* the record's: lives as long as the history */
	hist_version v;
};

/* The versions of `r` held in memory (of all records if r is NULL), in
   revision order, copied out in chunks. */
static int mem_each(struct hist *h, const struct hrec *r,
		    int (*fn)(void *arg, const char *id, const hist_version *v),
		    void *arg)
{
	struct each_item *items = malloc(EACH_CHUNK * sizeof(*items));
	size_t pos = 0;
	int rc = 0;

	if (!items)
		return -ENOMEM;
	while (rc == 0) {
		size_t k = 0, total;

		pthread_rwlock_rdlock(&h->ix_lock);
		total = r ? r->n : h->ix.n;
		for (; pos < total && k < EACH_CHUNK; pos++, k++) {
			const struct hent *e =
				hidx_at(&h->ix, r ? r->pos[pos] : pos);

			items[k].id = e->rec->id;
			hidx_export(&h->ix, e, &items[k].v);
		}
		pthread_rwlock_unlock(&h->ix_lock);
		for (size_t i = 0; rc == 0 && i < k; i++)
			rc = fn(arg, items[i].id, &items[i].v);
		if (k < EACH_CHUNK)
			break;
	}
	free(items);
	return rc;
}

/* The versions of r in history.idx, oldest first: the chain from `last`
   walked once for the offsets (memory: 8 bytes per version listed). */
static int file_rec_each(struct hist *h, const struct hrec *r, uint64_t last,
			 int (*fn)(void *arg, const char *id,
				   const hist_version *v),
			 void *arg)
{
	uint64_t *offs = NULL, prev, v;
	size_t n = 0, cap = 0;
	uint8_t flags;
	int rc = 0;

	for (uint64_t off = last; rc == 0 && off; off = prev) {
		uint64_t *p = util_grow(offs, &cap, n, sizeof(*p), 64);

		if (!p) {
			rc = -ENOMEM;
			break;
		}
		offs = p;
		offs[n++] = off;
		rc = hidx_ent_step(h, off, &prev, &v, &flags);
	}
	while (rc == 0 && n > 0) {
		hist_version hv;

		rc = hidx_ent_read(h, r, offs[--n], &hv);
		if (rc == 0)
			rc = fn(arg, r->id, &hv);
	}
	free(offs);
	return rc;
}

static int each(struct hist *h, const char *id,
		int (*fn)(void *arg, const char *id, const hist_version *v),
		void *arg)
{
	const struct hrec *r = NULL;
	uint64_t last = 0, end;
	int rc;

	/* the file's versions are older than those held in memory */
	pthread_rwlock_rdlock(&h->ix_lock);
	if (id) {
		r = hidx_rec(&h->ix, id, strlen(id));
		last = r ? r->last : 0;
	}
	end = h->ix.disk_end;
	pthread_rwlock_unlock(&h->ix_lock);
	if (id && !r)
		return 0;
	rc = id ? file_rec_each(h, r, last, fn, arg)
		: hidx_file_each(h, end, fn, arg);
	if (rc == 0)
		rc = mem_each(h, r, fn, arg);
	return rc;
}

int hist_each(struct hist *h, const char *id,
	      int (*fn)(void *arg, const char *id, const hist_version *v),
	      void *arg)
{
	int rc;

	pthread_rwlock_rdlock(&h->epoch_lock);
	rc = each(h, id, fn, arg);
	pthread_rwlock_unlock(&h->epoch_lock);
	return rc;
}

/* The records with a version in the index (published), into *out. */
static int ids_collect(struct hist *h, const struct hrec ***out, size_t *n)
{
	const struct hrec **v = NULL;
	size_t cap = 0;
	int rc = 0;

	*n = 0;
	pthread_rwlock_rdlock(&h->ix_lock);
	for (size_t i = 0; rc == 0 && i < h->ix.nslots; i++) {
		const struct hrec *r = h->ix.slots[i].r;
		const struct hrec **p;

		if (!r || (!r->last && !r->n))
			continue; /* in a frame not written yet */
		p = util_grow(v, &cap, *n, sizeof(*p), 256);
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		v = p;
		v[(*n)++] = r;
	}
	pthread_rwlock_unlock(&h->ix_lock);
	*out = v;
	return rc;
}

int hist_ids(struct hist *h, int (*fn)(void *arg, const char *id), void *arg)
{
	const struct hrec **v = NULL;
	size_t n = 0;
	int rc;

	/* records live as long as their epoch */
	pthread_rwlock_rdlock(&h->epoch_lock);
	rc = ids_collect(h, &v, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = fn(arg, v[i]->id);
	pthread_rwlock_unlock(&h->epoch_lock);
	free(v);
	return rc;
}

struct verify {
	struct hist *h;
	git_odb *odb;
	struct hist_verify_report *rep;
};

static int verify_one(void *arg, const char *id, const hist_version *v)
{
	struct verify *vf = arg;
	git_oid oid;
	int rc;

	if (v->deleted)
		return 0;
	if (v->pruned)
		return 0; /* gone on purpose: not a missing blob */
	vf->rep->versions++;
	if (v->missing) {
		vf->rep->missing++;
		return 0;
	}
	if (git_oid_fromstr(&oid, v->blob) == 0) {
		pthread_mutex_lock(&vf->h->rmu);
		rc = git_odb_exists(vf->odb, &oid);
		pthread_mutex_unlock(&vf->h->rmu);
		if (rc)
			return 0;
	}
	/* a problem verify found: logged (verify lists each) and reported
	   (store_verify returns the last) */
	rlog_err("record %s: version %" PRIu64 " names blob %s, which is not "
		 "in %s",
		 id, v->version, v->blob, vf->h->path);
	rerr_set(-EBADMSG,
		 "record %s: version %" PRIu64 " names blob %s, which is not "
		 "in %s",
		 id, v->version, v->blob, vf->h->path);
	vf->rep->no_blob++;
	return 0;
}

int hist_verify(struct hist *h, struct hist_verify_report *rep)
{
	struct verify vf = {.h = h, .rep = rep};
	int rc;

	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&h->rmu);
	rc = git_repository_odb(&vf.odb, h->rrepo);
	pthread_mutex_unlock(&h->rmu);
	if (rc < 0)
		return hist_git_error(rc, "opening the object database", NULL);
	rc = hist_each(h, NULL, verify_one, &vf);
	git_odb_free(vf.odb);
	return rc;
}

/* Versions of the index held in memory (not served from history.idx). */
uint64_t hist_index_resident(struct hist *h)
{
	uint64_t n;

	pthread_rwlock_rdlock(&h->ix_lock);
	n = h->ix.n;
	pthread_rwlock_unlock(&h->ix_lock);
	return n;
}

struct tree_walk {
	int (*fn)(void *arg, const char *id, const char *blob, bool link);
	void *arg;
	char path[HIST_PATH_MAX + 256 + 2];
	char id[ID_MAX_LEN + 1];
	int rc;
};

static int walk_cb(const char *root, const git_tree_entry *te, void *arg)
{
	struct tree_walk *w = arg;
	char hexid[GIT_OID_HEXSZ + 1];
	const char *id;
	int n;

	if (git_tree_entry_type(te) != GIT_OBJECT_BLOB)
		return 0;
	n = snprintf(w->path, sizeof(w->path), "%s%s", root,
		     git_tree_entry_name(te));
	if (n < 0 || (size_t)n >= sizeof(w->path))
		return 0;
	/* a path that is no ID's (hist_id_from_path) is passed as it is:
	   the caller finds no record of that name */
	id = hist_id_from_path(w->id, w->path, (size_t)n) >= 0 ? w->id
							       : w->path;
	git_oid_tostr(hexid, sizeof(hexid), git_tree_entry_id(te));
	w->rc = w->fn(w->arg, id, hexid,
		      git_tree_entry_filemode(te) == GIT_FILEMODE_LINK);
	return w->rc ? -1 : 0;
}

int hist_tree_each(struct hist *h,
		   int (*fn)(void *arg, const char *id, const char *blob,
			     bool link),
		   void *arg)
{
	struct tree_walk *w = calloc(1, sizeof(*w));
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_oid head;
	int rc;

	if (!w)
		return -ENOMEM;
	w->fn = fn;
	w->arg = arg;
	pthread_mutex_lock(&h->rmu);
	rc = git_reference_name_to_id(&head, h->rrepo, "refs/heads/main");
	if (rc == GIT_ENOTFOUND) {
		rc = 0;
		goto out;
	}
	if (rc == 0)
		rc = git_commit_lookup(&c, h->rrepo, &head);
	if (rc == 0)
		rc = git_commit_tree(&tree, c);
	if (rc == 0)
		rc = git_tree_walk(tree, GIT_TREEWALK_PRE, walk_cb, w);
	if (rc < 0 && w->rc)
		rc = w->rc;
	else if (rc < 0)
		rc = hist_git_error(rc, "reading the tree", NULL);
out:
	git_tree_free(tree);
	git_commit_free(c);
	pthread_mutex_unlock(&h->rmu);
	free(w);
	return rc;
}

int hist_blob_exists(struct hist *h, const char *blob)
{
	git_odb *odb = NULL;
	git_oid oid;
	int rc;

	if (git_oid_fromstr(&oid, blob) < 0)
		return -EINVAL;
	pthread_mutex_lock(&h->rmu);
	rc = git_repository_odb(&odb, h->rrepo);
	if (rc == 0)
		rc = git_odb_exists(odb, &oid) ? 1 : 0;
	pthread_mutex_unlock(&h->rmu);
	git_odb_free(odb);
	return rc < 0 ? hist_git_error(rc, "opening the object database", NULL)
		      : rc;
}

int hist_blob_restore(struct hist *h, const char *blob, const void *buf,
		      size_t len)
{
	git_odb_backend *loose = NULL;
	char *objects = NULL;
	git_odb *odb = NULL;
	git_oid want, got;
	size_t n;
	int rc;

	if (git_oid_fromstr(&want, blob) < 0)
		return -EINVAL;
	/* the object id is the hash of the content: check before writing */
	rc = git_odb_hash(&got, buf, len, GIT_OBJECT_BLOB);
	if (rc < 0)
		return hist_git_error(rc, "hashing a blob", NULL);
	if (!git_oid_equal(&want, &got))
		return -EBADMSG;
	n = strlen(h->path) + sizeof("/objects");
	objects = malloc(n);
	if (!objects)
		return -ENOMEM;
	snprintf(objects, n, "%s/objects", h->path);
	/* a loose object with the store's modes, like the writer's */
	rc = git_odb_new(&odb);
	if (rc == 0)
		rc = git_odb_backend_loose(&loose, objects, -1, 0, 0700, 0600);
	if (rc == 0 && (rc = git_odb_add_backend(odb, loose, 1)) == 0)
		loose = NULL;
	if (rc == 0)
		rc = git_odb_write(&got, odb, buf, len, GIT_OBJECT_BLOB);
	if (loose)
		loose->free(loose);
	git_odb_free(odb);
	free(objects);
	if (rc < 0)
		return hist_git_error(rc, "writing a blob", NULL);
	/* objects are written without fsync (history.c): sync them now */
	rc = io_syncfs(h->o.io, "hist.blob.sync", h->repo_fd);
	if (rc == 0) /* logged: a note on a repair that succeeded */
		rlog_info("%s: blob %s written back", h->path, blob);
	return rc;
}
