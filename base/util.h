/*
 * util.h - small helpers shared by the store's modules: messages into
 * caller buffers, printable copies of untrusted text (lock, format),
 * timestamps, directory listings on descriptors.
 */
#ifndef RECFS_UTIL_H
#define RECFS_UTIL_H

#include <dirent.h>
#include <stddef.h>

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
 * Room for element `n` of the array `v` of *cap elements of `size`
 * bytes (n <= *cap): `v` itself while n < *cap, else `v` reallocated to
 * twice *cap (`first` elements if *cap is 0), *cap updated. NULL if out
 * of memory or if the bytes overflow size_t; `v` and *cap are then
 * unchanged and `v` is still the caller's to free.
 */
void *util_grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

#endif
