/*
 * fs.c - the FUSE operations that are not about open files: attributes,
 * namespaces, unlink and rename, extended attributes, statfs; and the
 * operations table. Every handler parses its path (path.c), calls the
 * store and returns what the store returned.
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

#define XATTR_PREFIX "user.recfs."

struct fs_ctx *fs_ctx(void)
{
	return fuse_get_context()->private_data;
}

void fs_fill_stat(const struct fs_ctx *c, const struct store_meta *m,
		  struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | (m->mode & 07777);
	st->st_nlink = 1;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_size = (off_t)m->size;
	st->st_blocks = (blkcnt_t)((m->size + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = m->mtime;
	st->st_ctim = m->mtime;
	st->st_atim = m->mtime;
}

static int ns_attr(struct fs_ctx *c, const char *ns, struct stat *st)
{
	struct stat sb;
	int rc = store_ns_stat(c->store, ns, &sb);

	if (rc)
		return rc;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | (sb.st_mode & 07777);
	st->st_nlink = sb.st_nlink;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_size = sb.st_size;
	st->st_blocks = sb.st_blocks;
	st->st_blksize = 4096;
	st->st_mtim = sb.st_mtim;
	st->st_ctim = sb.st_ctim;
	st->st_atim = sb.st_atim;
	return 0;
}

static void meta_dir_attr(struct fs_ctx *c, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
}

/* A record (or namespace) by ID, as open writers see it: those that
   opened it as ID, or as ID@N if `via_cond`. */
static int record_attr(struct fs_ctx *c, const char *id, bool via_cond,
		       struct stat *st)
{
	struct store_meta m;
	int rc = store_stat(c->store, id, &m, false);

	if (rc == -EISDIR)
		return ns_attr(c, id, st);
	if (rc == 0) {
		fs_fill_stat(c, &m, st);
		fs_writer_size(c, id, via_cond, st);
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	/* created by an open writer, not committed yet */
	memset(&m, 0, sizeof(m));
	m.mode = 0644;
	clock_gettime(CLOCK_REALTIME, &m.mtime);
	fs_fill_stat(c, &m, st);
	return fs_writer_size(c, id, via_cond, st) ? 0 : -ENOENT;
}

static int handle_attr(struct fs_ctx *c, struct fs_handle *h, struct stat *st)
{
	switch (h->kind) {
	case H_SCRATCH:
		return fs_scratch_stat(c, h->sc, st);
	case H_STATUS:
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)h->text_len;
		return 0;
	case H_READ:
		fs_fill_stat(c, store_reader_meta(h->rd), st);
		return 0;
	default:
		return record_attr(c, h->id, h->via_cond, st);
	}
}

static int fs_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct store_meta m;
	struct fs_scratch *sc;
	struct fs_path p;
	char *json = NULL;
	size_t len;
	int rc;

	if (fi && fi->fh)
		return handle_attr(c, (struct fs_handle *)(uintptr_t)fi->fh,
				   st);
	rc = fs_path_parse(c, path, &p);
	if (rc)
		return -ENOENT;
	switch (p.kind) {
	case FS_ROOT:
		return ns_attr(c, "", st);
	case FS_META_DIR:
		meta_dir_attr(c, st);
		return 0;
	case FS_META_STATUS:
		rc = fs_status_json(c, &json, &len);
		if (rc)
			return rc;
		free(json);
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_uid = c->uid;
		st->st_gid = c->gid;
		st->st_size = (off_t)len;
		return 0;
	case FS_META_HISTORY:
		return fs_hist_tree_attr(c, p.id, st);
	case FS_META_OTHER:
		return -ENOENT;
	case FS_SCRATCH:
		sc = fs_scratch_get(c, p.id);
		if (sc) {
			rc = fs_scratch_stat(c, sc, st);
			fs_scratch_put(c, sc);
			return rc;
		}
		return record_attr(c, p.id, false, st);
	case FS_COND:
		rc = store_stat(c->store, p.id, &m, false);
		if (rc == -ENOENT && p.version == 0)
			/* ID@0 being created: cp fstat()s it before writing */
			return record_attr(c, p.id, true, st);
		if (p.version &&
		    (rc == -ENOENT || (rc == 0 && m.version != p.version)))
			return fs_hist_attr(c, p.id, p.version, st);
		if (rc == 0 && p.version == 0)
			rc = -ENOENT;
		if (rc == 0)
			fs_fill_stat(c, &m, st);
		return rc == -EISDIR ? -ENOENT : rc;
	case FS_RECORD:
		return record_attr(c, p.id, false, st);
	}
	return -ENOENT;
}

