/*
 * ops.c - the requests of libfuse's low-level API: names (lookup, forget,
 * create, unlink, rename, mkdir, symlink), attributes, open files and
 * directories. Each handler finds its inode (inode.c), calls the store and
 * replies with what the store returned; open files are draft.c's.
 *
 * Timeouts: records, namespaces and scratch files are cached by the kernel
 * for FS_CACHE_TIMEOUT (changes it does not see are invalidated, inval.c);
 * ID@N, .recfs and missing names are never cached, so a CAS name, a status
 * file or a record created where the kernel could not see is always asked
 * for again.
 */
#include "fs_i.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define META ".recfs"
#define HIST_PREFIX ".recfs/history"
#define XATTR_PREFIX "user.recfs."

static struct fs_ctx *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_handle *fh(const struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

static bool cached_kind(enum fs_kind k)
{
	return k == FS_ROOT || k == FS_NS || k == FS_RECORD || k == FS_SCRATCH;
}

static double timeout_of(enum fs_kind k)
{
	return cached_kind(k) ? FS_CACHE_TIMEOUT : 0.0;
}

/* ---- attributes of each kind ----------------------------------------- */

static void dir_attr(const struct fs_inode *ino, mode_t mode, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino->ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
}

static int ns_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	struct stat sb;
	int rc = store_ns_stat(c->store, ino->id, &sb);

	if (rc)
		return rc == -ENOENT || rc == -ENOTDIR ? -ESTALE : rc;
	dir_attr(ino, sb.st_mode & 07777, st);
	st->st_nlink = sb.st_nlink;
	st->st_uid = sb.st_uid;
	st->st_gid = sb.st_gid;
	st->st_size = sb.st_size;
	st->st_blocks = sb.st_blocks;
	st->st_blksize = 4096;
	st->st_mtim = sb.st_mtim;
	st->st_ctim = sb.st_ctim;
	st->st_atim = sb.st_atim;
	return 0;
}

static int scratch_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	int rc = store_scratch_stat(c->store, ino->id, st);

	if (rc)
		return rc == -ENOENT ? -ESTALE : rc;
	st->st_ino = ino->ino;
	return 0;
}

static int status_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	char *json = NULL;
	size_t len = 0;
	int rc = fs_status_json(c, &json, &len);

	free(json);
	if (rc)
		return rc;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino->ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = (off_t)len;
	return 0;
}

/* ID@N: the record at version N, the draft made through it, or version N
   from the history. */
static int cond_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	struct fs_inode *shadow;
	struct store_meta m;
	int rc;

	pthread_mutex_lock(&c->mu);
	shadow = ino->shadow;
	if (shadow)
		shadow->refs++;
	pthread_mutex_unlock(&c->mu);
	if (shadow) { /* cp fstat()s ID@0 before it writes */
		rc = fs_record_attr(c, shadow, st);
		st->st_ino = ino->ino;
		fs_inode_put(c, shadow);
		return rc;
	}
	rc = store_stat(c->store, ino->id, &m, false);
	if (rc == 0 && m.version == ino->cond && ino->cond) {
		rc = fs_record_attr(c, ino, st);
		return rc == -ESTALE ? -ENOENT : rc;
	}
	if (ino->cond == 0)
		return -ENOENT;
	rc = fs_hist_attr(c, ino->id, ino->cond, st);
	st->st_ino = ino->ino;
	return rc;
}

