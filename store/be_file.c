/*
 * be_file.c - the file backend: record content as plain files under
 * STORE/records/ID, stages under STORE/tmp/.
 *
 * Every path is resolved from the records directory fd with openat2(2)
 * and RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so neither an ID nor a
 * symlink planted in the store can reach outside it or be followed; where
 * openat2 is missing (kernels before 5.6) each component is opened in turn
 * with O_NOFOLLOW. Only regular files are records and only directories
 * are namespaces: anything else found in the store is refused. The same
 * resolution serves the scratch tree (f_tree_open, scratch.c).
 *
 * Stages made ahead: creating a file is the costliest step of a small
 * commit here (ext4 looks for a free inode that was not freed recently:
 * 170-540 us of CPU per create on the test machines, perf shows
 * recently_deleted). Once started (f_start, in the process that serves
 * the store: threads do not survive fork), a thread keeps up to
 * STAGE_AHEAD empty stages created in tmp/, and a new stage takes one of
 * them; when there is none it is created in place, as before. They are
 * ordinary stages: unlinked at close, and by f_clean_stages at the
 * next open after a crash.
 */
#include "store_i.h"
#include "id.h"
#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STAGE_AHEAD 8

struct ahead_stage {
	int fd;
	char name[STORE_STAGE_NAME_MAX];
};

/* Stages made ahead (see the top); all under mu. */
struct ahead {
	pthread_mutex_t mu;
	pthread_cond_t want; /* a stage was taken, or stop */
	pthread_t thread;
	bool running, stop;
	int n;
	struct ahead_stage st[STAGE_AHEAD];
};

struct be_file {
	struct backend be;
	struct io *io;
	int records_fd;
	int tmp_fd;
	atomic_uint_fast64_t stage_seq;
	uint32_t stage_salt;
	bool no_openat2;
	struct ahead ahead;
};

static struct be_file *bf(struct backend *be)
{
	return (struct be_file *)be;
}

