/*
 * reserve.c - the space reserve of a store (SPEC section 8): a file
 * STORE/reserve, preallocated when the store is opened for writing, that
 * holds back enough space for the operations that free space to work on a
 * full disk: a delete or a rename (one journal record), a history batch
 * (its pack, trees, commit and history.idx frame) and the checkpoint
 * after it (a snapshot, a new journal segment).
 *
 * Size: 8 MiB, plus 256 bytes per record (the snapshot and the trees of
 * a batch grow with the record count), at most 64 MiB and at most 1/8 of
 * the file system. 8 MiB covers one history.idx frame of a batch (at most
 * 4 MiB, IDX_BUDGET in history_batch.c) with room for its trees and
 * commit. Decided once per open.
 *
 * Policy: commits of new content never use it: while it is held it is
 * allocated space, so they meet ENOSPC first. When an operation that
 * frees space meets ENOSPC (a delete or rename appending to the journal;
 * a history batch or a checkpoint once a delete or rename waits for them:
 * the content of deleted records is freed only once the history has it,
 * and the journal only once the history is past it), reserve_release
 * truncates the file to zero and syncs it (ext4 gives truncated blocks
 * back only when its journal commits), and the operation is tried once
 * more. That starts a "space episode", logged once. During it, a commit
 * of new content fails with ENOSPC while less than the reserve's size is
 * free (reserve_check_content), so that what deletes free goes to the
 * history and the next deletes, not to new records; the history writer
 * cuts its batches to the room there is less 1 MiB. Whenever twice the
 * reserve is free again (checked after each change and drain), it is
 * preallocated anew; the episode ends once, in addition, the history has
 * caught up and the journal it had not written is dropped
 * (store_space_recover). root's reserved blocks (f_bfree
 * - f_bavail, none on tmpfs, 5% by default on ext4) count as free for a
 * daemon running as root, as they do for its writes: root meets ENOSPC
 * later, and the reserve works the same.
 *
 * A store opened on a full disk needs room too (recovery starts a new
 * journal segment and checkpoints): reserve_yield_at_open gives the
 * reserve back before recovery when less than its size is free, and
 * reserve_open makes it again after if there is room.
 *
 * What is kept for the status: the reserve's size and state, and the last
 * space error (when, and what met it).
 *
 * Failpoints: "reserve.alloc" (the preallocation), "reserve.release" (the
 * truncate).
 *
 * Errors of reserve_open are reported (err.h). The episodes -- the disk
 * full, the reserve released, made again -- are logged instead: they are
 * not errors of a call (the calls that meet them succeed, or report
 * their own ENOSPC) but changes of the store's state that the operator
 * must see, and no caller is there to hand them to.
 */
#include "store_i.h"
#include "admin.h"
#include "io.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define RESERVE_FILE "reserve"
#define RESERVE_BASE (8ull << 20)
#define RESERVE_PER_RECORD 256ull
#define RESERVE_MAX (64ull << 20)
#define RESERVE_FS_PART 8 /* at most 1/8 of the file system */

struct reserve {
	struct io *io;
	const char *path; /* STORE, for messages (borrowed) */
	int dirfd;	  /* STORE (borrowed) */
	int fd;		  /* STORE/reserve */
	uint64_t size;

	pthread_mutex_t mu; /* protects the fields below */
	bool held;	    /* the file holds `size` bytes */
	bool short_space;   /* a space error since there was room last */
	bool freeing;	    /* a delete or rename was committed since */
	unsigned episodes;  /* times it was released */
	int last_err;	    /* -errno of the last space error, or 0 */
	int64_t last_time;  /* its time (seconds since the epoch) */
	char last_what[64]; /* what met it */
};

/* Bytes free for this process: root may use the blocks reserved for it. */
static int room(int fd, uint64_t *free_bytes, uint64_t *total)
{
	struct statvfs st;

	if (fstatvfs(fd, &st) < 0)
		return -errno;
	*free_bytes = (uint64_t)(geteuid() == 0 ? st.f_bfree : st.f_bavail) *
		      st.f_frsize;
	*total = (uint64_t)st.f_blocks * st.f_frsize;
	return 0;
}

uint64_t reserve_size_for(uint64_t records, uint64_t fs_bytes)
{
	uint64_t size = RESERVE_BASE + records * RESERVE_PER_RECORD;

	if (size > RESERVE_MAX)
		size = RESERVE_MAX;
	if (fs_bytes && size > fs_bytes / RESERVE_FS_PART)
		size = fs_bytes / RESERVE_FS_PART;
	return size;
}

/* Preallocate the file. r->mu held, or not shared yet. */
static int allocate(struct reserve *r)
{
	int rc = io_point(r->io, "reserve.alloc");

	if (rc == 0)
		rc = -posix_fallocate(r->fd, 0, (off_t)r->size);
	if (rc == 0)
		r->held = true;
	return rc;
}

void reserve_yield_at_open(struct io *io, int dirfd, const char *path)
{
	uint64_t free_bytes, total;
	struct stat st;
	int fd = openat(dirfd, RESERVE_FILE,
			O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return; /* none yet */
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    room(fd, &free_bytes, &total) == 0 &&
	    free_bytes < (uint64_t)st.st_size &&
	    io_ftruncate(io, "reserve.release", fd, 0) == 0 &&
	    io_fsync(io, NULL, fd) == 0)
		rlog_warn("%s: the file system is full (ENOSPC): the space "
			  "reserve of %lld KiB goes to opening the store",
			  path, (long long)st.st_size >> 10);
	close(fd);
}

