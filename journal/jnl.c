/*
 * jnl.c - the journal: framed records in segment files, group commit.
 *
 * The format of segments and frames is in jnl.h; framing is in
 * jnl_frame.c, multi-frame records (jnl_big_*) in jnl_big.c.
 *
 * Group commit: jnl_append queues a waiter that lives on the caller's
 * stack. The first waiter that finds no flush in progress becomes the
 * leader: it takes the whole queue, numbers and frames the records, and
 * outside the lock writes them with one pwritev at the end of the segment
 * and makes them durable with one fdatasync. Whoever queues meanwhile is
 * written by the next leader. A failed batch is cut off the segment again
 * (ftruncate + fdatasync) and its sequence numbers are not consumed; if
 * that undo fails too the journal is broken and refuses appends. No
 * leader starts while a multi-frame record holds the journal or waits to
 * (jnl_big.c): the queue waits for it.
 *
 * Preallocation: a batch that leaves less than JNL_PREALLOC of zeros after
 * the end of the segment also writes the next JNL_PREALLOC of zeros there,
 * made durable by the same fdatasync. The batches after it overwrite
 * blocks that are already allocated and within the file's size, so their
 * fdatasync writes only the data, not the inode: about half the latency
 * of an append on ext4. Every reader stops at a zero tail (a scan counts
 * it as zero_bytes, not as torn); it is cut off when the segment is
 * closed or rotated, and by the trim of seg_prepare after a crash.
 * Writing the zeros is best effort: if it fails (ENOSPC) the batch goes
 * on without them, and on a file system with less than 64 MiB free it is
 * not tried, so that the journal never takes the last free space from the
 * records.
 *
 * Failpoints: "jnl.open" (opening a segment to write: create, reuse,
 * trim), "jnl.hdr.write", "jnl.hdr.fsync", "jnl.dir.fsync", "jnl.write"
 * (the batch pwritev), "jnl.fsync" (every fdatasync of a segment: the
 * batch's, and the one that makes an undo or a trim durable),
 * "jnl.truncate" (undo of a failed batch, trim of a torn tail, reset of a
 * reused segment), "jnl.cut", "jnl.cut.fsync" (the zeros after the last
 * record cut off at rotation and close), "jnl.drop.unlink",
 * "jnl.scan.open" (directory and segments), "jnl.scan.read".
 *
 * Reading (jnl_scan and the segment walk jnl_open also uses) is in
 * jnl_read.c, cursors in jnl_cursor.c.
 */
#include "jnl_i.h"

#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Zeros written ahead of the end of a segment (see the top), unless
   the file system has less than JNL_PREALLOC_MIN_FREE free. */
#define JNL_PREALLOC (2u << 20)
#define JNL_PREALLOC_MIN_FREE (64ull << 20)

struct jnl_waiter {
	const struct iovec *iov;
	int iovcnt;
	size_t len; /* payload bytes */
	uint64_t seq;
	int err;
	bool sync; /* wait for fdatasync (else: written is enough) */
	bool done;
	struct jnl_waiter *next;
};

/*
 * Create segment `first` (or, with `reuse`, reset an existing one that
 * holds no records to a bare header): header written and fsynced, then
 * the directory fsynced. On success *out is the open fd.
 */
