/*
 * dir.c - directories: opendir takes a snapshot of the listing (records,
 * namespaces, scratch files), readdir and readdirplus serve it by index
 * (readdirplus looks every entry up, as LOOKUP would); and statfs.
 */
#include "admin.h"
#include "fs_i.h"
#include "log.h"
#include "scratch.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- directories --------------------------------------------------------- */

struct fs_dir {
	char **names;
	size_t n, cap;
	int err;
	bool hist; /* of .recfs/history: listed without attributes (a
		      lookup there walks the history: one per version of
		      a record with 100,000 would be quadratic) */
	struct fs_dir *next, *prev; /* ctx->dirs once open, ctx->mu */
};

static int dir_add(void *arg, const char *name, bool is_ns)
{
	struct fs_dir *d = arg;

	char **p = util_grow(d->names, &d->cap, d->n, sizeof(*p), 64);

	(void)is_ns;
	if (!p)
		return d->err = -ENOMEM;
	d->names = p;
	if (!(d->names[d->n] = strdup(name)))
		return d->err = -ENOMEM;
	d->n++;
	return 0;
}

/* Free d, unlinking it from ctx->dirs if `c` (it was open). */
static void dir_free(struct fs_ctx *c, struct fs_dir *d)
{
	if (!d)
		return;
	if (c) {
		pthread_mutex_lock(&c->mu);
		if (d->prev)
			d->prev->next = d->next;
		else
			c->dirs = d->next;
		if (d->next)
			d->next->prev = d->prev;
		pthread_mutex_unlock(&c->mu);
	}
	for (size_t i = 0; i < d->n; i++)
		free(d->names[i]);
	free(d->names);
	free(d);
}

static int dir_fill(struct fs_ctx *c, struct fs_inode *i, struct fs_dir *d)
{
	int rc;

	dir_add(d, ".", true);
	dir_add(d, "..", true);
	switch (i->kind) {
	case FS_ROOT:
	case FS_NS:
		rc = store_list(c->store, i->id, dir_add, d);
		if (rc == 0)
			rc = store_scratch_list(c->store, i->id, dir_add, d);
		if (rc == -ENOTSUP)
			rc = 0; /* a backend without scratch files (etcd) */
		if (rc == 0 && i->kind == FS_ROOT && c->cfg.snapdir_visible)
			rc = dir_add(d, FS_META, true);
		return rc == -ENOENT ? -ESTALE : rc;
	case FS_META_DIR:
		dir_add(d, "status", false);
		return dir_add(d, "history", true);
	case FS_HIST_DIR:
		d->hist = true;
		return fs_hist_list(c, i->id, dir_add, d);
	default:
		return -ENOTDIR;
	}
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct fs_dir *d = calloc(1, sizeof(*d));
	int rc = !i ? -ESTALE : !d ? -ENOMEM : dir_fill(c, i, d);

	if (rc == 0 && d->err)
		rc = d->err;
	if (rc) {
		dir_free(NULL, d);
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_lock(&c->mu);
	d->next = c->dirs;
	if (d->next)
		d->next->prev = d;
	c->dirs = d;
	pthread_mutex_unlock(&c->mu);
	/* a namespace's listing may be kept by the kernel: it drops it when
	   it changes a name itself, and when a GETATTR shows another mtime
	   (AUTO_INVAL_DATA), which every change the kernel did not see
	   makes it ask for (inval.c) */
	if (i->kind == FS_ROOT || i->kind == FS_NS) {
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(c, d);
}

void fs_dirs_free(struct fs_ctx *c)
{
	while (c->dirs)
		dir_free(c, c->dirs);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t rem = size;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		const char *name = d->names[i];
		struct fuse_entry_param e;
		size_t n;

		memset(&e, 0, sizeof(e));
		e.attr.st_ino = 0xffffffffu; /* unknown, never 0 */
		/* an entry of ino 0 tells the kernel its name only */
		if (plus && i >= 2 && !d->hist &&
		    fs_lookup(c, ino, name, &e) != 0)
			continue; /* gone meanwhile */
		if (plus)
			n = fuse_add_direntry_plus(req, p, rem, name, &e,
						   (off_t)i + 1);
		else
			n = fuse_add_direntry(req, p, rem, name, &e.attr,
					      (off_t)i + 1);
		if (n > rem) {
			if (plus && e.ino)
				fs_inode_forget(c, e.ino, 1);
			break;
		}
		p += n;
		rem -= n;
	}
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	dir_free(fs_req(req), (struct fs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* every change of a name is durable */
}

void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = store_statfs(fs_req(req)->store, &st);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}
