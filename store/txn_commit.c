/*
 * txn_commit.c - steps 2 to 4 of a txn (txn.c): its parts, marked busy,
 * become one journal record and are applied, in memory bounded by one
 * journal frame whatever the number of parts.
 *
 *  encode   each changing part becomes its REC_PUT or REC_DEL (content
 *           inline while the frame's budget lasts, else by reference to
 *           its stage), written to the `out` spool with what the apply
 *           step needs besides (stage, inode, where the part's result
 *           goes). Frame boundaries follow from the parts' sizes alone
 *           (frame_add), so the journal step finds the same ones again;
 *  refs     the by-reference stages are made durable and linked for the
 *           history (one at a time for a few, else one syncfs and one
 *           fsync of the blobs directory per LINK_CHUNK links);
 *  journal  one frame: one REC_TXN, appended as any change (group
 *           commit). More: jnl_big_*: REC_TXN_PART frames, then the
 *           REC_TXN frame that ends the record and is its commit point;
 *           readers see all frames of the seq or none;
 *  history  store_hist_changed(seq);
 *  apply    each part read back from `out`, decoded, and given to
 *           change_apply, as recovery does with the journal's frames.
 *
 * Failpoints: "commit.journal", "txn.frame" (before each frame but the
 * last of a multi-frame record), "txn.stage.open", "txn.syncfs", those of
 * spool.c and the journal's.
 */
#include "txn_i.h"
#include "io.h"
#include "jnl.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A part's content travels inline when it is at most this big and the
   frame's inline total stays under TXN_INLINE_BUDGET; else by reference. */
#define TXN_INLINE_PART (64u << 10)
#define TXN_INLINE_BUDGET ((size_t)JNL_MAX_RECORD / 2)
/* Parts in one frame at most (codec.c decodes up to 65536). */
#define FRAME_PARTS (1u << 15)
/* Fewer by-reference parts than this are synced one by one; more with
   one syncfs. */
#define TXN_SYNC_EACH_MAX 8
/* Blob links made per fsync of the blobs directory. */
#define LINK_CHUNK 512

/* What the apply step needs of a part besides its record. */
struct out_tail {
	uint64_t req_at; /* the part's place in the txn's spool */
	uint64_t ino;
	uint64_t data_off;
	uint8_t stage_len;
	bool by_ref;
};

struct frames {
	size_t count;	     /* frames so far (the last one open) */
	size_t bytes, n;     /* of the open one */
	size_t inline_bytes; /* of the open one */
};

struct tc {
	struct store_txn *t;
	struct store *s;
	struct spool out;
	struct frames fr;
	size_t nref, linked; /* by-reference parts; of them, linked */
	bool content;	     /* a put: new content */
	uint8_t *buf;	     /* one frame (or one part) */
	/* reading `out`: one part's length read ahead (journal_frames) */
	bool ahead;
	uint32_t ahead_len;
};

static bool frame_full(size_t bytes, size_t n, size_t len)
{
	return n && (bytes + len > JNL_MAX_RECORD || n == FRAME_PARTS);
}

/* Account a part of `len` encoded bytes; a new frame if it does not fit. */
static void frame_add(struct frames *f, size_t len)
{
	if (frame_full(f->bytes, f->n, len)) {
		f->count++;
		f->bytes = CODEC_TXN_HEAD;
		f->n = 0;
		f->inline_bytes = 0;
	}
	f->bytes += len;
	f->n++;
}

/* ---- encode ----------------------------------------------------------------
 */

/* The record of a changing part (content attached later). s->mu held;
   the entry is busy (ours), so it stays as it is until applied. */
static int part_rec(struct store *s, const struct part *p,
		    const struct store_who *who, const struct timespec *now,
		    struct rec *r, uint8_t **xa)
{
	const struct entry *e = idx_find(&s->ix, p->id, p->h.id_len);
	uint64_t cur = commit_live_version(e);