static int seg_create(struct io *io, int dirfd, uint64_t first, bool reuse,
		      int *out)
{
	char name[JNL_SEG_NAME_LEN];
	uint8_t hdr[JNL_FILE_HDR];
	const char *what = "create";
	int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
	int fd = -1, rc = 0;
	ssize_t n;

	jnl_seg_name(name, first);
	if (!reuse)
		flags |= O_CREAT | O_EXCL;
	fd = io_openat(io, "jnl.open", dirfd, name, flags, 0600);
	if (fd < 0) {
		rc = fd;
		fd = -1;
		goto out;
	}
	memcpy(hdr, JNL_SEGMENT_MAGIC, 8);
	wr_le64(hdr + 8, first);
	what = "write header";
	n = io_pwrite_all(io, "jnl.hdr.write", fd, hdr, sizeof(hdr), 0);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if (reuse) {
		what = "truncate";
		rc = io_ftruncate(io, "jnl.truncate", fd, JNL_FILE_HDR);
		if (rc < 0)
			goto out;
	}
	what = "fsync";
	rc = io_fsync(io, "jnl.hdr.fsync", fd);
	if (rc < 0)
		goto out;
	what = "fsync directory";
	rc = io_fsync(io, "jnl.dir.fsync", dirfd);
	if (rc < 0)
		goto out;
	*out = fd;
	fd = -1;
out:
	if (rc < 0)
		rlog_err("journal %s: %s: %s", name, what, strerror(-rc));
	if (fd >= 0) {
		close(fd);
		/*
		 * A half-made segment must not stay between records that
		 * keep going to the previous one. Best effort: jnl_open
		 * also removes record-less segments.
		 */
		if (!reuse && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			rlog_err("journal %s: removing after failed create: "
				 "%s",
				 name, strerror(errno));
	}
	return rc;
}

/* Cut the torn tail of segment `first` at `end` and make that durable. */
static int seg_trim(struct io *io, int dirfd, uint64_t first, uint64_t end)
{
	char name[JNL_SEG_NAME_LEN];
	int fd = -1, rc = 0;

	jnl_seg_name(name, first);
	fd = io_openat(io, "jnl.open", dirfd, name,
		       O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0) {
		rc = fd;
		fd = -1;
		goto out;
	}
	rc = io_ftruncate(io, "jnl.truncate", fd, (off_t)end);
	if (rc < 0)
		goto out;
	rc = io_fdatasync(io, "jnl.fsync", fd);
out:
	if (rc < 0)
		rlog_err("journal %s: trimming torn tail at %" PRIu64 ": %s",
			 name, end, strerror(-rc));
	else
		rlog_info("journal %s: cut the tail after the last record, at "
			  "offset %" PRIu64,
			  name, end);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * Make room for a new segment at `next`, looking at the newest existing
 * segments: one that holds no records is reused (if it is `next`) or
 * removed; one that holds records must end at next - 1, and its torn tail
 * is trimmed so that it cannot turn into corruption once another segment
 * follows it. On success *out is the fd of segment `next`.
 */
static int seg_prepare(struct io *io, int dirfd, uint64_t next, int *out)
{
	struct jnl_rbuf b = {0};
	uint64_t *segs = NULL;
	size_t n = 0;
	char name[JNL_SEG_NAME_LEN];
	bool reuse = false;
	int rc = 0;

	rc = jnl_seg_list(io, dirfd, &segs, &n);
	if (rc < 0)
		goto out;
	while (n > 0) {
		struct jnl_walk w = {
			.io = io,
			.dirfd = dirfd,
			.first = segs[--n],
			.last = true,
			.after = UINT64_MAX,
		};

		jnl_seg_name(name, w.first);
		if (w.first > next) {
			rc = rerr_set(-EEXIST,
				      "journal %s: segment is past the next "
				      "record %" PRIu64,
				      name, next);
			goto out;
		}
		rc = jnl_seg_walk(&w, &b);
		if (rc < 0)
			goto out;
		if (w.nrec == 0 && w.first == next) {
			reuse = true;
			break;
		}
		if (w.nrec == 0) {
			/* logged: a note, the open goes on */
			rlog_warn("journal %s: no records, removing", name);
			rc = io_unlinkat(io, "jnl.drop.unlink", dirfd, name, 0);
			if (rc < 0) {
				rerr_set(rc, "journal %s: unlink: %s", name,
					 strerror(-rc));
				goto out;
			}
			continue;
		}
		if (w.last_seq != next - 1) {
			rc = rerr_set(w.last_seq >= next ? -EEXIST : -EINVAL,
				      "journal %s: ends at record %" PRIu64
				      ", cannot continue at %" PRIu64,
				      name, w.last_seq, next);
			goto out;
		}
		if (w.valid_end < w.size) {
			rc = seg_trim(io, dirfd, w.first, w.valid_end);
			if (rc < 0)
				goto out;
		}
		break;
	}
	rc = seg_create(io, dirfd, next, reuse, out);
out:
	free(b.p);
	free(segs);
	return rc;
}

int jnl_open(struct jnl **out, const struct jnl_opts *opts)
{
	struct jnl *j = NULL;
	int rc = 0;

	if (!out || !opts || opts->dirfd < 0 || opts->next_seq == 0 ||
	    opts->next_seq == UINT64_MAX)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	rc = util_sync_init(&j->lock, &j->cond);
	if (rc < 0) {
		free(j);
		return rc;
	}
	j->io = opts->io;
	j->dirfd = opts->dirfd;
	j->fd = -1;
	j->tail = &j->head;
	rc = seg_prepare(j->io, j->dirfd, opts->next_seq, &j->fd);
	if (rc < 0)
		goto out;
	j->seg_first = opts->next_seq;
	jnl_seg_name(j->seg_name, j->seg_first);
	j->last_seq = j->written_seq = opts->next_seq - 1;
	j->end = j->zero_end = JNL_FILE_HDR;
	*out = j;
	j = NULL;
out:
	jnl_close(j);
	return rc;
}

/* Grow the leader's scratch arrays. Runs outside the lock. */
static int scratch_reserve(struct jnl *j, size_t nrec, size_t niov)
{
	void *p;

	p = util_reserve(j->hdrs, &j->hdrs_cap, nrec, sizeof(*j->hdrs), 16);
	if (!p)
		return -ENOMEM;
	j->hdrs = p;
	p = util_reserve(j->iovs, &j->iovs_cap, niov, sizeof(*j->iovs), 64);
	if (!p)
		return -ENOMEM;
	j->iovs = p;
	return 0;
}

/*
 * After a batch that ends at `end`: if fewer than JNL_PREALLOC zeros follow
 * it, write the next JNL_PREALLOC, for the batch's fdatasync to make
 * durable too. Best effort and without a failpoint: zeros are what a
 * reader stops at anyway, and a batch never depends on them. Leader (or
 * the holder of a multi-frame record) only.
 */
void jnl_zero_ahead(struct jnl *j, uint64_t end)
{
	static const uint8_t zeros[64 * 1024];
	uint64_t from = j->zero_end > end ? j->zero_end : end;
	uint64_t to = end + 2 * (uint64_t)JNL_PREALLOC;
	struct statvfs vfs;

	if (j->zero_end >= end + JNL_PREALLOC)
		return;
	/* on a nearly full file system the space is for records */
	if (fstatvfs(j->fd, &vfs) < 0 ||
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < JNL_PREALLOC_MIN_FREE)
		return;
	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from)
						     : sizeof(zeros);
		ssize_t w = pwrite(j->fd, zeros, n, (off_t)from);

		if (w <= 0)
			break; /* ENOSPC, say: appends go on without */
		from += (uint64_t)w;
	}
	j->zero_end = from;
}

