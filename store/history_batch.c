/*
 * history_batch.c - one batch of the history writer: journal records to
 * one git commit.
 *
 * Records are read with the journal cursor, up to the revision the store
 * said is durable. Each version's blob is written as soon as its record
 * is read (the record's bytes are only valid until the next one), so a
 * batch holds only metadata in memory. Then one tree update over the
 * previous tree (paths are the record IDs as hist_path_from_id escapes
 * them; a symlink's entry has mode 120000; the last change of a path in
 * the batch wins; deletes remove), one commit whose parent is the
 * previous main, one syncfs of the repository's file system (libgit2
 * writes objects without fsync), and only then refs/heads/main moves
 * (written and fsynced with its directory). After that the index learns
 * the versions, the blob links of the batch are removed, and the caller
 * advances "done".
 *
 * A failure anywhere leaves refs/heads/main where it was: the cursor goes
 * back to the start of the batch and the whole batch is tried again
 * later. Objects written by a failed attempt are unreferenced (the next
 * attempt writes the same ones); no version is ever skipped.
 */
#include "hist_i.h"
#include <git2/sys/commit.h>
#include "store_i.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define SPACE_SLACK ((uint64_t)1 << 20) /* a batch's own files, roughly */

#define DEFAULT_BATCH_MAX 4096
#define DEFAULT_DELAY_MS 100
/* history.idx frames must stay under JNL_MAX_RECORD: room for one more
   version with the longest ID */
#define IDX_BUDGET ((size_t)JNL_MAX_RECORD - 2 * (ID_MAX_LEN + 128))
#define READ_CHUNK ((size_t)1 << 20)

/* A version in the batch. */
struct bver {
	struct hmsg_ver m; /* m.id and m.from/m.to point into the fields
			      below */
	char *id, *other;  /* owned */
	char *path;	   /* id in the tree (hist_path_from_id), owned */
	char *stage;	   /* blob link to remove after the commit */
};

struct batch {
	struct bver *v;
	size_t n, cap;
	uint64_t first; /* first revision read (0: none) */
	uint64_t upto;	/* last revision read */
	size_t idx_bytes;
	bool cut;    /* the next record starts the next batch */
	bool capped; /* h->space_short: cut at `space_cap` bytes of
			content (at least one version) */
	uint64_t space_cap;
	uint64_t bytes; /* content of the versions read */
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->v[i].id);
		free(b->v[i].other);
		free(b->v[i].path);
		free(b->v[i].stage);
	}
	free(b->v);
	memset(b, 0, sizeof(*b));
}

static unsigned batch_max(const struct hist *h)
{
	return h->o.batch_max ? h->o.batch_max : DEFAULT_BATCH_MAX;
}

/* On a full disk: the batch holds what the room there is can take. */
static bool over_cap(const struct batch *b)
{
	return b->capped && b->bytes > 0 && b->bytes >= b->space_cap;
}

static bool batch_full(const struct hist *h, const struct batch *b)
{
	/* the objects of the batch are held in memory until its pack is
	   written (history_pack.c) */
	return b->cut || b->n >= batch_max(h) || b->idx_bytes >= IDX_BUDGET ||
	       hist_pack_bytes(h) >= HIST_PACK_MEM_MAX || over_cap(b);
}

static char *strndup_(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* A new version of `id` (and, for renames, the other ID) at the end. */
static struct bver *batch_add(struct batch *b, const struct rec *r,
			      const char *id, size_t id_len, uint64_t rev)
{
	char path[HIST_PATH_MAX + 1];
	struct bver *v;
	int plen = hist_path_from_id(path, id, id_len);

	if (plen < 0)
		return NULL; /* not reached: the journal holds only IDs */
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct bver *p = realloc(b->v, cap * sizeof(*p));

		if (!p)
			return NULL;
		b->v = p;
		b->cap = cap;
	}
	v = &b->v[b->n];
	memset(v, 0, sizeof(*v));
	v->id = strndup_(id, id_len);
	v->path = strndup_(path, (size_t)plen);
	if (!v->id || !v->path) {
		free(v->id);
		free(v->path);
		return NULL;
	}
	v->m.id = v->id;
	v->m.id_len = id_len;
	v->m.e.revision = rev;
	v->m.e.time_ns = r->time_ns;
	v->m.e.uid = r->who.uid;
	v->m.e.pid = r->who.pid;
	memcpy(v->m.e.comm, r->who.comm,
	       strnlen(r->who.comm, sizeof(v->m.e.comm)));
	b->n++;
	b->idx_bytes += 100 + id_len;
	return v;
}

