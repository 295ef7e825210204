/*
 * backup.c - store_backup: a consistent, complete and durable copy of an
 * open store (mounted or opened by recfsctl), with its history.
 *
 * How it stays consistent while commits go on, and keeps them waiting
 * only for what changed at the very end:
 *  1. without any lock, the bulk: records/ and history.git/objects,
 *     remembering each file's inode, size, mtime and ctime. A record
 *     file is never written in place (a new version is a new file renamed
 *     over the old one) and git objects never change, so a file that
 *     still has the same inode, size and times later is still what was
 *     copied. Then a checkpoint, a history drain (bounded) and a second
 *     checkpoint leave a short journal;
 *  2. the history writer is paused (hist_pause: after its batch in
 *     progress), so history.git and journal/blobs/ stop changing, and a
 *     second pass copies what changed during the first, with all of
 *     history.git (refs, what the first pass copied or not) and
 *     history.idx;
 *  3. ckpt_mu, then `gate` exclusive: no change is in flight and none
 *     starts (commits wait at the gate; readers never do), no checkpoint
 *     drops a journal segment. Copied now: the index snapshot, the
 *     journal (segments and blobs/) and the records that changed since
 *     the second pass (what was copied and is gone now is removed). The
 *     copy's history is complete up to the revision where the writer was
 *     paused; the journal holds every change after it (the store keeps
 *     the segments the history has not written, and the paused writer
 *     removes no blob link), so the copy's first open writes the rest to
 *     its history, as after a crash;
 *  4. release the locks, resume the writer, copy scratch/ (scratch
 *     files, scratch.h: they change without the gate, so they are copied
 *     as they are at that moment, as rsync of a live directory would,
 *     with their modes, times and user xattrs), make the copy durable
 *     with one syncfs of DEST's file system (an fsync of each of a
 *     million files and directories took most of the backup's time),
 *     then install the format file (temp, fsync, rename, fsync) which
 *     marks a complete store, and fsync the parent of DEST.
 * What is not copied: the lock, tmp/ (stages of writes in progress: not
 * committed) and any stray file.
 */
#include "store_i.h"
#include "admin.h"
#include "store_history.h"
#include "backup_dest.h"
#include "format.h"
#include "history.h"
#include "io.h"
#include "jnl.h"
#include "lock.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_DRAIN_MS 10000
#define FORMAT_TMP FORMAT_FILE ".tmp"

/* A file or directory copied before the gate (step 1). */
struct done {
	char *path; /* relative to the store directory */
	uint64_t ino, size;
	struct timespec mtime, ctime;
	bool dir, seen;
};

struct copy {
	struct store *s;
	const char *dest; /* for messages */
	struct store_backup_report *rep;
	int dfd;	/* DEST */
	bool incr;	/* keep what an earlier pass copied, if unchanged */
	bool gated;	/* step 3: the store is quiet */
	bool keep_meta; /* records/: keep modes and mtimes */
	bool xattrs;	/* scratch/: keep user xattrs */
	bool git; /* history.git: leave out what git leaves while writing */
	struct done *v; /* what step 1 copied; sorted by path after it */
	size_t n, cap;
	size_t nsorted;	    /* v[0..nsorted) is sorted */
	struct done *cur;   /* the entry of c->rel, or NULL */
	char rel[PATH_MAX]; /* path of the entry at hand */
};

static int open_dir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Step 1: remember that c->rel was copied from a file like `st`. */
static int remember(struct copy *c, const struct stat *st, bool dir)
{
	struct done *d = c->cur;

	c->cur = NULL;
	if (c->gated)
		return 0;
	if (!d) {
		struct done *v =
			util_grow(c->v, &c->cap, c->n, sizeof(*v), 1024);

		if (!v)
			return -ENOMEM;
		c->v = v;
		d = &c->v[c->n];
		d->path = strdup(c->rel);
		if (!d->path)
			return -ENOMEM;
		c->n++;
	}
	d->ino = (uint64_t)st->st_ino;
	d->size = (uint64_t)st->st_size;
	d->mtime = st->st_mtim;
	d->ctime = st->st_ctim;
	d->dir = dir;
	d->seen = false;
	return 0;
}

static int cmp_done(const void *a, const void *b)
{
	return strcmp(((const struct done *)a)->path,
		      ((const struct done *)b)->path);
}

