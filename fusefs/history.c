/*
 * history.c - old versions through the mount (SPEC sections 4 and 5):
 * reading ID@N, and the hidden tree .recfs/history/ID/N (every version,
 * read-only, deleted records too). Contents come from the store's history
 * (store_history_get); the tree is listed from its version index.
 */
#include "fs_i.h"
#include "store_history.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/*
 * Read bits of version v as the current owner `uid`:`gid` sees them: a
 * class the version was not written for (its owner or group was another)
 * gets only what the version gave everyone.
 */
static mode_t then_bits(const struct store_version *v, uint32_t uid,
			uint32_t gid)
{
	mode_t then = (mode_t)v->mode & 0444;

	if (v->owner_uid != uid)
		then = (then & 0044) | ((then & 0004) << 6);
	if (v->owner_gid != gid)
		then = (then & 0404) | ((then & 0004) << 3);
	return then;
}

/*
 * An old version is readable only by whom both its own mode and owner
 * and the record's current ones allow (SPEC 5): a record made private
 * later hides its past, and one made public later does not expose what
 * was written while it was private. With allow_other the kernel checks
 * these bits (default_permissions). A version from before the history
 * kept modes (meta_known false) goes by the current ones; one of a
 * record that no longer exists by its own, or owner-only.
 */
static void ro_file_attr(struct fs_ctx *c, const char *id,
			 const struct store_version *v, size_t len,
			 struct stat *st)
{
	struct store_meta m;
	mode_t bits = 0400;

	memset(st, 0, sizeof(*st));
	if (store_stat(c->store, id, &m, false) == 0) {
		bits = (mode_t)m.mode & 0444;
		if (v->meta_known)
			bits &= then_bits(v, m.uid, m.gid);
		st->st_uid = m.uid;
		st->st_gid = m.gid;
	} else if (v->meta_known) {
		bits = (mode_t)v->mode & 0444;
		st->st_uid = v->owner_uid;
		st->st_gid = v->owner_gid;
	}
	st->st_mode = S_IFREG | bits;
	st->st_nlink = 1;
	st->st_size = (off_t)len;
	st->st_blocks = (blkcnt_t)((len + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = v->time;
	st->st_ctim = v->time;
	st->st_atim = v->time;
}

void fs_hist_dir_attr(const struct fs_ctx *c, struct stat *st)
{
	(void)c;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0500; /* the owner's: it lists every ID */
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
}

int fs_hist_attr(struct fs_ctx *c, const char *id, uint64_t n, struct stat *st)
{
	struct store_version v;
	void *buf = NULL;
	size_t len = 0;
	int rc = store_history_get(c->store, id, n, &buf, &len, &v);

	free(buf);
	if (rc)
		return rc == -ENOTSUP || rc == -EAGAIN ? -ENOENT : rc;
	if (v.deleted)
		return -ENOENT;
	ro_file_attr(c, id, &v, len, st);
	return 0;
}

int fs_hist_read(struct fs_ctx *c, const char *id, uint64_t n, char **buf,
		 size_t *len)
{
	void *b = NULL;
	int rc = store_history_get(c->store, id, n, &b, len, NULL);

	if (rc)
		return rc == -ENOTSUP || rc == -EAGAIN ? -ENOENT : rc;
	*buf = b;
	return 0;
}

/* ---- the .recfs/history tree --------------------------------------------- */

/* What one walk over the version index found under a prefix. */
struct walk {
	const char *prefix; /* "" or "a/b" */
	size_t plen;
	bool list;	/* names wanted (readdir); else what prefix is */
	bool is_record; /* some version of exactly `prefix` exists */
	bool is_dir;	/* some ID lies below `prefix` */
	uint64_t want;	/* a version of `prefix` asked for, or 0 */
	bool found;	/* `want` exists (and is not a delete) */
	char **names;	/* readdir: next components, or versions */
	size_t n, cap;
	size_t *set; /* names by hash: index + 1, 0 free (2^k slots) */
	size_t nset;
	int err;
};

/* The slot of `name` in w->set: its own, or the free one it would take. */
static size_t *name_slot(const struct walk *w, const char *name, size_t len)
{
	size_t i = (size_t)XXH3_64bits(name, len) & (w->nset - 1);

	for (; w->set[i]; i = (i + 1) & (w->nset - 1)) {
		const char *o = w->names[w->set[i] - 1];

		if (strlen(o) == len && memcmp(o, name, len) == 0)
			break;
	}
	return &w->set[i];
}

/* Keep w->set at most half full. 0 or -ENOMEM. */
static int set_grow(struct walk *w)
{
	size_t n = w->nset ? w->nset * 2 : 64;
	size_t *old = w->set, nold = w->nset;

	if (2 * (w->n + 1) <= w->nset)
		return 0;
	w->set = calloc(n, sizeof(*w->set));
	if (!w->set) {
		w->set = old;
		return -ENOMEM;
	}
	w->nset = n;
	for (size_t i = 0; i < nold; i++) {
		if (old[i]) {
			const char *o = w->names[old[i] - 1];

			*name_slot(w, o, strlen(o)) = old[i];
		}
	}
	free(old);
	return 0;
}

/* Add a name once (a record with 100,000 versions lists as many: found
   in a hash set, not by a scan of those before). */
static void add_name(struct walk *w, const char *name, size_t len)
{
	size_t *slot;
	char **p;

	if ((w->err = set_grow(w)) != 0)
		return;
	slot = name_slot(w, name, len);
	if (*slot)
		return;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 32;

		p = realloc(w->names, cap * sizeof(*p));
		if (!p) {
			w->err = -ENOMEM;
			return;
		}
		w->names = p;
		w->cap = cap;
	}
	w->names[w->n] = strndup(name, len);
	if (!w->names[w->n])
		w->err = -ENOMEM;
	else
		*slot = ++w->n;
}

/* store_history_each of w->prefix (listing): its versions' names. */
static int walk_one(void *arg, const char *id, const struct store_version *v)
{
	struct walk *w = arg;
	char num[24];
	int n;

	(void)id;
	w->is_record = true;
	if (v->deleted || v->pruned)
		return 0;
	n = snprintf(num, sizeof(num), "%" PRIu64, v->version);
	add_name(w, num, (size_t)n);
	return w->err;
}

/* A walk that knows enough (not listing: w->prefix is a record or a
   directory) stops with this. */
#define WALK_DONE 1

/* store_history_ids: a record below w->prefix makes it a directory (and
   w->prefix itself a record, when not listing). */
static int walk_id(void *arg, const char *id)
{
	struct walk *w = arg;
	const char *rest, *slash;

	if (w->plen == 0) {
		rest = id;
	} else if (strncmp(id, w->prefix, w->plen) == 0 && id[w->plen] == '/') {
		rest = id + w->plen + 1;
	} else {
		if (!w->list && strcmp(id, w->prefix) == 0) {
			w->is_record = true;
			return WALK_DONE;
		}
		return 0;
	}
	w->is_dir = true;
	if (!w->list)
		return WALK_DONE;
	slash = strchr(rest, '/');
	add_name(w, rest, slash ? (size_t)(slash - rest) : strlen(rest));
	return w->err;
}

/*
 * What the history has at w->prefix, from the IDs of its records alone
 * (not a walk over every version): whether it is a record or a directory
 * (stopping at the first that says), or, listing, the versions of that
 * record and the names below it.
 */
static int walk_scan(struct fs_ctx *c, struct walk *w)
{
	int rc = 0;

	if (w->list && w->plen)
		rc = store_history_each(c->store, w->prefix, walk_one, w);
	if (rc == -EINVAL)
		rc = 0; /* not an ID: no such record */
	if (rc == 0)
		rc = store_history_ids(c->store, walk_id, w);
	return rc == WALK_DONE ? 0 : rc;
}

static void walk_free(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->names[i]);
	free(w->names);
	free(w->set);
}

