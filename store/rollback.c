/*
 * rollback.c - whole-store operations made of one txn (txn.c):
 * store_rollback_to (every record as of a revision, from the history) and
 * store_import (a directory of plain files). Both plan first, without
 * holding any lock, then commit the plan as one store change; the parts of
 * a rollback are conditional on the versions the plan saw, so a change
 * that comes in between makes it fail (-ESTALE) instead of being undone
 * unseen. Both stream: a rollback goes through the IDs of the index
 * (spooled) one at a time, an import adds each file as the walk finds it;
 * the txn spools its parts, so memory does not grow with the store.
 */
#include "store_i.h"
#include "store_history.h"
#include "txn.h"
#include "id.h"
#include "io.h"
#include "err.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROGRESS_EVERY 256

static void progress(const struct store_bulk_args *a, size_t done, size_t total)
{
	if (a && a->progress)
		a->progress(a->progress_arg, done, total);
}

/*
 * Create the namespaces `id` lives in, as needed (namespaces are not
 * versioned: this is not part of the txn). Returns 0, -ENOTDIR (a record
 * is in the way), -errno.
 */
static int ensure_parents(struct store *s, const char *id)
{
	char ns[ID_MAX_LEN + 1];
	struct stat st;
	const char *p = id;
	int rc;

	while ((p = strchr(p, '/')) != NULL) {
		memcpy(ns, id, (size_t)(p - id));
		ns[p - id] = '\0';
		p++;
		if (store_ns_stat(s, ns, &st) == 0)
			continue;
		rc = store_mkdir(s, ns, 0755);
		if (rc == -EEXIST && store_ns_stat(s, ns, &st) != 0)
			rc = -ENOTDIR;
		if (rc && rc != -EEXIST) {
			return rerr_prefix(
				rc, "record %s: cannot create namespace %s", id,
				ns);
		}
	}
	return 0;
}

/* ---- the plan of a rollback ------------------------------------------- */

/* What one record was at the target revision, and is now. */
struct target {
	const char *id;
	uint64_t revision;	/* the target revision */
	bool at;		/* a version at or before the target revision */
	struct store_version v; /* ... the last one */
	bool after;		/* a version after it */
	uint64_t first_after;	/* the version of the first one after */
	bool live;		/* live now */
	struct store_meta cur;	/* now */
};

/* store_history_each of one record. */
static int target_version(void *arg, const char *id,
			  const struct store_version *v)
{
	struct target *t = arg;

	(void)id;
	if (v->revision <= t->revision) {
		if (!t->at || v->revision >= t->v.revision) {
			t->at = true;
			t->v = *v;
		}
	} else if (!t->after || v->version < t->first_after) {
		t->after = true;
		t->first_after = v->version;
	}
	return 0;
}

/* The IDs of the index (every record there is or was), spooled. */
struct id_list {
	struct spool sp;
	size_t n;
	int err;
};

static int list_id(void *arg, struct entry *e)
{
	struct id_list *l = arg;
	uint16_t len = (uint16_t)e->id_len;

	if (!e->meta.version)
		return 0;
	l->err = spool_write(&l->sp, &len, sizeof(len));
	if (l->err == 0)
		l->err = spool_write(&l->sp, e->id, len);
	l->n += l->err == 0;
	return l->err;
}

/*
 * The part of the txn for one record (or none). Returns 0, or -ENODATA
 * when its state at the revision is not in the history.
 */
static int plan_part(struct store *s, struct store_txn *txn,
		     const struct target *t, uint64_t revision,
		     struct store_bulk_result *res)
{
	struct store_cond cond = {STORE_COND_IF_VERSION, t->cur.version};
	struct store_commit_args args = {.mode = -1};
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (!t->live) {
		cond.kind = STORE_COND_CREATE;
		cond.version = 0;
	}
	args.cond = cond;
	if (!t->at) {
		/* Nothing in the history up to the revision: the record was
		   made after it (its first version is 1), or it was there
		   before the history began (adopted; a store older than its
		   history) and is then kept if it has not changed since. */
		if (t->after && t->first_after == 1)
			goto absent;
		if (!t->after && t->cur.revision <= revision)
			goto keep;
		return rerr_set(-ENODATA,
				"record %s: its state at revision %" PRIu64
				" predates the history; cannot roll it back",
				t->id, revision);
	}
	if (t->v.deleted)
		goto absent;
	if (t->live && t->cur.version == t->v.version)
		goto keep; /* unchanged since */
	if (t->v.missing) {
		return rerr_set(-ENODATA,
				"record %s: version %" PRIu64 " is in the "
				"history without its content; cannot roll "
				"back to it",
				t->id, t->v.version);
	}
	if (t->live && t->cur.hash_valid && t->v.hash_valid &&
	    t->cur.size == t->v.size && !memcmp(t->cur.hash, t->v.hash, 16) &&
	    t->cur.symlink == t->v.symlink)
		goto keep; /* the same content (and kind) again */
	/* the content and kind of that version; mode and owner stay the
	   current ones (a new record's: 0644, the rollback's who) */
	args.symlink = t->v.symlink;
	rc = store_history_get(s, t->id, t->v.version, &buf, &len, NULL);
	if (rc)
		return rerr_prefix(rc,
				   "record %s: cannot read version %" PRIu64
				   " from the history",
				   t->id, t->v.version);
	rc = store_txn_put(txn, t->id, buf, len, &args);
	free(buf);
	if (rc == 0 && res)
		res->puts++;
	return rc;
absent:
	if (!t->live)
		return 0;
	rc = store_txn_delete(txn, t->id, &cond);
	if (rc == 0 && res)
		res->deletes++;
	return rc;
keep:
	if (res)
		res->noops++;
	return 0;
}

