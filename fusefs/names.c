/*
 * names.c - the requests that change names: mkdir, unlink, rmdir,
 * symlink, readlink, mknod, link and rename. A name the kernel did not see
 * change (ID@N, a rename onto ID@N) is invalidated from inval.c's thread.
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

/* ---- names -------------------------------------------------------------- */

/* The key of `name` in namespace inode `parent`, for a change. */
int fs_change_key(struct fs_ctx *c, fuse_ino_t parent, const char *name,
		  char *key)
{
	struct fs_inode *p = fs_inode_get(c, parent);

	if (strlen(name) > ID_MAX_COMPONENT)
		return -ENAMETOOLONG;
	if (!p || !p->key)
		return -ESTALE;
	if (p->kind != FS_ROOT && p->kind != FS_NS)
		return -EPERM; /* .recfs is read-only */
	if (p->kind == FS_ROOT && strcmp(name, FS_META) == 0)
		return -EPERM;
	if (c->cfg.read_only)
		return -EROFS;
	return fs_join(p->key, name, key);
}

static void reply_entry_or_err(fuse_req_t req, int rc,
			       const struct fuse_entry_param *e)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, e);
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode)
{
	struct fs_ctx *c = fs_req(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	size_t base;
	uint64_t v;
	int rc = fs_change_key(c, parent, name, key);

	if (rc == 0 && id_split_cond(key, strlen(key), &base, &v) == 1)
		rc = -EINVAL;
	if (rc == 0)
		rc = store_mkdir(c->store, key, mode & ~fc->umask & 07777);
	if (rc == 0 && fc->uid != 0)
		store_ns_set_owner(c->store, key, fc->uid, fc->gid);
	if (rc == 0)
		rc = fs_entry(c, key, FS_NS, NULL, 0, &e);
	reply_entry_or_err(req, rc, &e);
}

/* The record `key` is gone (deleted or replaced); `seen`: by the kernel. */
static void record_gone(struct fs_ctx *c, const char *key, bool seen)
{
	struct fs_inode *ino = fs_inode_find(c, key);

	if (ino) {
		fs_record_gone(c, ino, seen ? NULL : key);
		fs_inode_put(c, ino);
	}
}

static int unlink_cond(struct fs_ctx *c, fuse_req_t req, const char *key)
{
	struct store_cond cond = {STORE_COND_IF_VERSION, 0};
	char id[ID_MAX_LEN + 1];
	struct store_who who;
	size_t base;
	int rc;

	id_split_cond(key, strlen(key), &base, &cond.version);
	if (cond.version == 0)
		return -EINVAL;
	memcpy(id, key, base);
	id[base] = '\0';
	fs_who(req, &who);
	rc = store_delete(c->store, id, &cond, &who, NULL);
	if (rc == 0)
		record_gone(c, id, false); /* the kernel saw ID@N go */
	return rc;
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *c = fs_req(req);
	struct store_cond any = {STORE_COND_ANY, 0};
	char key[ID_MAX_LEN + 1];
	struct store_who who;
	struct fs_inode *ino;
	size_t base;
	uint64_t v;
	int rc = fs_change_key(c, parent, name, key);

	if (rc)
		goto out;
	if (id_split_cond(key, strlen(key), &base, &v) == 1) {
		rc = unlink_cond(c, req, key);
		goto out;
	}
	if (fs_is_scratch_name(c, name)) {
		rc = store_scratch_unlink(c->store, key);
		if (rc != -ENOENT) {
			if (rc == 0 && (ino = fs_inode_find(c, key))) {
				fs_inode_detach(c, ino);
				fs_inode_put(c, ino);
			}
			goto out;
		}
	}
	fs_who(req, &who);
	rc = store_delete(c->store, key, &any, &who, NULL);
	if (rc == -ENOENT && (ino = fs_inode_find(c, key))) {
		/* created, never committed: it just goes */
		pthread_mutex_lock(&ino->mu);
		if (fs_draft_peek(ino)->created)
			rc = 0;
		pthread_mutex_unlock(&ino->mu);
		fs_inode_put(c, ino);
	}
	if (rc == 0)
		record_gone(c, key, true);
out:
	fuse_reply_err(req, -rc);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *c = fs_req(req);
	char key[ID_MAX_LEN + 1];
	struct fs_inode *ino;
	int rc = fs_change_key(c, parent, name, key);

	if (rc == 0)
		rc = store_rmdir(c->store, key);
	if (rc == 0 && (ino = fs_inode_find(c, key))) {
		fs_inode_detach(c, ino);
		fs_inode_put(c, ino);
	}
	fuse_reply_err(req, -rc);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name)
{
	struct fs_ctx *c = fs_req(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct store_owner owner = {fc->uid, fc->gid};
	struct store_commit_args args = {.cond = {STORE_COND_CREATE, 0},
					 .mode = 0777,
					 .owner = &owner,
					 .symlink = true};
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	struct store_who who;
	size_t base;
	uint64_t v;
	int rc = fs_change_key(c, parent, name, key);

	if (rc == 0 && (id_split_cond(key, strlen(key), &base, &v) == 1 ||
			fs_is_scratch_name(c, name)))
		rc = -EPERM; /* a link is a record, under its own name */
	if (rc == 0) {
		fs_who(req, &who);
		args.who = &who;
		rc = store_put(c->store, key, link, strlen(link), &args, NULL);
		if (rc == -ESTALE)
			rc = -EEXIST;
	}
	if (rc == 0) {
		pthread_mutex_lock(&c->mu);
		c->commits++;
		pthread_mutex_unlock(&c->mu);
		rc = fs_entry(c, key, FS_RECORD, NULL, 0, &e);
	}
	reply_entry_or_err(req, rc, &e);
}

void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct store_meta m;
	void *buf = NULL;
	size_t len = 0;
	int rc = i && i->kind == FS_RECORD
			 ? store_get(c->store, i->id, &buf, &len, &m)
			 : -EINVAL;
	char *s;

	if (rc == 0 && !m.symlink)
		rc = -EINVAL;
	if (rc == 0 && !(s = realloc(buf, len + 1)))
		rc = -ENOMEM;
	if (rc) {
		free(buf);
		fuse_reply_err(req, -rc);
		return;
	}
	s[len] = '\0';
	fuse_reply_readlink(req, s);
	free(s);
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev)
{
	struct fs_ctx *c = fs_req(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct store_owner owner = {fc->uid, fc->gid};
	struct store_commit_args args = {
		.cond = {STORE_COND_CREATE, 0},
		.mode = (int)(mode & ~fc->umask & 07777),
		.owner = &owner};
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	struct store_who who;
	int rc = S_ISREG(mode) ? fs_change_key(c, parent, name, key) : -EPERM;

	(void)rdev;
	if (rc == 0 && fs_is_scratch_name(c, name)) {
		int fd = -1;

		rc = store_scratch_open(c->store, key,
					O_CREAT | O_EXCL | O_RDWR,
					(mode_t)args.mode, &fd);
		if (fd >= 0)
			close(fd);
		if (rc == 0)
			rc = fs_entry(c, key, FS_SCRATCH, NULL, 0, &e);
		reply_entry_or_err(req, rc, &e);
		return;
	}
	if (rc == 0) {
		fs_who(req, &who);
		args.who = &who;
		rc = store_put(c->store, key, "", 0, &args, NULL);
		if (rc == -ESTALE)
			rc = -EEXIST;
	}
	if (rc == 0)
		rc = fs_entry(c, key, FS_RECORD, NULL, 0, &e);
	reply_entry_or_err(req, rc, &e);
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname)
{
	fuse_reply_err(req, EPERM); /* hard links are not records */
}

/* ---- rename ---------------------------------------------------------------
 */

struct rename_req {
	char from[ID_MAX_LEN + 1], to[ID_MAX_LEN + 1];
	char to_id[ID_MAX_LEN + 1]; /* `to` without @N */
	bool to_cond, from_scratch, to_scratch;
	struct store_cond cond;
	struct store_who who;
};

static int rename_parse(struct fs_ctx *c, fuse_req_t req, fuse_ino_t parent,
			const char *name, fuse_ino_t newparent,
			const char *newname, unsigned int flags,
			struct rename_req *r)
{
	struct stat sb;
	size_t base;
	uint64_t v;
	int rc;

	if (flags & ~(unsigned int)RENAME_NOREPLACE)
		return -EINVAL;
	rc = fs_change_key(c, parent, name, r->from);
	if (rc == 0)
		rc = fs_change_key(c, newparent, newname, r->to);
	if (rc)
		return rc;
	if (id_split_cond(r->from, strlen(r->from), &base, &v) == 1)
		return -EPERM; /* old versions are read-only */
	r->cond.kind = STORE_COND_ANY;
	r->cond.version = 0;
	snprintf(r->to_id, sizeof(r->to_id), "%s", r->to);
	if (id_split_cond(r->to, strlen(r->to), &base, &v) == 1) {
		if (flags & RENAME_NOREPLACE)
			return -EINVAL;
		r->to_cond = true;
		r->to_id[base] = '\0';
		r->cond.kind = v ? STORE_COND_IF_VERSION : STORE_COND_CREATE;
		r->cond.version = v;
	} else if (flags & RENAME_NOREPLACE) {
		r->cond.kind = STORE_COND_CREATE;
	}
	r->from_scratch = fs_is_scratch_name(c, name) &&
			  store_scratch_stat(c->store, r->from, &sb) == 0;
	r->to_scratch = !r->to_cond && fs_is_scratch_name(c, newname);
	fs_who(req, &r->who);
	return 0;
}

/* The inode named `key` (if any) no longer is what the name names. */
static void forget_name(struct fs_ctx *c, const char *key)
{
	struct fs_inode *ino = fs_inode_find(c, key);

	if (ino) {
		fs_inode_detach(c, ino);
		fs_inval_attr(c, ino);
		fs_inode_put(c, ino);
	}
}

static int rename_scratch(struct fs_ctx *c, struct rename_req *r,
			  unsigned int flags)
{
	struct store_commit_args args = {
		.cond = r->cond, .mode = -1, .who = &r->who};
	struct stat sb;
	int rc;

	if (r->to_scratch) {
		if ((flags & RENAME_NOREPLACE) &&
		    store_scratch_stat(c->store, r->to, &sb) == 0)
			return -EEXIST;
		rc = store_scratch_rename(c->store, r->from, r->to);
		if (rc == 0)
			fs_inode_rekey(c, r->from, r->to, false);
		return rc;
	}
	/* rsync, sed -i, vim: the temp file becomes the record's next
	   version; the kernel's inode of it was the scratch file's */
	rc = store_scratch_commit(c->store, r->from, r->to_id, &args, NULL);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->mu);
	c->commits++;
	pthread_mutex_unlock(&c->mu);
	forget_name(c, r->from);
	record_gone(c, r->to_id, !r->to_cond);
	fs_inval_name(c, r->to);
	return 0;
}

static int rename_to_scratch(struct fs_ctx *c, struct rename_req *r)
{
	struct stat sb;
	int rc = store_scratch_from_record(c->store, r->from, r->to, &r->who);

	if (rc == -EISDIR)
		return store_ns_stat(c->store, r->from, &sb) == 0 ? -EXDEV : rc;
	if (rc == 0) {
		record_gone(c, r->from, true);
		forget_name(c, r->to);
		fs_inval_name(c, r->to);
	}
	return rc;
}

static int rename_record(struct fs_ctx *c, struct rename_req *r,
			 unsigned int flags)
{
	struct store_result res;
	struct store_meta m;
	struct fs_inode *ino;
	struct stat sb;
	int rc = store_stat(c->store, r->from, &m, false);

	if (rc == -EISDIR) {
		/* a namespace: moved whole if it holds no record, else EXDEV
		   (mv copies) */
		if ((flags & RENAME_NOREPLACE) &&
		    store_ns_stat(c->store, r->to, &sb) == 0)
			return -EEXIST;
		rc = store_rename_ns(c->store, r->from, r->to);
		if (rc == 0)
			fs_inode_rekey(c, r->from, r->to, true);
		return rc;
	}
	ino = fs_inode_find(c, r->from);
	if (ino) /* a rename moves what was written, as a disk does */
		rc = fs_commit(c, ino);
	if (rc == 0)
		rc = store_rename(c->store, r->from, r->to_id, &r->cond,
				  &r->who, &res);
	if (rc == 0) {
		pthread_mutex_lock(&c->mu);
		c->commits++;
		pthread_mutex_unlock(&c->mu);
		record_gone(c, r->to_id, !r->to_cond);
		fs_inode_rekey(c, r->from, r->to_id, false);
		if (ino)
			fs_record_changed(c, ino, res.version, false);
		if (r->to_cond) /* the kernel now calls it ID@N */
			fs_inval_name(c, r->to);
	}
	fs_inode_put(c, ino);
	return rc;
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct fs_ctx *c = fs_req(req);
	struct rename_req *r = calloc(1, sizeof(*r));
	int rc = r ? rename_parse(c, req, parent, name, newparent, newname,
				  flags, r)
		   : -ENOMEM;

	if (rc == 0) {
		if (r->from_scratch)
			rc = rename_scratch(c, r, flags);
		else if (r->to_scratch)
			rc = rename_to_scratch(c, r);
		else
			rc = rename_record(c, r, flags);
	}
	if (rc == -ESTALE && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	free(r);
	fuse_reply_err(req, -rc);
}