static int inode_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	int rc;

	switch (ino->kind) {
	case FS_ROOT:
	case FS_NS:
		return ns_attr(c, ino, st);
	case FS_RECORD:
		rc = fs_record_attr(c, ino, st);
		/* unlinked or replaced: fstat of an open descriptor works,
		   a name of it is looked up again */
		if (rc == -ESTALE && ino->refs)
			rc = 0;
		return rc;
	case FS_COND:
		return cond_attr(c, ino, st);
	case FS_SCRATCH:
		return scratch_attr(c, ino, st);
	case FS_META_DIR:
		dir_attr(ino, 0555, st);
		return 0;
	case FS_STATUS:
		return status_attr(c, ino, st);
	case FS_HIST_DIR:
		fs_hist_dir_attr(c, st);
		st->st_ino = ino->ino;
		return 0;
	case FS_HIST_FILE:
		rc = fs_hist_attr(c, ino->id, ino->cond, st);
		st->st_ino = ino->ino;
		return rc;
	}
	return -ENOENT;
}

/* ---- lookup ------------------------------------------------------------ */

/* Make e->ino etc. for a name found to be `kind`; counts a lookup. */
static int entry_for(struct fs_ctx *c, const char *key, enum fs_kind kind,
		     const char *id, uint64_t cond, struct fuse_entry_param *e)
{
	struct fs_inode *ino = fs_inode_lookup(c, key, kind, id, cond);
	int rc;

	if (!ino)
		return -ENOMEM;
	rc = inode_attr(c, ino, &e->attr);
	if (rc) {
		fs_inode_forget(c, ino->ino, 1);
		return rc == -ESTALE ? -ENOENT : rc;
	}
	e->ino = ino->ino;
	e->generation = 0;
	e->attr_timeout = timeout_of(kind);
	e->entry_timeout = timeout_of(kind);
	return 0;
}

/* A name under .recfs. */
static int lookup_meta(struct fs_ctx *c, struct fs_inode *parent,
		       const char *name, struct fuse_entry_param *e)
{
	char key[ID_MAX_LEN + 1], *id = NULL;
	uint64_t version = 0;
	int rc;

	if (parent->kind == FS_META_DIR) {
		if (strcmp(name, "status") == 0)
			return entry_for(c, META "/status", FS_STATUS, NULL, 0,
					 e);
		if (strcmp(name, "history") == 0)
			return entry_for(c, HIST_PREFIX, FS_HIST_DIR, "", 0, e);
		return -ENOENT;
	}
	rc = fs_join(parent->key, name, key);
	if (rc)
		return rc;
	rc = fs_hist_resolve(c, key + strlen(HIST_PREFIX "/"), &id, &version);
	if (rc == 0)
		rc = entry_for(c, key, version ? FS_HIST_FILE : FS_HIST_DIR,
			       version ? id : key + strlen(HIST_PREFIX "/"),
			       version, e);
	free(id);
	return rc;
}

/* ID@N. */
static int lookup_cond(struct fs_ctx *c, const char *key, size_t base,
		       uint64_t version, struct fuse_entry_param *e)
{
	char id[ID_MAX_LEN + 1];

	memcpy(id, key, base);
	id[base] = '\0';
	if (id_check(id) != 0)
		return -ENOENT;
	return entry_for(c, key, FS_COND, id, version, e);
}

/* A record, namespace or scratch file named `key`. */
static int lookup_record(struct fs_ctx *c, const char *key, const char *name,
			 struct fuse_entry_param *e)
{
	struct store_meta m;
	struct stat sb;
	struct fs_inode *ino;
	int rc;

	if (fs_is_scratch_name(c, name) &&
	    store_scratch_stat(c->store, key, &sb) == 0)
		return entry_for(c, key, FS_SCRATCH, NULL, 0, e);
	rc = store_stat(c->store, key, &m, false);
	if (rc == 0)
		return entry_for(c, key, FS_RECORD, NULL, 0, e);
	if (rc == -EISDIR)
		return entry_for(c, key, FS_NS, NULL, 0, e);
	if (rc != -ENOENT)
		return rc == -EINVAL ? -ENOENT : rc;
	/* created by an open descriptor, not committed yet */
	ino = fs_inode_find(c, key);
	if (ino) {
		bool draft;

		pthread_mutex_lock(&ino->mu);
		draft = ino->kind == FS_RECORD && ino->d.created;
		pthread_mutex_unlock(&ino->mu);
		fs_inode_put(c, ino);
		if (draft)
			return entry_for(c, key, FS_RECORD, NULL, 0, e);
	}
	return -ENOENT;
}

