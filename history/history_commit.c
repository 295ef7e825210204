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

/* ---- the commit ---------------------------------------------------------- */

size_t hist_stream_commit_min = 16384;

/*
 * Call fn for each version of the batch in order (v: a scratch version
 * the caller gives, some 13 KB). Returns 0, fn's non-zero return or
 * -errno.
 */
static int batch_each(const struct batch *b, struct bver *v,
		      int (*fn)(void *arg, const struct bver *v), void *arg)
{
	struct bsp_reader r;
	const uint8_t *rec;
	size_t len;
	int rc;

	bsp_reader_init(&r, &b->vers, 0, bsp_end(&b->vers));
	while ((rc = bsp_next(&r, &rec, &len)) > 0) {
		rc = bver_get(rec, len, v);
		if (rc == 0)
			rc = fn(arg, v);
		if (rc)
			break;
	}
	bsp_reader_free(&r);
	return rc;
}

static int first_version(void *arg, const struct bver *v)
{
	(void)v;
	(void)arg;
	return 1; /* stop at the first */
}

/* The summary line of the batch's message. */
static int batch_summary(const struct batch *b, struct bver *v, struct buf *m)
{
	int rc;

	if (b->n != 1) {
		buf_printf(m,
			   "recfs: %zu changes, revisions %" PRIu64 "..%" PRIu64
			   "\n",
			   b->n, b->first, b->upto);
		return 0;
	}
	rc = batch_each(b, v, first_version, NULL);
	if (rc < 0)
		return rc;
	buf_puts(m, "recfs: ");
	hmsg_value(m, v->id, v->m.id_len);
	buf_printf(m, " version %" PRIu64 "%s\n", v->m.e.version,
		   v->m.e.flags & HENT_DELETED ? " deleted" : "");
	return 0;
}

/* A pass over the blocks of the commit's message: each formatted into
   `blk` in turn, then written to `st`, or (no stream) counted in *size.
   A small message is built in `blk` whole (append). */
struct msg_pass {
	struct buf *blk;
	git_odb_stream *st;
	size_t *size;
	bool append;
};

static int msg_block(void *arg, const struct bver *v)
{
	struct msg_pass *mp = arg;
	int rc;

	if (!mp->append)
		buf_clear(mp->blk);
	hmsg_block(mp->blk, &v->m);
	rc = mp->blk->err;
	if (rc || mp->append)
		return rc;
	if (mp->st)
		return git_odb_stream_write(mp->st, mp->blk->ptr, mp->blk->len);
	*mp->size += mp->blk->len;
	return 0;
}

static int batch_message(const struct batch *b, struct bver *v, struct buf *m)
{
	struct msg_pass mp = {.blk = m, .append = true};
	int rc = batch_summary(b, v, m);

	if (rc == 0)
		rc = batch_each(b, v, msg_block, &mp);
	buf_printf(m, "\nRecfs-Upto: %" PRIu64 "\n", b->upto);
	return rc ? rc : m->err;
}

/*
 * Pass over the commit object of a large batch: its head (in `head`),
 * each version's block formatted into `blk` in turn, its tail. With a
 * stream, each is written to it; else *size counts them.
 */
static int stream_pass(const struct batch *b, struct bver *v,
		       const struct buf *head, struct buf *blk,
		       git_odb_stream *st, size_t *size)
{
	struct msg_pass mp = {.blk = blk, .st = st, .size = size};
	int rc;

	rc = st ? git_odb_stream_write(st, head->ptr, head->len) : 0;
	if (!st)
		*size += head->len;
	if (rc == 0)
		rc = batch_each(b, v, msg_block, &mp);
	if (rc)
		return rc;
	buf_clear(blk);
	buf_printf(blk, "\nRecfs-Upto: %" PRIu64 "\n", b->upto);
	if (blk->err)
		return blk->err;
	if (st)
		return git_odb_stream_write(st, blk->ptr, blk->len);
	*size += blk->len;
	return 0;
}

/*
 * The commit of a batch of many versions, streamed as a loose object
 * (h->big_odb, as large blobs are) rather than built in memory: its
 * message takes some 300 bytes a version, and libgit2 would hold it
 * three times over (the message, the object, the mempack's copy).
 */
static int stream_commit(struct hist *h, const struct batch *b, struct bver *v,
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
	rc = batch_summary(b, v, &head);
	rc = rc ? rc : head.err;
	if (rc == 0)
		rc = stream_pass(b, v, &head, &blk, NULL, &size);
	if (rc == 0 && (rc = git_odb_open_wstream(&st, h->big_odb, size,
						  GIT_OBJECT_COMMIT)) < 0)
		rc = hist_git_error(rc, "writing the commit", NULL);
	if (rc == 0 && (rc = stream_pass(b, v, &head, &blk, st, NULL)) < 0 &&
	    rc != -ENOMEM && rc != -EIO)
		rc = hist_git_error(rc, "writing the commit", NULL);
	if (rc == 0 && (rc = git_odb_stream_finalize_write(out, st)) < 0)
		rc = hist_git_error(rc, "writing the commit", NULL);
	git_odb_stream_free(st);
	buf_free(&head);
	buf_free(&blk);
	return rc;
}

