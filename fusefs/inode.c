/*
 * inode.c - the inode table: every inode number the kernel was given, with
 * its lookup count, until FORGET (passthrough_ll's habit). Names are keys
 * ("a/b", "a/b@3", ".recfs/history/a"), so one record has one inode however
 * it is reached; an inode whose record was deleted or replaced loses its
 * key (detached) and lives on for the handles and the kernel references it
 * still has. Inode numbers are never reused within a mount, so the
 * generation is always 0.
 *
 * Locking: ctx->mu protects both hash tables and every field of an inode
 * marked so in fs_i.h. An inode is freed when the kernel forgot it and no
 * handle or temporary hold is left (refs).
 */
#include "fs_i.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MIN_BUCKETS 1024

static size_t slot_ino(const struct fs_ctx *c, uint64_t ino)
{
	return (size_t)(XXH3_64bits(&ino, sizeof(ino)) & (c->buckets - 1));
}

static size_t slot_key(const struct fs_ctx *c, const char *key)
{
	return (size_t)(XXH3_64bits(key, strlen(key)) & (c->buckets - 1));
}

static struct fs_inode *new_inode(uint64_t number, enum fs_kind kind)
{
	struct fs_inode *ino = calloc(1, sizeof(*ino));

	if (!ino)
		return NULL;
	ino->ino = number;
	ino->kind = kind;
	pthread_mutex_init(&ino->mu, NULL);
	return ino;
}

static void free_inode(struct fs_inode *ino)
{
	fs_draft_drop(ino);
	store_reader_free(ino->rd);
	pthread_mutex_destroy(&ino->mu);
	free(ino->key);
	free(ino->id);
	free(ino);
}

/* ctx->mu held. */
static void link_ino(struct fs_ctx *c, struct fs_inode *ino)
{
	size_t s = slot_ino(c, ino->ino);

	ino->hnext_ino = c->by_ino[s];
	c->by_ino[s] = ino;
}

static void link_key(struct fs_ctx *c, struct fs_inode *ino)
{
	size_t s = slot_key(c, ino->key);

	ino->hnext_key = c->by_key[s];
	c->by_key[s] = ino;
}

static void unlink_key(struct fs_ctx *c, struct fs_inode *ino)
{
	struct fs_inode **p = &c->by_key[slot_key(c, ino->key)];

	while (*p && *p != ino)
		p = &(*p)->hnext_key;
	if (*p)
		*p = ino->hnext_key;
	ino->hnext_key = NULL;
}

static void unlink_ino(struct fs_ctx *c, struct fs_inode *ino)
{
	struct fs_inode **p = &c->by_ino[slot_ino(c, ino->ino)];

	while (*p && *p != ino)
		p = &(*p)->hnext_ino;
	if (*p)
		*p = ino->hnext_ino;
}

/* Double the tables when they are fuller than one per bucket. mu held. */
static void grow(struct fs_ctx *c)
{
	size_t old = c->buckets, n = old * 2;
	struct fs_inode **bi = calloc(n, sizeof(*bi));
	struct fs_inode **bk = calloc(n, sizeof(*bk));
	struct fs_inode **oi = c->by_ino;

	if (!bi || !bk) { /* slower chains, still correct */
		free(bi);
		free(bk);
		return;
	}
	free(c->by_key);
	c->by_ino = bi;
	c->by_key = bk;
	c->buckets = n;
	for (size_t i = 0; i < old; i++) {
		struct fs_inode *ino = oi[i], *next;

		for (; ino; ino = next) {
			next = ino->hnext_ino;
			link_ino(c, ino);
			if (ino->key)
				link_key(c, ino);
		}
	}
	free(oi);
}

int fs_table_init(struct fs_ctx *c)
{
	struct fs_inode *root;

	c->buckets = MIN_BUCKETS;
	c->by_ino = calloc(c->buckets, sizeof(*c->by_ino));
	c->by_key = calloc(c->buckets, sizeof(*c->by_key));
	root = new_inode(FUSE_ROOT_ID, FS_ROOT);
	if (!c->by_ino || !c->by_key || !root || !(root->key = strdup("")) ||
	    !(root->id = strdup(""))) {
		if (root)
			free_inode(root);
		return -ENOMEM;
	}
	root->nlookup = 1; /* the kernel never forgets the root */
	c->next_ino = FUSE_ROOT_ID + 1;
	link_ino(c, root);
	link_key(c, root);
	c->count = 1;
	return 0;
}

