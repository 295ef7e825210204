/*
 * ops.c - the requests of libfuse's low-level API about inodes: lookup,
 * forget, getattr, setattr, and the operations table. names.c has the
 * requests that change names, files.c open files, dir.c directories,
 * xattr.c extended attributes. Each handler finds its inode (inode.c),
 * calls the store and replies with what the store returned; open files
 * are draft.c's.
 *
 * Timeouts: records, namespaces and scratch files are cached by the kernel
 * for FS_CACHE_TIMEOUT (changes it does not see are invalidated, inval.c);
 * ID@N, .recfs and missing names are never cached, so a CAS name, a status
 * file or a record created where the kernel could not see is always asked
 * for again (fs_timeout in fs_i.h).
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

int fs_inode_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
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
int fs_entry(struct fs_ctx *c, const char *key, enum fs_kind kind,
	     const char *id, uint64_t cond, struct fuse_entry_param *e)
{
	struct fs_inode *ino = fs_inode_lookup(c, key, kind, id, cond);
	int rc;

	if (!ino)
		return -ENOMEM;
	rc = fs_inode_attr(c, ino, &e->attr);
	if (rc) {
		fs_inode_forget(c, ino->ino, 1);
		return rc == -ESTALE ? -ENOENT : rc;
	}
	e->ino = ino->ino;
	e->generation = 0;
	e->attr_timeout = fs_timeout(kind);
	e->entry_timeout = fs_timeout(kind);
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
			return fs_entry(c, FS_META "/status", FS_STATUS, NULL,
					0, e);
		if (strcmp(name, "history") == 0)
			return fs_entry(c, FS_HIST_PREFIX, FS_HIST_DIR, "", 0,
					e);
		return -ENOENT;
	}
	rc = fs_join(parent->key, name, key);
	if (rc)
		return rc;
	rc = fs_hist_resolve(c, key + strlen(FS_HIST_PREFIX "/"), &id,
			     &version);
	if (rc == 0)
		rc = fs_entry(c, key, version ? FS_HIST_FILE : FS_HIST_DIR,
			      version ? id : key + strlen(FS_HIST_PREFIX "/"),
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
	return fs_entry(c, key, FS_COND, id, version, e);
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
		return fs_entry(c, key, FS_SCRATCH, NULL, 0, e);
	rc = store_stat(c->store, key, &m, false);
	if (rc == 0)
		return fs_entry(c, key, FS_RECORD, NULL, 0, e);
	if (rc == -EISDIR)
		return fs_entry(c, key, FS_NS, NULL, 0, e);
	if (rc != -ENOENT)
		return rc == -EINVAL ? -ENOENT : rc;
	/* created by an open descriptor, not committed yet */
	ino = fs_inode_find(c, key);
	if (ino) {
		bool draft;

		pthread_mutex_lock(&ino->mu);
		draft = ino->kind == FS_RECORD && fs_draft_peek(ino)->created;
		pthread_mutex_unlock(&ino->mu);
		fs_inode_put(c, ino);
		if (draft)
			return fs_entry(c, key, FS_RECORD, NULL, 0, e);
	}
	return -ENOENT;
}

int fs_lookup(struct fs_ctx *c, fuse_ino_t parent, const char *name,
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
	if (p->kind == FS_ROOT && strcmp(name, FS_META) == 0)
		return fs_entry(c, FS_META, FS_META_DIR, NULL, 0, e);
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
	int rc = fs_lookup(fs_req(req), parent, name, &e);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	fs_inode_forget(fs_req(req), ino, n);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *list)
{
	for (size_t i = 0; i < count; i++)
		fs_inode_forget(fs_req(req), list[i].ino, list[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_req(req);
	struct fs_inode *i = fs_inode_get(c, ino);
	struct stat st;
	int rc = i ? fs_inode_attr(c, i, &st) : -ESTALE;

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs_timeout(i->kind));
}

/* ---- changing attributes ------------------------------------------------ */

static int set_record_meta(struct fs_ctx *c, struct fs_inode *ino,
			   const struct stat *a, int to_set)
{
	struct fs_draft *d;
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
	d = ino->d;
	if (d && d->state != D_CLEAN) {
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
	int fd = fi ? fs_fh(fi)->fd : -1, own = -1, rc = 0;

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
	struct fs_ctx *c = fs_req(req);
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
		rc = fs_record_truncate(c, fs_fh(fi)->dino, attr->st_size,
					&fs_fh(fi)->who);
	else if (i->kind == FS_COND)
		rc = 0; /* cp -p onto ID@N: the commit carries the content */
	else
		rc = -EPERM;
	if (rc == 0)
		rc = fs_inode_attr(c, i, &st);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs_timeout(i->kind));
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
	/* readdirplus while the entries listed are looked at (dir.c) */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
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
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.symlink = fs_op_symlink,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.create = fs_op_create,
	.fallocate = fs_op_fallocate,
};

struct fuse_session *fs_session_new(struct fuse_args *args, struct fs_ctx *c)
{
	c->se = fuse_session_new(args, &ops, sizeof(ops), c);
	return c->se;
}
