/*
 * remote.c - what other mounts of the same store commit (a store on etcd
 * mounted on several hosts), told to the kernel. The store calls the hook
 * (store_set_change_hook) from its watch thread once another mount's
 * change of a record or namespace is in the index; this tells the kernel
 * the way a change it did not make on this mount is told (inval.c):
 *   - a record it holds an inode of, still there: fs_inval_revalidate,
 *     that is fs_record_changed for a new version (attributes told once
 *     under the inode's mu, pages dropped from the thread; an open
 *     descriptor goes on with the new version, as for a commit in place)
 *     or the attributes alone for new metadata;
 *   - a record or namespace gone: fs_record_gone (its descriptors keep
 *     the version they read, its name is dropped);
 *   - a name that appeared or went: the parent's attributes and its
 *     cached listing (the pages of the directory, from the thread), since
 *     the root's mtime never changes on etcd.
 * The mount's own commits are not told (the store skips them), so no
 * second notice comes between a reader's GETATTR and READ.
 */
#include "fs_i.h"

#include <errno.h>
#include <string.h>

/* The parent namespace of `id`: its attributes and cached listing. */
static void parent_listing(struct fs_ctx *c, const char *id)
{
	const char *slash = strrchr(id, '/');
	char parent[ID_MAX_LEN + 1];
	size_t plen = slash ? (size_t)(slash - id) : 0;
	struct fs_inode *p;
	uint64_t gen;

	memcpy(parent, id, plen);
	parent[plen] = '\0';
	p = fs_inode_find(c, parent);
	if (!p)
		return; /* the kernel holds nothing of it */
	pthread_mutex_lock(&p->mu);
	fs_inval_attr(c, p);
	gen = fs_stale_mark(c, p);
	pthread_mutex_unlock(&p->mu);
	fs_inval_queue(c, p, gen);
	fs_inode_put(c, p);
}

/* Does namespace `id` exist now? */
static bool ns_exists(struct fs_ctx *c, const char *id)
{
	struct stat st;

	return store_ns_stat(c->store, id, &st) == 0;
}

static void remote_changed(void *arg, const char *id, bool is_ns)
{
	struct fs_ctx *c = arg;
	struct fs_inode *ino = fs_inode_find(c, id);
	bool in_place = false;

	if (ino && ino->kind == FS_RECORD && !is_ns) {
		struct store_meta m;

		in_place = store_stat(c->store, id, &m, false) == 0;
		if (in_place)
			fs_inval_revalidate(c, ino);
		else
			fs_record_gone(c, ino, id);
	} else if (ino && ino->kind == FS_NS) {
		if (!ns_exists(c, id))
			fs_record_gone(c, ino, id);
		else
			fs_inval_attr(c, ino);
	} else if (ino) {
		fs_record_gone(c, ino, id); /* a record became a namespace */
	}
	if (ino)
		fs_inode_put(c, ino);
	if (!in_place)
		parent_listing(c, id);
}

void fs_remote_register(struct fs_ctx *c)
{
	store_set_change_hook(c->store, remote_changed, c);
}

void fs_remote_unregister(struct fs_ctx *c)
{
	store_set_change_hook(c->store, NULL, NULL);
}
