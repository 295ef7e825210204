/*
 * scratch.c - scratch files (SPEC section 4): temp names of rsync, vim,
 * sed -i and backups live as plain, unversioned files until they are
 * renamed onto a record name, which commits them as its next version.
 * Their content is a store stage (a temp file in STORE/tmp, removed at the
 * next mount if the daemon dies); their attributes live here. They never
 * reach the journal or history.
 */
#include "fs_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ctx->mu held. */
static struct fs_scratch *find(struct fs_ctx *c, const char *path)
{
	for (struct fs_scratch *sc = c->scratch; sc; sc = sc->next)
		if (strcmp(sc->path, path) == 0)
			return sc;
	return NULL;
}

/* ctx->mu held. */
static void unlink_locked(struct fs_ctx *c, struct fs_scratch *sc)
{
	for (struct fs_scratch **pp = &c->scratch; *pp; pp = &(*pp)->next)
		if (*pp == sc) {
			*pp = sc->next;
			sc->linked = false;
			return;
		}
}

void fs_xattr_free(struct fs_xattr *list)
{
	while (list) {
		struct fs_xattr *x = list;

		list = x->next;
		free(x->name);
		free(x->value);
		free(x);
	}
}

static void free_scratch(struct fs_scratch *sc)
{
	fs_xattr_free(sc->xattrs);
	store_stage_free(sc->st);
	free(sc->path);
	free(sc);
}

int fs_scratch_create(struct fs_ctx *c, const char *path, mode_t mode,
		      struct fs_scratch **out)
{
	struct fs_scratch *sc = calloc(1, sizeof(*sc)), *old;
	int rc;

	if (!sc)
		return -ENOMEM;
	sc->path = strdup(path);
	rc = sc->path ? store_stage_new(c->store, &sc->st) : -ENOMEM;
	if (rc) {
		free(sc->path);
		free(sc);
		return rc;
	}
	sc->mode = mode & 07777;
	clock_gettime(CLOCK_REALTIME, &sc->mtime);
	sc->refs = 2; /* the table's and the caller's */
	sc->linked = true;
	pthread_mutex_lock(&c->mu);
	old = find(c, path);
	if (old) {
		unlink_locked(c, old);
		if (--old->refs == 0)
			free_scratch(old);
	}
	sc->next = c->scratch;
	c->scratch = sc;
	pthread_mutex_unlock(&c->mu);
	*out = sc;
	return 0;
}

struct fs_scratch *fs_scratch_get(struct fs_ctx *c, const char *path)
{
	struct fs_scratch *sc;

	pthread_mutex_lock(&c->mu);
	sc = find(c, path);
	if (sc)
		sc->refs++;
	pthread_mutex_unlock(&c->mu);
	return sc;
}

void fs_scratch_put(struct fs_ctx *c, struct fs_scratch *sc)
{
	bool last;

	if (!sc)
		return;
	pthread_mutex_lock(&c->mu);
	last = --sc->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last)
		free_scratch(sc);
}

int fs_scratch_unlink(struct fs_ctx *c, const char *path)
{
	struct fs_scratch *sc;

	pthread_mutex_lock(&c->mu);
	sc = find(c, path);
	if (sc)
		unlink_locked(c, sc);
	pthread_mutex_unlock(&c->mu);
	if (!sc)
		return -ENOENT;
	fs_scratch_put(c, sc);
	return 0;
}

int fs_scratch_rename(struct fs_ctx *c, const char *from, const char *to)
{
	struct fs_scratch *sc, *old;
	char *p = strdup(to);

	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&c->mu);
	sc = find(c, from);
	old = sc ? find(c, to) : NULL;
	if (sc) {
		if (old && old != sc) {
			unlink_locked(c, old);
			if (--old->refs == 0)
				free_scratch(old);
		}
		free(sc->path);
		sc->path = p;
		p = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	free(p);
	return sc ? 0 : -ENOENT;
}

int fs_scratch_stat(struct fs_ctx *c, struct fs_scratch *sc, struct stat *st)
{
	struct stat sb;

	if (fstat(store_stage_fd(sc->st), &sb) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&c->mu);
	st->st_mode = S_IFREG | sc->mode;
	st->st_mtim = sc->mtime;
	pthread_mutex_unlock(&c->mu);
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
	st->st_nlink = 1;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_size = sb.st_size;
	st->st_blocks = sb.st_blocks;
	st->st_blksize = 4096;
	return 0;
}