/* Split ".recfs/history/REST" into the prefix and a trailing version. */
static int walk_path(struct fs_ctx *c, const char *rest, struct walk *w,
		     char *prefix, size_t size, bool list)
{
	const char *last = strrchr(rest, '/');
	char commit[41];
	char *end;
	int rc;

	memset(w, 0, sizeof(*w));
	w->list = list;
	snprintf(prefix, size, "%s", rest);
	w->prefix = prefix;
	w->plen = strlen(prefix);
	rc = walk_scan(c, w);
	if (rc || w->is_record || w->is_dir || !last)
		return rc == -ENOTSUP ? -ENOENT : rc;
	/* not a prefix: maybe ID/N, a version file */
	walk_free(w);
	memset(w, 0, sizeof(*w));
	prefix[last - rest] = '\0';
	w->prefix = prefix;
	w->plen = strlen(prefix);
	w->want = strtoull(last + 1, &end, 10);
	if (*end || !w->want)
		return -ENOENT;
	/* that version of that record alone (a lookup, not a walk); one
	   still on its way to git (EAGAIN) is not listed either */
	rc = store_history_commit(c->store, prefix, w->want, commit);
	if (rc == -EINVAL || rc == -ENOTSUP || rc == -EAGAIN)
		return -ENOENT; /* not an ID, or not in git yet */
	if (rc == 0)
		w->found = true;
	return rc;
}

int fs_hist_resolve(struct fs_ctx *c, const char *rest, char **id,
		    uint64_t *version)
{
	char prefix[ID_MAX_LEN + 1];
	struct walk w;
	int rc;

	*id = NULL;
	*version = 0;
	if (*rest == '\0')
		return 0;
	rc = walk_path(c, rest, &w, prefix, sizeof(prefix), false);
	if (rc == 0 && w.want) {
		*id = strdup(prefix);
		*version = w.want;
		rc = *id ? 0 : -ENOMEM;
	}
	walk_free(&w);
	return rc;
}

int fs_hist_list(struct fs_ctx *c, const char *rest,
		 int (*cb)(void *arg, const char *name, bool is_dir), void *arg)
{
	char prefix[ID_MAX_LEN + 1];
	struct walk w;
	int rc = walk_path(c, rest, &w, prefix, sizeof(prefix), true);

	if (rc == 0 && w.want)
		rc = -ENOTDIR;
	for (size_t i = 0; rc == 0 && i < w.n; i++)
		rc = cb(arg, w.names[i], true);
	walk_free(&w);
	return rc;
}
