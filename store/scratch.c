/*
 * scratch.c - scratch files (scratch.h): plain files under STORE/scratch,
 * one directory per record namespace that holds any, resolved with the
 * backend's tree ops (backend.h: the file backend's beneath-and-no-
 * symlinks opens). Only a backend with `tree` has scratch files: with
 * any other, s->scratch_fd is -1 and every scratch call is refused.
 *
 * Namespaces: a scratch directory is made (0700, its parent synced) only
 * while `gate` is held shared and the record namespace exists, and
 * store_rmdir / store_rename_ns hold the gate exclusively when they drop
 * it (scratch_ns_drop), so no scratch file is ever made in a namespace
 * that is going away.
 *
 * Why a commit copies the file into a stage instead of moving (or
 * linking) its inode there, which would cost no bytes: (1) the frontend
 * and other processes may still hold fds of the scratch file, and on a
 * moved inode a late write through one would change a record's content
 * in place, without a version, under its hash and its history blob
 * link; (2) a stage in tmp/ is removed at the next open, so a crash
 * before the commit point would lose a moved scratch file, and a linked
 * one left behind after it would share its inode with the record. The
 * copy is copy_file_range (io_copy_fd): in the kernel, without a pass
 * through user space, and a reflink on file systems that have them.
 */
#include "store_i.h"
#include "scratch.h"
#include "id.h"
#include "io.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define OPEN_FLAGS                                                             \
	(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK |      \
	 O_SYNC | O_DSYNC | O_DIRECT | O_NOATIME | O_LARGEFILE | O_CLOEXEC |   \
	 O_NOFOLLOW)

#define USER_PREFIX "user."
#define COMPUTED_PREFIX "user.recfs." /* SPEC 3: computed, never kept */

/* Checks every call starts with: a valid path, a file store, and no
   change to a read-only one. */
static int check_path(struct store *s, const char *path, bool write)
{
	int rc = id_check(path);

	if (rc)
		return rc;
	if (!s->be->tree)
		return -ENOTSUP; /* no scratch tree (backend.h) */
	if (write && s->opts.read_only)
		return -EROFS;
	return 0;
}

/* The namespace part of `path` into dir[ID_MAX_LEN + 1]; false if `path`
   is at the root. */
static bool ns_of(const char *path, char *dir)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return false;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return true;
}

/* Make scratch directory `dir` if it is not there (its parent exists). */
static int mkdir_one(struct store *s, const char *dir)
{
	const char *leaf;
	int pfd = -1, rc;

	rc = s->be->ops->tree_parent(s->be, s->scratch_fd, dir, &pfd, &leaf);
	if (rc)
		return rc;
	rc = io_mkdirat(s->io, "scratch.mkdir", pfd, leaf, 0700);
	if (rc == 0)
		rc = io_fsync(s->io, "scratch.mkdir.dirsync", pfd);
	else if (rc == -EEXIST)
		rc = 0; /* a symlink there is refused by the next open */
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	return rc;
}

/*
 * Make the scratch directories of the namespace holding `path`, which
 * must exist as a record namespace: -ENOENT if not, -ENOTDIR if a record
 * is in the way. Gate held shared.
 */
static int make_parents(struct store *s, const char *path)
{
	char dir[ID_MAX_LEN + 1];
	struct stat st;
	char *p;
	int rc;

	if (!ns_of(path, dir))
		return 0;
	rc = s->be->ops->stat(s->be, dir, &st);
	if (rc)
		return rc == -ENOTDIR ? -ENOENT : rc;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	for (p = strchr(dir, '/');; p = strchr(p + 1, '/')) {
		if (p)
			*p = '\0';
		rc = mkdir_one(s, dir);
		if (!p || rc)
			return rc;
		*p = '/';
	}
}

/* The scratch directory holding `path`, made if need be (gate held
   shared). Release *pfd with tree_parent_put. */
static int parent_made(struct store *s, const char *path, int *pfd,
		       const char **leaf)
{
	int rc = s->be->ops->tree_parent(s->be, s->scratch_fd, path, pfd, leaf);

	if (rc != -ENOENT)
		return rc;
	rc = make_parents(s, path);
	return rc ? rc
		  : s->be->ops->tree_parent(s->be, s->scratch_fd, path, pfd,
					    leaf);
}

/* Only regular files are scratch files: check what `fd` opened. */
static int check_regular(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode))
		return 0;
	return S_ISDIR(st.st_mode)   ? -EISDIR
	       : S_ISLNK(st.st_mode) ? -ELOOP
				     : -ENOENT;
}