/*
 * Cut the zeros after the end of the current segment off again, durably,
 * so that a segment no longer written to ends at its last record. With
 * j->lock held and no flush in progress.
 */
static int seg_cut_zeros(struct jnl *j)
{
	int rc;

	if (j->fd < 0 || j->zero_end <= j->end)
		return 0;
	rc = io_ftruncate(j->io, "jnl.cut", j->fd, (off_t)j->end);
	if (rc == 0)
		rc = io_fdatasync(j->io, "jnl.cut.fsync", j->fd);
	if (rc < 0) {
		rlog_err("journal %s: cutting the zeros after offset %" PRIu64
			 ": %s",
			 j->seg_name, j->end, strerror(-rc));
		return rc;
	}
	j->zero_end = j->end;
	return 0;
}

int jnl_seg_undo(struct jnl *j, uint64_t base, const char *trunc_point,
		 const char *sync_point)
{
	int rc;

	rc = io_ftruncate(j->io, trunc_point, j->fd, (off_t)base);
	if (rc == 0)
		rc = io_fdatasync(j->io, sync_point, j->fd);
	j->zero_end = base;
	if (rc < 0)
		rlog_err("journal %s: cannot cut failed records at offset "
			 "%" PRIu64 ": %s; journal is broken",
			 j->seg_name, base, strerror(-rc));
	return rc;
}