static int set_other(struct bver *v, const char *s, size_t n, bool from)
{
	v->other = strndup_(s, n);
	if (!v->other)
		return -ENOMEM;
	if (from) {
		v->m.from = v->other;
		v->m.from_len = n;
	} else {
		v->m.to = v->other;
		v->m.to_len = n;
	}
	return 0;
}

/* ---- blobs ------------------------------------------------------------- */

/*
 * Write all of `fd` as a blob, streaming; *same tells whether its
 * xxh3-128 is `want` (and its size `size`).
 */
static int blob_from_fd(struct hist *h, int fd, uint64_t size,
			const uint8_t want[16], git_oid *out, bool *same,
			const char *id)
{
	XXH3_state_t *xs = XXH3_createState();
	git_odb_stream *st = NULL;
	git_odb *odb = NULL;
	uint8_t *buf = malloc(READ_CHUNK);
	XXH128_canonical_t got;
	uint64_t off = 0;
	int rc;

	*same = false;
	if (!xs || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_128bits_reset(xs);
	/* a large one is not held in memory: a loose object */
	if (size > HIST_PACK_BLOB_MAX && h->big_odb) {
		git_odb_free(odb);
		odb = h->big_odb;
		rc = git_odb_open_wstream(&st, odb, size, GIT_OBJECT_BLOB);
		odb = NULL;
	} else {
		rc = git_repository_odb(&odb, h->repo);
		if (rc == 0)
			rc = git_odb_open_wstream(&st, odb, size,
						  GIT_OBJECT_BLOB);
	}
	if (rc < 0) {
		rc = hist_git_error(rc, "writing the blob", id);
		goto out;
	}
	while (off < size) {
		size_t want_n = size - off < READ_CHUNK ? (size_t)(size - off)
							: READ_CHUNK;
		ssize_t n = io_pread_all(h->o.io, "hist.blob.read", fd, buf,
					 want_n, (off_t)off);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break; /* shorter than it should be: not the same */
		XXH3_128bits_update(xs, buf, (size_t)n);
		rc = git_odb_stream_write(st, (const char *)buf, (size_t)n);
		if (rc < 0) {
			rc = hist_git_error(rc, "writing the blob", id);
			goto out;
		}
		off += (uint64_t)n;
	}
	if (off != size) {
		rc = -EAGAIN; /* the caller reports it */
		goto out;
	}
	rc = git_odb_stream_finalize_write(out, st);
	if (rc < 0) {
		rc = hist_git_error(rc, "writing the blob", id);
		goto out;
	}
	XXH128_canonicalFromHash(&got, XXH3_128bits_digest(xs));
	*same = memcmp(got.digest, want, 16) == 0;
out:
	git_odb_stream_free(st);
	git_odb_free(odb);
	XXH3_freeState(xs);
	free(buf);
	return rc == -EAGAIN ? 0 : rc;
}

/*
 * Content the history did not get through the journal (a version from
 * before it, or adopted): the record's file, if it still holds exactly
 * that content. Returns 0 with *found, or -errno.
 */
static int blob_from_record(struct hist *h, const char *id,
			    const struct hent *e, git_oid *out, bool *found)
{
	bool same = false;
	int fd = -1, rc;

	*found = false;
	if (!h->o.open_record || !(e->flags & HENT_HASH))
		return 0;
	rc = h->o.open_record(h->o.arg, id, &fd);
	if (rc == -ENOENT || rc == -EISDIR)
		return 0;
	if (rc)
		return rc;
	rc = blob_from_fd(h, fd, e->size, e->hash, out, &same, id);
	close(fd);
	*found = rc == 0 && same;
	return rc;
}

/* The content of a PUT: inline, or the linked stage. */
static int put_blob(struct hist *h, const struct rec *r, struct bver *v)
{
	struct hent *e = &v->m.e;
	bool same = false;
	int fd, rc;

	if (r->has_data) {
		rc = git_blob_create_from_buffer(&e->blob, h->repo, r->data,
						 r->data_len);
		return rc < 0 ? hist_git_error(rc, "writing the blob", v->id)
			      : 0;
	}
	v->stage = strndup_(r->stage ? r->stage : "", r->stage_len);
	if (!v->stage)
		return -ENOMEM;
	fd = r->stage
		     ? io_openat(h->o.io, "hist.blob.open", h->blobs_fd,
				 v->stage, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0)
		     : -ENOENT;
	if (fd >= 0) {
		rc = blob_from_fd(h, fd, e->size, e->hash, &e->blob, &same,
				  v->id);
		close(fd);
		if (rc)
			return rc;
		if (same)
			return 0;
		rlog_err("record %s: the content linked for version %" PRIu64
			 " (%s/%s) does not match its hash",
			 v->id, e->version, HIST_BLOBS_DIR, v->stage);
	} else if (fd != -ENOENT) {
		rlog_err("record %s: cannot open %s/%s for version %" PRIu64
			 ": %s",
			 v->id, HIST_BLOBS_DIR, v->stage, e->version,
			 strerror(-fd));
		return fd;
	}
	rc = blob_from_record(h, v->id, e, &e->blob, &same);
	if (rc == 0 && !same)
		e->flags |= HENT_MISSING;
	return rc;
}

/* The blob `from` had at `version`: in this batch, or in the index. */
static bool find_blob(struct hist *h, const struct batch *b, const char *id,
		      size_t id_len, uint64_t version, git_oid *out)
{
	char key[ID_MAX_LEN + 1];
	hist_version v;

	for (size_t i = b->n; i > 0; i--) {
		const struct bver *bv = &b->v[i - 1];

		if (bv->m.id_len == id_len && !memcmp(bv->id, id, id_len) &&
		    bv->m.e.version == version &&
		    !(bv->m.e.flags & (HENT_DELETED | HENT_MISSING))) {
			*out = bv->m.e.blob;
			return true;
		}
	}
	if (id_len > ID_MAX_LEN)
		return false;
	memcpy(key, id, id_len);
	key[id_len] = '\0';
	return hist_lookup(h, key, version, &v) == 0 && !v.missing &&
	       git_oid_fromstr(out, v.blob) == 0;
}

/* ---- records to versions ----------------------------------------------- */

static void fill_content(struct hent *e, const struct rec *r)
{
	e->size = r->meta.size;
	if (r->meta.hash_valid) {
		memcpy(e->hash, r->meta.hash, 16);
		e->flags |= HENT_HASH;
	}
	if (r->meta.symlink)
		e->flags |= HENT_SYMLINK;
	/* the version's own mode and owner (a journal record of an older
	   binary says 0:0, which they were then) */
	e->flags |= HENT_META;
	e->mode = r->meta.mode;
	e->ouid = r->meta.uid;
	e->ogid = r->meta.gid;
}

static int add_rename(struct hist *h, struct batch *b, const struct rec *r,
		      uint64_t seq)
{
	struct bver *to, *from;
	bool found;
	int rc;

	to = batch_add(b, r, r->id, r->id_len, seq);
	if (!to)
		return -ENOMEM;
	to->m.e.version = r->meta.version;
	fill_content(&to->m.e, r);
	rc = set_other(to, r->from, r->from_len, true);
	if (rc)
		return rc;
	if (!find_blob(h, b, r->from, r->from_len, r->from_version,
		       &to->m.e.blob)) {
		/* from's version predates the history: its file moved to
		   `to` (or is about to) */
		rc = blob_from_record(h, to->id, &to->m.e, &to->m.e.blob,
				      &found);
		if (rc == 0 && !found)
			rc = blob_from_record(h, to->other, &to->m.e,
					      &to->m.e.blob, &found);
		if (rc)
			return rc;
		if (!found)
			to->m.e.flags |= HENT_MISSING;
	}
	from = batch_add(b, r, r->from, r->from_len, seq);
	if (!from)
		return -ENOMEM;
	from->m.e.version = r->from_version;
	from->m.e.flags = HENT_DELETED;
	return set_other(from, r->id, r->id_len, false);
}

/* A new version (or delete) of one record: a PUT, a DEL, or a part of a
   txn. */
static int add_change(struct hist *h, struct batch *b, uint64_t seq,
		      const struct rec *r)
{
	struct bver *v = batch_add(b, r, r->id, r->id_len, seq);

	if (!v)
		return -ENOMEM;
	v->m.e.version = r->meta.version;
	if (r->type == REC_DEL) {
		v->m.e.flags = HENT_DELETED;
		return 0;
	}
	fill_content(&v->m.e, r);
	return put_blob(h, r, v);
}

/* Every part of a txn: one version (and trailer block) each, all in this
   batch, so in one commit. */
static int add_txn(struct hist *h, struct batch *b, uint64_t seq,
		   const struct rec *r)
{
	struct rec part;
	size_t off = 0;
	int rc;

	while ((rc = codec_txn_next(r, &off, &part)) == 1) {
		rc = add_change(h, b, seq, &part);
		if (rc)
			return rc;
	}
	return rc;
}

static int add_record(struct hist *h, struct batch *b, uint64_t seq,
		      const void *payload, size_t len)
{
	struct rec r;
	int rc = codec_decode(payload, len, &r);

	if (rc) {
		rlog_err("journal record %" PRIu64 " cannot be decoded for "
			 "the history",
			 seq);
		return rc;
	}
	switch (r.type) {
	case REC_META:
		return 0; /* no new version */
	case REC_PUT:
	case REC_DEL:
		return add_change(h, b, seq, &r);
	case REC_RENAME:
		return add_rename(h, b, &r, seq);
	case REC_TXN:
	case REC_TXN_PART: /* a frame of a change of many frames */
		return add_txn(h, b, seq, &r);
	case REC_STATE:
		break;
	}
	rlog_err("journal record %" PRIu64 " has type %d, not a change", seq,
		 (int)r.type);
	return -EBADMSG;
}

/* ---- the tree ------------------------------------------------------------ */

struct op {
	const char *path; /* in the tree (escaped) */
	size_t order;
	uint64_t version;
	const git_oid *blob; /* NULL: remove */
	bool link;	     /* a symlink: mode 120000 */
};

static int cmp_op(const void *a, const void *b)
{
	const struct op *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_path(const void *key, const void *elem)
{
	return strcmp(key, ((const struct op *)elem)->path);
}

/* Is a directory of some path among the (sorted, unique) ops also a path
   among them? Then removes and upserts need two passes. */
static bool dir_file_conflict(const struct op *ops, size_t n)
{
	char buf[HIST_PATH_MAX + 1];

	for (size_t i = 0; i < n; i++) {
		const char *p = ops[i].path;

		for (const char *s = strchr(p, '/'); s;
		     s = strchr(s + 1, '/')) {
			memcpy(buf, p, (size_t)(s - p));
			buf[s - p] = '\0';
			if (bsearch(buf, ops, n, sizeof(*ops), cmp_path))
				return true;
		}
	}
	return false;
}

/*
 * The directory of the previous tree that the last in_tree looked in:
 * ops come sorted by path, so the removes of one namespace ask the same
 * directory in a row, and with libgit2's object cache off (history.c)
 * each lookup by path would inflate that directory's tree again.
 */
struct tree_dir {
	git_tree *t; /* NULL: no such directory (or the root: head_tree) */
	size_t len;  /* of its path, a prefix of the last path asked */
	char path[HIST_PATH_MAX + 1];
	bool have;
};

/* Is `path` a blob in the previous tree? */
static bool in_tree(struct hist *h, struct tree_dir *d, const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;
	const git_tree_entry *te;
	git_tree *dir;

	if (!h->head_tree)
		return false;
	if (!d->have || d->len != len || memcmp(d->path, path, len) != 0) {
		git_tree_entry *de = NULL;

		git_tree_free(d->t);
		d->t = NULL;
		d->have = true;
		d->len = len;
		memcpy(d->path, path, len);
		d->path[len] = '\0';
		if (len &&
		    git_tree_entry_bypath(&de, h->head_tree, d->path) == 0) {
			if (git_tree_entry_type(de) == GIT_OBJECT_TREE)
				(void)git_tree_lookup(&d->t, h->repo,
						      git_tree_entry_id(de));
			git_tree_entry_free(de);
		}
	}
	dir = len ? d->t : h->head_tree;
	te = dir ? git_tree_entry_byname(dir, slash ? slash + 1 : path) : NULL;
	return te && git_tree_entry_type(te) == GIT_OBJECT_BLOB;
}

/* One git_tree_create_updated over `base` with the ops that pass. */
static int tree_pass(struct hist *h, git_tree *base, const struct op *ops,
		     size_t n, int which, git_oid *out)
{
	git_tree_update *u = calloc(n ? n : 1, sizeof(*u));
	struct tree_dir d = {0};
	size_t k = 0;
	int rc;

	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if ((which == 1 && ops[i].blob) || (which == 2 && !ops[i].blob))
			continue;
		if (!ops[i].blob && !in_tree(h, &d, ops[i].path))
			continue; /* never in the history: nothing to remove */
		u[k].action = ops[i].blob ? GIT_TREE_UPDATE_UPSERT
					  : GIT_TREE_UPDATE_REMOVE;
		u[k].path = ops[i].path;
		u[k].filemode =
			ops[i].link ? GIT_FILEMODE_LINK : GIT_FILEMODE_BLOB;
		if (ops[i].blob)
			u[k].id = *ops[i].blob;
		k++;
	}
	git_tree_free(d.t);
	rc = git_tree_create_updated(out, h->repo, base, k, u);
	free(u);
	return rc < 0 ? hist_git_error(rc, "updating the tree", NULL) : 0;
}

/* The changes of the batch, sorted by path, then in batch order; the
   caller frees. */
static struct op *batch_ops(const struct batch *b)
{
	struct op *ops = calloc(b->n ? b->n : 1, sizeof(*ops));

	if (!ops)
		return NULL;
	for (size_t i = 0; i < b->n; i++) {
		const struct hent *e = &b->v[i].m.e;

		ops[i].path = b->v[i].path;
		ops[i].order = i;
		ops[i].version = e->version;
		ops[i].link = e->flags & HENT_SYMLINK;
		ops[i].blob = e->flags & (HENT_DELETED | HENT_MISSING)
				      ? NULL
				      : &e->blob;
	}
	qsort(ops, b->n, sizeof(*ops), cmp_op);
	return ops;
}

/* The tree of the batch: the previous one with its last changes. */
static int batch_tree(struct hist *h, const struct batch *b, git_oid *out)
{
	struct op *ops = batch_ops(b);
	git_tree *mid = NULL;
	size_t n = 0;
	int rc;

	if (!ops)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++)
		if (i + 1 == b->n || strcmp(ops[i].path, ops[i + 1].path))
			ops[n++] = ops[i]; /* the last change of the path */
	if (!dir_file_conflict(ops, n)) {
		rc = tree_pass(h, h->head_tree, ops, n, 0, out);
	} else {
		/* "a" deleted and "a/b" made (or the other way round) in one
		   batch: libgit2 refuses that in one update */
		rc = tree_pass(h, h->head_tree, ops, n, 1, out);
		if (rc == 0 && (rc = git_tree_lookup(&mid, h->repo, out)) < 0)
			rc = hist_git_error(rc, "reading the tree", NULL);
		if (rc == 0)
			rc = tree_pass(h, mid, ops, n, 2, out);
	}
	git_tree_free(mid);
	free(ops);
	return rc;
}