void fs_table_free(struct fs_ctx *c)
{
	for (size_t i = 0; c->by_ino && i < c->buckets; i++) {
		struct fs_inode *ino = c->by_ino[i], *next;

		for (; ino; ino = next) {
			next = ino->hnext_ino;
			if (fs_draft_peek(ino)->state != D_CLEAN)
				rlog_warn(
					"record %s: still open for writing at "
					"shutdown: changes not committed",
					ino->id);
			free_inode(ino);
		}
	}
	free(c->by_ino);
	free(c->by_key);
	c->by_ino = c->by_key = NULL;
}

/* mu held. */
static struct fs_inode *find_ino(struct fs_ctx *c, uint64_t number)
{
	struct fs_inode *ino = c->by_ino[slot_ino(c, number)];

	while (ino && ino->ino != number)
		ino = ino->hnext_ino;
	return ino;
}

static struct fs_inode *find_key(struct fs_ctx *c, const char *key)
{
	struct fs_inode *ino = c->by_key[slot_key(c, key)];

	while (ino && strcmp(ino->key, key) != 0)
		ino = ino->hnext_key;
	return ino;
}

struct fs_inode *fs_inode_get(struct fs_ctx *c, fuse_ino_t number)
{
	struct fs_inode *ino;

	pthread_mutex_lock(&c->mu);
	ino = find_ino(c, number);
	pthread_mutex_unlock(&c->mu);
	return ino;
}

struct fs_inode *fs_inode_find(struct fs_ctx *c, const char *key)
{
	struct fs_inode *ino;

	pthread_mutex_lock(&c->mu);
	ino = find_key(c, key);
	if (ino)
		ino->refs++;
	pthread_mutex_unlock(&c->mu);
	return ino;
}

struct fs_inode *fs_inode_lookup(struct fs_ctx *c, const char *key,
				 enum fs_kind kind, const char *id,
				 uint64_t cond)
{
	struct fs_inode *ino;

	pthread_mutex_lock(&c->mu);
	ino = find_key(c, key);
	if (ino && ino->kind != kind) {
		/* a record became a namespace or the like: a new inode */
		unlink_key(c, ino);
		free(ino->key);
		ino->key = NULL;
		ino = NULL;
	}
	if (!ino) {
		ino = new_inode(c->next_ino, kind);
		if (ino && (!(ino->key = strdup(key)) ||
			    !(ino->id = strdup(id ? id : key)))) {
			free_inode(ino);
			ino = NULL;
		}
		if (!ino) {
			pthread_mutex_unlock(&c->mu);
			return NULL;
		}
		c->next_ino++;
		ino->cond = cond;
		ino->cas_next = cond;
		if (c->count >= c->buckets)
			grow(c);
		link_ino(c, ino);
		link_key(c, ino);
		c->count++;
	}
	ino->nlookup++;
	pthread_mutex_unlock(&c->mu);
	return ino;
}

void fs_inode_hold(struct fs_ctx *c, struct fs_inode *ino)
{
	pthread_mutex_lock(&c->mu);
	ino->refs++;
	pthread_mutex_unlock(&c->mu);
}

struct fs_inode *fs_inode_private(struct fs_ctx *c, const struct fs_inode *like)
{
	struct fs_inode *ino = new_inode(like->ino, like->kind);

	if (!ino)
		return NULL;
	ino->cond = like->cond;
	ino->cas_next = like->cond;
	ino->refs = 1;
	ino->private = true;
	pthread_mutex_lock(&c->mu);
	ino->id = strdup(like->id);
	pthread_mutex_unlock(&c->mu);
	if (!ino->id) {
		free_inode(ino);
		return NULL;
	}
	return ino;
}

/* Free `ino` if nothing holds it any more. mu held; true if freed. */
static bool maybe_free(struct fs_ctx *c, struct fs_inode *ino)
{
	if (ino->private)
		return ino->refs == 0;
	if (ino->nlookup || ino->refs || ino->ino == FUSE_ROOT_ID)
		return false;
	if (ino->key)
		unlink_key(c, ino);
	unlink_ino(c, ino);
	c->count--;
	return true;
}

