/*
 * recover.c - bringing a store back to a consistent state when it is
 * opened, and checkpoints.
 *
 * On open: load the index snapshot (STORE/index, revision R), then replay
 * the journal records after R in two passes. Pass 1 applies each record's
 * metadata to the index and remembers, per record ID, the sequence number
 * of the last record that changed its content. Pass 2 makes the records
 * directory match: for each ID only that last record matters, and it
 * says where the content is (inline in the journal, in a synced stage,
 * or at the source of a move; see store_i.h for why this is enough).
 * Then stray stages and the blob links the history no longer needs are
 * removed, and a checkpoint retires the journal segments that both the
 * snapshot and the history cover: the records the history has not written
 * yet stay, and its writer reads them after the open (so a crash while
 * the history lagged loses no version).
 *
 * A checkpoint waits for changes in flight, syncs the file system, writes
 * a new snapshot at the current revision (temp + fsync + rename + fsync of
 * the directory) and drops the journal segments it covers, up to
 * hist_done at most.
 *
 * An open that writes nothing (opts.no_write: recfsctl verify) runs pass 2
 * as a check only: each change that is not in place yet is named, and the
 * open fails with -EROFS rather than put it there.
 */
#include "store_i.h"
#include "admin.h"
#include "history.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPSHOT_MAX_BYTES (4ull << 30)

/* ---- snapshot ----------------------------------------------------------- */

/* The snapshot as it is written: through one buffer of SNAP_BUF bytes
   (memory does not grow with the store). */
#define SNAP_BUF (1u << 20)

struct snap_buf {
	struct store *s;
	int fd;
	uint8_t *p;
	size_t len;
	uint64_t off; /* file offset of p[0] */
	int err;
};

static void sb_flush(struct snap_buf *b)
{
	ssize_t n;

	if (b->err || !b->len)
		return;
	n = io_pwrite_all(b->s->io, "snapshot.write", b->fd, b->p, b->len,
			  (off_t)b->off);
	if (n < 0)
		b->err = (int)n;
	b->off += b->len;
	b->len = 0;
}

static void sb_put(struct snap_buf *b, const void *src, size_t n)
{
	const uint8_t *q = src;

	while (!b->err && n) {
		size_t k = SNAP_BUF - b->len < n ? SNAP_BUF - b->len : n;

		memcpy(b->p + b->len, q, k);
		b->len += k;
		q += k;
		n -= k;
		if (b->len == SNAP_BUF)
			sb_flush(b);
	}
}

static int snap_entry(void *arg, struct entry *e)
{
	struct snap_buf *b = arg;
	struct rec r = {.type = REC_STATE};
	uint8_t hdr[JNL_FRAME_HDR];
	struct iovec iov;
	uint8_t *enc = NULL;
	size_t len;

	if (e->meta.version == 0)
		return 0;
	r.id = e->id;
	r.id_len = e->id_len;
	r.meta = e->meta;
	r.ino = e->ino;
	r.xa = e->xa;
	r.xa_len = e->xa_len;
	b->err = b->err ? b->err : codec_encode(&r, &enc, &len);
	if (b->err)
		return b->err;
	iov.iov_base = enc;
	iov.iov_len = len;
	jnl_frame_encode(hdr, 0, &iov, 1);
	sb_put(b, hdr, sizeof(hdr));
	sb_put(b, enc, len);
	free(enc);
	return b->err;
}

/* Write every entry of the index as the snapshot of revision `rev`
   into `b` (its fd open). */