	if (!e)
		return -EIO; /* not reached: marked busy in step 1 */
	r->id = p->id;
	r->id_len = p->h.id_len;
	if (who)
		r->who = *who;
	if (p->h.del) {
		r->type = REC_DEL;
		r->meta = e->meta;
		r->meta.deleted = true;
		return 0;
	}
	r->type = REC_PUT;
	r->meta.version = e->meta.version + 1;
	memcpy(r->meta.hash, p->h.hash, 16);
	r->meta.hash_valid = true;
	r->meta.size = p->h.size;
	r->meta.mtime = p->h.has_mtime ? p->h.mtime : *now;
	r->meta.mode = p->h.mode >= 0 ? (uint32_t)p->h.mode & 07777
		       : cur	      ? e->meta.mode
				      : 0644;
	commit_pick_owner(p->h.has_owner ? &p->h.owner : NULL, who, e,
			  &r->meta);
	r->meta.symlink = p->h.symlink;
	if (cur && e->xa_len) {
		*xa = change_memdup(e->xa, e->xa_len);
		if (!*xa)
			return -ENOMEM;
		r->xa = *xa;
		r->xa_len = e->xa_len;
	}
	return 0;
}

/* Read the content of a part's stage (by name) into *data. */
static int read_stage(struct store *s, const struct part *p, uint8_t **data)
{
	ssize_t n;
	int fd;

	*data = malloc(p->h.size ? p->h.size : 1);
	if (!*data)
		return -ENOMEM;
	n = s->be->ops->stage_open(s->be, "txn.stage.open", p->stage, O_RDONLY,
				   &fd);
	if (n < 0)
		return (int)n;
	n = io_pread_all(s->io, "stage.read", fd, *data, p->h.size, 0);
	close(fd);
	if (n < 0)
		return (int)n;
	return (uint64_t)n == p->h.size ? 0 : -EIO; /* it changed under us */
}

/* An own_commit backend's part (etcd): its content, copied to the txn's
   data_fd when added (its stages have no name), goes inline. */
static int own_content(struct tc *c, const struct part *p, struct rec *r,
		       uint8_t **data)
{
	ssize_t n;

	*data = malloc(p->h.size ? p->h.size : 1);
	if (!*data)
		return -ENOMEM;
	n = io_pread_all(c->s->io, "stage.read", c->t->data_fd, *data,
			 p->h.size, (off_t)p->h.data_off);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != p->h.size)
		return -EIO;
	r->has_data = true;
	r->data = *data;
	r->data_len = p->h.size;
	return 0;
}

/* Inline content or a reference to the stage (journal only). */
static int part_content(struct tc *c, const struct part *p, struct rec *r,
			uint8_t **data, struct out_tail *tail)
{
	int rc;

	if (c->s->be->own_commit && !p->h.del)
		return own_content(c, p, r, data);
	if (!c->s->jnl || p->h.del)
		return 0;
	if (p->h.size > TXN_INLINE_PART ||
	    c->fr.inline_bytes + p->h.size > TXN_INLINE_BUDGET) {
		r->stage = p->stage;
		r->stage_len = p->h.stage_len;
		tail->by_ref = true;
		c->nref++;
		return 0;
	}
	rc = read_stage(c->s, p, data);
	if (rc)
		return rc;
	r->has_data = true;
	r->data = *data;
	r->data_len = p->h.size;
	return 0;
}

/* Encode one changing part into `out`. */
static int encode_part(struct tc *c, const struct part *p,
		       const struct store_who *who, const struct timespec *now,
		       int64_t time_ns)
{
	struct out_tail tail = {.req_at = p->at,
				.ino = p->h.ino,
				.data_off = p->h.data_off,
				.stage_len = p->h.stage_len};
	uint8_t *xa = NULL, *data = NULL, *enc = NULL;
	struct rec r = {.time_ns = time_ns};
	size_t len = 0;
	int rc;

	pthread_mutex_lock(&c->s->mu);
	rc = part_rec(c->s, p, who, now, &r, &xa);
	pthread_mutex_unlock(&c->s->mu);
	if (rc == 0)
		rc = part_content(c, p, &r, &data, &tail);
	if (rc == 0)
		rc = codec_encode_part(&r, &enc, &len);
	if (rc == 0 && len + CODEC_TXN_HEAD > JNL_MAX_RECORD)
		rc = -E2BIG; /* not reached: IDs, xattrs, inline are bounded */
	if (rc == 0) {
		frame_add(&c->fr, len);
		c->fr.inline_bytes += r.has_data ? r.data_len : 0;
		c->content |= !p->h.del;
		rc = spool_write(&c->out, enc, len);
	}
	if (rc == 0)
		rc = spool_write(&c->out, &tail, sizeof(tail));
	if (rc == 0)
		rc = spool_write(&c->out, p->stage, p->h.stage_len);
	free(enc);
	free(data);
	free(xa);
	return rc;
}

