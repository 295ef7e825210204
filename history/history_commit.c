/*
 * history_commit.c - a batch read by history_batch.c made one git commit:
 * the tree (the previous one with the batch's last change of each path),
 * the commit with one trailer block per version, the side branch for the
 * versions a later change in the batch hides, one pack, one syncfs, and
 * only then refs/heads/main; after that the index and the blob links
 * (see history_batch.c for what a failure leaves).
 */
#include "hist_i.h"
#include <git2/sys/commit.h>
#include "io.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The tree updates of the ops that pass (*nu of them); NULL: no memory. */
static git_tree_update *tree_updates(struct hist *h, const struct op *ops,
				     size_t n, int which, size_t *nu)
{
	git_tree_update *u = calloc(n ? n : 1, sizeof(*u));
	struct tree_dir d = {0};
	size_t k = 0;

	if (!u)
		return NULL;
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
	*nu = k;
	return u;
}

/* One git_tree_create_updated over `base` with `u` (freed here). */
static int tree_apply(struct hist *h, git_tree *base, git_tree_update *u,
		      size_t k, git_oid *out)
{
	int rc;

	if (!u)
		return -ENOMEM;
	rc = git_tree_create_updated(out, h->repo, base, k, u);
	free(u);
	return rc < 0 ? hist_git_error(rc, "updating the tree", NULL) : 0;
}

/* One git_tree_create_updated over `base` with the ops that pass. */
static int tree_pass(struct hist *h, git_tree *base, const struct op *ops,
		     size_t n, int which, git_oid *out)
{
	size_t k = 0;
	git_tree_update *u = tree_updates(h, ops, n, which, &k);

	return tree_apply(h, base, u, k, out);
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
		/* the ops are not needed once they are updates: freed before
		   libgit2 makes its own copy (a batch may have a million) */
		size_t k = 0;
		git_tree_update *u = tree_updates(h, ops, n, 0, &k);

		free(ops);
		ops = NULL;
		rc = tree_apply(h, h->head_tree, u, k, out);
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

/* The summary line of the batch's message. */
static void batch_summary(const struct batch *b, struct buf *m)
{
	const struct bver *v0 = &b->v[0];

	if (b->n == 1) {
		buf_puts(m, "recfs: ");
		hmsg_value(m, v0->id, v0->m.id_len);
		buf_printf(m, " version %" PRIu64 "%s\n", v0->m.e.version,
			   v0->m.e.flags & HENT_DELETED ? " deleted" : "");
	} else {
		buf_printf(m,
			   "recfs: %zu changes, revisions %" PRIu64 "..%" PRIu64
			   "\n",
			   b->n, b->first, b->upto);
	}
}

static void batch_message(const struct batch *b, struct buf *m)
{
	batch_summary(b, m);
	for (size_t i = 0; i < b->n; i++)
		hmsg_block(m, &b->v[i].m);
	buf_printf(m, "\nRecfs-Upto: %" PRIu64 "\n", b->upto);
}

/*
 * Pass over the commit object of a large batch: its head (in `head`),
 * each version's block formatted into `blk` in turn, its tail. With a
 * stream, each is written to it; else *size counts them.
 */
static int stream_pass(const struct batch *b, const struct buf *head,
		       struct buf *blk, git_odb_stream *st, size_t *size)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i <= b->n + 1; i++) {
		buf_clear(blk);
		if (i == 0)
			buf_put(blk, head->ptr, head->len);
		else if (i <= b->n)
			hmsg_block(blk, &b->v[i - 1].m);
		else
			buf_printf(blk, "\nRecfs-Upto: %" PRIu64 "\n", b->upto);
		rc = blk->err;
		if (rc == 0 && st)
			rc = git_odb_stream_write(st, blk->ptr, blk->len);
		else if (rc == 0)
			*size += blk->len;
	}
	return rc;
}

/*
 * The commit of a batch of many versions, streamed as a loose object
 * (h->big_odb, as large blobs are) rather than built in memory: its
 * message takes some 300 bytes a version, and libgit2 would hold it
 * three times over (the message, the object, the mempack's copy).
 */
