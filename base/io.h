/*
 * io.h - the I/O shim: every store and journal syscall that can fail goes
 * through here, so that tests can make the Nth call at a named failpoint
 * fail (EIO, ENOSPC, short write), stall, or crash the process (like
 * SQLite's SimulateIOError and its fault allocator).
 *
 * A `struct io` is owned by whoever opens the store (main, a test) and
 * handed down; it is thread-safe. A NULL `struct io *` means real I/O with
 * no failpoints; a NULL `point` means no failpoint for that call. All
 * functions return 0 (or a byte count) on success and -errno on failure;
 * they loop on EINTR and on short reads/writes.
 *
 * An injected EINTR is retried like a real interrupted call (passing the
 * point again counts one more hit), so "fail:EINTR*3" makes a call retry
 * three times and "short:EINTR" makes a write partial before the loop
 * finishes it. Hits are counted for up to 256 distinct point names.
 */
#ifndef RECFS_IO_H
#define RECFS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct io;

/* What an armed failpoint does when it fires. */
enum io_action {
	IO_FAIL,  /* the call returns -err without doing anything */
	IO_SHORT, /* a write writes half of its bytes, then returns -err */
	IO_CRASH, /* _exit(IO_CRASH_STATUS) before the call: like kill -9 */
	IO_STALL, /* block until io_release() (or io_free), then proceed */
};

#define IO_CRASH_STATUS 77

/* Create a shim with no failpoints armed. Caller frees with io_free. */
int io_new(struct io **out);

/* Release stalled threads and free. Accepts NULL. */
void io_free(struct io *io);

/*
 * Arm `point`: its `nth` hit from now on (1 = the next one) fires `act`
 * (with `err` as the errno for IO_FAIL/IO_SHORT; 0 means EIO), and so do
 * the following `times - 1` hits (times 0 = every hit from the nth on;
 * nth 0 is taken as 1). Re-arming a point replaces its previous setting.
 * Returns 0 or -EINVAL/-ENOMEM (-ENOMEM: 64 points armed already).
 */
int io_arm(struct io *io, const char *point, enum io_action act, int err,
	   unsigned nth, unsigned times);

/*
 * Arm failpoints from a spec string, as given in RECFS_FAILPOINTS:
 * "point=action[:errno][@nth][*times],..." with action one of fail, short,
 * crash, stall and errno a name (EIO, ENOSPC, ...) or a number, e.g.
 * "jnl.fsync=fail:EIO@3,commit.rename=crash". Defaults: errno EIO, nth 1,
 * times 1 ("*0" = every hit from the nth on). An empty spec arms nothing.
 * Returns 0 or -EINVAL; a bad spec arms none of its items.
 */
int io_arm_spec(struct io *io, const char *spec);

/* Disarm every failpoint and release stalled threads. */
void io_disarm_all(struct io *io);

/* Wake every thread stalled in an IO_STALL failpoint. */
void io_release(struct io *io);

/* How many times `point` was reached since io_new (armed or not). */
unsigned io_hits(struct io *io, const char *point);

/* How many threads are stalled at `point` right now. */
unsigned io_stalled(struct io *io, const char *point);

/*
 * Pass through failpoint `point` without doing I/O: returns 0, or the
 * armed error (or crashes/stalls). Used for named steps between syscalls.
 */
int io_point(struct io *io, const char *point);

/* The wrapped calls. `point` names the failpoint checked first. */
int io_openat(struct io *io, const char *point, int dirfd, const char *name,
	      int flags, mode_t mode);
ssize_t io_pread_all(struct io *io, const char *point, int fd, void *buf,
		     size_t len, off_t off);
ssize_t io_pwrite_all(struct io *io, const char *point, int fd, const void *buf,
		      size_t len, off_t off);
ssize_t io_pwritev_all(struct io *io, const char *point, int fd,
		       const struct iovec *iov, int iovcnt, off_t off);
int io_fsync(struct io *io, const char *point, int fd);
int io_fdatasync(struct io *io, const char *point, int fd);
int io_ftruncate(struct io *io, const char *point, int fd, off_t len);
int io_renameat(struct io *io, const char *point, int olddirfd,
		const char *oldname, int newdirfd, const char *newname,
		unsigned flags);
int io_unlinkat(struct io *io, const char *point, int dirfd, const char *name,
		int flags);
int io_mkdirat(struct io *io, const char *point, int dirfd, const char *name,
	       mode_t mode);
int io_linkat(struct io *io, const char *point, int olddirfd,
	      const char *oldname, int newdirfd, const char *newname);
int io_syncfs(struct io *io, const char *point, int fd);

/*
 * Copy all of `in` (from offset 0) to `out` at offset 0 with
 * copy_file_range, falling back to read/write; returns bytes. IO_SHORT
 * acts like IO_FAIL here. Neither fd's file offset is used or moved.
 */
ssize_t io_copy_fd(struct io *io, const char *point, int in, int out);

#endif
