/*
 * dir.c - directories: opendir takes a snapshot of the listing (records,
 * namespaces, scratch files) with each entry's type, readdir and
 * readdirplus serve it by index (readdirplus looks every entry up, as
 * LOOKUP would); and statfs. The kernel asks for readdirplus at the
 * start of a listing and then only while its entries are being looked
 * at (FUSE_CAP_READDIRPLUS_AUTO): `ls -l` and `find -ls` get attributes
 * with the names, `find -type f` gets the types alone and makes no inode
 * per record (at a million records, a million inodes in the daemon).
 */
#include "admin.h"
#include "fs_i.h"
#include "log.h"
#include "scratch.h"
#include "util.h"

#include <dirent.h>
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
	char *buf;	     /* the names, each NUL-terminated, one after
				another: one allocation, not one per name */
	size_t len, bcap;    /* bytes used, allocated in buf */
	uint32_t *off;	     /* where each name starts in buf */
	unsigned char *type; /* its d_type (DT_UNKNOWN: not known) */
	size_t n, cap;
	int err;
	bool hist;	    /* of .recfs/history: listed without attributes (a
			       lookup there walks the history: one per version of
			       a record with 100,000 would be quadratic) */
	pthread_mutex_t mu; /* filled: at the first readdir (see opendir) */
	bool filled;
	struct fs_dir *next, *prev; /* ctx->dirs once open, ctx->mu */
};

static int dir_put(struct fs_dir *d, const char *name, unsigned char type)
{
	size_t len = strlen(name) + 1;
	char *b = util_reserve(d->buf, &d->bcap, d->len + len, 1, 4096);
	uint32_t *o;
	unsigned char *t;

	if (!b || d->len + len > UINT32_MAX)
		return d->err = -ENOMEM;
	d->buf = b;
	if (d->n == d->cap) {
		size_t cap = d->cap;

		o = util_grow(d->off, &cap, d->n, sizeof(*o), 64);
		if (!o)
			return d->err = -ENOMEM;
		d->off = o;
		t = realloc(d->type, cap);
		if (!t)
			return d->err = -ENOMEM;
		d->type = t;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, name, len);
	d->off[d->n] = (uint32_t)d->len;
	d->type[d->n++] = type;
	d->len += len;
	return 0;
}

static const char *dir_name(const struct fs_dir *d, size_t i)
{
	return d->buf + d->off[i];
}

/* A record of the listing whose type is still to be found (dir_kinds). */
#define DT_RECORD 0xff

static int dir_add(void *arg, const char *name, bool is_ns)
{
	return dir_put(arg, name, is_ns ? DT_DIR : DT_RECORD);
}

/* The types of the records listed, so that `find -type f` needs no LOOKUP
   of them (a record may be a symlink): all from the store's index in one
   go (store_list_kinds); DT_UNKNOWN where it cannot tell. */
static int dir_kinds(struct fs_ctx *c, const char *ns, struct fs_dir *d)
{
	const char **names = calloc(d->n ? d->n : 1, sizeof(*names));
	unsigned char *kinds = malloc(d->n ? d->n : 1);
	size_t *at = calloc(d->n ? d->n : 1, sizeof(*at)), k = 0;
	int rc = names && kinds && at ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < d->n; i++)
		if (d->type[i] == DT_RECORD) {
			at[k] = i;
			names[k++] = dir_name(d, i);
		}
	if (rc == 0)
		rc = store_list_kinds(c->store, ns, names, k, kinds);
	for (size_t j = 0; j < k; j++)
		d->type[at[j]] = rc == 0 && kinds[j] == 2   ? DT_LNK
				 : rc == 0 && kinds[j] == 1 ? DT_REG
							    : DT_UNKNOWN;
	free(names);
	free(kinds);
	free(at);
	return rc == -ENOMEM ? rc : 0;
}

static int dir_add_scratch(void *arg, const char *name, bool is_ns)
{
	(void)is_ns;
	return dir_put(arg, name, DT_REG);
}

static int dir_add_hist(void *arg, const char *name, bool is_dir)
{
	(void)is_dir;
	return dir_put(arg, name, DT_UNKNOWN);
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
	pthread_mutex_destroy(&d->mu);
	free(d->buf);
	free(d->off);
	free(d->type);
	free(d);
}

