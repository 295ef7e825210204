/*
 * files.c - open files: open, create, read, write, flush, release, fsync,
 * fallocate. Records and ID@N are draft.c's; scratch files are plain
 * files of the store (an fd each); status and old versions are read-only
 * buffers.
 */
#include "fs_i.h"
#include "log.h"
#include "scratch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- open files ---------------------------------------------------------- */

static void reply_open(fuse_req_t req, int rc, struct fuse_file_info *fi)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		fs_release(fs_req(req),
			   fs_fh(fi)); /* interrupted: no release */
}

/* A read-only buffer handle (status, an old version). */
static int open_buf(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		    struct fuse_file_info *fi, char *buf, size_t len)
{
	struct fs_handle *h;

	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		free(buf);
		return -EACCES;
	}
	h = fs_handle_new(c, req, H_BUF, ino, fi->flags);
	if (!h) {
		free(buf);
		return -ENOMEM;
	}
	h->buf = buf;
	h->len = len;
	fi->fh = (uintptr_t)h;
	return 0;
}

/* ID@N for reading: the current version if it is N, else the history. */
static int open_cond_read(struct fs_ctx *c, fuse_req_t req,
			  struct fs_inode *ino, struct fuse_file_info *fi)
{
	struct store_meta m;
	void *buf = NULL;
	char *hb = NULL;
	size_t len = 0;
	int rc;

	if (ino->cond == 0)
		return -ENOENT; /* ID@0 names no version */
	rc = store_get(c->store, ino->id, &buf, &len, &m);
	if (rc == 0 && m.version != ino->cond) {
		free(buf);
		buf = NULL;
		rc = -ENOENT;
	}
	if (rc == -ENOENT || rc == -EISDIR) {
		rc = fs_hist_read(c, ino->id, ino->cond, &hb, &len);
		buf = hb;
	}
	if (rc)
		return rc;
	fi->direct_io = 1;
	return open_buf(c, req, ino, fi, buf, len);
}

static int open_scratch(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
			struct fuse_file_info *fi, int flags, mode_t mode)
{
	struct fs_handle *h;
	int fd = -1;
	int rc;

	/* what the kernel adds (O_LARGEFILE, ...) is not the store's */
	flags &= O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_SYNC |
		 O_DSYNC;
	rc = store_scratch_open(c->store, ino->id, flags, mode, &fd);

	if (rc)
		return rc == -ENOENT && !(flags & O_CREAT) ? -ESTALE : rc;
	h = fs_handle_new(c, req, H_SCRATCH, ino, flags);
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	fi->keep_cache = 1; /* only this mount writes it */
	fi->fh = (uintptr_t)h;
	return 0;
}

static int do_open(struct fs_ctx *c, fuse_req_t req, struct fs_inode *i,
		   struct fuse_file_info *fi)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	switch (i->kind) {
	case FS_RECORD:
		return fs_open_record(c, req, i, fi, false, 0);
	case FS_COND:
		if ((fi->flags & O_ACCMODE) == O_RDONLY)
			return open_cond_read(c, req, i, fi);
		return fs_open_record(c, req, i, fi, false, 0);
	case FS_SCRATCH:
		return open_scratch(c, req, i, fi,
				    fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY),
				    0);
	case FS_STATUS:
		rc = fs_status_json(c, &buf, &len);
		fi->direct_io = 1;
		return rc ? rc : open_buf(c, req, i, fi, buf, len);
	case FS_HIST_FILE:
		rc = fs_hist_read(c, i->id, i->cond, &buf, &len);
		fi->keep_cache = 1; /* an old version never changes */
		return rc ? rc : open_buf(c, req, i, fi, buf, len);
	default:
		return -EISDIR;
	}
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);

	reply_open(req, i ? do_open(c, req, i, fi) : -ESTALE, fi);
}

