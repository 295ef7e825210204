/*
 * xattr.c - extended attributes (SPEC section 3): the computed
 * user.recfs.* ones, users' user.* ones kept by the store (or by the draft
 * of a record not committed yet, or by a scratch file itself), and the
 * control channel (ctl.c) on the mount root.
 */
#include "fs_i.h"
#include "log.h"
#include "scratch.h"
#include "store_history.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- extended attributes (SPEC section 3) ------------------------------- */

/* Computed attributes of record `id` (NULL: the root) into buf[96].
   Returns the length, or -ENODATA. */
static int computed_xattr(struct fs_ctx *c, const char *id, const char *name,
			  char buf[96])
{
	const char *what = name + strlen(FS_XATTR_PREFIX);
	struct store_meta m;
	int rc;

	if (!id) {
		if (strcmp(what, "revision") != 0)
			return -ENODATA;
		return snprintf(buf, 96, "%" PRIu64, store_revision(c->store));
	}
	rc = store_stat(c->store, id, &m, strcmp(what, "hash") == 0);
	if (rc)
		return rc == -EISDIR || rc == -ENOENT ? -ENODATA : rc;
	if (strcmp(what, "version") == 0)
		return snprintf(buf, 96, "%" PRIu64, m.version);
	if (strcmp(what, "revision") == 0)
		return snprintf(buf, 96, "%" PRIu64, m.revision);
	if (strcmp(what, "commit") == 0) {
		rc = store_history_commit(c->store, id, m.version, buf);
		if (rc == 0)
			return (int)strlen(buf);
		if (rc == -ENOTSUP)
			return -ENODATA; /* no history (an etcd store) */
		return snprintf(buf, 96, "pending");
	}
	if (strcmp(what, "hash") == 0) {
		store_hash_format(m.hash, buf);
		return (int)strlen(buf);
	}
	return -ENODATA;
}

static void reply_xattr(fuse_req_t req, ssize_t n, const void *v, size_t size)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else if ((size_t)n > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, (size_t)n);
}

/* The xattrs of a scratch file are its own file's: `op` on an fd. */
static int scratch_fd(struct fs_ctx *c, struct fs_inode *i, int flags)
{
	int fd = -1;
	int rc = store_scratch_open(c->store, i->id, flags, 0, &fd);

	return rc ? rc : fd;
}

/* Would setting `name` to `size` bytes take a scratch file's attributes
   past a record's limits (store.h)? Its commit could not keep them. */
static int scratch_xattr_room(int fd, const char *name, size_t size)
{
	char names[8192];
	size_t count = 1, total = strlen(name) + size;
	ssize_t n = flistxattr(fd, names, sizeof(names));

	if (size > STORE_XATTR_VALUE_MAX)
		return -ENOSPC;
	if (n < 0)
		return errno == ERANGE ? -ENOSPC : -errno;
	for (char *p = names; p < names + n; p += strlen(p) + 1) {
		ssize_t v;

		if (strncmp(p, "user.", 5) != 0 || strcmp(p, name) == 0)
			continue;
		v = fgetxattr(fd, p, NULL, 0);
		count++;
		total += strlen(p) + (v > 0 ? (size_t)v : 0);
	}
	return count > STORE_XATTR_COUNT_MAX || total > STORE_XATTR_TOTAL_MAX
		       ? -ENOSPC
		       : 0;
}

