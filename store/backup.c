/*
 * backup.c - store_backup: a consistent, complete and durable copy of an
 * open store (mounted or opened by recfsctl), with its history.
 *
 * How it stays consistent while commits go on:
 *  1. without any lock: drain the history (bounded) and checkpoint, so
 *     that the journal left to copy is short;
 *  2. ckpt_mu, then `gate` exclusive: no change is in flight and none
 *     starts (commits wait at the gate), no checkpoint drops a journal
 *     segment; the history is drained up to this revision (it needs no
 *     gate), so its writer is idle too;
 *  3. copy, in this order: the index snapshot, the journal (segments and
 *     blobs/), the records, history.idx, then history.git with its refs
 *     before its objects. The order matters only if the history could
 *     not be drained and its writer still runs: git adds objects before
 *     it moves a ref, and removes a blob link only once the commit is in
 *     git, so every copied ref finds its objects and every journal record
 *     after the copied history's revision finds its content;
 *  4. release the locks, fsync every file and directory of the copy, then
 *     install the format file (temp, fsync, rename, fsync) which marks a
 *     complete store, and fsync the parent of DEST.
 * What is not copied: the lock, tmp/ (stages of writes in progress and
 * scratch files: not committed) and any stray file.
 */
#include "store_i.h"
#include "format.h"
#include "history.h"
#include "io.h"
#include "jnl.h"
#include "lock.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKUP_DRAIN_MS 10000
#define FORMAT_TMP FORMAT_FILE ".tmp"

struct copy {
	struct store *s;
	const char *dest; /* for messages */
	struct store_backup_report *rep;
	bool keep_meta; /* records/: keep modes and mtimes */
};

static int open_dir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* Copy the regular file `name` of `sfd` as `to` in `dfd` (0600). */
static int copy_file_as(struct copy *c, int sfd, int dfd, const char *name,
			const char *to, const struct stat *st)
{
	int in = -1, out = -1, rc = 0;
	ssize_t n;

	in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return errno == ENOENT ? 0 : -errno; /* gone: not ours */
	out = io_openat(c->s->io, "backup.open", dfd, to,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			0600);
	if (out < 0) {
		rc = out;
		out = -1;
		goto out;
	}
	n = io_copy_fd(c->s->io, "backup.copy", in, out);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	c->rep->files++;
	c->rep->bytes += (uint64_t)n;
	if (c->keep_meta) {
		struct timespec t[2] = {st->st_atim, st->st_mtim};

		if (fchmod(out, st->st_mode & 07777) < 0 ||
		    futimens(out, t) < 0)
			rc = -errno;
	}
out:
	if (rc)
		rlog_err("backup %s: cannot copy %s: %s", c->dest, name,
			 strerror(-rc));
	if (out >= 0)
		close(out);
	close(in);
	return rc;
}

static int copy_file(struct copy *c, int sfd, int dfd, const char *name,
		     const struct stat *st)
{
	return copy_file_as(c, sfd, dfd, name, name, st);
}

/* Is `name` (in history.git) something git leaves while it writes? */
static bool git_transient(const char *name)
{
	size_t n = strlen(name);

	return !strncmp(name, "tmp_", 4) ||
	       (n > 5 && !strcmp(name + n - 5, ".lock"));
}

enum { SKIP_NONE, SKIP_OBJECTS, ONLY_OBJECTS };

static int copy_tree(struct copy *c, int sfd, int dfd, bool git, int which);

/* Copy entry `name` of `sfd` into `dfd`: a file, or a directory tree. */
static int copy_entry(struct copy *c, int sfd, int dfd, const char *name,
		      bool git)
{
	struct stat st;
	int s2 = -1, d2 = -1, rc;

	if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISREG(st.st_mode))
		return copy_file(c, sfd, dfd, name, &st);
	if (!S_ISDIR(st.st_mode)) {
		rlog_warn("backup %s: %s is not a file or directory: not "
			  "copied",
			  c->dest, name);
		return 0;
	}
	s2 = open_dir_at(sfd, name);
	if (s2 < 0)
		return s2 == -ENOENT ? 0 : s2;
	rc = io_mkdirat(c->s->io, "backup.mkdir", dfd, name, 0700);
	if (rc == -EEXIST)
		rc = 0; /* history.git: made by the first pass */
	if (rc == 0)
		rc = d2 = open_dir_at(dfd, name);
	if (rc >= 0)
		rc = copy_tree(c, s2, d2, git, SKIP_NONE);
	if (rc == 0 && c->keep_meta) {
		struct timespec t[2] = {st.st_atim, st.st_mtim};

		if (fchmod(d2, st.st_mode & 07777) < 0 || futimens(d2, t) < 0)
			rc = -errno;
	}
	if (d2 >= 0)
		close(d2);
	close(s2);
	return rc;
}