/* ---- directories -------------------------------------------------------- */

struct fill {
	void *buf;
	fuse_fill_dir_t filler;
};

static int fill_one(void *arg, const char *name, bool is_ns)
{
	struct fill *f = arg;

	f->filler(f->buf, name, NULL, 0, 0);
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct fs_ctx *c = fs_ctx();
	struct fill f = {buf, filler};
	struct fs_path p;
	const char *ns;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return -ENOENT;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	if (p.kind == FS_META_DIR) {
		filler(buf, "status", NULL, 0, 0);
		filler(buf, "history", NULL, 0, 0);
		return 0;
	}
	if (p.kind == FS_META_HISTORY)
		return fs_hist_tree_readdir(c, p.id, buf, filler);
	if (p.kind != FS_ROOT && p.kind != FS_RECORD && p.kind != FS_SCRATCH)
		return -ENOTDIR;
	ns = p.kind == FS_ROOT ? "" : p.id;
	rc = store_list(c->store, ns, fill_one, &f);
	if (rc)
		return rc;
	fs_scratch_list(c, ns, buf, filler);
	if (p.kind == FS_ROOT && c->cfg.snapdir_visible)
		filler(buf, ".recfs", NULL, 0, 0);
	return 0;
}

static int changeable(struct fs_ctx *c, const char *path, struct fs_path *p)
{
	int rc = fs_path_parse(c, path, p);

	if (rc)
		return rc;
	if (c->cfg.read_only)
		return -EROFS;
	if (p->kind == FS_META_DIR || p->kind == FS_META_STATUS ||
	    p->kind == FS_META_OTHER || p->kind == FS_ROOT)
		return -EPERM;
	return 0;
}

static int fs_mkdir(const char *path, mode_t mode)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_path p;
	int rc = changeable(c, path, &p);

	if (rc)
		return rc;
	if (p.kind == FS_COND)
		return -EINVAL;
	return store_mkdir(c->store, p.id, mode);
}

static int fs_rmdir(const char *path)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_path p;
	int rc = changeable(c, path, &p);

	if (rc)
		return rc;
	if (p.kind == FS_COND)
		return -ENOTDIR;
	return store_rmdir(c->store, p.id);
}

static int fs_unlink(const char *path)
{
	struct fs_ctx *c = fs_ctx();
	struct store_cond cond = {STORE_COND_ANY, 0};
	struct store_who who;
	struct fs_path p;
	int rc = changeable(c, path, &p);

	if (rc)
		return rc;
	if (p.kind == FS_SCRATCH && fs_scratch_unlink(c, p.id) == 0)
		return 0;
	if (p.kind == FS_COND) {
		if (p.version == 0)
			return -EINVAL;
		cond.kind = STORE_COND_IF_VERSION;
		cond.version = p.version;
	}
	fs_who_now(&who);
	rc = store_delete(c->store, p.id, &cond, &who, NULL);
	if (rc == 0 || rc == -ENOENT) {
		struct stat st;

		/* a created file not committed yet vanishes too */
		if (rc == -ENOENT && record_attr(c, p.id, false, &st) == 0 &&
		    S_ISREG(st.st_mode))
			rc = 0;
		fs_writers_orphan(c, p.id);
		fs_cache_forget(c, p.id);
		/* the kernel saw ID@N go, not ID */
		if (rc == 0 && p.kind == FS_COND)
			fs_deleted_unseen(c);
	}
	return rc;
}

/* The condition a rename's target implies. */
static int target_cond(const struct fs_path *to, unsigned int flags,
		       struct store_cond *cond)
{
	cond->kind = STORE_COND_ANY;
	cond->version = 0;
	if (to->kind == FS_COND) {
		if (flags & RENAME_NOREPLACE)
			return -EINVAL;
		cond->kind =
			to->version ? STORE_COND_IF_VERSION : STORE_COND_CREATE;
		cond->version = to->version;
	} else if (flags & RENAME_NOREPLACE) {
		cond->kind = STORE_COND_CREATE;
	}
	return 0;
}