/* What the leader is writing (flush_batch). */
struct batch {
	struct jnl_waiter *head;
	uint64_t first; /* seq of its first record */
	uint64_t base;	/* offset of its first frame */
	uint64_t total; /* bytes of its frames */
	size_t nrec;
	int niov; /* in j->iovs */
	bool sync;
};

/* Number and frame the records of `bt` into the leader's scratch. */
static int batch_frame(struct jnl *j, struct batch *bt)
{
	struct jnl_waiter *w;
	size_t niov = 0, k = 0, v = 0;
	int rc;

	for (w = bt->head; w; w = w->next) {
		bt->nrec++;
		niov += 1 + (size_t)w->iovcnt;
		bt->sync |= w->sync;
	}
	rc = niov > INT32_MAX ? -ENOMEM : scratch_reserve(j, bt->nrec, niov);
	if (rc < 0)
		return rc;
	for (w = bt->head; w; w = w->next, k++) {
		jnl_frame_encode(j->hdrs[k], bt->first + k, w->iov, w->iovcnt);
		j->iovs[v].iov_base = j->hdrs[k];
		j->iovs[v++].iov_len = JNL_FRAME_HDR;
		for (int i = 0; i < w->iovcnt; i++)
			if (w->iov[i].iov_len)
				j->iovs[v++] = w->iov[i];
		bt->total += JNL_FRAME_HDR + w->len;
	}
	bt->niov = (int)v;
	return 0;
}

/*
 * Write the framed batch with one pwritev (and sync it, if anyone waits
 * for that). On failure it is cut off again: then *undone, or *broken if
 * that failed too. Leader only, outside the lock.
 */
static int batch_write(struct jnl *j, const struct batch *bt, bool *undone,
		       bool *broken)
{
	ssize_t n;
	int rc;

	n = io_pwritev_all(j->io, "jnl.write", j->fd, j->iovs, bt->niov,
			   (off_t)bt->base);
	rc = n < 0 ? (int)n : 0;
	if (rc == 0) {
		jnl_zero_ahead(j, bt->base + bt->total);
		/* one fdatasync makes the records written before by
		   jnl_append_nosync durable too: same file, earlier offsets */
		if (bt->sync)
			rc = io_fdatasync(j->io, "jnl.fsync", j->fd);
	}
	if (rc < 0) {
		rlog_err("journal %s: writing records %" PRIu64 "..%" PRIu64
			 " at offset %" PRIu64 ": %s",
			 j->seg_name, bt->first, bt->first + bt->nrec - 1,
			 bt->base, strerror(-rc));
		if (jnl_seg_undo(j, bt->base, "jnl.truncate", "jnl.fsync") < 0)
			*broken = true;
		else
			*undone = true;
	}
	return rc;
}

/*
 * Write and sync every queued record as one batch. Called by the leader
 * with j->lock held and no flush in progress; drops the lock around the
 * I/O and returns with it held, every waiter of the batch done.
 */