static int dir_fill(struct fs_ctx *c, struct fs_inode *i, struct fs_dir *d)
{
	char ns[ID_MAX_LEN + 1];
	int rc;

	dir_put(d, ".", DT_DIR);
	dir_put(d, "..", DT_DIR);
	switch (i->kind) {
	case FS_ROOT:
	case FS_NS:
		pthread_mutex_lock(&c->mu); /* i->id changes with a rename */
		snprintf(ns, sizeof(ns), "%s", i->id);
		pthread_mutex_unlock(&c->mu);
		rc = store_list(c->store, ns, dir_add, d);
		if (rc == 0 && d->err == 0)
			rc = dir_kinds(c, ns, d);
		if (rc == 0)
			rc = store_scratch_list(c->store, ns, dir_add_scratch,
						d);
		if (rc == -ENOTSUP)
			rc = 0; /* a backend without scratch files (etcd) */
		if (rc == 0 && i->kind == FS_ROOT && c->cfg.snapdir_visible)
			rc = dir_put(d, FS_META, DT_DIR);
		return rc == -ENOENT ? -ESTALE : rc;
	case FS_META_DIR:
		dir_put(d, "status", DT_REG);
		return dir_put(d, "history", DT_DIR);
	case FS_HIST_DIR:
		d->hist = true;
		return fs_hist_list(c, i->id, dir_add_hist, d);
	default:
		return -ENOTDIR;
	}
}

/*
 * The listing is taken at the first READDIR, not at OPENDIR: a listing the
 * kernel keeps (cache_readdir) is served without one, and the kernel
 * still asks for an OPENDIR each time (a warm `find` over 1,000
 * namespaces read each one from the store again for nothing).
 */
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct fs_dir *d = NULL;
	int rc = 0;

	if (!i)
		rc = -ESTALE;
	else if (i->kind != FS_ROOT && i->kind != FS_NS &&
		 i->kind != FS_META_DIR && i->kind != FS_HIST_DIR)
		rc = -ENOTDIR;
	else if (!(d = calloc(1, sizeof(*d))))
		rc = -ENOMEM;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_mutex_lock(&c->mu);
	rc = i->key ? 0 : -ESTALE; /* a namespace removed meanwhile */
	if (rc == 0) {
		d->next = c->dirs;
		if (d->next)
			d->next->prev = d;
		c->dirs = d;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc) {
		dir_free(NULL, d);
		fuse_reply_err(req, -rc);
		return;
	}
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

/* Take the listing of directory inode `ino` into d, once. */
static int dir_ensure(struct fs_ctx *c, fuse_ino_t ino, struct fs_dir *d)
{
	struct fs_inode *i;
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (!d->filled) {
		i = fs_inode_get(c, ino);
		rc = i ? dir_fill(c, i, d) : -ESTALE;
		if (rc == 0)
			rc = d->err;
		if (rc) { /* asked again, it tries again */
			d->n = d->len = 0;
			d->err = 0;
		}
		d->filled = rc == 0;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

void fs_dirs_free(struct fs_ctx *c)
{
	while (c->dirs)
		dir_free(c, c->dirs);
}

/*
 * The kernel asks for the first entries of every listing with their
 * attributes, whether or not anyone looks at them (READDIRPLUS_AUTO asks
 * again with attributes only once they were): a reply of its whole buffer
 * there made an inode in the daemon and the kernel for about 200 records
 * of each namespace that `find -type f` walked through. The first reply
 * holds this many; the rest follow with attributes if they were looked
 * at (ls -l), as names and types if not.
 */
#define DIR_PLUS_FIRST 32

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
	char *buf, *p;
	size_t rem = size;
	int rc = dir_ensure(c, ino, d);

	if (rc == 0 && !(buf = p = malloc(size)))
		rc = -ENOMEM;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	for (size_t i = (size_t)off, got = 0; i < d->n; i++) {
		const char *name = dir_name(d, i);
		struct fuse_entry_param e;
		size_t n;

		memset(&e, 0, sizeof(e));
		e.attr.st_ino = 0xffffffffu; /* unknown, never 0 */
		e.attr.st_mode = DTTOIF(d->type[i]);
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
		if (plus && off == 0 && ++got >= DIR_PLUS_FIRST)
			break;
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