static int rename_record(struct fs_ctx *c, const struct fs_path *from,
			 const struct fs_path *to, unsigned int flags,
			 const struct store_cond *cond)
{
	struct store_meta m;
	struct store_who who;
	struct stat st;
	int rc = store_stat(c->store, from->id, &m, false);

	if (rc == -EISDIR) {
		/* a namespace: moved whole if empty, else EXDEV (mv copies) */
		if ((flags & RENAME_NOREPLACE) &&
		    record_attr(c, to->id, false, &st) == 0)
			return -EEXIST;
		return store_rename_ns(c->store, from->id, to->id);
	}
	if (rc)
		return rc;
	fs_who_now(&who);
	rc = store_rename(c->store, from->id, to->id, cond, &who, NULL);
	if (rc == 0) {
		fs_writers_orphan(c, from->id);
		fs_cache_moved(c, from->id, to->id);
		fs_cache_forget(c, from->id);
		fs_cache_forget(c, to->id);
	}
	return rc;
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	struct fs_ctx *c = fs_ctx();
	struct store_cond cond;
	struct fs_path pf, pt;
	struct fs_scratch *sc;
	int rc;

	if (flags & ~(unsigned int)RENAME_NOREPLACE)
		return -EINVAL;
	rc = changeable(c, from, &pf);
	if (rc == 0)
		rc = changeable(c, to, &pt);
	if (rc == 0)
		rc = target_cond(&pt, flags, &cond);
	if (rc)
		return rc;
	if (pf.kind == FS_COND)
		return -EPERM; /* old versions are read-only */
	sc = pf.kind == FS_SCRATCH ? fs_scratch_get(c, pf.id) : NULL;
	if (sc && pt.kind == FS_SCRATCH) {
		fs_scratch_put(c, sc);
		sc = (flags & RENAME_NOREPLACE) ? fs_scratch_get(c, pt.id)
						: NULL;
		if (sc) {
			fs_scratch_put(c, sc);
			return -EEXIST;
		}
		return fs_scratch_rename(c, pf.id, pt.id);
	}
	if (sc) {
		rc = fs_scratch_commit(c, sc, pt.id, &cond);
		if (rc == 0)
			fs_scratch_unlink(c, pf.id);
		fs_scratch_put(c, sc);
	} else if (pt.kind == FS_SCRATCH) {
		rc = fs_scratch_from_record(c, pf.id, pt.id);
		if (rc == -EISDIR)
			rc = store_rename_ns(c->store, pf.id, pt.id);
	} else {
		rc = rename_record(c, &pf, &pt, flags, &cond);
	}
	if (rc == -ESTALE && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	return rc;
}

static int fs_refuse_link(const char *a, const char *b)
{
	return -EPERM; /* symlinks and hard links are not records */
}

static int fs_mknod(const char *path, mode_t mode, dev_t dev)
{
	return -EPERM; /* device nodes and FIFOs are not records */
}

/* ---- attributes --------------------------------------------------------- */

/* chmod/utimens: mode -1 and mtime NULL mean "keep". */
static int set_meta(const char *path, int mode, const struct timespec *mtime,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;
	struct fs_scratch *sc;
	struct fs_path p;
	int rc;

	if (h && h->kind == H_SCRATCH) {
		sc = h->sc;
		goto scratch;
	}
	if (h && h->kind == H_WRITE)
		path = NULL; /* by handle: the same as by its ID below */
	if (!path && h) {
		memset(&p, 0, sizeof(p));
		p.kind = FS_RECORD;
		snprintf(p.id, sizeof(p.id), "%s", h->id);
		rc = c->cfg.read_only ? -EROFS : 0;
	} else {
		rc = changeable(c, path, &p);
		if (rc == -EPERM && p.kind == FS_ROOT)
			return store_ns_set_meta(c->store, "", mtime, mode);
	}
	if (rc)
		return rc;
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		fs_scratch_put(c, sc);
		goto scratch;
	}
	if (p.kind == FS_COND)
		return -EPERM;
	if (fs_writer_set_meta(c, p.id, mode, mtime))
		return 0; /* goes with the writer's commit */
	rc = store_set_meta(c->store, p.id, mtime, mode);
	if (rc == -ENOENT &&
	    store_ns_stat(c->store, p.id, &(struct stat){0}) == 0)
		rc = store_ns_set_meta(c->store, p.id, mtime, mode);
	return rc;
scratch:
	pthread_mutex_lock(&c->mu);
	if (mode >= 0)
		sc->mode = (mode_t)mode & 07777;
	if (mtime) {
		sc->mtime = *mtime;
		sc->mtime_set = true;
	}
	pthread_mutex_unlock(&c->mu);
	return 0;
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return set_meta(path, (int)(mode & 07777), NULL, fi);
}