static int do_lookup(struct fs_ctx *c, fuse_ino_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct fs_inode *p = fs_inode_get(c, parent);
	char key[ID_MAX_LEN + 1];
	size_t base;
	uint64_t version;
	int rc;

	memset(e, 0, sizeof(*e));
	if (!p)
		return -ESTALE;
	if (strlen(name) > ID_MAX_COMPONENT)
		return -ENAMETOOLONG;
	if (p->kind == FS_META_DIR || p->kind == FS_HIST_DIR)
		return lookup_meta(c, p, name, e);
	if (p->kind != FS_ROOT && p->kind != FS_NS)
		return -ENOTDIR;
	if (p->kind == FS_ROOT && strcmp(name, META) == 0)
		return entry_for(c, META, FS_META_DIR, NULL, 0, e);
	if (!p->key)
		return -ENOENT; /* a removed namespace */
	rc = fs_join(p->key, name, key);
	if (rc)
		return rc;
	if (id_split_cond(key, strlen(key), &base, &version) == 1)
		return lookup_cond(c, key, base, version, e);
	if (id_check(key) != 0)
		return -ENOENT;
	return lookup_record(c, key, name, e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int rc = do_lookup(ctx(req), parent, name, &e);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	fs_inode_forget(ctx(req), ino, n);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *list)
{
	for (size_t i = 0; i < count; i++)
		fs_inode_forget(ctx(req), list[i].ino, list[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct stat st;
	int rc = i ? inode_attr(c, i, &st) : -ESTALE;

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, timeout_of(i->kind));
}

/* ---- changing attributes ------------------------------------------------ */

static int set_record_meta(struct fs_ctx *c, struct fs_inode *ino,
			   const struct stat *a, int to_set)
{
	struct fs_draft *d = &ino->d;
	struct timespec now, *mt = NULL;
	int mode =
		(to_set & FUSE_SET_ATTR_MODE) ? (int)(a->st_mode & 07777) : -1;
	bool owner = to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID);
	struct stat cur;
	int rc = 0;

	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, &now);
		mt = &now;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		mt = (struct timespec *)&a->st_mtim;
	}
	if (mode < 0 && !owner && !mt)
		return 0;
	if (owner && (rc = fs_record_attr(c, ino, &cur)) != 0)
		return rc;
	pthread_mutex_lock(&ino->mu);
	if (d->state != D_CLEAN) {
		/* goes with the commit (cp -p sets times before close) */
		if (mode >= 0)
			d->mode = mode;
		if (mt) {
			d->mtime = *mt;
			d->has_mtime = true;
		}
		if (owner) {
			d->has_owner = true;
			d->uid = (to_set & FUSE_SET_ATTR_UID) ? a->st_uid
							      : cur.st_uid;
			d->gid = (to_set & FUSE_SET_ATTR_GID) ? a->st_gid
							      : cur.st_gid;
		}
		pthread_mutex_unlock(&ino->mu);
		return 0;
	}
	pthread_mutex_unlock(&ino->mu);
	if (mode >= 0 || mt)
		rc = store_set_meta(c->store, ino->id, mt, mode);
	if (rc == 0 && owner)
		rc = store_set_owner(
			c->store, ino->id,
			(to_set & FUSE_SET_ATTR_UID) ? a->st_uid : (uint32_t)-1,
			(to_set & FUSE_SET_ATTR_GID) ? a->st_gid
						     : (uint32_t)-1);
	return rc;
}