static int stream_commit(struct hist *h, const struct batch *b,
			 const git_oid *tree_oid, git_oid *out)
{
	char tree[GIT_OID_HEXSZ + 1], parent[GIT_OID_HEXSZ + 1];
	struct buf head = BUF_INIT, blk = BUF_INIT;
	long long t = (long long)time(NULL);
	git_odb_stream *st = NULL;
	size_t size = 0;
	int rc;

	git_oid_tostr(tree, sizeof(tree), tree_oid);
	git_oid_tostr(parent, sizeof(parent), &h->head);
	buf_printf(&head, "tree %s\n", tree);
	if (h->has_head)
		buf_printf(&head, "parent %s\n", parent);
	buf_printf(&head,
		   "author recfs <recfs@localhost> %lld +0000\n"
		   "committer recfs <recfs@localhost> %lld +0000\n\n",
		   t, t);
	batch_summary(b, &head);
	rc = head.err ? head.err : stream_pass(b, &head, &blk, NULL, &size);
	if (rc == 0 && (rc = git_odb_open_wstream(&st, h->big_odb, size,
						  GIT_OBJECT_COMMIT)) < 0)
		rc = hist_git_error(rc, "writing the commit", b->v[0].id);
	if (rc == 0 && (rc = stream_pass(b, &head, &blk, st, NULL)) < 0 &&
	    rc != -ENOMEM)
		rc = hist_git_error(rc, "writing the commit", b->v[0].id);
	if (rc == 0 && (rc = git_odb_stream_finalize_write(out, st)) < 0)
		rc = hist_git_error(rc, "writing the commit", b->v[0].id);
	git_odb_stream_free(st);
	buf_free(&head);
	buf_free(&blk);
	return rc;
}

static int make_commit(struct hist *h, const struct batch *b,
		       const git_oid *tree_oid, git_oid *out)
{
	const git_oid *parents[1] = {&h->head};
	git_signature *sig = NULL;
	struct buf m = BUF_INIT;
	int rc;

	if (b->n >= HIST_STREAM_COMMIT_MIN && h->big_odb)
		return stream_commit(h, b, tree_oid, out);
	batch_message(b, &m);
	if (m.err)
		return m.err;
	rc = git_signature_new(&sig, "recfs", "recfs@localhost", time(NULL), 0);
	/* by ids: no need to parse the (maybe large) tree again */
	if (rc == 0)
		rc = git_commit_create_from_ids(out, h->repo, NULL, sig, sig,
						NULL, m.ptr, tree_oid,
						h->has_head ? 1 : 0, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "creating the commit", b->v[0].id);
	git_signature_free(sig);
	buf_free(&m);
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
	/* each bver starts with its hmsg_ver: no copy of a million */
	int rc = hist_index_commit(h, commit, b->upto, &b->v[0].m, b->n,
				   sizeof(b->v[0]));

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
	struct buf m = BUF_INIT;
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
	buf_printf(&m,
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
						NULL, m.ptr, &tree,
						h->has_side ? 1 : 0, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "committing the superseded versions",
				    NULL);
	*made = rc == 0;
out:
	git_signature_free(sig);
	buf_free(&m);
	side_updates_free(u, n);
	return rc;
}

/* Merge packs if there are too many; what fails is logged and tried
   again after the next batch. */
static void tidy(struct hist *h)
{
	bool reopen = false;
	int rc;

	hist_pack_tidy(h, &reopen);
	if (reopen && (rc = hist_reopen_odbs(h)) != 0)
		rlog_warn("%s: cannot open its objects again after merging "
			  "packs: %s",
			  h->path, strerror(-rc));
}

int hist_batch_commit(struct hist *h, const struct batch *b)
{
	git_oid tree_oid, commit, side;
	git_tree *tree = NULL;
	int64_t t0 = hist_mono_ns(), t1, t2, t3;
	bool has_side = false;
	int rc;

	rc = io_point(h->o.io, "hist.commit");
	if (rc == 0)
		rc = batch_tree(h, b, &tree_oid);
	t1 = hist_mono_ns();
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
	t2 = hist_mono_ns();
	/* every object of the batch (and the new ref, not in place yet)
	   durable at once, before the ref moves */
	if (rc == 0)
		rc = io_syncfs(h->o.io, "hist.sync", h->repo_fd);
	t3 = hist_mono_ns();
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
		   (double)(hist_mono_ns() - t3) / 1e6);
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
	tidy(h);
	return 0;
}