static int fs_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	struct timespec now;

	if (tv[1].tv_nsec == UTIME_OMIT)
		return 0; /* atime is not kept */
	if (tv[1].tv_nsec == UTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, &now);
		return set_meta(path, -1, &now, fi);
	}
	return set_meta(path, -1, &tv[1], fi);
}

/* Ownership is the mounting user's; changes are accepted and ignored (as
   on vfat), so cp -a, rsync -a and sed -i work. */
static int fs_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	return fs_ctx()->cfg.read_only ? -EROFS : 0;
}

/* truncate(2) by path: a commit conditional on the version it read. */
static int truncate_record(struct fs_ctx *c, const char *id, off_t size)
{
	for (int tries = 0; tries < 16; tries++) {
		struct store_commit_args a = {
			.cond.kind = STORE_COND_IF_VERSION, .mode = -1};
		struct store_stage *st = NULL;
		int rc = store_stage_copy(c->store, id, &a.cond.version, &st);

		if (rc == 0)
			rc = store_stage_truncate(st, (uint64_t)size);
		if (rc == 0)
			rc = store_commit(c->store, id, st, &a, NULL);
		store_stage_free(st);
		fs_cache_forget(c, id);
		if (rc != -ESTALE)
			return rc;
	}
	return -ESTALE;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_scratch *sc;
	struct fs_path p;
	int rc;

	if (size < 0)
		return -EINVAL;
	if (fi && fi->fh)
		return fs_ftruncate((struct fs_handle *)(uintptr_t)fi->fh,
				    size);
	rc = changeable(c, path, &p);
	if (rc)
		return rc;
	if ((uint64_t)size > c->cfg.max_record_size)
		return -EFBIG;
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		rc = store_stage_truncate(sc->st, (uint64_t)size);
		fs_scratch_put(c, sc);
		return rc;
	}
	if (p.kind == FS_COND)
		return -EPERM;
	return truncate_record(c, p.id, size);
}

static int fs_statfs(const char *path, struct statvfs *st)
{
	return store_statfs(fs_ctx()->store, st);
}

/* ---- extended attributes (SPEC section 3) -------------------------------- */

/* Computed attributes; the value goes to buf[64]. Returns its length,
   or -ENODATA. */
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
		return rc == -EISDIR ? -ENODATA : rc;
	if (strcmp(what, "version") == 0)
		return snprintf(buf, 96, "%" PRIu64, m.version);
	if (strcmp(what, "revision") == 0)
		return snprintf(buf, 96, "%" PRIu64, m.revision);
	if (strcmp(what, "commit") == 0) {
		rc = store_history_commit(c->store, id, m.version, buf);
		if (rc == 0)
			return (int)strlen(buf);
		return snprintf(buf, 96, "pending");
	}
	if (strcmp(what, "hash") == 0) {
		store_hash_format(m.hash, buf);
		return (int)strlen(buf);
	}
	return -ENODATA;
}

static int reply_value(const void *v, size_t n, char *value, size_t size)
{
	if (size == 0)
		return (int)n;
	if (n > size)
		return -ERANGE;
	memcpy(value, v, n);
	return (int)n;
}

static int fs_getxattr(const char *path, const char *name, char *value,
		       size_t size)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_scratch *sc;
	struct fs_path p;
	char buf[96];
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return -ENOENT;
	if (strncmp(name, "user.", 5) != 0)
		return -ENODATA;
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		rc = (int)fs_scratch_xattr_get(c, sc, name, value, size);
		fs_scratch_put(c, sc);
		return rc;
	}
	if (p.kind == FS_COND || p.kind >= FS_META_DIR)
		return -ENODATA;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		rc = computed_xattr(c, p.kind == FS_ROOT ? NULL : p.id, name,
				    buf);
		return rc < 0 ? rc : reply_value(buf, (size_t)rc, value, size);
	}
	if (p.kind == FS_ROOT)
		return -ENODATA;
	rc = (int)store_xattr_get(c->store, p.id, name, value, size);
	if (rc == -ENOENT)
		rc = (int)fs_writer_xattr_get(c, p.id, name, value, size);
	return rc == -EISDIR ? -ENODATA : rc;
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
	static const char computed[] =
		XATTR_PREFIX "version\0" XATTR_PREFIX "hash\0" XATTR_PREFIX
			     "revision\0" XATTR_PREFIX "commit";
	static const char root[] = XATTR_PREFIX "revision";
	struct fs_ctx *c = fs_ctx();
	struct store_meta m;
	struct fs_scratch *sc;
	struct fs_path p;
	ssize_t n;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return -ENOENT;
	if (p.kind == FS_ROOT)
		return reply_value(root, sizeof(root), list, size);
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		n = fs_scratch_xattr_list(c, sc, list, size);
		fs_scratch_put(c, sc);
		return (int)n;
	}
	if (p.kind != FS_RECORD)
		return 0;
	rc = store_stat(c->store, p.id, &m, false);
	if (rc)
		return rc == -EISDIR || rc == -ENOENT ? 0 : rc;
	if (size && size < sizeof(computed))
		return -ERANGE;
	n = store_xattr_list(c->store, p.id,
			     size ? list + sizeof(computed) : NULL,
			     size ? size - sizeof(computed) : 0);
	if (n < 0)
		return (int)n;
	if (size)
		memcpy(list, computed, sizeof(computed));
	return (int)(n + (ssize_t)sizeof(computed));
}