/* ---- the commit ---------------------------------------------------------- */

static void batch_message(const struct batch *b, struct sbuf *m)
{
	const struct bver *v0 = &b->v[0];

	if (b->n == 1) {
		sb_str(m, "recfs: ");
		hmsg_value(m, v0->id, v0->m.id_len);
		sb_fmt(m, " version %" PRIu64 "%s\n", v0->m.e.version,
		       v0->m.e.flags & HENT_DELETED ? " deleted" : "");
	} else {
		sb_fmt(m,
		       "recfs: %zu changes, revisions %" PRIu64 "..%" PRIu64
		       "\n",
		       b->n, b->first, b->upto);
	}
	for (size_t i = 0; i < b->n; i++)
		hmsg_block(m, &b->v[i].m);
	sb_fmt(m, "\nRecfs-Upto: %" PRIu64 "\n", b->upto);
}

static int make_commit(struct hist *h, const struct batch *b,
		       const git_oid *tree_oid, git_oid *out)
{
	const git_oid *parents[1] = {&h->head};
	git_signature *sig = NULL;
	struct sbuf m = {0};
	int rc;

	batch_message(b, &m);
	if (m.err)
		return m.err;
	rc = git_signature_new(&sig, "recfs", "recfs@localhost", time(NULL), 0);
	/* by ids: no need to parse the (maybe large) tree again */
	if (rc == 0)
		rc = git_commit_create_from_ids(out, h->repo, NULL, sig, sig,
						NULL, m.p, tree_oid,
						h->has_head ? 1 : 0, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "creating the commit", b->v[0].id);
	git_signature_free(sig);
	sb_free(&m);
	return rc;
}