/* What an earlier pass copied at c->rel, or NULL. */
static struct done *find_done(struct copy *c)
{
	struct done key = {.path = c->rel};

	if (!c->incr || !c->nsorted)
		return NULL;
	return bsearch(&key, c->v, c->nsorted, sizeof(*c->v), cmp_done);
}

static void sort_done(struct copy *c)
{
	if (c->n)
		qsort(c->v, c->n, sizeof(*c->v), cmp_done);
	c->nsorted = c->n;
	for (size_t i = 0; i < c->n; i++)
		c->v[i].seen = false;
}

/*
 * Is the copy step 1 made still the file at that path? Record files are
 * never written in place: a new version is a new file renamed over the
 * old one (new inode, new ctime), and git objects never change.
 */
static bool unchanged(const struct done *d, const struct stat *st)
{
	return !d->dir && S_ISREG(st->st_mode) &&
	       d->ino == (uint64_t)st->st_ino &&
	       d->size == (uint64_t)st->st_size &&
	       same_time(&d->mtime, &st->st_mtim) &&
	       same_time(&d->ctime, &st->st_ctim);
}

/* Remove whatever step 1 left at `name` of `dfd` (a file or a tree). */
static int clear_dest(int dfd, const char *name)
{
	struct stat st;
	int sub;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
	sub = open_dir_at(dfd, name);
	if (sub < 0)
		return sub;
	backup_remove_tree(sub);
	close(sub);
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

struct xattr_copy {
	int in, out;
	char *value; /* STORE_XATTR_VALUE_MAX bytes */
};

/* Copy xattr `name` if it is a user one (util_xattr_each callback). */
static int copy_xattr(void *arg, const char *name)
{
	struct xattr_copy *x = arg;
	ssize_t len;

	if (strncmp(name, "user.", 5) != 0)
		return 0;
	len = fgetxattr(x->in, name, x->value, STORE_XATTR_VALUE_MAX);
	if (len < 0)
		return errno == ENODATA ? 0 : -errno;
	if (fsetxattr(x->out, name, x->value, (size_t)len, 0) < 0)
		return -errno;
	return 0;
}

/* Copy the user xattrs of `in` to `out`. */
static int copy_xattrs(int in, int out)
{
	struct xattr_copy x = {in, out, malloc(STORE_XATTR_VALUE_MAX)};
	int rc;

	if (!x.value)
		return -ENOMEM;
	rc = util_xattr_each(in, copy_xattr, &x);
	free(x.value);
	return rc;
}

/* Copy the regular file `name` of `sfd` as `to` in `dfd` (0600). */
static int copy_file_as(struct copy *c, int sfd, int dfd, const char *name,
			const char *to)
{
	int in = -1, out = -1, rc = 0;
	struct stat st;
	ssize_t n;

	in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return errno == ENOENT ? 0 : -errno; /* gone meanwhile */
	if (fstat(in, &st) < 0) {
		rc = -errno;
		goto out;
	}
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
	if (c->gated) {
		c->rep->gated_files++;
		c->rep->gated_bytes += (uint64_t)n;
	}
	if (c->xattrs)
		rc = copy_xattrs(in, out); /* before a mode that forbids it */
	if (rc == 0 && c->keep_meta) {
		struct timespec t[2] = {st.st_atim, st.st_mtim};

		if (fchmod(out, st.st_mode & 07777) < 0 || futimens(out, t) < 0)
			rc = -errno;
	}
	if (rc == 0)
		rc = remember(c, &st, false);
out:
	if (rc)
		rerr_set(rc, "backup %s: cannot copy %s: %s", c->dest, c->rel,
			 strerror(-rc));
	if (out >= 0)
		close(out);
	close(in);
	return rc;
}

/* Is `name` (in history.git) something git leaves while it writes? */
static bool git_transient(const char *name)
{
	size_t n = strlen(name);

	return !strncmp(name, "tmp_", 4) ||
	       (n > 5 && !strcmp(name + n - 5, ".lock"));
}

enum { ALL, SKIP_OBJECTS, ONLY_OBJECTS };

static int copy_dir(struct copy *c, int sfd, int dfd, int which);

/* Make directory `name` in `dfd` (it may be there from step 1). */
static int make_dir(struct copy *c, int dfd, const char *name)
{
	struct stat st;
	int rc = io_mkdirat(c->s->io, "backup.mkdir", dfd, name, 0700);

	if (rc != -EEXIST)
		return rc;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return 0;
	rc = clear_dest(dfd, name); /* a record that became a namespace */
	return rc ? rc : io_mkdirat(c->s->io, "backup.mkdir", dfd, name, 0700);
}

/* Copy c->rel, entry `name` of `sfd`, into `dfd`: a file or a tree. In
   step 3, what step 1 copied and has not changed since is kept. */
static int copy_here(struct copy *c, int sfd, int dfd, const char *name,
		     int which)
{
	struct done *d = find_done(c);
	struct stat st;
	int s2 = -1, d2 = -1, rc;

	if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (d)
		d->seen = true;
	if (S_ISREG(st.st_mode)) {
		if (d && unchanged(d, &st))
			return 0;
		rc = c->incr ? clear_dest(dfd, name) : 0;
		c->cur = d;
		return rc ? rc : copy_file_as(c, sfd, dfd, name, name);
	}
	if (!S_ISDIR(st.st_mode)) {
		/* logged: a note, the backup goes on and succeeds */
		rlog_warn("backup %s: %s is not a file or directory: not "
			  "copied",
			  c->dest, c->rel);
		return 0;
	}
	s2 = open_dir_at(sfd, name);
	if (s2 < 0)
		return s2 == -ENOENT ? 0 : s2;
	rc = make_dir(c, dfd, name);
	if (rc == 0)
		rc = d2 = open_dir_at(dfd, name);
	c->cur = d;
	if (rc >= 0)
		rc = remember(c, &st, true);
	if (rc == 0)
		rc = copy_dir(c, s2, d2, which);
	/* a namespace's mode only at the end: a read-only one must not
	   stop the next pass from adding to it */
	if (rc == 0 && c->keep_meta && c->gated) {
		struct timespec t[2] = {st.st_atim, st.st_mtim};

		if (fchmod(d2, st.st_mode & 07777) < 0 || futimens(d2, t) < 0)
			rc = -errno;
	}
	if (d2 >= 0)
		close(d2);
	close(s2);
	return rc;
}

/* copy_here with c->rel extended by `name`. */
static int copy_entry(struct copy *c, int sfd, int dfd, const char *name,
		      int which)
{
	size_t len = strlen(c->rel);
	int rc;

	if (len + strlen(name) + 2 > sizeof(c->rel))
		return -ENAMETOOLONG;
	snprintf(c->rel + len, sizeof(c->rel) - len, "%s%s", len ? "/" : "",
		 name);
	rc = copy_here(c, sfd, dfd, name, which);
	c->rel[len] = '\0';
	return rc;
}

/* Copy the contents of directory `sfd` into `dfd`; at the top of
   history.git, `which` says whether objects/ is copied. */
static int copy_dir(struct copy *c, int sfd, int dfd, int which)
{
	struct dirent *d;
	DIR *dir;
	int rc = util_opendir_fd(sfd, &dir);

	if (rc)
		return rc;
	while (rc == 0 && (d = readdir(dir)) != NULL) {
		const char *n = d->d_name;
		bool objects = !strcmp(n, "objects");

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (c->git && git_transient(n))
			continue;
		if ((which == SKIP_OBJECTS && objects) ||
		    (which == ONLY_OBJECTS && !objects))
			continue;
		rc = copy_entry(c, sfd, dfd, n, ALL);
	}
	closedir(dir);
	return rc;
}

/* Copy top-level entry `name` of the store if it exists. */
static int copy_top(struct copy *c, const char *name)
{
	c->rel[0] = '\0';
	return copy_entry(c, c->s->dirfd, c->dfd, name, ALL);
}

/* history.git: all but objects/ (in step 3), then objects/. */
static int copy_history(struct copy *c, bool objects_only)
{
	int sfd, d2 = -1, rc;

	sfd = open_dir_at(c->s->dirfd, HIST_DIR);
	if (sfd == -ENOENT)
		return 0;
	if (sfd < 0)
		return sfd;
	c->git = true;
	snprintf(c->rel, sizeof(c->rel), "%s", HIST_DIR);
	rc = make_dir(c, c->dfd, HIST_DIR);
	if (rc == 0)
		rc = d2 = open_dir_at(c->dfd, HIST_DIR);
	if (rc >= 0 && !objects_only)
		rc = copy_dir(c, sfd, d2, SKIP_OBJECTS);
	if (rc >= 0)
		rc = copy_dir(c, sfd, d2, ONLY_OBJECTS);
	c->git = false;
	if (d2 >= 0)
		close(d2);
	close(sfd);
	return rc;
}

/* Step 1, while changes go on: the bulk (records, git objects); then,
   with the history writer paused, what changed during the first pass
   and all of the history. */
static int copy_bulk(struct copy *c, bool again)
{
	int rc;

	c->incr = again;
	c->keep_meta = true;
	rc = copy_top(c, STORE_RECORDS_DIR);
	c->keep_meta = false;
	if (rc == 0 && again)
		rc = copy_top(c, HIST_INDEX_FILE);
	if (rc == 0)
		rc = copy_history(c, !again);
	sort_done(c);
	return rc;
}

/* Is `path` under records/? */
static bool in_records(const char *path)
{
	size_t n = strlen(STORE_RECORDS_DIR);

	return !strncmp(path, STORE_RECORDS_DIR, n) &&
	       (path[n] == '/' || path[n] == '\0');
}

/* Step 3, with the store quiet: the index, the journal and the records,
   keeping what step 1 copied and is unchanged, and removing what it
   copied and is gone. (The history was copied, paused, in step 1.) */
static int copy_store(struct copy *c)
{
	int rc;

	c->gated = c->incr = true;
	rc = copy_top(c, STORE_INDEX_FILE);
	if (rc == 0)
		rc = copy_top(c, STORE_JOURNAL_DIR);
	if (rc == 0) {
		c->keep_meta = true;
		rc = copy_top(c, STORE_RECORDS_DIR);
		c->keep_meta = false;
	}
	if (rc == 0)
		rc = io_mkdirat(c->s->io, "backup.mkdir", c->dfd, STORE_TMP_DIR,
				0700);
	/* children sort after their parent: remove from the end */
	for (size_t i = c->n; rc == 0 && i-- > 0;) {
		if (c->v[i].seen || !in_records(c->v[i].path))
			continue;
		if (unlinkat(c->dfd, c->v[i].path,
			     c->v[i].dir ? AT_REMOVEDIR : 0) < 0 &&
		    errno != ENOENT)
			rc = -errno;
	}
	return rc;
}

/* Step 4: scratch files, as they are now (see the top). */
static int copy_scratch(struct copy *c)
{
	int rc;

	c->keep_meta = c->xattrs = true;
	rc = copy_top(c, STORE_SCRATCH_DIR);
	c->keep_meta = c->xattrs = false;
	return rc;
}

/* Step 4's end: the source's format file, atomically, last. */
static int install_format(struct copy *c, int dfd)
{
	int rc;

	unlinkat(dfd, FORMAT_TMP, 0);
	snprintf(c->rel, sizeof(c->rel), "%s", FORMAT_FILE);
	rc = copy_file_as(c, c->s->dirfd, dfd, FORMAT_FILE, FORMAT_TMP);
	if (rc == 0 && faccessat(dfd, FORMAT_TMP, F_OK, AT_EACCESS) < 0)
		rc = -errno; /* the source has none: not a store */
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

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Log the failure `rc` of a step the backup goes on without. */
static void note_failure(int rc)
{
	const char *why = rc ? rerr_take(rc) : NULL;

	if (rc)
		rlog_warn("backup: %s", why ? why : strerror(-rc));
}

/* Step 1: the bulk, then a short journal, while changes go on; the
   history is paused at the end (*paused). */
static int copy_live(struct copy *c, bool *paused)
{
	struct store *s = c->s;
	int rc = copy_bulk(c, false);

	if (rc)
		return rc;
	/* a checkpoint drops the segments the history has written: start a
	   new segment, have the history catch up with the old ones, and
	   drop them (errors are logged: the journal is copied anyway, so
	   the backup goes on and no caller hears of them) */
	if (s->jnl && !s->opts.read_only && !s->broken)
		note_failure(store_checkpoint(s));
	if (s->hist && !s->opts.read_only)
		(void)store_history_drain(s, BACKUP_DRAIN_MS);
	if (s->jnl && !s->opts.read_only && !s->broken)
		note_failure(store_checkpoint(s));
	if (s->hist && !s->opts.read_only) {
		hist_pause(s->hist);
		*paused = true;
	}
	return copy_bulk(c, true);
}

/* Steps 2 and 3: with no change in flight (the gate held exclusively,
   sync=batch drained), note the revision and copy what changed since
   step 1. */
static int copy_quiet(struct copy *c)
{
	struct store *s = c->s;
	int64_t t0;
	int rc;

	pthread_mutex_lock(&s->ckpt_mu);
	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s);
	t0 = mono_ms();
	pthread_mutex_lock(&s->mu);
	rc = s->broken;
	pthread_mutex_unlock(&s->mu);
	if (rc) {
		rerr_set(rc,
			 "backup %s: the store needs recovery (remount it "
			 "first)",
			 c->dest);
	} else {
		c->rep->revision = store_revision(s);
		store_counts(s, &c->rep->records, NULL);
		c->rep->history_done = s->hist ? hist_done(s->hist) : 0;
		rc = copy_store(c);
		c->rep->gate_ms = (uint64_t)(mono_ms() - t0);
	}
	pthread_rwlock_unlock(&s->gate);
	pthread_mutex_unlock(&s->ckpt_mu);
	return rc;
}

/* Step 4: the scratch files, everything durable, the format file last
   (what makes the copy a store), and its name in the parent. */
static int finish_copy(struct copy *c)
{
	int rc = copy_scratch(c);

	if (rc == 0)
		rc = io_syncfs(c->s->io, "backup.fsync", c->dfd);
	if (rc == 0)
		rc = install_format(c, c->dfd);
	if (rc == 0)
		rc = backup_parent_sync(c->dest);
	return rc;
}

static void log_done(struct store *s, const char *dest,
		     const struct store_backup_report *rep)
{
	/* logged: a note on a backup that succeeded */
	rlog_info("backup of %s at revision %" PRIu64 " written to %s: %" PRIu64
		  " records, %" PRIu64 " files, %" PRIu64 " bytes (%" PRIu64
		  " files, %" PRIu64 " bytes while commits waited %" PRIu64
		  " ms); history in git up to revision %" PRIu64,
		  s->path, rep->revision, dest, rep->records, rep->files,
		  rep->bytes, rep->gated_files, rep->gated_bytes, rep->gate_ms,
		  rep->history_done);
}

static int backup(struct store *s, const char *dest,
		  struct store_backup_report *rep)
{
	struct store_backup_report scratch;
	struct copy c = {.s = s, .dest = dest, .dfd = -1};
	bool created = false, paused = false;
	int rc;

	rep = rep ? rep : &scratch;
	memset(rep, 0, sizeof(*rep));
	c.rep = rep;
	if (s->dirfd < 0)
		return -ENOTSUP; /* memory backend */
	rc = backup_check_outside(s->path, dest);
	if (rc == -EINVAL)
		return rerr_set(rc, "backup %s: inside the store %s", dest,
				s->path);
	if (rc)
		return rerr_prefix(rc, "backup %s", dest);
	rc = backup_open_dest(dest, &c.dfd, &created);
	if (rc)
		return rerr_set(rc, "backup %s: %s", dest,
				rc == -ENOTEMPTY || rc == -EEXIST
					? "exists and is not an empty directory"
					: strerror(-rc));

	/* step 1 */
	rc = copy_live(&c, &paused);
	if (rc)
		goto out;

	/* steps 2 and 3 */
	rc = copy_quiet(&c);
	if (paused)
		hist_resume(s->hist);
	paused = false;
	/* step 4 */
	if (rc == 0)
		rc = finish_copy(&c);
out:
	if (paused)
		hist_resume(s->hist);
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i].path);
	free(c.v);
	if (rc) {
		rerr_prefix(rc, "backup %s (the partial copy was removed)",
			    dest);
		backup_remove_tree(c.dfd);
		close(c.dfd);
		if (created)
			rmdir(dest);
		return rc;
	}
	close(c.dfd);
	log_done(s, dest, rep);
	return 0;
}

int store_backup(struct store *s, const char *dest,
		 struct store_backup_report *rep)
{
	int rc;

	if (s->be->own_commit) /* a store on etcd */
		return rerr_set(-ENOTSUP,
				"%s: a backup of a store on etcd is not "
				"built yet (a later phase of issue 16; etcdctl "
				"snapshot save backs up the whole cluster)",
				s->path);
	pthread_mutex_lock(&s->retain_mu); /* no prune meanwhile */
	rc = backup(s, dest, rep);
	pthread_mutex_unlock(&s->retain_mu);
	return rc;
}