static int snapshot_fill(struct store *s, struct snap_buf *b, uint64_t rev)
{
	uint8_t head[JNL_FILE_HDR];

	memcpy(head, JNL_SNAPSHOT_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		head[8 + i] = (uint8_t)(rev >> (8 * i));
	sb_put(b, head, sizeof(head));
	pthread_mutex_lock(&s->mu);
	idx_each(&s->ix, snap_entry, b);
	pthread_mutex_unlock(&s->mu);
	sb_flush(b);
	return b->err;
}

/* Write the snapshot of revision `rev` as STORE/index, atomically and
   durably. */
static int snapshot_install(struct store *s, uint64_t rev)
{
	struct snap_buf b = {.s = s};
	char tmp[64];
	int rc;

	b.p = malloc(SNAP_BUF);
	if (!b.p)
		return -ENOMEM;
	/* One name, not one per process: the store lock and ckpt_mu make
	   us its only writer, and a copy left by a crash is removed here
	   (a per-pid name would stay forever). */
	snprintf(tmp, sizeof(tmp), "%s.tmp", STORE_INDEX_FILE);
	unlinkat(s->dirfd, tmp, 0);
	b.fd = io_openat(s->io, "snapshot.open", s->dirfd, tmp,
			 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			 0600);
	rc = b.fd < 0 ? b.fd : snapshot_fill(s, &b, rev);
	if (rc == 0)
		rc = io_fsync(s->io, "snapshot.fsync", b.fd);
	if (b.fd >= 0)
		close(b.fd);
	free(b.p);
	if (rc == 0)
		rc = io_renameat(s->io, "snapshot.rename", s->dirfd, tmp,
				 s->dirfd, STORE_INDEX_FILE, 0);
	if (rc == 0)
		rc = io_fsync(s->io, "snapshot.dirsync", s->dirfd);
	else if (b.fd >= 0)
		unlinkat(s->dirfd, tmp, 0);
	return rc;
}

int store_snapshot_write(struct store *s, uint64_t rev)
{
	int rc = snapshot_install(s, rev);

	if (rc)
		rerr_prefix(rc, "%s/%s: cannot write snapshot", s->path,
			    STORE_INDEX_FILE);
	return rc;
}

/* Read STORE/index into the index; *rev gets its revision (0 if none). */
/*
 * The snapshot is read in windows of SNAP_WINDOW bytes (more for a frame
 * that needs more), not whole: a store of 1,000,000 records has an index
 * file of 150 MB, and reading it whole raised the daemon's peak RSS by as
 * much at every mount.
 */
#define SNAP_WINDOW ((size_t)4 << 20)

struct snap_in {
	int fd;
	uint64_t size; /* of the file */
	uint8_t *buf;
	size_t cap, len, off; /* buf holds [base, base + len) of the file */
	uint64_t base;
	bool applying; /* the error is change_apply's, not the file's */
};

/* Have at least `need` bytes from in->off in the window (as many as the
   file has). Returns 0 or -errno, -EBADMSG. */
static int snap_fill(struct store *s, struct snap_in *in, size_t need)
{
	ssize_t n;

	memmove(in->buf, in->buf + in->off, in->len - in->off);
	in->len -= in->off;
	in->base += in->off;
	in->off = 0;
	if (need > in->cap) {
		uint8_t *b = realloc(in->buf, need);

		if (!b)
			return -ENOMEM;
		in->buf = b;
		in->cap = need;
	}
	while (in->len < in->cap && in->base + in->len < in->size) {
		size_t want = in->cap - in->len;

		if (want > in->size - (in->base + in->len))
			want = (size_t)(in->size - (in->base + in->len));
		n = io_pread_all(s->io, "snapshot.read", in->fd,
				 in->buf + in->len, want,
				 (off_t)(in->base + in->len));
		if (n <= 0)
			return n < 0 ? (int)n : -EBADMSG;
		in->len += (size_t)n;
	}
	return in->len >= need ? 0 : -EBADMSG;
}

/* Apply the frames of the snapshot after its header. */
static int snapshot_frames(struct store *s, struct snap_in *in)
{
	while (in->base + in->off < in->size) {
		const uint8_t *payload;
		size_t len, need = 0;
		uint64_t seq;
		struct rec r;
		long fl = jnl_frame_decode(in->buf + in->off, in->len - in->off,
					   &seq, &payload, &len, &need);
		int rc;

		if (fl == 0 && need > in->len - in->off) {
			rc = snap_fill(s, in, need);
			if (rc)
				return rc;
			continue;
		}
		if (fl <= 0 || codec_decode(payload, len, &r) ||
		    r.type != REC_STATE)
			return -EBADMSG;
		rc = change_apply(s, &r, r.meta.revision,
				  &(struct apply){.steps = APPLY_INDEX});
		if (rc) {
			in->applying = true;
			return rc;
		}
		in->off += (size_t)fl;
	}
	return 0;
}

static int snapshot_load(struct store *s, uint64_t *rev)
{
	struct snap_in in = {.fd = -1};
	struct stat st;
	int rc = 0;

	*rev = 0;
	in.fd = io_openat(s->io, "snapshot.load", s->dirfd, STORE_INDEX_FILE,
			  O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (in.fd == -ENOENT)
		return 0;
	if (in.fd < 0)
		return in.fd;
	if (fstat(in.fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > SNAPSHOT_MAX_BYTES ||
	    st.st_size < JNL_FILE_HDR) {
		rc = -EBADMSG;
		goto bad;
	}
	in.size = (uint64_t)st.st_size;
	in.cap = in.size < SNAP_WINDOW ? (size_t)in.size : SNAP_WINDOW;
	in.buf = malloc(in.cap);
	if (!in.buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = snap_fill(s, &in, JNL_FILE_HDR);
	if (rc == 0 && memcmp(in.buf, JNL_SNAPSHOT_MAGIC, 8) != 0)
		rc = -EBADMSG;
	if (rc)
		goto bad;
	for (int i = 0; i < 8; i++)
		*rev |= (uint64_t)in.buf[8 + i] << (8 * i);
	in.off = JNL_FILE_HDR;
	rc = snapshot_frames(s, &in);
	if (rc && !in.applying)
		goto bad;
	goto out;
bad:
	rerr_set(rc, "%s: corrupt index snapshot (at byte %llu): %s",
		 STORE_INDEX_FILE, (unsigned long long)(in.base + in.off),
		 strerror(-rc));
out:
	free(in.buf);
	close(in.fd);
	return rc;
}

/* ---- replay ------------------------------------------------------------- */

struct replay {
	struct store *s;
	struct apply a;	   /* pass 2: counts what it put in place, lost */
	uint64_t unplaced; /* no_write: changes not in place (see the top) */
	char first[ID_MAX_LEN + 1]; /* the first of them, at version */
	uint64_t first_version;
};

static int pass1(void *arg, uint64_t seq, const void *payload, size_t len)
{
	struct replay *rp = arg;
	struct rec r;
	int rc = codec_decode(payload, len, &r);

	if (rc)
		return rerr_set(rc,
				"%s: journal record %llu is not readable: "
				"%s",
				STORE_JOURNAL_DIR, (unsigned long long)seq,
				strerror(-rc));
	return change_apply(
		rp->s, &r, seq,
		&(struct apply){.steps = APPLY_INDEX, .replay = true});
}

/* Is there a regular file for `id`? 1 yes, 0 no. */
static int file_present(struct store *s, const char *id)
{
	struct stat st;

	return s->be->ops->stat(s->be, id, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * no_write: is `r`, the last change of `id`'s content, in place already
 * (and the source of a rename gone, if `r` is its last change too)?
 * Counts and names what is not: putting it there is a write. Returns 0 or
 * -errno if a file cannot be read.
 */
static int check_placed(struct replay *rp, const struct rec *r, const char *id,
			uint64_t seq, bool last)
{
	char from[ID_MAX_LEN + 1];
	struct entry *e;
	int rc = 1;

	if (last && r->type == REC_DEL)
		rc = !file_present(rp->s, id);
	else if (last)
		rc = change_content_is(rp->s, id, &r->meta);
	if (rc < 0)
		return rc;
	if (rc == 1 && r->type == REC_RENAME) {
		memcpy(from, r->from, r->from_len);
		from[r->from_len] = '\0';
		e = idx_find(&rp->s->ix, from, r->from_len);
		if (e && e->meta.revision == seq)
			rc = !file_present(rp->s, from);
	}
	if (rc == 0 && !rp->unplaced++) {
		snprintf(rp->first, sizeof(rp->first), "%s", id);
		rp->first_version = r->meta.version;
	}
	return 0;
}

/* no_write: pass 2 as a check of one change (a record or a txn part). */
static int check_one(struct replay *rp, uint64_t seq, const struct rec *r)
{
	char id[ID_MAX_LEN + 1];
	struct entry *e;

	memcpy(id, r->id, r->id_len);
	id[r->id_len] = '\0';
	e = idx_find(&rp->s->ix, id, r->id_len);
	/* else a later record decides this one's content */
	return check_placed(rp, r, id, seq, e && e->meta.revision == seq);
}

/*
 * A txn's parts all carry its seq, so each part whose record the txn
 * changed last is put in place: all of them, as for single changes (see
 * store_i.h): a txn is all or nothing because its record is.
 */
static int pass2(void *arg, uint64_t seq, const void *payload, size_t len)
{
	struct replay *rp = arg;
	struct rec r, part;
	size_t off = 0;
	int rc = codec_decode(payload, len, &r);

	if (rc || r.type == REC_META)
		return rc;
	if (!rp->s->opts.no_write) {
		rc = change_apply(rp->s, &r, seq, &rp->a);
		/* the scratch file it committed, if a crash left it */
		if (rc == 0 && r.origin)
			scratch_origin_remove(rp->s, &r);
		return rc;
	}
	if (r.type != REC_TXN && r.type != REC_TXN_PART)
		return check_one(rp, seq, &r);
	while ((rc = codec_txn_next(&r, &off, &part)) == 1) {
		rc = check_one(rp, seq, &part);
		if (rc)
			return rc;
	}
	return rc;
}

int store_recover(struct store *s)
{
	struct jnl_scan_report rep = {0};
	struct replay rp = {.s = s,
			    .a = {.steps = APPLY_PLACE, .replay = true}};
	struct jnl_opts jo = {0};
	uint64_t rev = 0;
	int rc;

	rc = idx_init(&s->ix);
	if (rc == 0)
		rc = snapshot_load(s, &rev);
	if (rc == 0)
		rc = jnl_scan(s->io, s->jnl_dirfd, rev, pass1, &rp, &rep);
	if (rc == 0 && rep.records)
		rc = jnl_scan(s->io, s->jnl_dirfd, rev, pass2, &rp, NULL);
	if (rc == -EBADMSG)
		return rerr_prefix(rc, "journal is corrupt (the store was "
				       "left untouched)");
	if (rc)
		return rc;
	if (rep.last_seq > rev)
		rev = rep.last_seq;
	if (rp.unplaced)
		return rerr_set(-EROFS,
				"%llu changes in the journal are not in place "
				"(the first: record %s, version %llu): "
				"recovery has not run, as it writes; the store "
				"was left untouched (opened without writes)",
				(unsigned long long)rp.unplaced, rp.first,
				(unsigned long long)rp.first_version);
	if (!s->opts.no_write)
		s->be->ops->clean_stages(s->be);
	if (s->hist && !s->opts.read_only)
		(void)hist_clean_blobs(s->hist, rep.last_seq); /* logged */
	/* logged: a note on an open that succeeds */
	if (!s->opts.no_write && (rep.records || rep.torn_bytes))
		rlog_info("%s: recovered %llu journal records (%llu files "
			  "restored, %llu lost, %llu torn bytes ignored)",
			  s->path, (unsigned long long)rep.records,
			  (unsigned long long)rp.a.fixed,
			  (unsigned long long)rp.a.lost,
			  (unsigned long long)rep.torn_bytes);
	if (s->opts.read_only) {
		/* no journal to ask: store_revision() reads this */
		pthread_mutex_lock(&s->mu);
		s->revision = rev;
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	jo.io = s->io;
	jo.dirfd = s->jnl_dirfd;
	jo.next_seq = rev + 1;
	rc = jnl_open(&s->jnl, &jo);
	if (rc)
		return rerr_prefix(rc, "%s: cannot open the journal",
				   STORE_JOURNAL_DIR);
	rc = sbatch_init(s);
	/* Only if there was something to replay: after a clean close the
	   snapshot holds everything, and a checkpoint at each open rewrote
	   it whole (150 MB and a sync at 1,000,000 records). Segments the
	   history still needs stay, as they would after a checkpoint. */
	if (rc == 0 && (rep.records || rep.torn_bytes))
		rc = store_checkpoint(s);
	return rc;
}

/* ---- checkpoint --------------------------------------------------------- */

int store_checkpoint(struct store *s)
{
	uint64_t rev;
	int rc;

	if (!store_journaled(s))
		return 0;
	pthread_mutex_lock(&s->ckpt_mu);
	/* Flush the bulk while changes go on, then again with none in
	   flight, which is quick. */
	(void)s->be->ops->sync(s->be);
	pthread_rwlock_wrlock(&s->gate);
	/* sync=batch: the snapshot must not hold a change whose journal
	   record could still be lost; after this none is in flight */
	sbatch_drain(s);
	rc = jnl_sync(s->jnl);
	rev = jnl_last_seq(s->jnl);
	/* A broken store has journaled changes that are not in place: the
	   journal must keep them for the recovery of the next open. */
	pthread_mutex_lock(&s->mu);
	if (rc == 0)
		rc = s->broken;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		rc = s->be->ops->sync(s->be);
	if (rc == 0)
		rc = store_snapshot_write(s, rev);
	if (rc == 0)
		rc = jnl_rotate(s->jnl);
	pthread_rwlock_unlock(&s->gate);
	/* the history's queue: keep what it has not written to git */
	if (rc == 0)
		rc = jnl_drop_upto(s->jnl, store_hist_keep(s, rev));
	pthread_mutex_unlock(&s->ckpt_mu);
	if (rc)
		rerr_prefix(rc, "%s: checkpoint (the journal keeps everything)",
			    s->path);
	return rc;
}