/* Create `key` (a record, ID@N or scratch file) and open it. */
static int do_create(struct fs_ctx *c, fuse_req_t req, const char *key,
		     const char *name, mode_t mode, struct fuse_file_info *fi,
		     struct fuse_entry_param *e)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	enum fs_kind kind = FS_RECORD;
	char id[ID_MAX_LEN + 1];
	struct store_meta m;
	struct fs_inode *ino;
	uint64_t cond = 0;
	bool created = true;
	size_t base;
	int rc;

	snprintf(id, sizeof(id), "%s", key);
	if (id_split_cond(key, strlen(key), &base, &cond) == 1) {
		kind = FS_COND;
		id[base] = '\0';
	} else if (fs_is_scratch_name(c, name)) {
		kind = FS_SCRATCH;
	}
	if (id_check(id) != 0)
		return -EINVAL;
	if (kind == FS_RECORD) {
		rc = store_stat(c->store, key, &m, false);
		if (rc == 0 && (fi->flags & O_EXCL))
			return -EEXIST;
		if (rc == -EISDIR)
			return -EISDIR;
		created = rc != 0;
	}
	ino = fs_inode_lookup(c, key, kind, id, cond);
	if (!ino)
		return -ENOMEM;
	if (kind == FS_SCRATCH) {
		rc = open_scratch(c, req, ino, fi, fi->flags | O_CREAT, mode);
		if (rc == 0 && fc->uid != 0)
			fchown(fs_fh(fi)->fd, fc->uid, fc->gid);
	} else {
		rc = fs_open_record(c, req, ino, fi, created, mode);
	}
	if (rc == 0)
		rc = fs_inode_attr(c, ino, &e->attr);
	if (rc) {
		if (fi->fh)
			fs_release(c, fs_fh(fi));
		fs_inode_forget(c, ino->ino, 1);
		return rc;
	}
	e->ino = ino->ino;
	e->attr_timeout = fs_timeout(kind);
	e->entry_timeout = fs_timeout(kind);
	return 0;
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	int rc = fs_change_key(c, parent, name, key);

	memset(&e, 0, sizeof(e));
	fi->fh = 0;
	if (rc == 0 && !S_ISREG(mode))
		rc = -EPERM;
	if (rc == 0)
		rc = do_create(c, req, key, name, mode, fi, &e);
	if (rc)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_create(req, &e, fi) == -ENOENT)
		fs_release(c, fs_fh(fi));
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_handle *h = fs_fh(fi);
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (h->kind == H_BUF) {
		n = (size_t)off >= h->len ? 0
		    : h->len - (size_t)off < size
			    ? (ssize_t)(h->len - (size_t)off)
			    : (ssize_t)size;
		if (n > 0)
			memcpy(buf, h->buf + off, (size_t)n);
	} else if (h->kind == H_SCRATCH) {
		n = pread(h->fd, buf, size, off);
		if (n < 0)
			n = -errno;
	} else {
		n = fs_record_read(c, h->dino, buf, size, off);
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		 off_t off, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_handle *h = fs_fh(fi);
	ssize_t n;

	if (h->kind == H_SCRATCH) {
		n = pwrite(h->fd, buf, size, off);
		if (n < 0)
			n = -errno;
	} else if (h->kind == H_RECORD || h->kind == H_COND) {
		n = fs_record_write(c, req, h, fi->writepage, buf, size, off);
	} else {
		n = -EBADF;
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req,
		       -fs_flush(fs_req(req), req, fs_fh(fi), fi->lock_owner));
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_release(fs_req(req), fs_fh(fi));
	fuse_reply_err(req, 0);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi)
{
	struct fs_handle *h = fs_fh(fi);
	int rc = 0;

	if (h->kind == H_SCRATCH)
		rc = store_scratch_fsync(fs_req(req)->store, h->ino->id, h->fd);
	else if (h->kind == H_RECORD || h->kind == H_COND)
		rc = fs_commit_by(fs_req(req), h->dino, h);
	/* sync=batch: the commit (this one or one made at an earlier
	   close) may be journaled only; fsync waits until it is durable */
	if (rc == 0 && (h->kind == H_RECORD || h->kind == H_COND))
		rc = store_sync(fs_req(req)->store);
	fuse_reply_err(req, -rc);
}

void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
		     off_t length, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_handle *h = fs_fh(fi);
	struct stat st;
	int rc = -EOPNOTSUPP;

	if (h->kind == H_SCRATCH) {
		rc = fallocate(h->fd, mode, offset, length) < 0 ? -errno : 0;
	} else if ((h->kind == H_RECORD || h->kind == H_COND) &&
		   (mode & ~FALLOC_FL_KEEP_SIZE) == 0) {
		/* space is not reserved ahead (a version is written whole
		   at commit); mode 0 grows the draft as the size says */
		rc = fs_record_attr(c, h->dino, &st);
		if (rc == 0 && !(mode & FALLOC_FL_KEEP_SIZE) &&
		    offset + length > st.st_size)
			rc = fs_record_truncate(c, h->dino, offset + length,
						&h->who);
	}
	fuse_reply_err(req, -rc);
}