static ssize_t record_getxattr(struct fs_ctx *c, struct fs_inode *i,
			       const char *name, char *value, size_t size)
{
	ssize_t n;

	if (strncmp(name, FS_XATTR_PREFIX, strlen(FS_XATTR_PREFIX)) == 0) {
		char buf[96];
		int len = computed_xattr(c, i->id, name, buf);

		if (len < 0)
			return len;
		/* the history caught up between the caller's size query
		   ("pending") and this read: what it sized for is still
		   true of that moment, and rsync -X stops on ERANGE */
		if (size && (size_t)len > size &&
		    strcmp(name, FS_XATTR_PREFIX "commit") == 0 &&
		    size >= strlen("pending"))
			len = snprintf(buf, sizeof(buf), "pending");
		if (size && (size_t)len <= size)
			memcpy(value, buf, (size_t)len);
		return len;
	}
	n = store_xattr_get(c->store, i->id, name, value, size);
	if (n == -ENOENT) {
		pthread_mutex_lock(&i->mu);
		n = fs_xattr_get(fs_draft_peek(i)->xattrs, name, value, size);
		pthread_mutex_unlock(&i->mu);
	}
	return n == -EISDIR ? -ENODATA : n;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	char *value = size ? malloc(size) : NULL;
	ssize_t n = -ENODATA;
	int fd;

	if (size && !value) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!i || strncmp(name, "user.", 5) != 0) {
		n = i ? -ENODATA : -ESTALE;
	} else if (i->kind == FS_ROOT && strcmp(name, FS_CTL_ERROR) == 0) {
		n = fs_ctl_error(c, fuse_req_ctx(req)->pid, value, size);
	} else if (i->kind == FS_ROOT) {
		char buf[96];
		int len =
			strncmp(name, FS_XATTR_PREFIX, strlen(FS_XATTR_PREFIX))
				? -ENODATA
				: computed_xattr(c, NULL, name, buf);

		n = len;
		if (len > 0 && size && (size_t)len <= size)
			memcpy(value, buf, (size_t)len);
	} else if (i->kind == FS_RECORD) {
		n = record_getxattr(c, i, name, value, size);
	} else if (i->kind == FS_SCRATCH &&
		   (fd = scratch_fd(c, i, O_RDONLY)) >= 0) {
		n = fgetxattr(fd, name, value, size);
		n = n < 0 ? -errno : n;
		close(fd);
	}
	reply_xattr(req, n, value, size);
	free(value);
}

static const char computed_names[] =
	FS_XATTR_PREFIX "version\0" FS_XATTR_PREFIX "hash\0" FS_XATTR_PREFIX
			"revision\0" FS_XATTR_PREFIX "commit";

static ssize_t record_listxattr(struct fs_ctx *c, struct fs_inode *i,
				char *list, size_t size)
{
	size_t cn = sizeof(computed_names);
	struct store_meta m;
	ssize_t n;
	int rc = store_stat(c->store, i->id, &m, false);

	if (rc)
		return rc == -EISDIR || rc == -ENOENT ? 0 : rc;
	/* the last name, commit, only with a history (not on etcd) */
	if (!store_has_history(c->store))
		cn -= sizeof(FS_XATTR_PREFIX "commit");
	if (size && size < cn)
		return -ERANGE;
	n = store_xattr_list(c->store, i->id, size ? list + cn : NULL,
			     size ? size - cn : 0);
	if (n < 0)
		return n;
	if (size)
		memcpy(list, computed_names, cn);
	return n + (ssize_t)cn;
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char root[] = FS_XATTR_PREFIX "revision";
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	char *list = size ? malloc(size) : NULL;
	ssize_t n = 0;
	int fd;

	if (size && !list) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!i) {
		n = -ESTALE;
	} else if (i->kind == FS_ROOT) {
		n = sizeof(root);
		if (size && (size_t)n <= size)
			memcpy(list, root, sizeof(root));
	} else if (i->kind == FS_RECORD) {
		n = record_listxattr(c, i, list, size);
	} else if (i->kind == FS_SCRATCH &&
		   (fd = scratch_fd(c, i, O_RDONLY)) >= 0) {
		n = flistxattr(fd, list, size);
		n = n < 0 ? -errno : n;
		close(fd);
	}
	reply_xattr(req, n, list, size);
	free(list);
}