/* The plan of one record (its ID in t->id): its state at the revision
   and now. */
static int plan_target(struct store *s, struct target *t)
{
	struct entry *e;
	int rc = store_history_each(s, t->id, target_version, t);

	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, t->id, strlen(t->id));
	if (e) {
		t->cur = e->meta;
		t->live = !e->meta.deleted;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* Every record of the index in turn, into the txn. */
static int plan_all(struct store *s, struct id_list *l, struct store_txn *txn,
		    uint64_t revision, const struct store_bulk_args *args,
		    struct store_bulk_result *res)
{
	char id[ID_MAX_LEN + 1];
	uint16_t len;
	int rc = spool_rewind(&l->sp);

	for (size_t i = 0; i < l->n && rc == 0; i++) {
		struct target t = {.id = id, .revision = revision};

		rc = spool_read(&l->sp, &len, sizeof(len));
		if (rc == 0 && len > ID_MAX_LEN)
			rc = -EBADMSG;
		if (rc == 0)
			rc = spool_read(&l->sp, id, len);
		id[rc ? 0 : len] = '\0';
		if (rc == 0)
			rc = plan_target(s, &t);
		if (rc == 0)
			rc = plan_part(s, txn, &t, revision, res);
		/* the namespaces a re-created record needs */
		if (rc == 0 && !args->dry_run && t.at && !t.v.deleted &&
		    !t.live)
			rc = ensure_parents(s, id);
		if (i % PROGRESS_EVERY == 0)
			progress(args, i, l->n);
	}
	progress(args, l->n, l->n);
	return rc;
}

/* The checks before a rollback, and the history brought up to date. */
static int rollback_check(struct store *s, uint64_t revision)
{
	uint64_t now;
	int rc;

	if (!s->hist)
		return -ENOTSUP;
	if (s->opts.read_only)
		return -EROFS;
	now = store_revision(s);
	if (revision > now)
		return rerr_set(-EINVAL,
				"%s: revision %" PRIu64 " is after the "
				"current one (%" PRIu64 ")",
				s->path, revision, now);
	rc = store_history_drain(
		s, s->opts.history_drain_ms ? s->opts.history_drain_ms : 10000);
	if (rc)
		return rerr_prefix(rc, "%s: the history cannot catch up",
				   s->path);
	return 0;
}

int store_rollback_to(struct store *s, uint64_t revision,
		      const struct store_bulk_args *args,
		      struct store_bulk_result *res)
{
	static const struct store_bulk_args none = {0};
	struct store_bulk_result scratch;
	struct store_txn_result tr;
	struct store_txn *txn = NULL;
	struct id_list l = {0};
	int rc;

	args = args ? args : &none;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	rc = rollback_check(s, revision);
	if (rc)
		return rc;
	rc = spool_open(s, &l.sp);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	rc = idx_each(&s->ix, list_id, &l);
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		rc = store_txn_new(s, &txn);
	if (rc == 0)
		rc = plan_all(s, &l, txn, revision, args, res);
	if (rc || args->dry_run)
		goto out;
	rc = store_txn_commit(txn, args->who, &tr);
	if (rc == 0) {
		res->revision = tr.revision;
		res->noops += tr.noops;
		res->puts -= tr.noops; /* puts found equal at commit time */
	} else if (rc == -ESTALE && tr.failed < store_txn_count(txn)) {
		rerr_set(rc,
			 "%s: a record changed while rolling back (it is at "
			 "version %" PRIu64 " now); nothing was changed, try "
			 "again",
			 s->path, tr.current);
	}
out:
	if (rc)
		res->puts = res->deletes = 0;
	store_txn_free(txn);
	spool_close(&l.sp);
	return rc;
}

/* ---- revision at a time ----------------------------------------------- */

struct at_time {
	int64_t when_ns;
	uint64_t revision;
};

static int at_time_version(void *arg, const char *id,
			   const struct store_version *v)
{
	struct at_time *a = arg;
	int64_t t = (int64_t)v->time.tv_sec * 1000000000 + v->time.tv_nsec;

	(void)id;
	if (t <= a->when_ns && v->revision > a->revision)
		a->revision = v->revision;
	return 0;
}

int store_revision_at(struct store *s, const struct timespec *when,
		      uint64_t *revision)
{
	struct at_time a = {
		.when_ns = (int64_t)when->tv_sec * 1000000000 + when->tv_nsec,
	};
	int rc;

	*revision = 0;
	if (!s->hist)
		return -ENOTSUP;
	if (!s->opts.read_only) {
		rc = store_history_drain(s, s->opts.history_drain_ms
						    ? s->opts.history_drain_ms
						    : 10000);
		if (rc)
			return rc;
	}
	rc = store_history_each(s, NULL, at_time_version, &a);
	if (rc == 0)
		*revision = a.revision;
	return rc;
}

/* ---- import ------------------------------------------------------------ */

/* An import on its way: the files are added to the txn as the walk finds
   them, so nothing but the txn's spool grows with the tree. */
struct import {
	struct store *s;
	struct store_txn *txn;
	const struct store_bulk_args *args;
	int topfd;
	const char *top;
	size_t files, skipped;
	char last_ns[ID_MAX_LEN + 1]; /* namespaces made already for it */
};

/*
 * Stage the target of the symlink `rel` under `topfd` (read with
 * readlinkat, never followed) and add it to the txn as a symlink record.
 * A target over STORE_SYMLINK_MAX is skipped (*skipped), as the kernel
 * would not let it be made in a mount either.
 */
static int import_link(struct import *im, const char *rel, mode_t mode,
		       bool *skipped)
{
	struct store_commit_args args = {.mode = (int)(mode & 07777),
					 .symlink = true};
	char target[STORE_SYMLINK_MAX + 2];
	ssize_t n;
	int rc;

	*skipped = false;
	n = readlinkat(im->topfd, rel, target, sizeof(target));
	if (n < 0) {
		rc = -errno;
		return rerr_set(rc, "%s/%s: cannot read the link: %s", im->top,
				rel, strerror(-rc));
	}
	if ((size_t)n > STORE_SYMLINK_MAX) {
		/* logged: a note, the import goes on and succeeds */
		rlog_warn("%s/%s: link target over %d bytes; skipped", im->top,
			  rel, STORE_SYMLINK_MAX);
		*skipped = true;
		return 0;
	}
	rc = store_txn_put(im->txn, rel, target, (size_t)n, &args);
	if (rc)
		rerr_prefix(rc, "record %s: cannot import the link %s/%s", rel,
			    im->top, rel);
	return rc;
}

/* Stage the file `rel` under `topfd` and add it to the txn. */
static int import_one(struct import *im, const char *rel, mode_t mode)
{
	/* the file's permission bits, the time of the import */
	struct store_commit_args args = {.mode = (int)(mode & 07777)};
	struct store_stage *st = NULL;
	struct stat sb;
	ssize_t n;
	int fd = -1, rc;

	/* openat2 would be neater; the walk already refused symlinks, and
	   O_NOFOLLOW refuses one put in the last place since */
	fd = openat(im->topfd, rel,
		    O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return rerr_set(rc, "%s/%s: cannot open: %s", im->top, rel,
				strerror(-rc));
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		rc = rerr_set(-EINVAL, "%s/%s: no longer a regular file",
			      im->top, rel);
		goto out;
	}
	rc = store_stage_new(im->s, &st);
	if (rc)
		goto out;
	n = io_copy_fd(im->s->io, "import.copy", fd, st->fd);
	rc = n < 0 ? (int)n : 0;
	if (rc) {
		rerr_set(rc, "%s/%s: cannot copy: %s", im->top, rel,
			 strerror(-rc));
		store_stage_free(st);
		goto out;
	}
	rc = store_txn_put_stage(im->txn, rel, st, &args);
	if (rc)
		rerr_prefix(rc, "record %s: cannot import %s/%s", rel, im->top,
			    rel);
out:
	close(fd);
	return rc;
}

/* The namespaces of `rel`, unless the last file's were the same. */
static int import_parents(struct import *im, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	size_t n = slash ? (size_t)(slash - rel) : 0;
	int rc;

	if (!n || im->args->dry_run ||
	    (strlen(im->last_ns) == n && !memcmp(im->last_ns, rel, n)))
		return 0;
	rc = ensure_parents(im->s, rel);
	if (rc == 0) {
		memcpy(im->last_ns, rel, n);
		im->last_ns[n] = '\0';
	}
	return rc;
}

/* One entry the walk found: a file or a symlink to add. */
static int import_entry(struct import *im, const char *rel,
			const struct stat *st)
{
	bool skipped = false;
	int rc;

	if (S_ISLNK(st->st_mode))
		rc = import_link(im, rel, st->st_mode, &skipped);
	else
		rc = import_one(im, rel, st->st_mode);
	if (rc == 0 && !skipped)
		rc = import_parents(im, rel);
	im->skipped += skipped;
	im->files++;
	if (im->files % PROGRESS_EVERY == 0)
		progress(im->args, im->files, 0);
	return rc;
}

/* The name `name` in the directory `rel`, as an ID into `path`; false
   (reported, counted) if it is not one. */
static bool import_name(struct import *im, const char *rel, const char *name,
			unsigned depth, char path[ID_MAX_LEN + 2])
{
	int n = snprintf(path, ID_MAX_LEN + 2, "%s%s%s", rel, rel[0] ? "/" : "",
			 name);

	if (n < 0 || (size_t)n >= ID_MAX_LEN + 2 || id_check(path) ||
	    depth >= ID_MAX_COMPONENTS) {
		/* logged: a note, the import goes on and succeeds */
		rlog_warn("%s/%s%s%s: not a valid record ID; skipped", im->top,
			  rel, rel[0] ? "/" : "", name);
		im->skipped++;
		return false;
	}
	return true;
}

static int walk(struct import *im, int dfd, const char *rel, unsigned depth);

/* One directory entry of the walk. */
static int walk_entry(struct import *im, DIR *d, const char *rel,
		      const char *name, unsigned depth)
{
	char path[ID_MAX_LEN + 2];
	struct stat st;
	int sub;

	if (!import_name(im, rel, name, depth, path))
		return 0;
	if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return rerr_set(-errno, "%s/%s: %s", im->top, path,
				strerror(errno));
	if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
		return import_entry(im, path, &st);
	if (!S_ISDIR(st.st_mode)) {
		/* logged: a note, the import goes on and succeeds */
		rlog_warn("%s/%s: not a regular file, symlink or directory (a "
			  "device, FIFO or socket); skipped",
			  im->top, path);
		im->skipped++;
		return 0;
	}
	sub = openat(dirfd(d), name,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return rerr_set(-errno, "%s/%s: %s", im->top, path,
				strerror(errno));
	return walk(im, sub, path, depth + 1);
}

/*
 * Walk the directory `dfd` (owned: closed here) whose relative path is
 * `rel` ("" at the top), adding regular files and symlinks to the txn as
 * they come. Nothing is followed: every entry is opened or stat'ed with
 * O_NOFOLLOW relative to its directory. Names that are not IDs are
 * reported and skipped.
 */
static int walk(struct import *im, int dfd, const char *rel, unsigned depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		rc = -errno;
		close(dfd);
		return rc;
	}
	while (rc == 0) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			rc = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = walk_entry(im, d, rel, de->d_name, depth);
	}
	closedir(d);
	return rc;
}