/*
 * After the commit is durable: index, history.idx, blob links. Nothing
 * here may fail the batch (it is in git: trying it again would record
 * its versions twice); what fails is logged and mended at the next open.
 */
static void batch_done(struct hist *h, const struct batch *b,
		       const git_oid *commit)
{
	struct hmsg_ver *mv = malloc(b->n * sizeof(*mv));
	int rc = -ENOMEM;

	if (mv) {
		for (size_t i = 0; i < b->n; i++)
			mv[i] = b->v[i].m;
		rc = hist_index_commit(h, commit, b->upto, mv, b->n);
		free(mv);
	}
	if (rc)
		rlog_err("%s: the index misses revisions %" PRIu64 "..%" PRIu64
			 " (%s) until the next open",
			 h->path, b->first, b->upto, strerror(-rc));
	for (size_t i = 0; i < b->n; i++) {
		int urc;

		if (!b->v[i].stage || !b->v[i].stage[0])
			continue;
		urc = io_unlinkat(h->o.io, "hist.blob.unlink", h->blobs_fd,
				  b->v[i].stage, 0);
		if (urc && urc != -ENOENT)
			rlog_warn("%s/%s: cannot remove: %s (removed at the "
				  "next open)",
				  HIST_BLOBS_DIR, b->v[i].stage,
				  strerror(-urc));
	}
}