void fs_scratch_list(struct fs_ctx *c, const char *ns, void *buf,
		     fuse_fill_dir_t filler)
{
	size_t n = strlen(ns);

	pthread_mutex_lock(&c->mu);
	for (struct fs_scratch *sc = c->scratch; sc; sc = sc->next) {
		const char *rest = sc->path;

		if (n) {
			if (strncmp(sc->path, ns, n) || sc->path[n] != '/')
				continue;
			rest += n + 1;
		}
		if (!strchr(rest, '/'))
			filler(buf, rest, NULL, 0, 0);
	}
	pthread_mutex_unlock(&c->mu);
}

/* ---- xattrs: ctx->mu protects the list ---------------------------------- */

static struct fs_xattr *xfind(struct fs_xattr *list, const char *name)
{
	for (struct fs_xattr *x = list; x; x = x->next)
		if (strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

/*
 * Would the list hold more than a record may (store.h's STORE_XATTR_*
 * limits, as xa_update counts them) with `name` set to `size` bytes?
 * These lists live in the daemon's memory until their commit: without
 * the bound, any process that may write a scratch file could make it
 * grow without limit.
 */
static bool over_limits(struct fs_xattr *list, const char *name, size_t size)
{
	size_t payload = strlen(name) + size, count = 1;

	for (struct fs_xattr *x = list; x; x = x->next) {
		if (strcmp(x->name, name) == 0)
			continue;
		payload += strlen(x->name) + x->size;
		count++;
	}
	return payload > STORE_XATTR_TOTAL_MAX || count > STORE_XATTR_COUNT_MAX;
}

int fs_xattr_set(struct fs_xattr **list, const char *name, const void *value,
		 size_t size, int flags)
{
	struct fs_xattr *x;
	void *v;
	int rc = 0;

	if (name[0] == '\0' || strlen(name) > STORE_XATTR_NAME_MAX)
		return -ERANGE;
	if (size > STORE_XATTR_VALUE_MAX)
		return -E2BIG;
	v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	if (size)
		memcpy(v, value, size);
	x = xfind(*list, name);
	if (x && (flags & XATTR_CREATE)) {
		rc = -EEXIST;
	} else if (!x && (flags & XATTR_REPLACE)) {
		rc = -ENODATA;
	} else if (over_limits(*list, name, size)) {
		rc = -ENOSPC;
	} else if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x || !(x->name = strdup(name))) {
			free(x);
			rc = -ENOMEM;
		} else {
			x->next = *list;
			*list = x;
		}
	}
	if (rc == 0) {
		free(x->value);
		x->value = v;
		x->size = size;
		v = NULL;
	}
	free(v);
	return rc;
}

ssize_t fs_xattr_get(struct fs_xattr *list, const char *name, void *value,
		     size_t size)
{
	struct fs_xattr *x = xfind(list, name);

	if (!x)
		return -ENODATA;
	if (size && x->size > size)
		return -ERANGE;
	if (size && x->size)
		memcpy(value, x->value, x->size);
	return (ssize_t)x->size;
}