static void flush_batch(struct jnl *j)
{
	struct batch bt = {.head = j->head};
	struct jnl_waiter *w, *next;
	bool undone = false, broken = false;
	uint64_t k = 0;
	int rc = 0;

	bt.first = j->written_seq + 1;
	bt.base = j->end;
	j->head = NULL;
	j->tail = &j->head;
	if (j->broken) {
		rc = -EIO;
		goto done;
	}
	j->flushing = true;
	pthread_mutex_unlock(&j->lock);
	rc = batch_frame(j, &bt);
	if (rc == 0)
		rc = batch_write(j, &bt, &undone, &broken);
	pthread_mutex_lock(&j->lock);
	j->flushing = false;
	if (broken)
		j->broken = true;
	if (rc == 0) {
		j->end = bt.base + bt.total;
		j->written_seq = bt.first + bt.nrec - 1;
		if (bt.sync)
			j->last_seq = j->written_seq;
	} else if (undone && j->written_seq > j->last_seq) {
		/* the undo's fdatasync made what came before durable */
		j->last_seq = j->written_seq;
	}
done:
	for (w = bt.head; w; w = next) {
		next = w->next;
		w->err = rc;
		w->seq = rc == 0 ? bt.first + k++ : 0;
		w->done = true;
	}
	pthread_cond_broadcast(&j->cond);
}

static int append(struct jnl *j, const struct iovec *iov, int iovcnt, bool sync,
		  uint64_t *seq)
{
	struct jnl_waiter w = {.iov = iov, .iovcnt = iovcnt, .sync = sync};

	if (!j || iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > JNL_MAX_RECORD - w.len)
			return -EFBIG;
		w.len += iov[i].iov_len;
	}

	pthread_mutex_lock(&j->lock);
	if (j->broken) {
		pthread_mutex_unlock(&j->lock);
		return -EIO;
	}
	*j->tail = &w;
	j->tail = &w.next;
	while (!w.done) {
		/* a multi-frame record, held or waited for, goes first */
		if (!j->flushing && !j->big && !j->big_waiting)
			flush_batch(j); /* we lead: our record is queued */
		else
			pthread_cond_wait(&j->cond, &j->lock);
	}
	pthread_mutex_unlock(&j->lock);
	if (w.err == 0 && seq)
		*seq = w.seq;
	return w.err;
}

int jnl_append(struct jnl *j, const struct iovec *iov, int iovcnt,
	       uint64_t *seq)
{
	return append(j, iov, iovcnt, true, seq);
}

int jnl_append_nosync(struct jnl *j, const struct iovec *iov, int iovcnt,
		      uint64_t *seq)
{
	return append(j, iov, iovcnt, false, seq);
}

/*
 * fdatasync what is written but not durable yet. With j->lock held and
 * no other sync in progress (the caller waited for it); drops the lock
 * around the I/O with `syncing` set. Batches are written meanwhile, at
 * later offsets of the same file: an fdatasync covers what was written
 * before it started, so `upto` is durable when it returns, and the
 * writers do not wait for it (that is the point of sync=batch). A
 * failure breaks the journal: those records were acknowledged and cannot
 * be cut off again, and after a failed fdatasync the kernel may have
 * dropped the pages, so a later one that succeeds proves nothing.
 */
static int sync_written(struct jnl *j)
{
	uint64_t upto = j->written_seq;
	int fd = j->fd, rc;

	if (j->broken)
		return -EIO;
	if (upto <= j->last_seq)
		return 0;
	j->syncing = true;
	pthread_mutex_unlock(&j->lock);
	rc = io_fdatasync(j->io, "jnl.fsync", fd);
	pthread_mutex_lock(&j->lock);
	j->syncing = false;
	pthread_cond_broadcast(&j->cond);
	if (rc < 0) {
		rlog_err("journal %s: fdatasync of records %" PRIu64
			 "..%" PRIu64 ": %s; journal is broken",
			 j->seg_name, j->last_seq + 1, upto, strerror(-rc));
		j->broken = true;
		return -EIO;
	}
	if (upto > j->last_seq) /* a durable batch may have gone further */
		j->last_seq = upto;
	return 0;
}

int jnl_sync(struct jnl *j)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	while (j->syncing || j->big)
		pthread_cond_wait(&j->cond, &j->lock);
	rc = sync_written(j);
	pthread_mutex_unlock(&j->lock);
	return rc;
}