static int import_commit(struct import *im, struct store_bulk_result *res)
{
	struct store_txn_result tr;
	int rc;

	res->skipped = im->skipped;
	progress(im->args, im->files, im->files);
	if (im->args->dry_run) {
		res->puts = store_txn_count(im->txn);
		return 0;
	}
	rc = store_txn_commit(im->txn, im->args->who, &tr);
	if (rc == 0) {
		res->revision = tr.revision;
		res->puts = tr.changes;
		res->noops = tr.noops;
	}
	return rc;
}

int store_import(struct store *s, const char *dir,
		 const struct store_bulk_args *args,
		 struct store_bulk_result *res)
{
	static const struct store_bulk_args none = {0};
	struct store_bulk_result scratch;
	struct import im = {.s = s, .top = dir};
	int dfd, rc;

	im.args = args ? args : &none;
	res = res ? res : &scratch;
	memset(res, 0, sizeof(*res));
	if (s->opts.read_only)
		return -EROFS;
	im.topfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (im.topfd < 0) {
		rc = -errno;
		return rerr_set(rc, "%s: cannot open the directory: %s", dir,
				strerror(-rc));
	}
	rc = store_txn_new(s, &im.txn);
	dfd = rc ? -1 : dup(im.topfd);
	if (rc == 0)
		rc = dfd < 0 ? -errno : walk(&im, dfd, "", 0);
	res->skipped = im.skipped;
	if (rc == 0)
		rc = import_commit(&im, res);
	store_txn_free(im.txn);
	close(im.topfd);
	return rc;
}