void fs_inode_put(struct fs_ctx *c, struct fs_inode *ino)
{
	bool gone;

	if (!ino)
		return;
	pthread_mutex_lock(&c->mu);
	ino->refs--;
	gone = maybe_free(c, ino);
	pthread_mutex_unlock(&c->mu);
	if (gone)
		free_inode(ino);
}

void fs_inode_forget(struct fs_ctx *c, fuse_ino_t number, uint64_t n)
{
	struct fs_inode *ino;
	bool gone = false;

	pthread_mutex_lock(&c->mu);
	ino = find_ino(c, number);
	if (ino) {
		ino->nlookup = n > ino->nlookup ? 0 : ino->nlookup - n;
		gone = maybe_free(c, ino);
	}
	pthread_mutex_unlock(&c->mu);
	if (gone)
		free_inode(ino);
}

void fs_inode_detach(struct fs_ctx *c, struct fs_inode *ino)
{
	pthread_mutex_lock(&c->mu);
	if (ino->key) {
		unlink_key(c, ino);
		free(ino->key);
		ino->key = NULL;
	}
	pthread_mutex_unlock(&c->mu);
}

/* Does `key` lie at or below `prefix`? Returns the rest ("" or "/x"). */
static const char *below(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(key, prefix, n) != 0 || (key[n] != '\0' && key[n] != '/'))
		return NULL;
	return key + n;
}

/* Give `ino` the key to + rest. mu held. */
static int move_one(struct fs_ctx *c, struct fs_inode *ino, const char *to,
		    const char *rest)
{
	size_t n = strlen(to) + strlen(rest) + 1;
	char *key = malloc(n), *id;

	if (!key)
		return -ENOMEM;
	snprintf(key, n, "%s%s", to, rest);
	id = ino->kind == FS_NS || ino->kind == FS_RECORD ||
			     ino->kind == FS_SCRATCH
		     ? strdup(key)
		     : NULL;
	unlink_key(c, ino);
	free(ino->key);
	ino->key = key;
	if (id) {
		free(ino->id);
		ino->id = id;
	}
	link_key(c, ino);
	return 0;
}

void fs_inode_rekey(struct fs_ctx *c, const char *from, const char *to,
		    bool tree)
{
	struct fs_inode *old;

	pthread_mutex_lock(&c->mu);
	/* what `to` named before is replaced: it keeps no name */
	old = find_key(c, to);
	if (old) {
		unlink_key(c, old);
		free(old->key);
		old->key = NULL;
	}
	if (!tree) { /* one record: no walk over the table */
		old = find_key(c, from);
		if (old && move_one(c, old, to, "") != 0) {
			unlink_key(c, old);
			free(old->key);
			old->key = NULL;
		}
		pthread_mutex_unlock(&c->mu);
		return;
	}
	for (size_t i = 0; i < c->buckets; i++) {
		struct fs_inode *ino = c->by_ino[i];

		for (; ino; ino = ino->hnext_ino) {
			const char *rest =
				ino->key ? below(ino->key, from) : NULL;

			if (rest && ino->ino != FUSE_ROOT_ID &&
			    move_one(c, ino, to, rest) != 0) {
				/* no memory for the new name: forget it */
				unlink_key(c, ino);
				free(ino->key);
				ino->key = NULL;
			}
		}
	}
	pthread_mutex_unlock(&c->mu);
}

void fs_inode_each(struct fs_ctx *c, bool dirs,
		   void (*fn)(struct fs_ctx *, struct fs_inode *))
{
	struct fs_inode **list = NULL;
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	list = calloc(c->count ? c->count : 1, sizeof(*list));
	for (size_t i = 0; list && i < c->buckets; i++)
		for (struct fs_inode *ino = c->by_ino[i]; ino;
		     ino = ino->hnext_ino)
			if (ino->key &&
			    (dirs ? ino->kind == FS_NS || ino->kind == FS_ROOT
				  : ino->kind == FS_RECORD)) {
				ino->refs++;
				list[n++] = ino;
			}
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < n; i++) {
		fn(c, list[i]);
		fs_inode_put(c, list[i]);
	}
	free(list);
}