static int fs_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_scratch *sc;
	struct fs_path p;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return -ENOENT;
	if (p.kind == FS_ROOT &&
	    strncmp(name, FS_CTL_PREFIX, strlen(FS_CTL_PREFIX)) == 0)
		return fs_ctl(c, name + strlen(FS_CTL_PREFIX), value, size);
	if (c->cfg.read_only)
		return -EROFS;
	if (strncmp(name, "user.", 5) != 0)
		return -ENOTSUP;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
		return 0; /* computed by recfs: accepted, no effect */
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		rc = fs_scratch_xattr_set(c, sc, name, value, size, flags);
		fs_scratch_put(c, sc);
		return rc;
	}
	if (p.kind != FS_RECORD)
		return -ENOTSUP;
	rc = store_xattr_set(c->store, p.id, name, value, size, flags);
	if (rc == -ENOENT) /* created, not committed yet (cp -a): kept for
			      the commit */
		rc = fs_writer_xattr_set(c, p.id, name, value, size, flags);
	return rc == -EISDIR ? -ENOTSUP : rc;
}

static int fs_removexattr(const char *path, const char *name)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_scratch *sc;
	struct fs_path p;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return -ENOENT;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
		return -EPERM;
	if (c->cfg.read_only)
		return -EROFS;
	if (p.kind == FS_SCRATCH && (sc = fs_scratch_get(c, p.id)) != NULL) {
		rc = fs_scratch_xattr_remove(c, sc, name);
		fs_scratch_put(c, sc);
		return rc;
	}
	if (p.kind != FS_RECORD)
		return -ENODATA;
	rc = store_xattr_remove(c->store, p.id, name);
	return rc == -EISDIR ? -ENODATA : rc;
}

/* ---- status, context, table --------------------------------------------- */

/* `s` as a JSON string into b (at most cap bytes, NUL included); the
   store path is the only free text in the status. */
static void json_string(char *b, size_t cap, const char *s)
{
	size_t n = 0;

	b[n++] = '"';
	for (; s && *s && n + 8 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			b[n++] = '\\';
			b[n++] = (char)ch;
		} else if (ch < 0x20) {
			n += (size_t)snprintf(b + n, cap - n, "\\u%04x", ch);
		} else {
			b[n++] = (char)ch;
		}
	}
	b[n++] = '"';
	b[n] = '\0';
}