/* Free the paths of side_updates(). */
static void side_updates_free(git_tree_update *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)u[i].path);
	free(u);
}

/*
 * The versions whose blob a later change of the same path in this batch
 * hides from the batch's tree, as upserts "ID@VERSION" -> blob (a name no
 * record can have: SPEC 2 reserves the suffix). *n is 0 if there are none.
 */
static int side_updates(const struct batch *b, git_tree_update **out, size_t *n)
{
	struct op *ops = batch_ops(b);
	git_tree_update *u = NULL;
	size_t k = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!ops)
		return -ENOMEM;
	for (size_t i = 0; i + 1 < b->n; i++) {
		char *path;

		if (!ops[i].blob || strcmp(ops[i].path, ops[i + 1].path))
			continue;
		if (!u && !(u = calloc(b->n, sizeof(*u)))) {
			rc = -ENOMEM;
			goto out;
		}
		if (asprintf(&path, "%s@%" PRIu64, ops[i].path,
			     ops[i].version) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		u[k].action = GIT_TREE_UPDATE_UPSERT;
		u[k].path = path;
		u[k].filemode =
			ops[i].link ? GIT_FILEMODE_LINK : GIT_FILEMODE_BLOB;
		u[k].id = *ops[i].blob;
		k++;
	}
out:
	free(ops);
	if (rc) {
		side_updates_free(u, k);
		return rc;
	}
	*out = u;
	*n = k;
	return 0;
}

