/*
 * jnl_big.c - records too large for one frame (jnl_big_*, jnl.h): several
 * frames with one seq, all but the last marked JNL_FRAME_MORE.
 *
 * The holder of a multi-frame record has the journal to itself: it takes
 * it when no batch is being written and no jnl_sync is in its fdatasync
 * (j->big, under j->lock), and appends queue behind it (they neither lead
 * a batch while j->big is set nor while a jnl_big_begin waits, so that a
 * steady stream of appends cannot starve it). Its seq is the next one
 * (written_seq + 1): nobody else can take it meanwhile, so its frames
 * carry it from the start, and it is "taken" only at the commit, once the
 * record is durable. Its frames go at the end of the segment, each with
 * one pwritev, like a batch; the commit's fdatasync makes them durable
 * with the last one. A record that is dropped, or whose commit fails, is
 * cut off the segment again, durably (jnl_seg_undo), as a failed batch
 * is; until then, or if a crash comes first, it is a multi-frame record
 * without its last frame at the tail of the last segment, which readers
 * ignore and jnl_open cuts off.
 *
 * Failpoints: "jnl.big.write" (each frame), "jnl.big.fsync" (the commit's
 * fdatasync, and the undo's), "jnl.big.truncate" (the undo).
 */
#include "jnl_i.h"

#include "io.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct jnl_big {
	struct jnl *j;
	uint64_t seq;	    /* the seq its frames carry */
	uint64_t base;	    /* segment offset of its first frame */
	uint64_t off;	    /* where its next frame goes */
	uint64_t frames;    /* written */
	int err;	    /* a write failed: only abort (or commit) remains */
	bool wrote;	    /* something may be in the file past base */
	struct iovec *iovs; /* scratch: a frame's header + payload */
	int iovs_cap;
};

int jnl_big_begin(struct jnl *j, struct jnl_big **out)
{
	struct jnl_big *b;
	int rc = 0;

	if (!j || !out)
		return -EINVAL;
	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_lock(&j->lock);
	j->big_waiting++;
	while (j->flushing || j->syncing || j->big)
		pthread_cond_wait(&j->cond, &j->lock);
	j->big_waiting--;
	if (j->broken) {
		rc = -EIO;
		/* appends held back for us may lead again */
		pthread_cond_broadcast(&j->cond);
	} else {
		j->big = true;
		b->j = j;
		b->seq = j->written_seq + 1;
		b->base = b->off = j->end;
	}
	pthread_mutex_unlock(&j->lock);
	if (rc < 0) {
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* Room for `n` iovecs in b's scratch. */
static int big_iovs(struct jnl_big *b, int n)
{
	struct iovec *p;

	if (n <= b->iovs_cap)
		return 0;
	p = realloc(b->iovs, (size_t)n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	b->iovs = p;
	b->iovs_cap = n;
	return 0;
}

/* Write one frame of b at b->off: marked JNL_FRAME_MORE unless `last`. */
static int big_write(struct jnl_big *b, const struct iovec *iov, int iovcnt,
		     bool last)
{
	struct jnl *j = b->j;
	uint8_t hdr[JNL_FRAME_HDR];
	size_t len = 0;
	ssize_t n;
	int v = 0, rc;

	if (iovcnt < 0 || (iovcnt > 0 && !iov) || iovcnt == INT32_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > JNL_MAX_RECORD - len)
			return -EFBIG;
		len += iov[i].iov_len;
	}
	rc = big_iovs(b, iovcnt + 1);
	if (rc < 0)
		return rc;
	jnl_frame_encode_part(hdr, b->seq, !last, iov, iovcnt);
	b->iovs[v].iov_base = hdr;
	b->iovs[v++].iov_len = sizeof(hdr);
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			b->iovs[v++] = iov[i];
	b->wrote = true;
	n = io_pwritev_all(j->io, "jnl.big.write", j->fd, b->iovs, v,
			   (off_t)b->off);
	if (n < 0) {
		b->err = (int)n;
		rlog_err("journal %s: writing frame %" PRIu64 " of record "
			 "%" PRIu64 " at offset %" PRIu64 ": %s",
			 j->seg_name, b->frames + 1, b->seq, b->off,
			 strerror((int)-n));
		return (int)n;
	}
	b->off += sizeof(hdr) + len;
	b->frames++;
	return 0;
}

int jnl_big_add(struct jnl_big *b, const struct iovec *iov, int iovcnt)
{
	if (!b)
		return -EINVAL;
	if (b->err)
		return b->err;
	return big_write(b, iov, iovcnt, false);
}

/*
 * Let go of the journal and free b: after its commit (`committed`: the
 * journal now ends after it), or after cutting what it wrote off again
 * (if that fails, the journal is broken).
 */
static void big_release(struct jnl_big *b, bool committed)
{
	struct jnl *j = b->j;
	bool undo = !committed && b->wrote, broken = false;

	if (undo)
		broken = jnl_seg_undo(j, b->base, "jnl.big.truncate",
				      "jnl.big.fsync") < 0;
	pthread_mutex_lock(&j->lock);
	if (committed) {
		j->end = b->off;
		j->written_seq = j->last_seq = b->seq;
	} else if (broken) {
		j->broken = true;
	} else if (undo && j->written_seq > j->last_seq) {
		j->last_seq = j->written_seq; /* the undo synced them */
	}
	j->big = false;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	free(b->iovs);
	free(b);
}

int jnl_big_commit(struct jnl_big *b, const struct iovec *iov, int iovcnt,
		   uint64_t *seq)
{
	struct jnl *j;
	int rc;

	if (!b)
		return -EINVAL;
	j = b->j;
	rc = b->err ? b->err : big_write(b, iov, iovcnt, true);
	if (rc == 0) {
		jnl_zero_ahead(j, b->off);
		rc = io_fdatasync(j->io, "jnl.big.fsync", j->fd);
		if (rc < 0)
			rlog_err("journal %s: fdatasync of record %" PRIu64
				 " (%" PRIu64 " frames at offset %" PRIu64
				 "): %s",
				 j->seg_name, b->seq, b->frames, b->base,
				 strerror(-rc));
	}
	if (rc == 0 && seq)
		*seq = b->seq;
	big_release(b, rc == 0);
	return rc;
}

void jnl_big_abort(struct jnl_big *b)
{
	if (b)
		big_release(b, false);
}
