/*
 * meta.c - a change of a record's metadata without a new version: mtime,
 * mode, owner and group, one user xattr set or removed. Journaled as a
 * REC_META through the pipeline of change.c; bumps the store revision
 * unless nothing changes.
 */
#include "store_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A metadata change: mtime/mode/owner and/or one xattr set or removed. */
struct meta_change {
	const struct timespec *mtime; /* NULL: keep */
	int mode;		      /* -1: keep */
	uint32_t uid, gid;	      /* (uint32_t)-1: keep */
	const char *xname;	      /* NULL: no xattr change */
	const void *xvalue;	      /* NULL: remove xname */
	size_t xsize;
	int xflags;
};

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* The new metadata of `e` into r->meta and *xa (owned); 1 if nothing
   changes. s->mu held. */
static int meta_pick(const struct entry *e, const struct meta_change *c,
		     struct rec *r, uint8_t **xa, size_t *xa_len)
{
	int rc = 0;

	if (c->xname)
		rc = xa_update(e->xa, e->xa_len, c->xname, c->xvalue, c->xsize,
			       c->xflags, xa, xa_len);
	if (rc)
		return rc;
	r->meta = e->meta;
	if (c->mtime)
		r->meta.mtime = *c->mtime;
	if (c->mode >= 0)
		r->meta.mode = (uint32_t)c->mode & 07777;
	if (c->uid != (uint32_t)-1)
		r->meta.uid = c->uid;
	if (c->gid != (uint32_t)-1)
		r->meta.gid = c->gid;
	if (!c->xname) {
		*xa_len = e->xa_len;
		if (*xa_len && !(*xa = change_memdup(e->xa, *xa_len)))
			return -ENOMEM;
	}
	return same_time(&r->meta.mtime, &e->meta.mtime) &&
	       r->meta.mode == e->meta.mode && r->meta.uid == e->meta.uid &&
	       r->meta.gid == e->meta.gid && *xa_len == e->xa_len &&
	       (!*xa_len || memcmp(*xa, e->xa, *xa_len) == 0);
}

static int change_meta(struct store *s, const char *id,
		       const struct meta_change *c)
{
	struct rec r = {.type = REC_META};
	struct apply a = {0};
	size_t xa_len = 0;
	uint64_t seq;
	int rc;

	rc = change_enter(s, id, NULL);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	rc = change_wait_ids(s, &id, 1, &a.e);
	if (rc == 0)
		rc = commit_live_version(a.e) ? 0 : -ENOENT;
	if (rc == 0)
		rc = meta_pick(a.e, c, &r, &a.xa, &xa_len);
	if (rc == 0)
		a.e->busy = true;
	pthread_mutex_unlock(&s->mu);
	if (rc)
		goto out;
	r.id = id;
	r.id_len = strlen(id);
	r.xa = a.xa;
	r.xa_len = xa_len;
	r.time_ns = commit_now_ns(&(struct timespec){0});
	rc = change_journal_apply(s, &r, &a, "metadata change", &seq);
out:
	pthread_rwlock_unlock(&s->gate);
	free(a.xa);
	return rc < 0 ? rc : 0;
}

int store_set_meta(struct store *s, const char *id,
		   const struct timespec *mtime, int mode)
{
	struct meta_change c = {
		.mtime = mtime, .mode = mode, .uid = -1u, .gid = -1u};

	return change_meta(s, id, &c);
}

int store_xattr_set(struct store *s, const char *id, const char *name,
		    const void *value, size_t size, int flags)
{
	struct meta_change c = {.mode = -1,
				.uid = -1u,
				.gid = -1u,
				.xname = name,
				.xvalue = value ? value : "",
				.xsize = size,
				.xflags = flags};

	return change_meta(s, id, &c);
}

int store_xattr_remove(struct store *s, const char *id, const char *name)
{
	struct meta_change c = {
		.mode = -1, .uid = -1u, .gid = -1u, .xname = name};

	return change_meta(s, id, &c);
}

int store_set_owner(struct store *s, const char *id, uint32_t uid, uint32_t gid)
{
	struct meta_change c = {.mode = -1, .uid = uid, .gid = gid};

	return change_meta(s, id, &c);
}