/*
 * The commit of HIST_REF_SIDE for this batch (hist_i.h), if some of its
 * versions need one: *made says whether it did.
 */
static int side_commit(struct hist *h, const struct batch *b, git_oid *out,
		       bool *made)
{
	const git_oid *parents[1] = {&h->side};
	git_signature *sig = NULL;
	git_tree_update *u = NULL;
	struct sbuf m = {0};
	git_oid tree;
	size_t n = 0;
	int rc;

	*made = false;
	rc = side_updates(b, &u, &n);
	if (rc || n == 0)
		return rc;
	rc = git_tree_create_updated(&tree, h->repo, NULL, n, u);
	if (rc < 0) {
		rc = hist_git_error(rc, "writing the superseded versions",
				    NULL);
		goto out;
	}
	sb_fmt(&m,
	       "recfs: %zu versions superseded within revisions %" PRIu64
	       "..%" PRIu64 "\n\nTheir blobs, kept reachable; the versions "
	       "are recorded on refs/heads/main.\n",
	       n, b->first, b->upto);
	rc = m.err;
	if (rc == 0)
		rc = git_signature_new(&sig, "recfs", "recfs@localhost",
				       time(NULL), 0);
	if (rc == 0)
		rc = git_commit_create_from_ids(out, h->repo, NULL, sig, sig,
						NULL, m.p, &tree,
						h->has_side ? 1 : 0, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "committing the superseded versions",
				    NULL);
	*made = rc == 0;
out:
	git_signature_free(sig);
	sb_free(&m);
	side_updates_free(u, n);
	return rc;
}