/* Open an existing scratch file. O_NONBLOCK until it is known to be a
   regular file: a FIFO planted in the store must not block us. */
static int open_existing(struct store *s, const char *path, int flags,
			 int *fd_out)
{
	int fd, rc;

	if (s->scratch_fd < 0)
		return -ENOENT;
	fd = s->be->ops->tree_open(s->be, s->scratch_fd, "scratch.open", path,
				   (flags & ~O_CREAT) | O_NONBLOCK | O_NOCTTY,
				   0);
	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd;
	rc = check_regular(fd);
	if (rc == 0 && !(flags & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

/* A scratch file cannot take the name of a namespace (nor could a file
   on a local disk take a directory's): -EISDIR if `path` is one. */
static int check_not_ns(struct store *s, const char *path)
{
	struct stat st;

	if (s->be->ops->stat(s->be, path, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	return 0;
}

/* Create scratch file `path` (O_EXCL), 0600 until it has `mode`. Gate
   held shared. */
static int create_new(struct store *s, const char *path, int flags, mode_t mode,
		      int *fd_out)
{
	const char *leaf;
	int pfd = -1, fd = -1, rc;

	rc = check_not_ns(s, path);
	if (rc)
		return (flags & O_EXCL) ? -EEXIST : rc;
	rc = parent_made(s, path, &pfd, &leaf);
	if (rc)
		return rc;
	fd = io_openat(s->io, "scratch.create", pfd, leaf,
		       (flags & ~O_TRUNC) | O_CREAT | O_EXCL | O_NOFOLLOW |
			       O_CLOEXEC,
		       0600);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	if (fchmod(fd, mode & 07777) < 0) {
		rc = -errno;
		close(fd);
		unlinkat(pfd, leaf, 0);
		goto out;
	}
	*fd_out = fd;
out:
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	return rc;
}

int store_scratch_open(struct store *s, const char *path, int flags,
		       mode_t mode, int *fd_out)
{
	bool write = (flags & O_ACCMODE) != O_RDONLY ||
		     (flags & (O_CREAT | O_TRUNC));
	int rc;

	*fd_out = -1;
	if (flags & ~OPEN_FLAGS)
		return -EINVAL;
	rc = check_path(s, path, write);
	if (rc)
		return rc;
	if (!(flags & O_CREAT))
		return open_existing(s, path, flags, fd_out);
	pthread_rwlock_rdlock(&s->gate);
	/* open what is there, else create; again if one came meanwhile */
	for (int tries = 0; tries < 8; tries++) {
		if (!(flags & O_EXCL)) {
			rc = open_existing(s, path, flags, fd_out);
			if (rc != -ENOENT)
				break;
		}
		rc = create_new(s, path, flags, mode, fd_out);
		if (rc != -EEXIST || (flags & O_EXCL))
			break;
	}
	pthread_rwlock_unlock(&s->gate);
	return rc;
}

int store_scratch_stat(struct store *s, const char *path, struct stat *st)
{
	int rc = check_path(s, path, false);

	if (rc)
		return rc;
	if (s->scratch_fd < 0)
		return -ENOENT;
	rc = util_stat_opened(s->be->ops->tree_open(s->be, s->scratch_fd, NULL,
						    path, O_PATH, 0),
			      st);
	if (rc == 0 && !S_ISREG(st->st_mode))
		rc = -ENOENT; /* a scratch directory is not a scratch file */
	return rc;
}

int store_scratch_fsync(struct store *s, const char *path, int fd)
{
	const char *leaf;
	int pfd = -1, rc = check_path(s, path, false);

	if (rc)
		return rc;
	if (s->scratch_fd < 0)
		return -ENOENT;
	if (fd >= 0 && (rc = io_fsync(s->io, "scratch.fsync", fd)) != 0)
		return rc;
	rc = s->be->ops->tree_parent(s->be, s->scratch_fd, path, &pfd, &leaf);
	if (rc == 0)
		rc = io_fsync(s->io, "scratch.dirsync", pfd);
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	return rc;
}

static int64_t ctime_ns(const struct stat *st)
{
	return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* Remove scratch file `path` if it is still the file `was` (any if `was`
   is NULL); with `sync`, durably. */
static int remove_file(struct store *s, const char *path,
		       const struct scratch_origin *was, const char *point,
		       bool sync)
{
	struct stat now;
	const char *leaf;
	int pfd = -1, rc;

	rc = store_scratch_stat(s, path, &now);
	if (rc == 0 && was &&
	    ((uint64_t)now.st_ino != was->ino ||
	     ctime_ns(&now) != was->ctime_ns))
		rc = -ENOENT; /* replaced or changed meanwhile: not ours */
	if (rc == 0)
		rc = s->be->ops->tree_parent(s->be, s->scratch_fd, path, &pfd,
					     &leaf);
	if (rc == 0)
		rc = io_unlinkat(s->io, point, pfd, leaf, 0);
	if (rc == 0 && sync)
		rc = io_fsync(s->io, "scratch.unlink.sync", pfd);
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	return rc;
}

void scratch_origin_remove(struct store *s, const struct rec *r)
{
	struct scratch_origin was = {.ino = r->origin_ino,
				     .ctime_ns = r->origin_ctime_ns};
	char path[ID_MAX_LEN + 1];
	int rc;

	memcpy(path, r->origin, r->origin_len);
	path[r->origin_len] = '\0';
	rc = check_path(s, path, true);
	if (rc == 0)
		rc = remove_file(s, path, &was, "scratch.commit.unlink", false);
	if (rc && rc != -ENOENT) /* the commit stands: a note, not an error */
		rlog_warn("scratch file %s: committed as record %.*s but not "
			  "removed (%s); remove it by hand",
			  path, (int)r->id_len, r->id, strerror(-rc));
}

int store_scratch_unlink(struct store *s, const char *path)
{
	int rc = check_path(s, path, true);

	return rc ? rc : remove_file(s, path, NULL, "scratch.unlink", false);
}

/* Are `a` and `b` in the same namespace? */
static bool same_ns(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
	size_t na = sa ? (size_t)(sa - a) : 0, nb = sb ? (size_t)(sb - b) : 0;

	return na == nb && memcmp(a, b, na) == 0;
}

int store_scratch_rename(struct store *s, const char *from, const char *to)
{
	const char *lf, *lt;
	struct stat st;
	int ffd = -1, tfd = -1, rc;

	rc = check_path(s, from, true);
	if (rc == 0)
		rc = check_path(s, to, true);
	if (rc == 0)
		rc = store_scratch_stat(s, from, &st);
	if (rc || strcmp(from, to) == 0)
		return rc;
	pthread_rwlock_rdlock(&s->gate);
	rc = check_not_ns(s, to);
	if (rc == 0)
		rc = s->be->ops->tree_parent(s->be, s->scratch_fd, from, &ffd,
					     &lf);
	if (rc == 0)
		rc = parent_made(s, to, &tfd, &lt);
	if (rc == 0)
		rc = io_renameat(s->io, "scratch.rename", ffd, lf, tfd, lt, 0);
	if (rc == 0)
		rc = io_fsync(s->io, "scratch.rename.dirsync", tfd);
	if (rc == 0 && !same_ns(from, to))
		rc = io_fsync(s->io, "scratch.rename.dirsync", ffd);
	pthread_rwlock_unlock(&s->gate);
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, ffd);
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, tfd);
	return rc;
}

/* Can `name` be the last component of a scratch path? */
static bool listable(const char *ns, const char *name)
{
	size_t len = strlen(name), base;
	uint64_t v;

	if (id_component_forbidden(name, len) ||
	    id_split_cond(name, len, &base, &v) != 0)
		return false;
	return ns[0] != '\0' || strcmp(name, ".recfs") != 0;
}

static bool is_regular_at(DIR *dir, const struct dirent *d)
{
	struct stat st;

	if (d->d_type != DT_UNKNOWN)
		return d->d_type == DT_REG;
	return fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

/* Is `path` in the scratch tree a symlink? */
static bool is_link(struct store *s, const char *path)
{
	int fd = s->be->ops->tree_open(s->be, s->scratch_fd, NULL, path, O_PATH,
				       0);
	struct stat st;
	bool link;

	if (fd < 0)
		return fd == -ELOOP;
	link = fstat(fd, &st) == 0 && S_ISLNK(st.st_mode);
	close(fd);
	return link;
}

int store_scratch_list(struct store *s, const char *ns, store_list_cb cb,
		       void *arg)
{
	struct dirent *d;
	DIR *dir;
	int fd, rc = ns[0] ? id_check(ns) : 0;

	if (rc)
		return rc;
	if (!s->be->tree)
		return -ENOTSUP;
	if (s->scratch_fd < 0)
		return 0;
	fd = s->be->ops->tree_open(s->be, s->scratch_fd, NULL, ns,
				   O_RDONLY | O_DIRECTORY, 0);
	if (fd == -ENOTDIR && is_link(s, ns))
		return -ELOOP; /* O_DIRECTORY said ENOTDIR for a symlink */
	if (fd == -ENOENT || fd == -ENOTDIR)
		return 0; /* no scratch file there (yet) */
	if (fd < 0)
		return fd;
	rc = util_fdopendir(fd, &dir);
	if (rc < 0)
		return rc;
	while ((d = readdir(dir)) != NULL) {
		if (!listable(ns, d->d_name) || !is_regular_at(dir, d))
			continue;
		rc = cb(arg, d->d_name, false);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

/* ---- xattrs ------------------------------------------------------------- */

/* Is `name` a user xattr that a record keeps? */
static bool kept_xattr(const char *name)
{
	return strncmp(name, USER_PREFIX, strlen(USER_PREFIX)) == 0 &&
	       strncmp(name, COMPUTED_PREFIX, strlen(COMPUTED_PREFIX)) != 0;
}

/* Add xattr `name` of `fd` to the packed *xa (value buffer `value`). */
static int pack_one(int fd, const char *name, uint8_t *value, uint8_t **xa,
		    size_t *xa_len)
{
	uint8_t *next = NULL;
	size_t next_len = 0;
	ssize_t n = fgetxattr(fd, name, value, STORE_XATTR_VALUE_MAX);
	int rc;

	if (n < 0 && errno == ENODATA)
		return 0; /* removed meanwhile */
	if (n < 0 && errno == ERANGE)
		return -ENOSPC; /* too big for a record */
	if (n < 0)
		return -errno;
	rc = xa_update(*xa, *xa_len, name, value, (size_t)n, 0, &next,
		       &next_len);
	if (rc == -E2BIG || rc == -ERANGE)
		rc = -ENOSPC;
	if (rc)
		return rc;
	free(*xa);
	*xa = next;
	*xa_len = next_len;
	return 0;
}

struct xattr_pack {
	int fd;
	uint8_t *value; /* STORE_XATTR_VALUE_MAX bytes */
	uint8_t **xa;
	size_t *xa_len;
};

/* Pack xattr `name` if a record keeps it (util_xattr_each callback). */
static int pack_kept(void *arg, const char *name)
{
	struct xattr_pack *x = arg;

	if (!kept_xattr(name))
		return 0;
	return pack_one(x->fd, name, x->value, x->xa, x->xa_len);
}

/*
 * The user xattrs of `fd` that a record keeps, packed as the index
 * holds them (*xa is the caller's; NULL if there are none). Returns 0,
 * -ENOSPC over a record's limits (store.h), -errno.
 */
static int read_xattrs(int fd, uint8_t **xa, size_t *xa_len)
{
	struct xattr_pack x = {fd, NULL, xa, xa_len};
	int rc;

	*xa = NULL;
	*xa_len = 0;
	x.value = malloc(STORE_XATTR_VALUE_MAX);
	if (!x.value)
		return -ENOMEM;
	rc = util_xattr_each(fd, pack_kept, &x);
	if (rc == -ERANGE)
		rc = -EAGAIN; /* the list grew meanwhile */
	if (rc) {
		free(*xa);
		*xa = NULL;
		*xa_len = 0;
	}
	free(x.value);
	return rc;
}

/* Set the packed xattrs `xa` on `fd`. */
static int write_xattrs(int fd, const uint8_t *xa, size_t xa_len)
{
	char *names = NULL;
	ssize_t n = xa_list(xa, xa_len, NULL, 0);
	int rc = 0;

	if (n <= 0)
		return (int)n;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = xa_list(xa, xa_len, names, (size_t)n);
	for (char *p = names; n > 0 && rc == 0 && p < names + n;
	     p += strlen(p) + 1) {
		const uint8_t *v;
		size_t len;

		rc = xa_get(xa, xa_len, p, &v, &len);
		if (rc == 0 && fsetxattr(fd, p, v, len, 0) < 0)
			rc = -errno;
	}
	free(names);
	return n < 0 ? (int)n : rc;
}

/* ---- scratch file -> record ---------------------------------------------- */

int store_scratch_commit(struct store *s, const char *path, const char *id,
			 const struct store_commit_args *args,
			 struct store_result *res)
{
	static const struct store_commit_args any = {.mode = -1};
	struct store_commit_args a = args ? *args : any;
	struct scratch_origin origin;
	struct store_result mine;
	struct store_stage *st = NULL;
	uint8_t *xa = NULL;
	size_t xa_len = 0;
	struct stat sb;
	int fd = -1, rc;
	ssize_t n;

	if (!res)
		res = &mine;
	rc = check_path(s, path, true);
	if (rc == 0)
		rc = open_existing(s, path, O_RDONLY, &fd);
	if (rc)
		return rc;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)sb.st_size > s->opts.max_record_size) {
		rc = -EFBIG;
		goto out;
	}
	rc = read_xattrs(fd, &xa, &xa_len);
	if (rc == 0)
		rc = store_stage_new(s, &st);
	if (rc)
		goto out;
	n = io_copy_fd(s->io, "scratch.copy", fd, st->fd);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if (a.mode < 0)
		a.mode = (int)(sb.st_mode & 07777);
	/* a time set with utimens (rsync -a, cp -p) is kept; one that only
	   says when the file was written (mtime == ctime) is not metadata
	   of its own: the version gets the commit time, as a write would,
	   so an unchanged `sed -i` stays a no-op */
	if (!a.mtime && (sb.st_mtim.tv_sec != sb.st_ctim.tv_sec ||
			 sb.st_mtim.tv_nsec != sb.st_ctim.tv_nsec))
		a.mtime = &sb.st_mtim;
	origin.path = path;
	origin.ino = (uint64_t)sb.st_ino;
	origin.ctime_ns = ctime_ns(&sb);
	rc = commit_with_xattrs(s, id, st, &a, xa, xa_len, &origin, res);
	if (rc || !res->noop)
		goto out;
	/*
	 * A commit removes the scratch file right after its journal record
	 * is written, without syncing its directory: the record names the
	 * file (origin), and a replay after a crash removes it again if it
	 * is still that file, so that a rename that returned never leaves
	 * its source name behind (a rename on a disk does not), for the
	 * price of one sync, not two. A no-op writes no record: the file
	 * goes here, synced (with sync=batch not: nothing was committed
	 * that the file could be needed for).
	 */
	n = remove_file(s, path, &origin, "scratch.commit.unlink", !s->batch);
	if (n && n != -ENOENT)
		rlog_warn("scratch file %s: the same as record %s but not "
			  "removed (%s); remove it by hand",
			  path, id, strerror((int)-n));
out:
	if (fd >= 0)
		close(fd);
	store_stage_free(st);
	free(xa);
	return rc;
}

/* ---- record -> scratch file ---------------------------------------------- */

/* The user xattrs of version `version` of `id` (*xa is the caller's).
   -ESTALE if it is not the current version any more. */
static int record_xattrs(struct store *s, const char *id, uint64_t version,
			 uint8_t **xa, size_t *xa_len)
{
	struct entry *e;
	int rc = 0;

	*xa = NULL;
	*xa_len = 0;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (!e || e->meta.deleted || e->meta.version != version)
		rc = -ESTALE;
	else if (e->xa_len && !(*xa = malloc(e->xa_len)))
		rc = -ENOMEM;
	else if (e->xa_len) {
		memcpy(*xa, e->xa, e->xa_len);
		*xa_len = e->xa_len;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/*
 * A synced stage holding what reader `r` reads, with the version's
 * xattrs, mtime and mode (in that order: a mode without the owner's
 * write bit would forbid the xattrs).
 */
static int stage_of(struct store *s, struct store_reader *r, const uint8_t *xa,
		    size_t xa_len, struct store_stage **out)
{
	const struct store_meta *m = store_reader_meta(r);
	struct timespec t[2] = {m->mtime, m->mtime}; /* atime: SPEC 3 */
	struct store_stage *st = NULL;
	ssize_t n;
	int rc;

	rc = store_stage_new(s, &st);
	if (rc)
		return rc;
	n = io_copy_fd(s->io, "scratch.copy", store_reader_fd(r), st->fd);
	rc = n < 0 ? (int)n : write_xattrs(st->fd, xa, xa_len);
	if (rc == 0 && futimens(st->fd, t) < 0)
		rc = -errno;
	if (rc == 0 && fchmod(st->fd, m->mode & 07777) < 0)
		rc = -errno;
	if (rc == 0)
		rc = io_fsync(s->io, "scratch.from.fsync", st->fd);
	if (rc) {
		store_stage_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

/* Take stage `st` back out of `leaf` of `pfd` (see place). */
static void unplace(struct store *s, struct store_stage *st, int pfd,
		    const char *leaf, bool swapped)
{
	int rc;

	if (swapped)
		rc = s->be->ops->stage_place(s->be, NULL, st, pfd, leaf,
					     RENAME_EXCHANGE);
	else
		rc = io_unlinkat(s->io, NULL, pfd, leaf, 0);
	if (rc == 0)
		rc = io_fsync(s->io, NULL, pfd);
	/* a second failure on the way out of a first, which the caller
	   reports: this one can only be logged */
	if (rc)
		rlog_err("scratch file %s: cannot be put back as it was: %s",
			 leaf, strerror(-rc));
}

/*
 * Put stage `st` at `leaf` of `pfd` and sync the directory. A scratch
 * file already there is swapped with it (*swapped), so that it can be put
 * back if the rest fails; it is under the stage's name in tmp/ then, and
 * goes when the stage is freed.
 */
static int place(struct store *s, struct store_stage *st, int pfd,
		 const char *leaf, bool *swapped)
{
	struct stat now;
	int rc;

	*swapped = false;
	if (fstatat(pfd, leaf, &now, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(now.st_mode))
			return S_ISDIR(now.st_mode)   ? -EISDIR
			       : S_ISLNK(now.st_mode) ? -ELOOP
						      : -EEXIST;
		rc = s->be->ops->stage_place(s->be, "scratch.place", st, pfd,
					     leaf, RENAME_EXCHANGE);
		*swapped = rc == 0;
	} else if (errno == ENOENT) {
		rc = s->be->ops->stage_place(s->be, "scratch.place", st, pfd,
					     leaf, RENAME_NOREPLACE);
		st->published = rc == 0; /* nothing left in tmp/ */
	} else {
		rc = -errno;
	}
	if (rc)
		return rc;
	rc = io_fsync(s->io, "scratch.place.dirsync", pfd);
	if (rc)
		unplace(s, st, pfd, leaf, *swapped);
	return rc;
}

int store_scratch_from_record(struct store *s, const char *id, const char *path,
			      const struct store_who *who)
{
	struct store_reader *r = NULL;
	struct store_stage *st = NULL;
	struct store_cond cond = {STORE_COND_IF_VERSION, 0};
	uint8_t *xa = NULL;
	size_t xa_len = 0;
	const char *leaf;
	bool swapped = false;
	int pfd = -1, rc;

	rc = check_path(s, path, true);
	if (rc == 0)
		rc = id_check(id);
	if (rc == 0)
		rc = store_reader_open(s, id, &r);
	if (rc)
		return rc;
	cond.version = store_reader_meta(r)->version;
	rc = record_xattrs(s, id, cond.version, &xa, &xa_len);
	if (rc == 0)
		rc = stage_of(s, r, xa, xa_len, &st);
	if (rc)
		goto out;
	pthread_rwlock_rdlock(&s->gate);
	rc = check_not_ns(s, path);
	if (rc == 0)
		rc = parent_made(s, path, &pfd, &leaf);
	if (rc == 0)
		rc = place(s, st, pfd, leaf, &swapped);
	pthread_rwlock_unlock(&s->gate);
	if (rc)
		goto out;
	/* only the version copied: a later one would be lost unseen */
	rc = store_delete(s, id, &cond, who, NULL);
	if (rc)
		unplace(s, st, pfd, leaf, swapped);
out:
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	store_stage_free(st);
	store_reader_free(r);
	free(xa);
	return rc;
}

/* ---- namespaces (store.c) ------------------------------------------------ */

int scratch_ns_drop(struct store *s, const char *ns)
{
	const char *leaf;
	int pfd = -1, rc;

	if (s->scratch_fd < 0)
		return 0;
	rc = s->be->ops->tree_parent(s->be, s->scratch_fd, ns, &pfd, &leaf);
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	rc = io_unlinkat(s->io, "scratch.rmdir", pfd, leaf, AT_REMOVEDIR);
	if (rc == 0)
		rc = io_fsync(s->io, "scratch.rmdir.dirsync", pfd);
	else if (rc == -ENOENT || rc == -ENOTDIR)
		rc = 0; /* none, or a scratch file of that name beside it */
	else if (rc == -EEXIST)
		rc = -ENOTEMPTY;
	s->be->ops->tree_parent_put(s->be, s->scratch_fd, pfd);
	return rc;
}