/* Component-by-component fallback of open_beneath. */
static int open_walk(int root, const char *path, int flags, mode_t mode)
{
	char comp[ID_MAX_COMPONENT + 1];
	const char *p = path, *slash;
	int dfd = root, fd;

	while ((slash = strchr(p, '/')) != NULL) {
		size_t n = (size_t)(slash - p);

		if (n == 0 || n > ID_MAX_COMPONENT)
			return -EINVAL;
		memcpy(comp, p, n);
		comp[n] = '\0';
		fd = openat(dfd, comp,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd != root)
			close(dfd);
		if (fd < 0)
			return -errno;
		dfd = fd;
		p = slash + 1;
	}
	fd = openat(dfd, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		fd = -errno;
	if (dfd != root)
		close(dfd);
	return fd;
}

/* Open `path` (relative to the directory `root`) without following any
   symlink. */
static int open_beneath_at(struct be_file *b, int root, const char *point,
			   const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd;
	int rc = io_point(b->io, point);

	if (rc)
		return rc;
	if (path[0] == '\0')
		path = ".";
	if (!b->no_openat2) {
		int races = 0;

		/* -EXDEV also comes from a scoped lookup that found a dentry
		   which a concurrent RENAME_EXCHANGE (f_publish) moved out of
		   records/ meanwhile: retry. A mount point in the way
		   (RESOLVE_NO_XDEV) gives it every time, hence the bound. */
		do
			fd = syscall(SYS_openat2, root, path, &how,
				     sizeof(how));
		while (fd < 0 && (errno == EINTR || errno == EAGAIN ||
				  (errno == EXDEV && ++races < 100)));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
		b->no_openat2 = true;
	}
	return open_walk(root, path, flags, mode);
}

/* open_beneath_at in records/. */
static int open_beneath(struct be_file *b, const char *point, const char *path,
			int flags, mode_t mode)
{
	return open_beneath_at(b, b->records_fd, point, path, flags, mode);
}

/*
 * Open the directory that holds `id` under `root`, for *at calls and
 * fsync. *leaf points into `id`. *pfd must be released with
 * put_parent_at.
 */
static int get_parent_at(struct backend *be, int root, const char *id, int *pfd,
			 const char **leaf)
{
	struct be_file *b = bf(be);
	const char *slash = strrchr(id, '/');
	char dir[ID_MAX_LEN + 1];
	size_t n;
	int fd;

	if (!slash) {
		*pfd = root;
		*leaf = id;
		return 0;
	}
	n = (size_t)(slash - id);
	if (n > ID_MAX_LEN)
		return -ENAMETOOLONG;
	memcpy(dir, id, n);
	dir[n] = '\0';
	fd = open_beneath_at(b, root, NULL, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd;
	*pfd = fd;
	*leaf = slash + 1;
	return 0;
}

static void put_parent_at(struct backend *be, int root, int pfd)
{
	if (pfd >= 0 && pfd != root)
		close(pfd);
}

/* get_parent_at and put_parent_at in records/. */
static int get_parent(struct be_file *b, const char *id, int *pfd,
		      const char **leaf)
{
	return get_parent_at(&b->be, b->records_fd, id, pfd, leaf);
}

static void put_parent(struct be_file *b, int pfd)
{
	put_parent_at(&b->be, b->records_fd, pfd);
}

/* Create an empty stage in tmp/: its fd, or -errno. */
static int stage_create(struct be_file *b, const char *point,
			char name[STORE_STAGE_NAME_MAX])
{
	int fd = -EEXIST;

	for (int tries = 0; tries < 16 && fd == -EEXIST; tries++) {
		uint64_t n = atomic_fetch_add(&b->stage_seq, 1);

		snprintf(name, STORE_STAGE_NAME_MAX, "st.%d.%08x.%llu",
			 (int)getpid(), b->stage_salt, (unsigned long long)n);
		fd = io_openat(b->io, point, b->tmp_fd, name,
			       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
				       O_CLOEXEC,
			       0600);
	}
	return fd;
}

/*
 * The thread that makes stages ahead. After a failure (ENOSPC, EMFILE...)
 * it waits for the next stage taken before it tries again: meanwhile
 * stages are created in place, and that reports the error.
 */
static void *ahead_main(void *arg)
{
	struct be_file *b = arg;
	struct ahead *a = &b->ahead;
	struct ahead_stage made;
	bool failed = false;

	pthread_mutex_lock(&a->mu);
	while (!a->stop) {
		if (a->n == STAGE_AHEAD || failed) {
			failed = false;
			pthread_cond_wait(&a->want, &a->mu);
			continue;
		}
		pthread_mutex_unlock(&a->mu);
		made.fd = stage_create(b, "stage.ahead", made.name);
		pthread_mutex_lock(&a->mu);
		if (made.fd < 0)
			failed = true;
		else
			a->st[a->n++] = made;
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* Take a stage made ahead into st: true, or false if there is none. */
static bool ahead_take(struct ahead *a, struct store_stage *st)
{
	bool got = false;

	pthread_mutex_lock(&a->mu);
	if (a->n > 0) {
		a->n--;
		st->fd = a->st[a->n].fd;
		memcpy(st->name, a->st[a->n].name, sizeof(st->name));
		got = true;
	}
	if (a->running)
		pthread_cond_signal(&a->want);
	pthread_mutex_unlock(&a->mu);
	return got;
}

/* Stop the thread and remove the stages it made. */
static void ahead_stop(struct be_file *b)
{
	struct ahead *a = &b->ahead;

	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->want);
	pthread_mutex_unlock(&a->mu);
	if (a->running)
		pthread_join(a->thread, NULL);
	a->running = false;
	for (; a->n > 0; a->n--) {
		unlinkat(b->tmp_fd, a->st[a->n - 1].name, 0);
		close(a->st[a->n - 1].fd);
	}
}

static int f_start(struct backend *be)
{
	struct ahead *a = &bf(be)->ahead;
	int rc = 0;

	pthread_mutex_lock(&a->mu);
	if (!a->running && !a->stop) {
		rc = -pthread_create(&a->thread, NULL, ahead_main, be);
		a->running = rc == 0;
	}
	pthread_mutex_unlock(&a->mu);
	/* nothing reports this (store_serve_start goes on without): logged */
	if (rc)
		rlog_warn("stages made ahead: no thread (%s); stages are "
			  "created at each commit",
			  strerror(-rc));
	return rc;
}

static int f_stage_new(struct backend *be, struct store_stage *st)
{
	struct be_file *b = bf(be);

	if (ahead_take(&b->ahead, st))
		return 0;
	st->fd = stage_create(b, "stage.create", st->name);
	if (st->fd < 0) {
		int rc = st->fd;

		st->fd = -1;
		return rerr_set(rc, "stage %s/%s: create: %s", STORE_TMP_DIR,
				st->name, strerror(-rc));
	}
	return 0;
}

static void f_stage_drop(struct backend *be, struct store_stage *st)
{
	struct be_file *b = bf(be);

	if (!st->published && st->name[0])
		unlinkat(b->tmp_fd, st->name, 0);
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}

static int f_stage_sync(struct backend *be, struct store_stage *st)
{
	struct be_file *b = bf(be);
	int rc = io_fsync(b->io, "stage.fsync", st->fd);

	if (rc == 0)
		rc = io_fsync(b->io, "stage.dirsync", b->tmp_fd);
	return rc;
}

/*
 * The stage takes the place of the current file by an exchange, and the
 * old file (now under the stage's name in tmp/) is then unlinked, rather
 * than by a rename over it: when a rename replaces a file, ext4
 * (auto_da_alloc) allocates and starts writing the new file's data at
 * once, inside the rename, and with data=ordered that data must also be
 * on disk before the next journal commit, so before our next journal
 * fdatasync returns. We need neither: small contents are in our journal,
 * big ones are fsync'ed before they are journaled, and a checkpoint syncs
 * the file system before it drops journal segments. Readers see the old
 * or the new file, as with a rename.
 */
static int f_publish(struct backend *be, struct store_stage *st, const char *id)
{
	struct be_file *b = bf(be);
	const char *leaf;
	int pfd = -1, rc;

	rc = get_parent(b, id, &pfd, &leaf);
	if (rc)
		return rc;
	rc = io_renameat(b->io, "commit.rename", b->tmp_fd, st->name, pfd, leaf,
			 RENAME_EXCHANGE);
	if (rc == -ENOENT || rc == -EINVAL) {
		/* no current file (or no RENAME_EXCHANGE on this fs) */
		rc = io_renameat(b->io, "commit.rename", b->tmp_fd, st->name,
				 pfd, leaf, 0);
		if (rc == 0)
			st->published = true;
		goto out;
	}
	if (rc)
		goto out;
	st->published = true;
	rc = io_unlinkat(b->io, "commit.drop", b->tmp_fd, st->name, 0);
	if (rc == -EISDIR || rc == -EPERM) {
		/* we swapped out a directory: put it back */
		rc = io_renameat(b->io, NULL, b->tmp_fd, st->name, pfd, leaf,
				 RENAME_EXCHANGE);
		if (rc)
			rerr_set(rc,
				 "record %s: a directory: it could not be put "
				 "back from %s/%s: %s",
				 id, STORE_TMP_DIR, st->name, strerror(-rc));
		st->published = rc != 0;
		rc = rc ? rc : -EISDIR;
	} else if (rc) {
		/* the commit succeeded: nothing to report to, a note */
		rlog_warn("%s/%s: old content of %s left behind (%s); it is "
			  "removed when the store is next opened",
			  STORE_TMP_DIR, st->name, id, strerror(-rc));
		rc = 0;
	}
out:
	put_parent(b, pfd);
	return rc;
}

/*
 * Open a record's file for reading. Something else planted under its
 * name (a FIFO, a device) is never opened: opening a FIFO, even
 * O_NONBLOCK, would release a writer blocked on it. So the name is first
 * looked at through an O_PATH descriptor, which opens nothing; the
 * O_NONBLOCK of the real open covers what could be swapped in between,
 * by someone who can write the store directory anyway.
 */
static int f_open(struct backend *be, const char *id, int *fd)
{
	struct be_file *b = bf(be);
	struct stat stb;
	int f = open_beneath(b, NULL, id, O_PATH, 0);

	if (f >= 0) {
		int rc = fstat(f, &stb) < 0 ? -errno : 0;

		close(f);
		if (rc)
			return rc;
		if (!S_ISREG(stb.st_mode))
			return S_ISDIR(stb.st_mode) ? -EISDIR : -ENOENT;
		f = open_beneath(b, "read.open", id,
				 O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	}
	if (f < 0)
		return f == -ENOTDIR ? -ENOENT : f;
	if (fstat(f, &stb) < 0) {
		int rc = -errno;

		close(f);
		return rc;
	}
	if (!S_ISREG(stb.st_mode)) {
		close(f);
		return S_ISDIR(stb.st_mode) ? -EISDIR : -ENOENT;
	}
	*fd = f;
	return 0;
}

static int f_stat(struct backend *be, const char *id, struct stat *st)
{
	int rc =
		util_stat_opened(open_beneath(bf(be), NULL, id, O_PATH, 0), st);

	if (rc == 0 && !S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
		rc = -ENOENT;
	return rc;
}

static int f_remove(struct backend *be, const char *id)
{
	struct be_file *b = bf(be);
	const char *leaf;
	int pfd = -1, rc;

	rc = get_parent(b, id, &pfd, &leaf);
	if (rc == 0)
		rc = io_unlinkat(b->io, "commit.unlink", pfd, leaf, 0);
	put_parent(b, pfd);
	return rc;
}

static int f_move(struct backend *be, const char *from, const char *to,
		  bool durable)
{
	struct be_file *b = bf(be);
	const char *lf, *lt;
	int ffd = -1, tfd = -1, rc;

	rc = get_parent(b, from, &ffd, &lf);
	if (rc)
		goto out;
	rc = get_parent(b, to, &tfd, &lt);
	if (rc)
		goto out;
	rc = io_renameat(b->io, "commit.move", ffd, lf, tfd, lt, 0);
	if (rc || !durable)
		goto out;
	rc = io_fsync(b->io, "commit.move.dirsync", tfd);
	if (rc == 0 && ffd != tfd)
		rc = io_fsync(b->io, "commit.move.dirsync", ffd);
out:
	put_parent(b, ffd);
	put_parent(b, tfd);
	return rc;
}

static int f_mkdir(struct backend *be, const char *ns, mode_t mode)
{
	struct be_file *b = bf(be);
	const char *leaf;
	int pfd = -1, rc;

	rc = get_parent(b, ns, &pfd, &leaf);
	if (rc == 0)
		rc = io_mkdirat(b->io, "ns.mkdir", pfd, leaf, mode & 07777);
	if (rc == 0)
		rc = io_fsync(b->io, "ns.dirsync", pfd);
	put_parent(b, pfd);
	return rc;
}

static int f_rmdir(struct backend *be, const char *ns)
{
	struct be_file *b = bf(be);
	const char *leaf;
	int pfd = -1, rc;

	rc = get_parent(b, ns, &pfd, &leaf);
	if (rc == 0)
		rc = io_unlinkat(b->io, "ns.rmdir", pfd, leaf, AT_REMOVEDIR);
	if (rc == 0)
		rc = io_fsync(b->io, "ns.dirsync", pfd);
	put_parent(b, pfd);
	return rc;
}

static int f_ns_rename(struct backend *be, const char *from, const char *to)
{
	return f_move(be, from, to, true);
}

static int f_ns_set_meta(struct backend *be, const char *ns,
			 const struct timespec *mtime, int mode)
{
	struct be_file *b = bf(be);
	int fd = open_beneath(b, NULL, ns, O_RDONLY | O_DIRECTORY, 0), rc = 0;

	if (fd < 0)
		return fd;
	if (mtime) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, *mtime};

		if (futimens(fd, ts) < 0)
			rc = -errno;
	}
	if (rc == 0 && mode >= 0 && fchmod(fd, (mode_t)mode & 07777) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* fchown of the directory opened without following a symlink anywhere
   (open_beneath): what fchownat(AT_SYMLINK_NOFOLLOW) would do, scoped to
   records/. */
static int f_ns_set_owner(struct backend *be, const char *ns, uint32_t uid,
			  uint32_t gid)
{
	struct be_file *b = bf(be);
	int fd = open_beneath(b, NULL, ns, O_RDONLY | O_DIRECTORY, 0), rc = 0;

	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd;
	if (fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* True for names that can be neither a record nor a namespace. */
static bool not_a_record_name(const char *name)
{
	size_t base;
	uint64_t v;

	return id_component_forbidden(name, strlen(name)) ||
	       id_split_cond(name, strlen(name), &base, &v) != 0;
}

static int f_list(struct backend *be, const char *ns, store_list_cb cb,
		  void *arg)
{
	struct be_file *b = bf(be);
	struct dirent *d;
	DIR *dir = NULL;
	int rc;

	rc = util_fdopendir(
		open_beneath(b, NULL, ns, O_RDONLY | O_DIRECTORY, 0), &dir);
	if (rc < 0)
		return rc;
	while ((d = readdir(dir)) != NULL) {
		unsigned char type = d->d_type;

		if (not_a_record_name(d->d_name))
			continue;
		if (type == DT_UNKNOWN) {
			struct stat st;

			if (fstatat(dirfd(dir), d->d_name, &st,
				    AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			type = S_ISDIR(st.st_mode)   ? DT_DIR
			       : S_ISREG(st.st_mode) ? DT_REG
						     : DT_UNKNOWN;
		}
		if (type != DT_REG && type != DT_DIR)
			continue;
		if (ns[0] == '\0' && strcmp(d->d_name, ".recfs") == 0)
			continue;
		rc = cb(arg, d->d_name, type == DT_DIR);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

static int f_sync(struct backend *be)
{
	struct be_file *b = bf(be);

	return io_syncfs(b->io, "ckpt.syncfs", b->records_fd);
}

static int f_clean_stages(struct backend *be)
{
	struct be_file *b = bf(be);
	struct dirent *d;
	DIR *dir;
	int n = 0, rc = util_opendir_fd(b->tmp_fd, &dir);

	if (rc)
		return rc;
	while ((d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (unlinkat(b->tmp_fd, d->d_name, 0) == 0)
			n++;
		else /* a note: the cleanup goes on, nothing reports */
			rlog_warn("%s/%s: cannot remove stray file: %s",
				  STORE_TMP_DIR, d->d_name, strerror(errno));
	}
	closedir(dir);
	if (n)
		fsync(b->tmp_fd);
	return n;
}

static int f_mkparents(struct backend *be, const char *id)
{
	struct be_file *b = bf(be);
	char path[ID_MAX_LEN + 1];
	size_t len = strlen(id);

	if (len > ID_MAX_LEN)
		return -ENAMETOOLONG;
	memcpy(path, id, len + 1);
	for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
		const char *leaf;
		int pfd, rc;

		*p = '\0';
		rc = get_parent(b, path, &pfd, &leaf);
		if (rc == 0) {
			rc = io_mkdirat(b->io, "recover.mkdir", pfd, leaf,
					0700);
			put_parent(b, pfd);
		}
		*p = '/';
		if (rc && rc != -EEXIST)
			return rc;
	}
	return 0;
}

static int f_stage_open(struct backend *be, const char *point, const char *name,
			int flags, int *fd)
{
	*fd = io_openat(bf(be)->io, point, bf(be)->tmp_fd, name,
			flags | O_NOFOLLOW | O_CLOEXEC, 0);
	return *fd < 0 ? *fd : 0;
}

static int f_stage_link(struct backend *be, const char *name, int dirfd,
			const char *as)
{
	return io_linkat(bf(be)->io, "commit.blob.link", bf(be)->tmp_fd, name,
			 dirfd, as);
}

static int f_sync_stages(struct backend *be)
{
	return io_syncfs(bf(be)->io, "txn.syncfs", bf(be)->tmp_fd);
}

static int f_spool_new(struct backend *be, int *fd)
{
	*fd = io_openat(bf(be)->io, "txn.spool.open", bf(be)->tmp_fd, ".",
			O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return *fd < 0 ? *fd : 0;
}

static int f_tree_open(struct backend *be, int root, const char *point,
		       const char *path, int flags, mode_t mode)
{
	return open_beneath_at(bf(be), root, point, path, flags, mode);
}

static int f_stage_place(struct backend *be, const char *point,
			 struct store_stage *st, int pfd, const char *leaf,
			 unsigned flags)
{
	return io_renameat(bf(be)->io, point, bf(be)->tmp_fd, st->name, pfd,
			   leaf, flags);
}

static void f_free(struct backend *be)
{
	struct be_file *b = bf(be);

	if (!b)
		return;
	ahead_stop(b);
	pthread_cond_destroy(&b->ahead.want);
	pthread_mutex_destroy(&b->ahead.mu);
	if (b->records_fd >= 0)
		close(b->records_fd);
	if (b->tmp_fd >= 0)
		close(b->tmp_fd);
	free(b);
}

static const struct backend_ops file_ops = {
	.name = "file",
	.start = f_start,
	.stage_new = f_stage_new,
	.stage_drop = f_stage_drop,
	.stage_sync = f_stage_sync,
	.publish = f_publish,
	.open = f_open,
	.stat = f_stat,
	.remove = f_remove,
	.move = f_move,
	.mkdir = f_mkdir,
	.rmdir = f_rmdir,
	.ns_rename = f_ns_rename,
	.ns_set_meta = f_ns_set_meta,
	.ns_set_owner = f_ns_set_owner,
	.list = f_list,
	.sync = f_sync,
	.spool_new = f_spool_new,
	.free = f_free,
	.stage_open = f_stage_open,
	.stage_link = f_stage_link,
	.sync_stages = f_sync_stages,
	.clean_stages = f_clean_stages,
	.mkparents = f_mkparents,
	.tree_open = f_tree_open,
	.tree_parent = get_parent_at,
	.tree_parent_put = put_parent_at,
	.stage_place = f_stage_place,
};

int be_file_open(struct backend **out, struct io *io, int dirfd)
{
	struct be_file *b = calloc(1, sizeof(*b));
	int rc = 0;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->be.ops = &file_ops;
	b->be.cas = true;
	b->be.durable = true;
	b->be.journal = true;
	b->be.tree = true;
	b->io = io;
	b->tmp_fd = -1;
	pthread_mutex_init(&b->ahead.mu, NULL);
	pthread_cond_init(&b->ahead.want, NULL);
	b->records_fd = openat(dirfd, STORE_RECORDS_DIR,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (b->records_fd < 0) {
		rc = rerr_set(-errno, "%s/: %s", STORE_RECORDS_DIR,
			      strerror(errno));
		goto out;
	}
	b->tmp_fd = openat(dirfd, STORE_TMP_DIR,
			   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (b->tmp_fd < 0) {
		rc = rerr_set(-errno, "%s/: %s", STORE_TMP_DIR,
			      strerror(errno));
		goto out;
	}
	if (getrandom(&b->stage_salt, sizeof(b->stage_salt), GRND_NONBLOCK) !=
	    sizeof(b->stage_salt))
		b->stage_salt = (uint32_t)time(NULL);
	*out = &b->be;
out:
	if (rc)
		f_free(&b->be);
	return rc;
}