int fs_status_json(struct fs_ctx *c, char **out, size_t *len)
{
	enum { CAP = 1024 + 6 * 4096 + 8 };
	struct store_status st;
	uint64_t commits, errors, ctl;
	char hist[256];
	char *path = malloc(6 * 4096 + 8);
	char *buf = malloc(CAP);
	int n;

	if (!buf || !path) {
		free(buf);
		free(path);
		return -ENOMEM;
	}
	store_status_get(c->store, &st);
	fs_ctx_counts(c, &commits, &errors);
	pthread_mutex_lock(&c->mu);
	ctl = c->ctl_calls;
	pthread_mutex_unlock(&c->mu);
	json_string(path, 6 * 4096 + 8, store_path(c->store));
	if (!st.history)
		snprintf(hist, sizeof(hist),
			 "{\"lag\":null,\"done\":null,\"state\":\"none\"}");
	else
		/* strerror() texts have no quote or backslash */
		snprintf(hist, sizeof(hist),
			 "{\"lag\":%" PRIu64 ",\"done\":%" PRIu64
			 ",\"state\":\"%s%s\"}",
			 st.history_lag, st.history_done,
			 st.history_error ? "error: "
			 : st.history_lag ? "catching up"
					  : "ok",
			 st.history_error ? strerror(-st.history_error) : "");
	n = snprintf(buf, CAP,
		     "{\"revision\":%" PRIu64 ",\"records\":%" PRIu64
		     ",\"deleted\":%" PRIu64 ",\"journal\":{\"bytes\":%" PRIu64
		     ",\"state\":\"%s\"},\"history\":%s,\"read_only\":%s,"
		     "\"commits\":%" PRIu64 ",\"commit_errors\":%" PRIu64
		     ",\"ctl\":%" PRIu64 ",\"store\":%s}\n",
		     st.revision, st.records, st.tombstones, st.journal_bytes,
		     st.broken ? "needs recovery (remount)" : "ok", hist,
		     st.read_only ? "true" : "false", commits, errors, ctl,
		     path);
	free(path);
	*out = buf;
	*len = (size_t)n;
	return 0;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 0;
	cfg->hard_remove = 1; /* no .fuse_hidden* files: handles own data */
	cfg->nullpath_ok = 0;
	cfg->attr_timeout = 0; /* sizes change with commits the kernel does
				  not see (append rebase, failed CAS) */
	/*
	 * Names change only through the kernel (create, unlink, rename), so
	 * it may keep them: a warm open is OPEN alone, without a LOOKUP. Two
	 * names it keeps can stop naming a version behind its back, and
	 * both are resolved again by the daemon: ID after `rm ID@N` (its
	 * GETATTR and OPEN say ENOENT) and ID@0 after ID was created through
	 * it (an open of it is a create-only commit, see open_write).
	 * Missing names are never kept: ID@N appears with a commit.
	 */
	cfg->entry_timeout = FS_ENTRY_TIMEOUT;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	/* without it, open(O_TRUNC) arrives as truncate + open and cp onto a
	   record would commit an empty version first */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * With it the kernel asks for the attributes (a GETATTR round trip:
	 * attr_timeout is 0) before every read(2), to drop the pages if the
	 * mtime changed. The pages are ours to keep or drop at open (see
	 * "the page cache" in handle.c), and a read past the size the kernel
	 * knows still asks first, so that a record that grew is read whole;
	 * one that shrank is cut at the short read.
	 */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	return fuse_get_context()->private_data;
}

static const struct fuse_operations ops = {
	.init = fs_init,
	.getattr = fs_getattr,
	.readdir = fs_readdir,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.unlink = fs_unlink,
	.rename = fs_rename,
	.symlink = fs_refuse_link,
	.link = fs_refuse_link,
	.mknod = fs_mknod,
	.chmod = fs_chmod,
	.chown = fs_chown,
	.truncate = fs_truncate,
	.utimens = fs_utimens,
	.statfs = fs_statfs,
	.open = fs_open,
	.create = fs_create,
	.read = fs_read,
	.read_buf = fs_read_buf,
	.write = fs_write,
	.flush = fs_flush,
	.fsync = fs_fsync,
	.release = fs_release,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
};

const struct fuse_operations *fs_operations(void)
{
	return &ops;
}

int fs_ctx_new(struct fs_ctx **out, struct store *s,
	       const struct fs_config *cfg)
{
	struct fs_ctx *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->store = s;
	c->cfg = *cfg;
	c->uid = getuid();
	c->gid = getgid();
	pthread_mutex_init(&c->mu, NULL);
	rc = fs_scratch_patterns(cfg->scratch ? cfg->scratch
					      : FS_DEFAULT_SCRATCH,
				 &c->scratch_pat);
	if (rc) {
		fs_ctx_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void fs_ctx_free(struct fs_ctx *c)
{
	if (!c)
		return;
	fs_writers_free(c);
	while (c->scratch) {
		struct fs_scratch *sc = c->scratch;

		c->scratch = sc->next;
		sc->linked = false;
		if (--sc->refs == 0) {
			store_stage_free(sc->st);
			free(sc->path);
			free(sc);
		}
	}
	fs_scratch_patterns_free(c->scratch_pat);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void fs_ctx_counts(struct fs_ctx *c, uint64_t *commits, uint64_t *errors)
{
	pthread_mutex_lock(&c->mu);
	*commits = c->commits;
	*errors = c->commit_errors;
	pthread_mutex_unlock(&c->mu);
}