static int batch_commit(struct hist *h, const struct batch *b)
{
	git_oid tree_oid, commit, side;
	git_tree *tree = NULL;
	int64_t t0 = mono_ns(), t1, t2, t3;
	bool has_side = false;
	int rc;

	rc = io_point(h->o.io, "hist.commit");
	if (rc == 0)
		rc = batch_tree(h, b, &tree_oid);
	t1 = mono_ns();
	if (rc == 0)
		rc = make_commit(h, b, &tree_oid, &commit);
	if (rc == 0)
		rc = side_commit(h, b, &side, &has_side);
	if (rc == 0)
		rc = hist_pack_write(h);
	if (rc == 0 && has_side)
		rc = hist_side_prepare(h, &side);
	if (rc == 0)
		rc = hist_ref_prepare(h, &commit);
	t2 = mono_ns();
	/* every object of the batch (and the new ref, not in place yet)
	   durable at once, before the ref moves */
	if (rc == 0)
		rc = io_syncfs(h->o.io, "hist.sync", h->repo_fd);
	t3 = mono_ns();
	/* before the ref moves: once it has, the batch is done, and a
	   failure here would have it written again after main's head */
	if (rc == 0 && (rc = git_tree_lookup(&tree, h->repo, &tree_oid)) < 0)
		rc = hist_git_error(rc, "reading the tree", NULL);
	if (rc == 0 && has_side)
		rc = hist_side_commit(h);
	if (rc == 0)
		rc = hist_ref_commit(h, &commit);
	rlog_debug("%s: commit of %zu versions: tree %.1f ms, commit %.1f "
		   "ms, sync %.1f ms, ref %.1f ms",
		   h->path, b->n, (double)(t1 - t0) / 1e6,
		   (double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6,
		   (double)(mono_ns() - t3) / 1e6);
	if (rc) {
		git_tree_free(tree);
		hist_ref_abort(h);
		return rc;
	}
	git_tree_free(h->head_tree);
	h->head_tree = tree;
	h->head = commit;
	h->has_head = true;
	if (has_side) {
		h->side = side;
		h->has_side = true;
	}
	batch_done(h, b, &commit);
	hist_pack_tidy(h); /* logged; tried again after the next batch */
	return 0;
}

/* ---- reading a batch ------------------------------------------------------
 */

/* Read what is durable now, until the batch is full. */
static int read_available(struct hist *h, struct batch *b, uint64_t target)
{
	const void *payload;
	uint64_t seq;
	size_t len;
	int rc;

	while (!batch_full(h, b)) {
		rc = jnl_cursor_next(h->cur, target, &seq, &payload, &len);
		if (rc <= 0)
			return rc;
		/* A txn's versions all go into one commit, whose history.idx
		   frame must stay under JNL_MAX_RECORD: a txn that might not
		   fit after what the batch holds starts the next batch (its
		   versions take fewer bytes there than in the journal). */
		if (b->n && len && ((const uint8_t *)payload)[0] == REC_TXN &&
		    b->idx_bytes + len > IDX_BUDGET) {
			rc = jnl_cursor_seek(h->cur, seq);
			if (rc == 0)
				b->cut = true;
			return rc;
		}
		size_t n0 = b->n;

		rc = io_point(h->o.io, "hist.read");
		if (rc == 0)
			rc = add_record(h, b, seq, payload, len);
		if (rc)
			return rc;
		for (size_t i = n0; i < b->n; i++)
			b->bytes += b->v[i].m.e.size;
		if (!b->first)
			b->first = seq;
		b->upto = seq;
	}
	return 0;
}

/*
 * Collect a batch: what is durable now, then, until the deadline (at most
 * one commit per delay_ms), what comes meanwhile; a drain, a stop or a
 * full batch ends the wait. Returns 0 or -errno.
 */
static int collect(struct hist *h, struct batch *b)
{
	unsigned delay = h->o.delay_ms ? h->o.delay_ms : DEFAULT_DELAY_MS;
	int64_t deadline = h->last_commit_ns + (int64_t)delay * 1000000;

	if (!h->last_commit_ns)
		deadline = 0; /* the first commit does not wait */
	uint64_t target;
	bool hurry;
	int rc;

	for (;;) {
		pthread_mutex_lock(&h->mu);
		target = h->target;
		hurry = h->kicks || h->stop;
		pthread_mutex_unlock(&h->mu);
		/* returns at the end of what is durable, or when full */
		rc = read_available(h, b, target);
		if (rc || batch_full(h, b) || hurry || mono_ns() >= deadline)
			return rc;
		pthread_mutex_lock(&h->mu);
		if (h->target == target && !h->kicks && !h->stop) {
			struct timespec ts = {
				.tv_sec = (time_t)(deadline / 1000000000),
				.tv_nsec = (long)(deadline % 1000000000),
			};

			/* h->wake runs on CLOCK_MONOTONIC; a commit wakes it
			   only once a batch's worth has come (hist_notify) */
			h->wake_at = target + batch_max(h);
			pthread_cond_timedwait(&h->wake, &h->mu, &ts);
			h->wake_at = 0;
		}
		pthread_mutex_unlock(&h->mu);
	}
}

/*
 * libgit2 does not always say that a write failed for want of space: the
 * message of a failed loose-object stream can be a stale "object not
 * found", and errno is gone by the time it returns. So when a batch fails
 * with an error that could hide it (-EIO, -ENOENT), the file system of the
 * repository is asked: if it has less room than the batch's content, the
 * cause is ENOSPC (kept apart from EIO, STYLE). Returns the error to
 * report.
 */
/* Bytes free for the writer, and whether inodes are left. */
static int space_room(const struct hist *h, uint64_t *room, bool *inodes)
{
	struct statvfs st;

	if (fstatvfs(h->repo_fd, &st) < 0)
		return -errno;
	/* root may use the blocks reserved for it, and does */
	*room = (uint64_t)(geteuid() == 0 ? st.f_bfree : st.f_bavail) *
		st.f_frsize;
	*inodes = !st.f_files || st.f_ffree > 0;
	return 0;
}

static int space_error(const struct hist *h, const struct batch *b, int rc)
{
	uint64_t need = SPACE_SLACK + b->idx_bytes + b->bytes, room;
	bool inodes;

	if (rc != -EIO && rc != -ENOENT)
		return rc;
	if (space_room(h, &room, &inodes))
		return rc;
	if (room < need || !inodes)
		return -ENOSPC;
	return rc;
}

/*
 * After a batch failed with ENOSPC, the next ones hold only as much
 * content as there is room for (less SPACE_SLACK for the pack's index,
 * trees and history.idx), so that the history goes on as space is freed,
 * a little at a time, instead of waiting for room for all it owes. A
 * batch that needed no cut ends that.
 */
static void space_cap(struct hist *h, struct batch *b)
{
	uint64_t room;
	bool inodes;

	if (!h->space_short || space_room(h, &room, &inodes))
		return;
	b->capped = true;
	b->space_cap = room > SPACE_SLACK ? room - SPACE_SLACK : 0;
}

/* Log a failed batch: once per full-disk episode if it is ENOSPC. */
static void log_failure(struct hist *h, uint64_t start, uint64_t upto, int rc)
{
	bool again = rc == -ENOSPC && h->space_short;

	rlog(again ? RLOG_DEBUG : RLOG_ERR,
	     "%s: the history of revisions %" PRIu64 "..%" PRIu64
	     " is not written yet: %s (%s; tried again later, backing off%s)",
	     h->path, start, upto, strerror(-rc),
	     strerrorname_np(-rc) ? strerrorname_np(-rc) : "?",
	     rc == -ENOSPC ? ", in batches that fit as space is freed; "
			     "said once until it is written"
			   : "");
}

int hist_batch_run(struct hist *h, uint64_t *upto)
{
	struct batch b = {0};
	uint64_t start, done;
	int64_t t0;
	int rc;

	pthread_mutex_lock(&h->mu);
	done = h->done;
	pthread_mutex_unlock(&h->mu);
	if (!h->cur) {
		rc = jnl_cursor_open(h->o.io, h->o.jnl_dirfd, done, &h->cur);
		if (rc) {
			rlog_err("%s: cannot read the journal: %s", h->path,
				 strerror(-rc));
			return rc;
		}
	}
	start = jnl_cursor_pos(h->cur);
	if (start > done + 1) {
		rlog_info("%s: revisions %" PRIu64 "..%" PRIu64 " are not in "
			  "the journal any more (metadata changes, or from "
			  "before the history); going on at %" PRIu64,
			  h->path, done + 1, start - 1, start);
		b.upto = start - 1;
	}
	/* what a failed attempt left in memory: this one writes it again */
	hist_pack_reset(h);
	space_cap(h, &b);
	t0 = mono_ns();
	rc = collect(h, &b);
	if (b.n)
		rlog_debug("%s: batch of %zu versions read in %.1f ms", h->path,
			   b.n, (double)(mono_ns() - t0) / 1e6);
	if (rc == 0 && b.n)
		rc = batch_commit(h, &b);
	if (rc == 0 && b.n)
		h->last_commit_ns = mono_ns();
	if (rc == 0) {
		*upto = b.upto;
		if (h->space_short && !over_cap(&b)) {
			rlog_info("%s: the history is written again, up to "
				  "revision %" PRIu64 " (there is room)",
				  h->path, b.upto);
			h->space_short = false;
		}
	} else {
		int src = jnl_cursor_seek(h->cur, start);

		if (src)
			rlog_err("%s: cannot go back in the journal: %s",
				 h->path, strerror(-src));
		rc = space_error(h, &b, rc);
		log_failure(h, start, b.upto ? b.upto : start, rc);
		h->batch_frees = false;
		for (size_t i = 0; i < b.n; i++)
			if (b.v[i].m.e.flags & HENT_DELETED)
				h->batch_frees = true;
		if (rc == -ENOSPC)
			h->space_short = true;
	}
	batch_free(&b);
	return rc;
}