int fs_scratch_xattr_set(struct fs_ctx *c, struct fs_scratch *sc,
			 const char *name, const void *value, size_t size,
			 int flags)
{
	int rc;

	pthread_mutex_lock(&c->mu);
	rc = fs_xattr_set(&sc->xattrs, name, value, size, flags);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

ssize_t fs_scratch_xattr_get(struct fs_ctx *c, struct fs_scratch *sc,
			     const char *name, void *value, size_t size)
{
	ssize_t rc;

	pthread_mutex_lock(&c->mu);
	rc = fs_xattr_get(sc->xattrs, name, value, size);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

ssize_t fs_scratch_xattr_list(struct fs_ctx *c, struct fs_scratch *sc,
			      char *list, size_t size)
{
	size_t total = 0;
	ssize_t rc = 0;

	pthread_mutex_lock(&c->mu);
	for (struct fs_xattr *x = sc->xattrs; x; x = x->next) {
		size_t n = strlen(x->name) + 1;

		if (size && total + n > size) {
			rc = -ERANGE;
			break;
		}
		if (size)
			memcpy(list + total, x->name, n);
		total += n;
	}
	pthread_mutex_unlock(&c->mu);
	return rc ? rc : (ssize_t)total;
}

int fs_scratch_xattr_remove(struct fs_ctx *c, struct fs_scratch *sc,
			    const char *name)
{
	int rc = -ENODATA;

	pthread_mutex_lock(&c->mu);
	for (struct fs_xattr **pp = &sc->xattrs; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			struct fs_xattr *x = *pp;

			*pp = x->next;
			free(x->name);
			free(x->value);
			free(x);
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ---- commit and conversion ---------------------------------------------- */

int fs_scratch_commit(struct fs_ctx *c, struct fs_scratch *sc, const char *id,
		      const struct store_cond *cond)
{
	struct store_commit_args args = {.cond = *cond, .mode = -1};
	struct fuse_context *fc = fuse_get_context();
	struct store_who who = {.uid = fc->uid, .pid = (uint32_t)fc->pid};
	struct store_result res;
	struct timespec mtime;
	int rc;

	pthread_mutex_lock(&c->mu);
	mtime = sc->mtime;
	args.mode = (int)sc->mode;
	/* the temp file's creation time is not the version's time: only a
	   time that was set (rsync, cp -p) or kept from a record is, and
	   only then can an unchanged file (sed -i) be a no-op */
	args.mtime = sc->mtime_set ? &mtime : NULL;
	pthread_mutex_unlock(&c->mu);
	args.who = &who;
	rc = store_commit(c->store, id, sc->st, &args, &res);
	if (rc)
		return rc;
	/* user attributes set on the temp file (rsync -X) come along; the
	   computed user.recfs.* ones are ignored as on any record */
	for (struct fs_xattr *x = sc->xattrs; x && rc == 0; x = x->next)
		if (strncmp(x->name, "user.recfs.", 11) != 0)
			rc = store_xattr_set(c->store, id, x->name, x->value,
					     x->size, 0);
	fs_cache_forget(c, id);
	return rc;
}

/* Copy the user attributes of record `id` into scratch file `sc`. */
static int copy_xattrs(struct fs_ctx *c, const char *id, struct fs_scratch *sc)
{
	char *names = NULL, *value = NULL;
	ssize_t n, len;
	int rc = 0;

	n = store_xattr_list(c->store, id, NULL, 0);
	if (n <= 0)
		return n == -ENOENT ? 0 : (int)n;
	names = malloc((size_t)n);
	value = malloc(STORE_XATTR_VALUE_MAX);
	if (!names || !value) {
		rc = -ENOMEM;
		goto out;
	}
	n = store_xattr_list(c->store, id, names, (size_t)n);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	for (char *name = names; rc == 0 && name < names + n;
	     name += strlen(name) + 1) {
		len = store_xattr_get(c->store, id, name, value,
				      STORE_XATTR_VALUE_MAX);
		if (len == -ENODATA)
			continue; /* removed meanwhile */
		if (len < 0) {
			rc = (int)len;
			break;
		}
		rc = fs_scratch_xattr_set(c, sc, name, value, (size_t)len, 0);
	}
out:
	free(names);
	free(value);
	return rc;
}

int fs_scratch_from_record(struct fs_ctx *c, const char *id, const char *path)
{
	struct store_who who;
	struct store_meta meta;
	struct fs_scratch *sc = NULL;
	struct store_stage *st = NULL;
	uint64_t base;
	int rc;

	rc = store_stat(c->store, id, &meta, false);
	if (rc)
		return rc;
	rc = store_stage_copy(c->store, id, &base, &st);
	if (rc)
		return rc;
	rc = fs_scratch_create(c, path, meta.mode, &sc);
	if (rc) {
		store_stage_free(st);
		return rc;
	}
	store_stage_free(sc->st);
	sc->st = st;
	sc->mtime = meta.mtime;
	sc->mtime_set = true;
	/* its user attributes go along, as mv keeps them on a local disk */
	rc = copy_xattrs(c, id, sc);
	fs_who_now(&who);
	if (rc == 0)
		rc = store_delete(
			c->store, id,
			&(struct store_cond){STORE_COND_IF_VERSION, base}, &who,
			NULL);
	if (rc)
		fs_scratch_unlink(c, path);
	else
		fs_writers_orphan(c, id);
	fs_scratch_put(c, sc);
	return rc;
}