static int encode(struct tc *c, const struct store_who *who)
{
	struct store_txn *t = c->t;
	struct timespec now;
	int64_t time_ns = commit_now_ns(&now);
	struct part p;
	int rc = spool_rewind(&t->req);

	c->fr = (struct frames){.count = 1, .bytes = CODEC_TXN_HEAD};
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		rc = txn_part_read(t, &p);
		if (rc == 0 && !p.h.noop)
			rc = encode_part(c, &p, who, &now, time_ns);
	}
	return rc;
}

/* ---- reading `out` back
 * ------------------------------------------------------ */

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

/* The length (with its u32) of the next part in `out`; 0 at the end. */
static int out_peek(struct tc *c, size_t *len)
{
	uint8_t b[4];
	int rc;

	*len = 0;
	if (!c->ahead) {
		if (spool_at_end(&c->out))
			return 0;
		rc = spool_read(&c->out, b, 4);
		if (rc)
			return rc;
		c->ahead = true;
		c->ahead_len = le32(b);
	}
	if ((size_t)c->ahead_len + 4 + CODEC_TXN_HEAD > JNL_MAX_RECORD)
		return -EBADMSG;
	*len = (size_t)c->ahead_len + 4;
	return 0;
}

/* The next part (as encoded, its u32 included) into `dst`; its tail and
   stage name. */
static int out_read(struct tc *c, uint8_t *dst, size_t *len,
		    struct out_tail *tail, struct store_stage *named)
{
	int rc = out_peek(c, len);

	if (rc == 0 && *len == 0)
		return -EBADMSG;
	if (rc == 0) {
		memcpy(dst,
		       (uint8_t[4]){(uint8_t)c->ahead_len,
				    (uint8_t)(c->ahead_len >> 8),
				    (uint8_t)(c->ahead_len >> 16),
				    (uint8_t)(c->ahead_len >> 24)},
		       4);
		c->ahead = false;
		rc = spool_read(&c->out, dst + 4, *len - 4);
	}
	if (rc == 0)
		rc = spool_read(&c->out, tail, sizeof(*tail));
	if (rc == 0 && tail->stage_len >= STORE_STAGE_NAME_MAX)
		rc = -EBADMSG;
	memset(named, 0, sizeof(*named));
	named->s = c->s;
	named->fd = -1;
	if (rc == 0)
		rc = spool_read(&c->out, named->name, tail->stage_len);
	return rc;
}

static int out_rewind(struct tc *c)
{
	c->ahead = false;
	return spool_rewind(&c->out);
}

/* ---- refs -------------------------------------------------------------------
 */

/* Few stages: each made durable and linked on its own. */
static int refs_each(struct tc *c, struct store_stage *st)
{
	struct store *s = c->s;
	struct out_tail tail;
	size_t len;
	int rc = 0;

	while (rc == 0 && !spool_at_end(&c->out)) {
		rc = out_read(c, c->buf, &len, &tail, st);
		if (rc || !tail.by_ref)
			continue;
		rc = s->be->ops->stage_open(s->be, "txn.stage.open", st->name,
					    O_RDWR, &st->fd);
		if (rc == 0)
			rc = s->be->ops->stage_sync(s->be, st);
		if (st->fd >= 0)
			close(st->fd);
		/* a link made before its dirsync failed is removed too */
		c->linked += rc == 0;
		if (rc == 0)
			rc = store_hist_link(s, st);
	}
	return rc;
}

/* Many: one syncfs, then links in chunks (one fsync of the directory
   each). */
