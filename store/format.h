/*
 * format.h - the store's format file, STORE/format.json:
 * {"format":"recfs","version":1,"created":"2026-11-23T16:00:00Z"}.
 * A store whose version is newer than STORE_FORMAT_VERSION is refused and
 * left untouched; a corrupt file is refused with an error naming it.
 */
#ifndef RECFS_FORMAT_H
#define RECFS_FORMAT_H

#include <stddef.h>

struct io;

#define FORMAT_FILE "format.json"
#define FORMAT_MAX_BYTES 65536 /* larger files are corrupt, not parsed */

/*
 * Write a new format file in the directory `dirfd` atomically: a temp file
 * created O_EXCL with mode 0600, fsync, rename, fsync of the directory.
 * Returns 0 or -errno.
 */
int format_write(struct io *io, int dirfd);

/*
 * Read and check the format file of the store at `dirfd`; `path` is only
 * for messages. Returns 0 if this binary can open the store; -ENOENT if
 * there is no format file; -EPROTONOSUPPORT if the version is newer;
 * -EBADMSG if the file is corrupt (not JSON, wrong fields, too large).
 * `why` (may be NULL) gets a one-line message naming the file and cause.
 */
int format_check(int dirfd, const char *path, char *why, size_t whylen);

/*
 * Open the store directory `path` into *dirfd (read-only) and check its
 * format file. If it cannot, *dirfd is -1 and why is reported (err.h),
 * for a missing format file with how to make one. Returns 0 or -errno
 * (-ENOENT: no such directory, or no format file).
 */
int format_open_dir(const char *path, int *dirfd);

#endif