static int record_setxattr(struct fs_ctx *c, struct fs_inode *i,
			   const char *name, const char *value, size_t size,
			   int flags)
{
	int rc = store_xattr_set(c->store, i->id, name, value, size, flags);

	if (rc == -ENOENT) { /* created, not committed yet (cp -a) */
		pthread_mutex_lock(&i->mu);
		if (fs_draft_peek(i)->created) /* so it has one */
			rc = fs_xattr_set(&i->d->xattrs, name, value, size,
					  flags);
		pthread_mutex_unlock(&i->mu);
	}
	return rc == -EISDIR ? -ENOTSUP : rc;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	int rc = -ENOTSUP, fd;

	if (!i)
		rc = -ESTALE;
	else if (i->kind == FS_ROOT &&
		 strncmp(name, FS_CTL_PREFIX, strlen(FS_CTL_PREFIX)) == 0)
		rc = fs_ctl(c, req, name + strlen(FS_CTL_PREFIX), value, size);
	else if (c->cfg.read_only)
		rc = -EROFS;
	else if (strncmp(name, "user.", 5) != 0)
		rc = -ENOTSUP;
	else if (strncmp(name, FS_XATTR_PREFIX, strlen(FS_XATTR_PREFIX)) == 0)
		rc = 0; /* computed by recfs: accepted, no effect */
	else if (i->kind == FS_RECORD)
		rc = record_setxattr(c, i, name, value, size, flags);
	else if (i->kind == FS_SCRATCH &&
		 (fd = scratch_fd(c, i, O_RDWR)) >= 0) {
		rc = scratch_xattr_room(fd, name, size);
		if (rc == 0 && fsetxattr(fd, name, value, size, flags) < 0)
			rc = -errno;
		close(fd);
	}
	fuse_reply_err(req, -rc);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	int rc = -ENODATA, fd;

	if (!i)
		rc = -ESTALE;
	else if (strncmp(name, FS_XATTR_PREFIX, strlen(FS_XATTR_PREFIX)) == 0)
		rc = 0; /* computed by recfs: accepted, no effect (rsync -X) */
	else if (c->cfg.read_only)
		rc = -EROFS;
	else if (i->kind == FS_RECORD)
		rc = store_xattr_remove(c->store, i->id, name);
	else if (i->kind == FS_SCRATCH &&
		 (fd = scratch_fd(c, i, O_RDWR)) >= 0) {
		rc = fremovexattr(fd, name) < 0 ? -errno : 0;
		close(fd);
	}
	fuse_reply_err(req, rc == -EISDIR ? ENODATA : -rc);
}

/* ---- user xattrs of a record not committed yet ----------------------- */

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

/* Would one more attribute go past a record's limits (store.h)? */
static bool xattr_over(const struct fs_xattr *list, const char *name,
		       size_t size)
{
	size_t n = 1, total = strlen(name) + size;

	for (; list; list = list->next) {
		n++;
		total += strlen(list->name) + list->size;
	}
	return n > STORE_XATTR_COUNT_MAX || total > STORE_XATTR_TOTAL_MAX;
}

int fs_xattr_set(struct fs_xattr **list, const char *name, const void *value,
		 size_t size, int flags)
{
	struct fs_xattr *x;
	void *v;

	for (x = *list; x && strcmp(x->name, name) != 0; x = x->next)
		;
	if (x && (flags & XATTR_CREATE))
		return -EEXIST;
	if (!x && (flags & XATTR_REPLACE))
		return -ENODATA;
	if (size > STORE_XATTR_VALUE_MAX)
		return -E2BIG;
	if (!x && xattr_over(*list, name, size))
		return -ENOSPC; /* the record's limits, as the store has them */
	v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x || !(x->name = strdup(name))) {
			free(x);
			free(v);
			return -ENOMEM;
		}
		x->next = *list;
		*list = x;
	}
	free(x->value);
	x->value = v;
	x->size = size;
	return 0;
}

ssize_t fs_xattr_get(struct fs_xattr *list, const char *name, void *value,
		     size_t size)
{
	for (; list; list = list->next) {
		if (strcmp(list->name, name) != 0)
			continue;
		if (size == 0)
			return (ssize_t)list->size;
		if (list->size > size)
			return -ERANGE;
		memcpy(value, list->value, list->size);
		return (ssize_t)list->size;
	}
	return -ENODATA;
}