static int make_commit(struct hist *h, const struct batch *b,
		       const git_oid *tree_oid, git_oid *out)
{
	const git_oid *parents[1] = {&h->head};
	struct bver *v = malloc(sizeof(*v));
	git_signature *sig = NULL;
	struct buf m = BUF_INIT;
	int rc;

	if (!v)
		return -ENOMEM;
	if (b->n >= hist_stream_commit_min && h->big_odb) {
		rc = stream_commit(h, b, v, tree_oid, out);
		free(v);
		return rc;
	}
	rc = batch_message(b, v, &m);
	if (rc == 0)
		rc = git_signature_new(&sig, "recfs", "recfs@localhost",
				       time(NULL), 0);
	/* by ids: no need to parse the (maybe large) tree again */
	if (rc == 0)
		rc = git_commit_create_from_ids(out, h->repo, NULL, sig, sig,
						NULL, m.ptr, tree_oid,
						h->has_head ? 1 : 0, parents);
	if (rc < 0 && rc != -ENOMEM && rc != -EIO)
		rc = hist_git_error(rc, "creating the commit", NULL);
	git_signature_free(sig);
	buf_free(&m);
	free(v);
	return rc;
}

/* What batch_done does with each version. */
struct done {
	struct hist *h;
	struct hframe f;
};

static int done_version(void *arg, const struct bver *v)
{
	struct done *d = arg;
	int urc;

	hidx_frame_put(d->h, &d->f, &v->m);
	if (!v->has_stage || !v->stage[0])
		return 0;
	urc = io_unlinkat(d->h->o.io, "hist.blob.unlink", d->h->blobs_fd,
			  v->stage, 0);
	if (urc && urc != -ENOENT)
		rlog_warn("%s/%s: cannot remove: %s (removed at the "
			  "next open)",
			  HIST_BLOBS_DIR, v->stage, strerror(-urc));
	return 0;
}

/*
 * After the commit is durable: index, history.idx, blob links. Nothing
 * here may fail the batch (it is in git: trying it again would record
 * its versions twice); what fails is logged and mended at the next open.
 */
static void batch_done(struct hist *h, const struct batch *b,
		       const git_oid *commit)
{
	struct done d = {.h = h};
	struct bver *v = malloc(sizeof(*v));
	int rc = v ? 0 : -ENOMEM;

	hidx_frame_start(h, &d.f, commit, b->upto);
	if (rc == 0)
		rc = batch_each(b, v, done_version, &d);
	if (rc)
		d.f.err = d.f.err ? d.f.err : rc;
	rc = hidx_frame_end(h, &d.f);
	hidx_frame_free(&d.f);
	free(v);
	if (rc)
		rlog_err("%s: the index misses revisions %" PRIu64 "..%" PRIu64
			 " (%s) until the next open",
			 h->path, b->first, b->upto, strerror(-rc));
}

/*
 * The commit of HIST_REF_SIDE for this batch (hist_i.h) over the tree of
 * the versions it hides.
 */
static int side_commit(struct hist *h, const struct batch *b,
		       const git_oid *tree, size_t n, git_oid *out)
{
	const git_oid *parents[1] = {&h->side};
	git_signature *sig = NULL;
	struct buf m = BUF_INIT;
	int rc;

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
						NULL, m.ptr, tree,
						h->has_side ? 1 : 0, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "committing the superseded versions",
				    NULL);
	git_signature_free(sig);
	buf_free(&m);
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

/* The batch's objects: trees, commit, side commit, the last pack; the
   refs' lock files. */
static int batch_objects(struct hist *h, struct batch *b, git_oid *tree_oid,
			 git_oid *commit, git_oid *side, bool *has_side)
{
	git_oid side_tree;
	size_t nside = 0;
	int rc;

	rc = io_point(h->o.io, "hist.commit");
	if (rc == 0)
		rc = hist_batch_trees(h, b, tree_oid, &side_tree, &nside);
	*has_side = nside > 0;
	if (rc == 0)
		rc = make_commit(h, b, tree_oid, commit);
	if (rc == 0 && *has_side)
		rc = side_commit(h, b, &side_tree, nside, side);
	if (rc == 0)
		rc = hist_pack_write(h);
	if (rc == 0 && *has_side)
		rc = hist_side_prepare(h, side);
	if (rc == 0)
		rc = hist_ref_prepare(h, commit);
	return rc;
}

int hist_batch_commit(struct hist *h, struct batch *b)
{
	git_oid tree_oid, commit, side;
	git_tree *tree = NULL;
	int64_t t0 = hist_mono_ns(), t2, t3;
	bool has_side = false;
	int rc;

	rc = batch_objects(h, b, &tree_oid, &commit, &side, &has_side);
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
	rlog_debug("%s: commit of %zu versions: objects %.1f ms, sync %.1f "
		   "ms, ref %.1f ms",
		   h->path, b->n, (double)(t2 - t0) / 1e6,
		   (double)(t3 - t2) / 1e6,
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