static int set_record(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		      const struct stat *a, int to_set,
		      struct fuse_file_info *fi)
{
	struct store_who who;
	int rc = 0;

	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (a->st_size < 0)
			return -EINVAL;
		fs_who(req, &who);
		rc = fs_record_truncate(c, ino, a->st_size, &who);
		/* truncate(2) by name has no close: it commits now */
		if (rc == 0 && !fi)
			rc = fs_commit(c, ino);
		if (rc)
			return rc;
	}
	return set_record_meta(c, ino, a, to_set);
}

static int set_ns(struct fs_ctx *c, struct fs_inode *ino, const struct stat *a,
		  int to_set)
{
	struct timespec now, *mt = NULL;
	int rc = 0;

	if (to_set & FUSE_SET_ATTR_SIZE)
		return -EISDIR;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, &now);
		mt = &now;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		mt = (struct timespec *)&a->st_mtim;
	}
	if ((to_set & FUSE_SET_ATTR_MODE) || mt)
		rc = store_ns_set_meta(c->store, ino->id, mt,
				       (to_set & FUSE_SET_ATTR_MODE)
					       ? (int)(a->st_mode & 07777)
					       : -1);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = store_ns_set_owner(
			c->store, ino->id,
			(to_set & FUSE_SET_ATTR_UID) ? a->st_uid : (uint32_t)-1,
			(to_set & FUSE_SET_ATTR_GID) ? a->st_gid
						     : (uint32_t)-1);
	return rc;
}

/* A scratch file is a plain file: its fd does it all. */
static int set_scratch(struct fs_ctx *c, struct fs_inode *ino,
		       const struct stat *a, int to_set,
		       struct fuse_file_info *fi)
{
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	int fd = fi ? fh(fi)->fd : -1, own = -1, rc = 0;