static int refs_bulk(struct tc *c, struct store_stage *v)
{
	struct store *s = c->s;
	const struct store_stage *pv[LINK_CHUNK];
	struct out_tail tail;
	size_t len, k = 0, made;
	int rc = s->be->ops->sync_stages(s->be);

	for (size_t i = 0; i < LINK_CHUNK; i++)
		pv[i] = &v[i];
	while (rc == 0 && !spool_at_end(&c->out)) {
		rc = out_read(c, c->buf, &len, &tail, &v[k]);
		k += rc == 0 && tail.by_ref;
		if (rc == 0 && k == LINK_CHUNK) {
			rc = store_hist_link_many(s, pv, k, &made);
			c->linked += made;
			k = 0;
		}
	}
	if (rc == 0 && k) {
		rc = store_hist_link_many(s, pv, k, &made);
		c->linked += made;
	}
	return rc;
}

/* Make the by-reference stages durable and link them for the history. */
static int refs(struct tc *c)
{
	struct store_stage *v;
	int rc;

	if (!c->nref || !store_journaled(c->s))
		return 0;
	v = calloc(LINK_CHUNK, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = out_rewind(c);
	if (rc == 0)
		rc = c->nref < TXN_SYNC_EACH_MAX ? refs_each(c, v)
						 : refs_bulk(c, v);
	free(v);
	return rc;
}

/* The change failed: remove the links made for the history. */
static void unlink_refs(struct tc *c)
{
	struct store_stage st;
	struct out_tail tail;
	size_t len;

	if (!c->linked || out_rewind(c))
		return;
	while (c->linked && !spool_at_end(&c->out) &&
	       out_read(c, c->buf, &len, &tail, &st) == 0) {
		if (!tail.by_ref)
			continue;
		store_hist_unlink(c->s, &st);
		c->linked--;
	}
}

/* ---- journal ----------------------------------------------------------------
 */

/* The next frame's payload into c->buf (`type` in its head); *len. */
static int fill_frame(struct tc *c, enum rec_type type, size_t *len)
{
	struct store_stage named;
	struct out_tail tail;
	size_t bytes = CODEC_TXN_HEAD, n = 0, plen;
	int rc;

	for (;;) {
		rc = out_peek(c, &plen);
		if (rc || plen == 0 || frame_full(bytes, n, plen))
			break;
		rc = out_read(c, c->buf + bytes, &plen, &tail, &named);
		if (rc)
			break;
		bytes += plen;
		n++;
	}
	codec_txn_head(c->buf, type, (uint32_t)n);
	*len = bytes;
	return rc ? rc : n ? 0 : -EBADMSG;
}

/* Several frames through jnl_big: the record is whole or not there. */
static int journal_big(struct tc *c, uint64_t *seq)
{
	struct jnl_big *b = NULL;
	struct iovec iov = {c->buf, 0};
	int rc = jnl_big_begin(c->s->jnl, &b);

	for (size_t f = 0; rc == 0 && f + 1 < c->fr.count; f++) {
		rc = fill_frame(c, REC_TXN_PART, &iov.iov_len);
		if (rc == 0)
			rc = io_point(c->s->io, "txn.frame");
		if (rc == 0)
			rc = jnl_big_add(b, &iov, 1);
	}
	if (rc == 0)
		rc = fill_frame(c, REC_TXN, &iov.iov_len);
	if (rc == 0)
		return jnl_big_commit(b, &iov, 1, seq); /* an error aborts */
	jnl_big_abort(b);
	return rc;
}

/* An own_commit backend (etcd): the one REC_TXN frame, decoded, is its
   commit (change_journal); a change of more frames is refused. */
static int journal_own(struct tc *c, uint64_t *seq)
{
	struct rec r;
	size_t len = 0;
	int rc = out_rewind(c);

	if (rc == 0 && c->fr.count > 1)
		return rerr_set(-E2BIG,
				"%s: a txn of %zu parts is too big for one "
				"change of backend \"%s\"",
				c->s->path, c->t->n, c->s->be->ops->name);
	if (rc == 0)
		rc = fill_frame(c, REC_TXN, &len);
	if (rc == 0)
		rc = codec_decode(c->buf, len, &r);
	return rc ? rc : change_journal(c->s, &r, false, seq);
}

static int journal(struct tc *c, uint64_t *seq)
{
	struct iovec iov = {c->buf, 0};
	int rc;

	if (c->s->be->own_commit)
		return journal_own(c, seq);
	if (!store_journaled(c->s))
		return commit_journal(c->s, NULL, 0, seq);
	rc = out_rewind(c);
	if (rc == 0 && c->content) /* new content: not from the reserve */
		rc = reserve_check_content(c->s->reserve);
	if (rc == 0 && c->fr.count > 1) {
		rc = io_point(c->s->io, "commit.journal");
		return rc ? rc : journal_big(c, seq);
	}
	if (rc == 0)
		rc = fill_frame(c, REC_TXN, &iov.iov_len);
	if (rc == 0)
		rc = commit_journal(c->s, &iov, 1, seq);
	return rc;
}

/* ---- apply ----------------------------------------------------------------
 */

/* Every part, read back from `out`, at `seq`: a failure to put one in
   place breaks the store (recovery finishes the change) but not the
   other parts. */
/* Apply one part (its record `r`) at `seq`; its result into the txn's
   spool. */
static int apply_one(struct tc *c, const struct rec *r,
		     const struct out_tail *tail, const char *stage,
		     uint64_t seq)
{
	struct store_stage named, *made = NULL;
	struct apply a = {.steps = APPLY_PLACE | APPLY_INDEX,
			  .unmark = true,
			  .ino = tail->ino};
	int rc = 0;

	if (r->type == REC_PUT && !c->s->be->own_commit)
		rc = txn_stage(c->t, stage, tail->data_off, r->meta.size,
			       &named, &a.st, &made);
	if (rc) /* memory backend only: no content, nothing journaled */
		commit_mark_broken(c->s, "(a txn part)", rc);
	(void)change_apply(c->s, r, seq, &a);
	store_stage_free(made);
	rc = spool_pwrite(&c->t->req, &(bool){false}, sizeof(bool),
			  tail->req_at + offsetof(struct part_hdr, marked));
	if (rc == 0)
		rc = spool_pwrite(
			&c->t->req,
			&(struct store_result){.version = r->meta.version,
					       .revision = seq},
			sizeof(struct store_result),
			tail->req_at + offsetof(struct part_hdr, res));
	return rc;
}

/* Every part, read back from `out`, at `seq`: a failure to put one in
   place breaks the store (recovery finishes the change) but not the
   other parts. */
static int apply(struct tc *c, uint64_t seq)
{
	struct store_stage named;
	struct out_tail tail;
	struct rec r;
	size_t len;
	int rc = out_rewind(c);

	while (rc == 0 && !spool_at_end(&c->out)) {
		rc = out_read(c, c->buf, &len, &tail, &named);
		if (rc == 0)
			rc = codec_decode(c->buf + 4, len - 4, &r);
		if (rc == 0)
			rc = apply_one(c, &r, &tail, named.name, seq);
	}
	return rc;
}

int txn_journal_apply(struct store_txn *t, const struct store_who *who,
		      uint64_t *seq)
{
	struct tc c = {.t = t, .s = t->s};
	int rc;

	c.buf = malloc(JNL_MAX_RECORD);
	rc = c.buf ? spool_open(t->s, &c.out) : -ENOMEM;
	if (rc == 0)
		rc = encode(&c, who);
	if (rc == 0)
		rc = refs(&c);
	if (rc == 0)
		rc = journal(&c, seq);
	if (rc) {
		rerr_prefix(rc, "%s: a txn of %zu parts", t->s->path, t->n);
		unlink_refs(&c);
	} else {
		store_hist_changed(t->s, *seq);
		t->apply_err = apply(&c, *seq);
		if (t->apply_err) /* the marks left are cleared by the caller */
			commit_mark_broken(t->s, "(a txn part)", t->apply_err);
	}
	spool_close(&c.out);
	free(c.buf);
	return rc;
}
