/*
 * scratch.h - scratch files (SPEC section 4): the temp names of rsync,
 * vim, sed -i and backups (which names are scratch is the mount's choice:
 * the store takes any valid ID it is given here). They are plain,
 * unversioned files kept in their own tree of the store directory,
 * STORE/scratch/<namespace path>/<name> (recfs(5)), so they survive
 * unmounts like files on a local disk, never reach the journal or the
 * history, and are never seen by store_list, recovery or verify.
 *
 * Paths are given like IDs ("ns/sub/.name.abc123") and checked with the
 * ID rules (id.h): -EINVAL / -ENAMETOOLONG for a bad one. A scratch
 * file lives in a record namespace: its scratch directories are made
 * when the first one is created there, and only if that namespace
 * exists (else -ENOENT). Files are opened beneath STORE/scratch without
 * following any symlink: one planted there is refused (-ELOOP).
 *
 * The backing file is the scratch file: its size, mode, times and user
 * xattrs are its own, and the caller reads, writes, fstat()s, fchmod()s,
 * futimens()es and fsetxattr()s the fd store_scratch_open returns
 * directly. Nothing here is journaled: a create, write or unlink is as
 * durable as on a local disk (that is, after store_scratch_fsync);
 * store_scratch_rename and _from_record sync their directories
 * themselves, and _commit its version (not the removal of the file).
 *
 * The daemon's own access to a file follows its mode, as on a local
 * disk: unless it runs as root, it cannot open for writing (or commit,
 * which reads it) a scratch file whose mode denies that to its owner:
 * -EACCES. A symlink planted as STORE/scratch itself makes store_open
 * fail, as one planted as STORE/records does.
 *
 * Only the file backend has scratch files: with the memory backend every
 * function here returns -ENOTSUP. Anything that writes returns -EROFS on
 * a read-only store. All functions return 0 or -errno.
 */
#ifndef RECFS_SCRATCH_H
#define RECFS_SCRATCH_H

#include "store.h"

/*
 * Open scratch file `path` with open(2) `flags` (access mode, O_CREAT,
 * O_EXCL, O_TRUNC, O_APPEND, O_NONBLOCK, O_SYNC, O_DSYNC, O_DIRECT,
 * O_NOATIME; anything else is -EINVAL). A file created here gets exactly
 * `mode` & 07777 (no umask; it is 0600 until then). *fd_out is the
 * caller's to close. Returns 0, -ENOENT (no such file, or O_CREAT in a
 * namespace that does not exist), -EEXIST (O_EXCL), -EISDIR (`path` is
 * a namespace), -ELOOP (a symlink in the store), -EROFS, -ENOTSUP, ...
 */
int store_scratch_open(struct store *s, const char *path, int flags,
		       mode_t mode, int *fd_out);

/* fstat of scratch file `path` (the backing file's own stat). Returns 0,
   -ENOENT (none, or not a regular file), -ELOOP, -ENOTSUP, ... */
int store_scratch_stat(struct store *s, const char *path, struct stat *st);

/*
 * Make scratch file `path` durable: fsync `fd` (an fd of it from
 * store_scratch_open; -1: none) and the directory holding its name (the
 * scratch directories above were synced when they were made). The
 * frontend's fsync of a scratch file calls this, not fsync(2) alone.
 */
int store_scratch_fsync(struct store *s, const char *path, int fd);

/* Remove scratch file `path` (not synced: see store_scratch_fsync).
   Returns 0, -ENOENT, -ELOOP, -EROFS, -ENOTSUP, ... */
int store_scratch_unlink(struct store *s, const char *path);

/*
 * Rename scratch file `from` to scratch path `to`, replacing `to` like
 * rename(2) (its namespace must exist), and sync both directories.
 * Returns 0, -ENOENT, -EISDIR (`to` is a scratch directory), ...
 */
int store_scratch_rename(struct store *s, const char *from, const char *to);

/*
 * Call cb(arg, name, false) for each scratch file directly in namespace
 * `ns` ("" is the root); names only, in no order. A namespace without
 * scratch files (or that does not exist) lists nothing. A non-zero
 * return of cb stops the listing and is returned.
 */
int store_scratch_list(struct store *s, const char *ns, store_list_cb cb,
		       void *arg);

/*
 * The rename of scratch file `path` onto record `id`: commit its content
 * as the next version of `id` under args->cond (NULL: ANY), then remove
 * it. The version gets the file's mode unless args->mode >= 0, its mtime
 * unless args->mtime is set if that time was set with utimens (mtime
 * differs from ctime: rsync -a, cp -p; else the commit time, so that an
 * unchanged `sed -i` is a no-op), and its
 * user xattrs (real xattrs of the file; user.recfs.* ones are computed
 * and ignored) set over the record's own (which it keeps), all in the one journal record
 * of the commit. The content is copied into a stage (copy_file_range: a
 * reflink where the file system has them) rather than moved: see
 * scratch.c for why.
 *
 * On failure the record is unchanged and the scratch file is still
 * there. On success the version is durable and the scratch file gone,
 * but its removal is not synced: a crash after the commit point may
 * leave the scratch file behind (holding what was committed), never
 * lose the commit. A
 * no-op commit (res->noop) removes the scratch file too. Callers must
 * not write to the file while this runs: such a write may or may not be
 * in the version. Returns what store_commit returns (-ESTALE with
 * res->current, -EFBIG, -ENOENT, -EISDIR, -ENOSPC, ...), and -ENOSPC
 * when the file's xattrs exceed what a record may hold.
 */
int store_scratch_commit(struct store *s, const char *path, const char *id,
			 const struct store_commit_args *args,
			 struct store_result *res);

/*
 * The rename of record `id` onto scratch path `path` (`mv f f~`, vim's
 * backup): the scratch file gets the current version's content, mode,
 * mtime and user xattrs (replacing a scratch file already at `path`, as
 * rename(2) does), then the record is deleted by `who`, on condition
 * that it is still at the version copied. On failure nothing changed
 * (-ESTALE: the record changed meanwhile; try again). A crash between
 * the two steps may leave both the scratch file and the record, never
 * neither. Returns 0, -ENOENT, -EISDIR (`id` is a namespace), -ESTALE,
 * -EROFS, -ENOTSUP, ...
 */
int store_scratch_from_record(struct store *s, const char *id, const char *path,
			      const struct store_who *who);

#endif