	if (fd < 0) {
		rc = store_scratch_open(c->store, ino->id, O_RDWR, 0, &own);
		if (rc)
			return rc == -ENOENT ? -ESTALE : rc;
		fd = own;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && ftruncate(fd, a->st_size) < 0)
		rc = -errno;
	if (!rc && (to_set & FUSE_SET_ATTR_MODE) &&
	    fchmod(fd, a->st_mode & 07777) < 0)
		rc = -errno;
	if (!rc && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    fchown(fd, (to_set & FUSE_SET_ATTR_UID) ? a->st_uid : (uid_t)-1,
		   (to_set & FUSE_SET_ATTR_GID) ? a->st_gid : (gid_t)-1) < 0)
		rc = -errno;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		ts[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		ts[1] = a->st_mtim;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		ts[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		ts[0] = a->st_atim;
	if (!rc &&
	    (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW |
		       FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) &&
	    futimens(fd, ts) < 0)
		rc = -errno;
	if (own >= 0)
		close(own);
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct stat st;
	int rc = 0;

	if (!i) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (c->cfg.read_only)
		rc = -EROFS;
	else if (i->kind == FS_RECORD)
		rc = set_record(c, req, i, attr, to_set, fi);
	else if (i->kind == FS_NS || i->kind == FS_ROOT)
		rc = set_ns(c, i, attr, to_set);
	else if (i->kind == FS_SCRATCH)
		rc = set_scratch(c, i, attr, to_set, fi);
	else if (i->kind == FS_COND && (to_set & FUSE_SET_ATTR_SIZE) && fi)
		rc = fs_record_truncate(c, fh(fi)->dino, attr->st_size,
					&fh(fi)->who);
	else if (i->kind == FS_COND)
		rc = 0; /* cp -p onto ID@N: the commit carries the content */
	else
		rc = -EPERM;
	if (rc == 0)
		rc = inode_attr(c, i, &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, timeout_of(i->kind));
}

/* ---- names -------------------------------------------------------------- */

/* The key of `name` in namespace inode `parent`, for a change. */
static int change_key(struct fs_ctx *c, fuse_ino_t parent, const char *name,
		      char *key)
{
	struct fs_inode *p = fs_inode_get(c, parent);

	if (strlen(name) > ID_MAX_COMPONENT)
		return -ENAMETOOLONG;
	if (!p || !p->key)
		return -ESTALE;
	if (p->kind != FS_ROOT && p->kind != FS_NS)
		return -EPERM; /* .recfs is read-only */
	if (p->kind == FS_ROOT && strcmp(name, META) == 0)
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

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fs_ctx *c = ctx(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	size_t base;
	uint64_t v;
	int rc = change_key(c, parent, name, key);

	if (rc == 0 && id_split_cond(key, strlen(key), &base, &v) == 1)
		rc = -EINVAL;
	if (rc == 0)
		rc = store_mkdir(c->store, key, mode & ~fc->umask & 07777);
	if (rc == 0 && fc->uid != 0)
		store_ns_set_owner(c->store, key, fc->uid, fc->gid);
	if (rc == 0)
		rc = entry_for(c, key, FS_NS, NULL, 0, &e);
	reply_entry_or_err(req, rc, &e);
}

/* The record `key` is gone where the kernel did not see it go. */
static void record_gone(struct fs_ctx *c, const char *key, bool seen)
{
	struct fs_inode *ino = fs_inode_find(c, key);

	if (!ino)
		return;
	pthread_mutex_lock(&ino->mu);
	ino->deleted = true;
	fs_draft_drop(ino);
	pthread_mutex_unlock(&ino->mu);
	fs_inode_detach(c, ino);
	fs_inval_attr(c, ino);
	if (!seen)
		fs_inval_name(c, key);
	fs_inode_put(c, ino);
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

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *c = ctx(req);
	struct store_cond any = {STORE_COND_ANY, 0};
	char key[ID_MAX_LEN + 1];
	struct store_who who;
	struct fs_inode *ino;
	size_t base;
	uint64_t v;
	int rc = change_key(c, parent, name, key);

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
		if (ino->d.created)
			rc = 0;
		pthread_mutex_unlock(&ino->mu);
		fs_inode_put(c, ino);
	}
	if (rc == 0)
		record_gone(c, key, true);
out:
	fuse_reply_err(req, -rc);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ctx *c = ctx(req);
	char key[ID_MAX_LEN + 1];
	struct fs_inode *ino;
	int rc = change_key(c, parent, name, key);

	if (rc == 0)
		rc = store_rmdir(c->store, key);
	if (rc == 0 && (ino = fs_inode_find(c, key))) {
		fs_inode_detach(c, ino);
		fs_inode_put(c, ino);
	}
	fuse_reply_err(req, -rc);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct fs_ctx *c = ctx(req);
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
	int rc = change_key(c, parent, name, key);

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
		rc = entry_for(c, key, FS_RECORD, NULL, 0, &e);
	}
	reply_entry_or_err(req, rc, &e);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ctx *c = ctx(req);
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

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct fs_ctx *c = ctx(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct store_owner owner = {fc->uid, fc->gid};
	struct store_commit_args args = {
		.cond = {STORE_COND_CREATE, 0},
		.mode = (int)(mode & ~fc->umask & 07777),
		.owner = &owner};
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	struct store_who who;
	int rc = S_ISREG(mode) ? change_key(c, parent, name, key) : -EPERM;

	(void)rdev;
	if (rc == 0 && fs_is_scratch_name(c, name)) {
		int fd = -1;

		rc = store_scratch_open(c->store, key,
					O_CREAT | O_EXCL | O_RDWR,
					(mode_t)args.mode, &fd);
		if (fd >= 0)
			close(fd);
		if (rc == 0)
			rc = entry_for(c, key, FS_SCRATCH, NULL, 0, &e);
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
		rc = entry_for(c, key, FS_RECORD, NULL, 0, &e);
	reply_entry_or_err(req, rc, &e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
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
	rc = change_key(c, parent, name, r->from);
	if (rc == 0)
		rc = change_key(c, newparent, newname, r->to);
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
		if (ino) {
			fs_record_changed(c, ino, res.version, false);
			fs_inval_attr(c, ino);
		}
		if (r->to_cond) /* the kernel now calls it ID@N */
			fs_inval_name(c, r->to);
	}
	fs_inode_put(c, ino);
	return rc;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct fs_ctx *c = ctx(req);
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

/* ---- open files ---------------------------------------------------------- */

static void reply_open(fuse_req_t req, int rc, struct fuse_file_info *fi)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		fs_release(ctx(req), fh(fi)); /* interrupted: no release */
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

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
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
			fchown(fh(fi)->fd, fc->uid, fc->gid);
	} else {
		rc = fs_open_record(c, req, ino, fi, created, mode);
	}
	if (rc == 0)
		rc = inode_attr(c, ino, &e->attr);
	if (rc) {
		if (fi->fh)
			fs_release(c, fh(fi));
		fs_inode_forget(c, ino->ino, 1);
		return rc;
	}
	e->ino = ino->ino;
	e->attr_timeout = timeout_of(kind);
	e->entry_timeout = timeout_of(kind);
	return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fuse_entry_param e;
	char key[ID_MAX_LEN + 1];
	int rc = change_key(c, parent, name, key);

	memset(&e, 0, sizeof(e));
	fi->fh = 0;
	if (rc == 0 && !S_ISREG(mode))
		rc = -EPERM;
	if (rc == 0)
		rc = do_create(c, req, key, name, mode, fi, &e);
	if (rc)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_create(req, &e, fi) == -ENOENT)
		fs_release(c, fh(fi));
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_handle *h = fh(fi);
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

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_handle *h = fh(fi);
	ssize_t n;

	if (h->kind == H_SCRATCH) {
		n = pwrite(h->fd, buf, size, off);
		if (n < 0)
			n = -errno;
	} else if (h->kind == H_RECORD || h->kind == H_COND) {
		n = fs_record_write(c, h, buf, size, off);
	} else {
		n = -EBADF;
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_flush(ctx(req), req, fh(fi), fi->lock_owner));
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	fs_release(ctx(req), fh(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fs_handle *h = fh(fi);
	int rc = 0;

	if (h->kind == H_SCRATCH)
		rc = store_scratch_fsync(ctx(req)->store, h->ino->id, h->fd);
	else if (h->kind == H_RECORD || h->kind == H_COND)
		rc = fs_commit(ctx(req), h->dino);
	fuse_reply_err(req, -rc);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_handle *h = fh(fi);
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

/* ---- directories --------------------------------------------------------- */

struct fs_dir {
	char **names;
	size_t n, cap;
	int err;
};

static int dir_add(void *arg, const char *name, bool is_ns)
{
	struct fs_dir *d = arg;

	(void)is_ns;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		char **p = realloc(d->names, cap * sizeof(*p));

		if (!p)
			return d->err = -ENOMEM;
		d->names = p;
		d->cap = cap;
	}
	if (!(d->names[d->n] = strdup(name)))
		return d->err = -ENOMEM;
	d->n++;
	return 0;
}

static void dir_free(struct fs_dir *d)
{
	if (!d)
		return;
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
		if (rc == 0 && i->kind == FS_ROOT && c->cfg.snapdir_visible)
			rc = dir_add(d, META, true);
		return rc == -ENOENT ? -ESTALE : rc;
	case FS_META_DIR:
		dir_add(d, "status", false);
		return dir_add(d, "history", true);
	case FS_HIST_DIR:
		return fs_hist_list(c, i->id, dir_add, d);
	default:
		return -ENOTDIR;
	}
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct fs_dir *d = calloc(1, sizeof(*d));
	int rc = !i ? -ESTALE : !d ? -ENOMEM : dir_fill(c, i, d);

	if (rc == 0 && d->err)
		rc = d->err;
	if (rc) {
		dir_free(d);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs_ctx *c = ctx(req);
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
		if (plus && i >= 2 && do_lookup(c, ino, name, &e) != 0)
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

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	dir_free((struct fs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* every change of a name is durable */
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = store_statfs(ctx(req)->store, &st);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

/* ---- extended attributes (SPEC section 3) ------------------------------- */

/* Computed attributes of record `id` (NULL: the root) into buf[96].
   Returns the length, or -ENODATA. */
static int computed_xattr(struct fs_ctx *c, const char *id, const char *name,
			  char buf[96])
{
	const char *what = name + strlen(XATTR_PREFIX);
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
		if (store_history_commit(c->store, id, m.version, buf) == 0)
			return (int)strlen(buf);
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

	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		char buf[96];
		int len = computed_xattr(c, i->id, name, buf);

		if (len < 0)
			return len;
		/* the history caught up between the caller's size query
		   ("pending") and this read: what it sized for is still
		   true of that moment, and rsync -X stops on ERANGE */
		if (size && (size_t)len > size &&
		    strcmp(name, XATTR_PREFIX "commit") == 0 &&
		    size >= strlen("pending"))
			len = snprintf(buf, sizeof(buf), "pending");
		if (size && (size_t)len <= size)
			memcpy(value, buf, (size_t)len);
		return len;
	}
	n = store_xattr_get(c->store, i->id, name, value, size);
	if (n == -ENOENT) {
		pthread_mutex_lock(&i->mu);
		n = fs_xattr_get(i->d.xattrs, name, value, size);
		pthread_mutex_unlock(&i->mu);
	}
	return n == -EISDIR ? -ENODATA : n;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct fs_ctx *c = ctx(req);
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
	} else if (i->kind == FS_ROOT) {
		char buf[96];
		int len = strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX))
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
	XATTR_PREFIX "version\0" XATTR_PREFIX "hash\0" XATTR_PREFIX
		     "revision\0" XATTR_PREFIX "commit";

static ssize_t record_listxattr(struct fs_ctx *c, struct fs_inode *i,
				char *list, size_t size)
{
	struct store_meta m;
	ssize_t n;
	int rc = store_stat(c->store, i->id, &m, false);

	if (rc)
		return rc == -EISDIR || rc == -ENOENT ? 0 : rc;
	if (size && size < sizeof(computed_names))
		return -ERANGE;
	n = store_xattr_list(c->store, i->id,
			     size ? list + sizeof(computed_names) : NULL,
			     size ? size - sizeof(computed_names) : 0);
	if (n < 0)
		return n;
	if (size)
		memcpy(list, computed_names, sizeof(computed_names));
	return n + (ssize_t)sizeof(computed_names);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char root[] = XATTR_PREFIX "revision";
	struct fs_ctx *c = ctx(req);
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
		if (i->d.created)
			rc = fs_xattr_set(&i->d.xattrs, name, value, size,
					  flags);
		pthread_mutex_unlock(&i->mu);
	}
	return rc == -EISDIR ? -ENOTSUP : rc;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct fs_ctx *c = ctx(req);
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
	else if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
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

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs_ctx *c = ctx(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	int rc = -ENODATA, fd;

	if (!i)
		rc = -ESTALE;
	else if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
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

/* ---- the session ------------------------------------------------------------
 */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* without it, open(O_TRUNC) arrives as truncate + open and cp onto a
	   record would commit an empty version first */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* a changed size or mtime seen at a GETATTR drops the pages: with
	   the attributes invalidated at every commit (inval.c) that is what
	   makes an open descriptor follow commits it did not make */
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* the kernel owns sizes with a writeback cache and would never see
	   another commit's; write-through keeps the daemon's view exact */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* the kernel clears setuid/setgid on write with a SETATTR */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	/* locks are the kernel's: processes of this host share them */
	conn->want &= ~(unsigned)(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};

struct fuse_session *fs_session_new(struct fuse_args *args, struct fs_ctx *c)
{
	c->se = fuse_session_new(args, &ops, sizeof(ops), c);
	return c->se;
}
