/*
 * util.h - small helpers shared by the store's modules: messages into
 * caller buffers, printable copies of untrusted text (lock, format),
 * timestamps, directory listings on descriptors, writing a whole buffer.
 */
#ifndef RECFS_UTIL_H
#define RECFS_UTIL_H

#include <dirent.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* snprintf into msg[len]; does nothing if msg is NULL or len 0. */
void util_say(char *msg, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Copy `src` keeping printable ASCII only ('?' for the rest), so that
   text read from a file cannot drive the terminal or the log. */
void util_clean_copy(char *dst, size_t len, const char *src);

/* The current UTC time as "2026-11-23T16:00:00Z". Returns 0 or -errno. */
int util_now_iso(char *buf, size_t len);

/* A listing of directory `dirfd` itself on a descriptor of its own
   (`dirfd` stays the caller's), for readdir and closedir. Returns 0 or
   -errno. */
int util_opendir_fd(int dirfd, DIR **out);

/*
 * A listing on `fd`, which it takes (or the -errno of the open that made
 * it, returned): the listing owns `fd`, or `fd` is closed and the listing
 * is NULL. Returns 0 or -errno.
 */
int util_fdopendir(int fd, DIR **out);

/*
 * Room for element `n` of the array `v` of *cap elements of `size`
 * bytes (n <= *cap): `v` itself while n < *cap, else `v` reallocated to
 * twice *cap (`first` elements if *cap is 0), *cap updated. NULL if out
 * of memory or if the bytes overflow size_t; `v` and *cap are then
 * unchanged and `v` is still the caller's to free.
 */
void *util_grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

/*
 * Room for `want` elements in `v` (as util_grow): `v` itself if *cap is
 * enough (and not 0), else `v` reallocated once to *cap (`first` if 0)
 * doubled until it is, *cap updated. NULL only if out of memory or on
 * overflow; `v` and *cap are then unchanged.
 */
void *util_reserve(void *v, size_t *cap, size_t want, size_t size,
		   size_t first);

/*
 * Call fn(arg, name) for each extended attribute name of `fd` (none if
 * its file system keeps none), until fn returns non-zero. Returns 0,
 * what fn returned, or -errno (-ERANGE if the list grew meanwhile).
 */
int util_xattr_each(int fd, int (*fn)(void *arg, const char *name), void *arg);

/*
 * The stat of what `fd` (taken: closed here) opened with O_PATH |
 * O_NOFOLLOW, or the -errno of that open: -ENOENT for an -ENOTDIR on the
 * way, -ELOOP if it opened a symlink itself. Returns 0 or -errno.
 */
int util_stat_opened(int fd, struct stat *st);

/* Write all of buf[len] to `fd` at its file offset (a pipe, a socket, a
   file), again after a short write or EINTR. Returns 0 or -errno (errno
   is left set). */
int util_write_all(int fd, const void *buf, size_t len);

/* Make `path` (mode 0644 if new) hold buf[len], truncating it, and close
   it: 0 only if close(2) returned 0 too (on a recfs mount, the commit),
   else -errno. */
int util_write_file(const char *path, const void *buf, size_t len);

/* Initialise `mu` and `cv` (default attributes): both or neither.
   Returns 0 or -errno. */
int util_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv);

/* Initialise `cv` to time its waits on CLOCK_MONOTONIC (a clock step
   does not cut or stretch them). Returns 0 or -errno. */
int util_cond_init_mono(pthread_cond_t *cv);

/* CLOCK_MONOTONIC now plus `ms`: the deadline of such a wait. */
void util_deadline_ms(struct timespec *ts, unsigned ms);

/* `*v` read under `mu`: a getter for one field a mutex guards. */
uint64_t util_locked_u64(pthread_mutex_t *mu, const uint64_t *v);
int util_locked_int(pthread_mutex_t *mu, const int *v);

/* Decode exactly 2 * n hex digits of `hex` (NUL-terminated, nothing
   after them) into out[n]. 0, or -EBADMSG if it is not that. */
int util_hex_decode(const char *hex, uint8_t *out, size_t n);

#endif