int reserve_open(struct reserve **out, struct io *io, int dirfd,
		 const char *path, uint64_t records)
{
	struct reserve *r = calloc(1, sizeof(*r));
	uint64_t free_bytes, total;
	struct stat st;
	int rc;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->io = io;
	r->path = path;
	r->dirfd = dirfd;
	pthread_mutex_init(&r->mu, NULL);
	r->fd = openat(dirfd, RESERVE_FILE,
		       O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (r->fd < 0 || fstat(r->fd, &st) < 0) {
		rc = rerr_set(-errno,
			      "%s/%s: cannot open the space reserve: %s", path,
			      RESERVE_FILE, strerror(errno));
		goto out;
	}
	rc = room(r->fd, &free_bytes, &total);
	if (rc) {
		rerr_set(rc, "%s: the file system's free space: %s", path,
			 strerror(-rc));
		goto out;
	}
	r->size = reserve_size_for(records, total);
	/* a bigger one from an earlier open gives back what is not needed */
	if ((uint64_t)st.st_size > r->size)
		(void)io_ftruncate(io, NULL, r->fd, (off_t)r->size);
	rc = allocate(r);
	if (rc) {
		rlog_warn("%s: cannot hold back the space reserve of %" PRIu64
			  " KiB: %s (%s); it is made when there is room",
			  path, r->size >> 10, strerror(-rc),
			  strerrorname_np(-rc) ? strerrorname_np(-rc) : "?");
		(void)io_ftruncate(io, NULL, r->fd, 0);
		r->episodes = 1;
		rc = 0;
	}
out:
	if (rc) {
		reserve_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void reserve_free(struct reserve *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Remember a space error for the status. r->mu held. */
static void note_locked(struct reserve *r, int err, const char *what)
{
	r->short_space = true;
	r->last_err = err;
	r->last_time = (int64_t)time(NULL);
	snprintf(r->last_what, sizeof(r->last_what), "%s", what);
}

void reserve_note(struct reserve *r, int err, const char *what)
{
	if (!r || err != -ENOSPC)
		return;
	pthread_mutex_lock(&r->mu);
	note_locked(r, err, what);
	pthread_mutex_unlock(&r->mu);
}

bool reserve_release(struct reserve *r, const char *what)
{
	bool released = false;
	int rc;

	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	note_locked(r, -ENOSPC, what);
	if (!r->held)
		goto out;
	rc = io_ftruncate(r->io, "reserve.release", r->fd, 0);
	if (rc == 0)
		rc = io_fsync(r->io, NULL, r->fd);
	if (rc) {
		rlog_err("%s/%s: cannot release the space reserve: %s", r->path,
			 RESERVE_FILE, strerror(-rc));
		goto out;
	}
	r->held = false;
	r->episodes++;
	released = true;
	rlog_warn("%s: the file system is full (ENOSPC) while %s: released "
		  "the space reserve of %" PRIu64 " KiB so that deletes, "
		  "renames and the history go on; it is made again when "
		  "there is room",
		  r->path, what, r->size >> 10);
out:
	pthread_mutex_unlock(&r->mu);
	return released;
}

bool reserve_restore(struct reserve *r, bool may_end)
{
	uint64_t free_bytes, total;
	bool room_again;

	if (!r)
		return true;
	pthread_mutex_lock(&r->mu);
	room_again = room(r->fd, &free_bytes, &total) == 0 &&
		     free_bytes >= 2 * r->size;
	if (!r->held && room_again && allocate(r) == 0)
		rlog_info("%s: there is room again: the space reserve of "
			  "%" PRIu64 " KiB is held back again",
			  r->path, r->size >> 10);
	else if (!r->held)
		/* a failed preallocation may have left part of it */
		(void)io_ftruncate(r->io, NULL, r->fd, 0);
	if (r->held && room_again && may_end)
		r->short_space = r->freeing = false;
	pthread_mutex_unlock(&r->mu);
	return !reserve_short(r);
}

void reserve_note_freeing(struct reserve *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	if (!r->held || r->short_space)
		r->freeing = true;
	pthread_mutex_unlock(&r->mu);
}

bool reserve_release_freeing(struct reserve *r, bool frees, const char *what)
{
	bool freeing;

	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	freeing = frees || r->freeing;
	if (!freeing)
		note_locked(r, -ENOSPC, what);
	pthread_mutex_unlock(&r->mu);
	return freeing && reserve_release(r, what);
}

int reserve_check_content(struct reserve *r)
{
	uint64_t free_bytes, total;
	int rc = 0;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->mu);
	if (!r->held && room(r->fd, &free_bytes, &total) == 0 &&
	    free_bytes < r->size) {
		rc = -ENOSPC;
		note_locked(r, rc, "committing");
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

bool reserve_short(struct reserve *r)
{
	bool short_space;

	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	short_space = !r->held || r->short_space;
	pthread_mutex_unlock(&r->mu);
	return short_space;
}

void reserve_status(struct reserve *r, struct store_status *st)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	st->reserve_bytes = r->size;
	st->reserve_held = r->held;
	st->reserve_released = r->episodes;
	st->space_error = r->last_err;
	st->space_error_time = r->last_time;
	snprintf(st->space_error_what, sizeof(st->space_error_what), "%s",
		 r->last_what);
	pthread_mutex_unlock(&r->mu);
}