uint64_t jnl_written_seq(struct jnl *j)
{
	return util_locked_u64(&j->lock, &j->written_seq);
}

uint64_t jnl_last_seq(struct jnl *j)
{
	return util_locked_u64(&j->lock, &j->last_seq);
}

uint64_t jnl_segment_bytes(struct jnl *j)
{
	return util_locked_u64(&j->lock, &j->end);
}

int jnl_rotate(struct jnl *j)
{
	uint64_t first;
	bool empty;
	int fd = -1, old, rc = 0;

	pthread_mutex_lock(&j->lock);
	while (j->flushing || j->syncing || j->big)
		pthread_cond_wait(&j->cond, &j->lock);
	if (j->broken)
		rc = -EIO;
	/*
	 * Records written by jnl_append_nosync are made durable first: a
	 * segment that is followed by another must hold only durable
	 * records, or a crash could leave a hole in the middle of the
	 * journal instead of a torn tail at its end.
	 */
	while (rc == 0 && j->written_seq > j->last_seq)
		rc = sync_written(j);
	first = j->written_seq + 1;
	empty = j->end == JNL_FILE_HDR && j->seg_first == first;
	/*
	 * Every record of the current segment is durable now, so it only
	 * needs its zeros cut off: only the last segment may end in bytes
	 * that are not records. Under the lock, so that no batch is
	 * written meanwhile.
	 */
	if (rc == 0 && !empty)
		rc = seg_cut_zeros(j);
	pthread_mutex_unlock(&j->lock);
	/* An empty segment already starts at the next record. */
	if (rc < 0 || empty)
		return rc;

	rc = seg_create(j->io, j->dirfd, first, false, &fd);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&j->lock);
	old = j->fd;
	j->fd = fd;
	j->seg_first = first;
	j->end = j->zero_end = JNL_FILE_HDR;
	jnl_seg_name(j->seg_name, first);
	pthread_mutex_unlock(&j->lock);
	close(old);
	return 0;
}

int jnl_drop_upto(struct jnl *j, uint64_t seq)
{
	uint64_t *segs = NULL, cur;
	size_t n = 0, removed = 0;
	char name[JNL_SEG_NAME_LEN];
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	cur = j->seg_first;
	pthread_mutex_unlock(&j->lock);

	rc = jnl_seg_list(j->io, j->dirfd, &segs, &n);
	if (rc < 0)
		goto out;
	/*
	 * Oldest first, so that a failure leaves a journal without holes.
	 * A segment's last record is the next segment's first seq - 1.
	 */
	for (size_t i = 0; i + 1 < n && segs[i] < cur; i++) {
		if (segs[i + 1] - 1 > seq)
			break;
		jnl_seg_name(name, segs[i]);
		rc = io_unlinkat(j->io, "jnl.drop.unlink", j->dirfd, name, 0);
		if (rc < 0) {
			rlog_err("journal %s: unlink: %s", name, strerror(-rc));
			break;
		}
		removed++;
	}
	if (removed) {
		int frc = io_fsync(j->io, "jnl.dir.fsync", j->dirfd);

		if (frc < 0) {
			rlog_err("journal: fsync directory after dropping "
				 "segments: %s",
				 strerror(-frc));
			if (rc == 0)
				rc = frc;
		}
	}
out:
	free(segs);
	return rc;
}

void jnl_close(struct jnl *j)
{
	if (!j)
		return;
	/* records written by jnl_append_nosync become durable here; a
	   clean close leaves no zeros for the next open to report */
	if (!j->broken && j->fd >= 0) {
		pthread_mutex_lock(&j->lock);
		(void)sync_written(j); /* logged */
		pthread_mutex_unlock(&j->lock);
	}
	if (!j->broken)
		(void)seg_cut_zeros(j);
	if (j->fd >= 0)
		close(j->fd);
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
	free(j->hdrs);
	free(j->iovs);
	free(j);
}