/* Copy the contents of directory `sfd` into `dfd`. In history.git
   (`git`), transient files are left out and `which` orders refs before
   objects at its top. */
static int copy_tree(struct copy *c, int sfd, int dfd, bool git, int which)
{
	int fd = openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	struct dirent *d;
	DIR *dir;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while (rc == 0 && (d = readdir(dir)) != NULL) {
		const char *n = d->d_name;
		bool objects = !strcmp(n, "objects");

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (git && git_transient(n))
			continue;
		if ((which == SKIP_OBJECTS && objects) ||
		    (which == ONLY_OBJECTS && !objects))
			continue;
		rc = copy_entry(c, sfd, dfd, n, git);
	}
	closedir(dir);
	return rc;
}

/* Copy top-level entry `name` of the store if it exists. */
static int copy_top(struct copy *c, int dfd, const char *name)
{
	struct stat st;

	if (fstatat(c->s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return copy_entry(c, c->s->dirfd, dfd, name, false);
}

static int copy_history(struct copy *c, int dfd)
{
	int sfd, d2 = -1, rc;

	sfd = open_dir_at(c->s->dirfd, HIST_DIR);
	if (sfd == -ENOENT)
		return 0;
	if (sfd < 0)
		return sfd;
	rc = io_mkdirat(c->s->io, "backup.mkdir", dfd, HIST_DIR, 0700);
	if (rc == 0)
		rc = d2 = open_dir_at(dfd, HIST_DIR);
	if (rc >= 0)
		rc = copy_tree(c, sfd, d2, true, SKIP_OBJECTS);
	if (rc == 0)
		rc = copy_tree(c, sfd, d2, true, ONLY_OBJECTS);
	if (d2 >= 0)
		close(d2);
	close(sfd);
	return rc;
}

/* Step 3, with the store quiet. */
static int copy_store(struct copy *c, int dfd)
{
	int rc;

	rc = copy_top(c, dfd, STORE_INDEX_FILE);
	if (rc == 0)
		rc = copy_top(c, dfd, STORE_JOURNAL_DIR);
	if (rc == 0) {
		c->keep_meta = true;
		rc = copy_top(c, dfd, STORE_RECORDS_DIR);
		c->keep_meta = false;
	}
	if (rc == 0)
		rc = copy_top(c, dfd, HIST_INDEX_FILE);
	if (rc == 0)
		rc = copy_history(c, dfd);
	if (rc == 0)
		rc = io_mkdirat(c->s->io, "backup.mkdir", dfd, STORE_TMP_DIR,
				0700);
	return rc;
}

/* fsync every file and directory under `dfd`, then `dfd` itself. */
static int sync_tree(struct store *s, int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	struct dirent *d;
	DIR *dir;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while (rc == 0 && (d = readdir(dir)) != NULL) {
		struct stat st;
		int f;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
			break;
		}
		f = openat(dfd, d->d_name,
			   O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
				   (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (f < 0) {
			rc = -errno;
			break;
		}
		rc = S_ISDIR(st.st_mode) ? sync_tree(s, f)
					 : io_fsync(s->io, "backup.fsync", f);
		close(f);
	}
	closedir(dir);
	if (rc == 0)
		rc = io_fsync(s->io, "backup.dirsync", dfd);
	return rc;
}

/* Remove everything under `dfd` (what a failed backup made). */
static void remove_tree(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *d;
	DIR *dir;

	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((d = readdir(dir)) != NULL) {
		struct stat st;
		int sub;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			sub = open_dir_at(dfd, d->d_name);
			if (sub >= 0) {
				remove_tree(sub);
				close(sub);
			}
			unlinkat(dfd, d->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dfd, d->d_name, 0);
		}
	}
	closedir(dir);
}

/* Step 4's end: the source's format file, atomically, last. */
static int install_format(struct copy *c, int dfd)
{
	struct stat st;
	int rc;

	if (fstatat(c->s->dirfd, FORMAT_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	unlinkat(dfd, FORMAT_TMP, 0);
	rc = copy_file_as(c, c->s->dirfd, dfd, FORMAT_FILE, FORMAT_TMP, &st);
	if (rc == 0) {
		int fd = openat(dfd, FORMAT_TMP,
				O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

		rc = fd < 0 ? -errno : io_fsync(c->s->io, "backup.fsync", fd);
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0)
		rc = io_renameat(c->s->io, "backup.rename", dfd, FORMAT_TMP,
				 dfd, FORMAT_FILE, 0);
	if (rc == 0)
		rc = io_fsync(c->s->io, "backup.dirsync", dfd);
	return rc;
}

/* Is DEST empty (it exists) or absent (created here)? Opens it. */
static int open_dest(const char *dest, int *dfd, bool *created)
{
	struct dirent *d;
	DIR *dir;
	int fd, rc = 0;

	*created = false;
	if (mkdir(dest, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		return -errno;
	fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOTDIR || errno == ELOOP ? -EEXIST : -errno;
		goto out;
	}
	if (!*created) {
		int fd2 = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		dir = fd2 < 0 ? NULL : fdopendir(fd2);
		if (!dir) {
			rc = -errno;
			if (fd2 >= 0)
				close(fd2);
			goto out;
		}
		while ((d = readdir(dir)) != NULL)
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) {
				rc = -ENOTEMPTY;
				break;
			}
		closedir(dir);
		if (rc == 0 && fchmod(fd, 0700) < 0)
			rc = -errno;
	}
out:
	if (rc) {
		if (fd >= 0)
			close(fd);
		if (*created)
			rmdir(dest);
		return rc;
	}
	*dfd = fd;
	return 0;
}

/* Refuse a DEST inside the store: the copy would copy itself. */
static int check_outside(struct store *s, const char *dest)
{
	char parent[PATH_MAX], real[PATH_MAX], store[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	size_t n;

	if (!slash)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == dest)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dest),
			 dest);
	if (!realpath(parent, real) || !realpath(s->path, store))
		return -errno;
	n = strlen(store);
	if (!strncmp(real, store, n) && (real[n] == '/' || real[n] == '\0'))
		return -EINVAL;
	return 0;
}

static int parent_sync(const char *dest)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	int fd, rc = 0;

	if (!slash)
		snprintf(parent, sizeof(parent), ".");
	else
		snprintf(parent, sizeof(parent), "%.*s",
			 slash == dest ? 1 : (int)(slash - dest), dest);
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int store_backup(struct store *s, const char *dest,
		 struct store_backup_report *rep)
{
	struct store_backup_report scratch;
	struct copy c = {.s = s, .dest = dest};
	bool created = false, locked = false;
	int dfd = -1, rc;

	rep = rep ? rep : &scratch;
	memset(rep, 0, sizeof(*rep));
	c.rep = rep;
	if (s->dirfd < 0)
		return -ENOTSUP; /* memory backend */
	rc = check_outside(s, dest);
	if (rc == -EINVAL)
		rlog_err("backup %s: inside the store %s", dest, s->path);
	if (rc)
		return rc;
	rc = open_dest(dest, &dfd, &created);
	if (rc) {
		rlog_err("backup %s: %s", dest,
			 rc == -ENOTEMPTY || rc == -EEXIST
				 ? "exists and is not an empty directory"
				 : strerror(-rc));
		return rc;
	}

	/* step 1: make the journal short, while changes go on */
	if (s->hist && !s->opts.read_only)
		(void)store_history_drain(s, BACKUP_DRAIN_MS);
	if (s->jnl && !s->opts.read_only && !s->broken)
		(void)store_checkpoint(s); /* logged; the journal is copied */

	/* step 2 */
	pthread_mutex_lock(&s->ckpt_mu);
	pthread_rwlock_wrlock(&s->gate);
	locked = true;
	pthread_mutex_lock(&s->mu);
	rc = s->broken;
	pthread_mutex_unlock(&s->mu);
	if (rc) {
		rlog_err("backup %s: the store needs recovery (remount it "
			 "first)",
			 dest);
		goto out;
	}
	rep->revision = store_revision(s);
	store_counts(s, &rep->records, NULL);
	if (s->hist && !s->opts.read_only &&
	    hist_drain(s->hist, rep->revision, BACKUP_DRAIN_MS) != 0)
		rlog_warn("backup %s: the history is behind revision %" PRIu64
			  "; the copy's journal keeps the rest",
			  dest, rep->revision);

	/* step 3 */
	rc = copy_store(&c, dfd);
	pthread_rwlock_unlock(&s->gate);
	pthread_mutex_unlock(&s->ckpt_mu);
	locked = false;

	/* step 4 */
	if (rc == 0)
		rc = sync_tree(s, dfd);
	if (rc == 0)
		rc = install_format(&c, dfd);
	if (rc == 0)
		rc = parent_sync(dest);
out:
	if (locked) {
		pthread_rwlock_unlock(&s->gate);
		pthread_mutex_unlock(&s->ckpt_mu);
	}
	if (rc) {
		rlog_err("backup %s: failed: %s; removing the partial copy",
			 dest, strerror(-rc));
		remove_tree(dfd);
		close(dfd);
		if (created)
			rmdir(dest);
		return rc;
	}
	close(dfd);
	rlog_info("backup of %s at revision %" PRIu64 " written to %s: %" PRIu64
		  " records, %" PRIu64 " files, %" PRIu64 " bytes",
		  s->path, rep->revision, dest, rep->records, rep->files,
		  rep->bytes);
	return 0;
}
