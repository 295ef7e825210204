/*
 * handle.c - open files. A handle opened for writing stages its content in
 * a store stage and commits it in flush (close(2)) or fsync, so close's
 * return value is the commit's. The condition of the commit follows how
 * the file was opened (SPEC section 4):
 *   O_TRUNC / create        last writer wins (or ID@N, ID@0: conditional)
 *   O_APPEND                the appended bytes are rebased on the current
 *                           version at commit time
 *   neither (partial write) implicitly conditional on the version at open
 * flush may run several times (dup, fork) or never (then release commits
 * and can only log a failure). A shell's `>` opens, dup2()s and closes the
 * first fd before writing, so flush commits a handle that was written (or
 * ftruncate'd) since its last commit; a file only created or truncated is
 * committed by the flush of a process that holds no other fd on it (cp of
 * an empty file, touch, the shell restoring its stdout), else at the
 * flush after the write, or at release. The kernel sends release after
 * close(2) has returned, so committing there would break the commit
 * point. A failed write, truncate or commit poisons the handle: its
 * commits fail with that error, never committing a partial stage, and a
 * commit that close(2) reported as failed is not retried at release
 * (where it would land after the writer moved on). After a commit the
 * stage has become the record's content, so a later write first copies it.
 */
#include "fs_i.h"
#include "io.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static struct fs_handle *fh(const struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

/* Who is asking: uid, pid and command name of the calling process. */
void fs_who_now(struct store_who *w)
{
	struct fuse_context *fc = fuse_get_context();
	char path[64];
	ssize_t n;
	int fd;

	memset(w, 0, sizeof(*w));
	w->uid = fc->uid;
	w->pid = (uint32_t)fc->pid;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)fc->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, w->comm, sizeof(w->comm) - 1);
	close(fd);
	if (n > 0 && w->comm[n - 1] == '\n')
		n--;
	w->comm[n > 0 ? n : 0] = '\0';
}

static struct fs_handle *handle_new(enum fs_hkind kind, const char *id)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->kind = kind;
	h->mode = -1;
	h->id = strdup(id);
	if (!h->id) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->mu, NULL);
	return h;
}

static void handle_free(struct fs_handle *h)
{
	if (!h)
		return;
	store_reader_free(h->rd);
	store_stage_free(h->st);
	fs_xattr_free(h->xattrs);
	free(h->text);
	free(h->id);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* ---- the page cache ----------------------------------------------------- */

/*
 * The kernel keeps one page cache per inode, filled by the reads of every
 * handle open on it, whatever version that handle reads. A read handle
 * must see the version it opened to the end, and a write handle's reads
 * and writes are its uncommitted stage (SPEC section 3), so:
 *   - write handles never use the page cache (direct_io, like scratch
 *     files): their pages would show uncommitted bytes to readers;
 *   - read handles of one record share it only while they all read the
 *     same version: a handle opened while another one of the record at
 *     another version is still open (released at the kernel's RELEASE,
 *     which comes after that handle's last read, readahead included, has
 *     filled its pages) reads with direct_io, past the cache. Otherwise
 *     a read that was in flight when the newer handle's open invalidated
 *     the cache could fill it with the old version's pages afterwards,
 *     and the newer handle would read those (a CAS increment built on
 *     such a read loses an update: tools/torture --contention);
 *   - ID@N reads use direct_io: their inode is not ID's, so they must not
 *     touch ID's slot.
 * The readers in cache mode are on c->readers, checked and listed under
 * c->mu at open. The slot table then says whether the pages left by
 * earlier handles are this version's (keep_cache): only once the kernel
 * has acted on the open that set the slot, which had it drop the older
 * pages (cache_ok, set at that handle's first read). Until then another
 * open of the version, whose reply the kernel may see first, drops them
 * too rather than read them.
 */
static size_t cache_slot(const char *id, uint64_t *hv)
{
	*hv = XXH3_64bits(id, strlen(id)) | 1; /* 0 marks an empty slot */
	return (size_t)(*hv % FS_CACHE_SLOTS);
}

static void list_add(struct fs_handle **head, struct fs_handle *h)
{
	h->next = *head;
	h->prev = NULL;
	if (*head)
		(*head)->prev = h;
	*head = h;
}

static void list_remove(struct fs_handle **head, struct fs_handle *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		*head = h->next;
	if (h->next)
		h->next->prev = h->prev;
}

/* How read handle h of `id` at `version` reads: through the cache (kept
   or not) or past it; see above. */
static void cache_open(struct fs_ctx *c, struct fs_handle *h, const char *id,
		       uint64_t version, struct fuse_file_info *fi)
{
	uint64_t hv;
	size_t slot = cache_slot(id, &hv);
	bool other = false;

	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *o = c->readers; o && !other; o = o->next)
		other = o->cache_hv == hv && o->cache_version != version;
	if (other) {
		fi->direct_io = 1;
	} else {
		bool same = c->cache_hv[slot] == hv &&
			    c->cache_ver[slot] == version;

		fi->keep_cache = same && c->cache_ok[slot];
		if (!same) {
			c->cache_hv[slot] = hv;
			c->cache_ver[slot] = version;
			c->cache_ok[slot] = false;
		}
		atomic_store(&h->cache_confirm, !fi->keep_cache);
		h->cache_hv = hv;
		h->cache_version = version;
		list_add(&c->readers, h);
	}
	pthread_mutex_unlock(&c->mu);
}

/* A read on h: the kernel has completed h's open. */
static void cache_confirm(struct fs_ctx *c, struct fs_handle *h)
{
	size_t slot;

	if (!atomic_exchange(&h->cache_confirm, false))
		return;
	pthread_mutex_lock(&c->mu);
	slot = (size_t)(h->cache_hv % FS_CACHE_SLOTS);
	if (h->cache_hv && c->cache_hv[slot] == h->cache_hv &&
	    c->cache_ver[slot] == h->cache_version)
		c->cache_ok[slot] = true;
	pthread_mutex_unlock(&c->mu);
}

static void cache_close(struct fs_ctx *c, struct fs_handle *h)
{
	pthread_mutex_lock(&c->mu);
	if (h->cache_hv)
		list_remove(&c->readers, h);
	pthread_mutex_unlock(&c->mu);
}

void fs_cache_moved(struct fs_ctx *c, const char *from, const char *to)
{
	uint64_t hv_from, hv_to;

	cache_slot(from, &hv_from);
	cache_slot(to, &hv_to);
	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->readers; h; h = h->next) {
		if (h->cache_hv != hv_from)
			continue;
		/* their pages are now `to`'s, of no version of it */
		h->cache_hv = hv_to;
		h->cache_version = UINT64_MAX;
	}
	pthread_mutex_unlock(&c->mu);
}

void fs_cache_forget(struct fs_ctx *c, const char *id)
{
	uint64_t hv;
	size_t slot = cache_slot(id, &hv);

	pthread_mutex_lock(&c->mu);
	if (c->cache_hv[slot] == hv)
		c->cache_hv[slot] = 0;
	pthread_mutex_unlock(&c->mu);
}

/* ---- open writers ------------------------------------------------------- */

static void writer_add(struct fs_ctx *c, struct fs_handle *h)
{
	pthread_mutex_lock(&c->mu);
	list_add(&c->writers, h);
	pthread_mutex_unlock(&c->mu);
}

static void writer_remove(struct fs_ctx *c, struct fs_handle *h)
{
	pthread_mutex_lock(&c->mu);
	list_remove(&c->writers, h);
	pthread_mutex_unlock(&c->mu);
}

bool fs_writer_size(struct fs_ctx *c, const char *id, bool via_cond,
		    struct stat *st)
{
	bool found = false;
	struct stat sb;

	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->writers; h; h = h->next) {
		/* a CAS writer's truncated stage shown as ID's size would
		   clamp the kernel's reads of ID's committed version (a
		   reader saw "": tools/torture --contention) */
		if (h->orphan || !h->dirty || h->via_cond != via_cond ||
		    strcmp(h->id, id) != 0)
			continue;
		if (h->staged && h->cond.kind != STORE_COND_APPEND &&
		    fstat(store_stage_fd(h->st), &sb) == 0) {
			st->st_size = sb.st_size;
			st->st_blocks = sb.st_blocks;
		}
		if (h->mode >= 0)
			st->st_mode = (st->st_mode & ~07777u) | (mode_t)h->mode;
		if (h->has_mtime)
			st->st_mtim = h->mtime;
		found = true;
		break;
	}
	pthread_mutex_unlock(&c->mu);
	return found;
}

bool fs_writer_set_meta(struct fs_ctx *c, const char *id, int mode,
			const struct timespec *mtime)
{
	bool found = false;

	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->writers; h; h = h->next) {
		if (h->orphan || !h->dirty || strcmp(h->id, id) != 0)
			continue;
		if (mode >= 0)
			h->mode = mode & 07777;
		if (mtime) {
			h->mtime = *mtime;
			h->has_mtime = true;
		}
		found = true;
	}
	pthread_mutex_unlock(&c->mu);
	return found;
}

int fs_writer_xattr_set(struct fs_ctx *c, const char *id, const char *name,
			const void *value, size_t size, int flags)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->writers; h; h = h->next) {
		if (h->orphan || !h->dirty || strcmp(h->id, id) != 0)
			continue;
		rc = fs_xattr_set(&h->xattrs, name, value, size, flags);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

ssize_t fs_writer_xattr_get(struct fs_ctx *c, const char *id, const char *name,
			    void *value, size_t size)
{
	ssize_t rc = -ENOENT;

	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->writers; h; h = h->next) {
		if (h->orphan || !h->dirty || strcmp(h->id, id) != 0)
			continue;
		rc = fs_xattr_get(h->xattrs, name, value, size);
		break;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void fs_writers_free(struct fs_ctx *c)
{
	while (c->writers) {
		struct fs_handle *h = c->writers;

		c->writers = h->next;
		if (h->dirty)
			rlog_warn("record %s: still open for writing at "
				  "shutdown: changes not committed",
				  h->id);
		handle_free(h);
	}
}

void fs_writers_orphan(struct fs_ctx *c, const char *id)
{
	pthread_mutex_lock(&c->mu);
	for (struct fs_handle *h = c->writers; h; h = h->next)
		if (strcmp(h->id, id) == 0)
			h->orphan = true;
	pthread_mutex_unlock(&c->mu);
}

/* ---- open / create ------------------------------------------------------ */

/* The condition a name implies (ID@N, ID@0), checked now: a stale one
   fails the open already. */
static int cond_of(struct fs_ctx *c, const struct fs_path *p,
		   struct store_cond *cond)
{
	struct store_meta m;
	uint64_t cur;
	int rc;

	if (p->kind != FS_COND)
		return 0;
	rc = store_stat(c->store, p->id, &m, false);
	if (rc && rc != -ENOENT)
		return rc;
	cur = rc ? 0 : m.version;
	cond->kind = p->version ? STORE_COND_IF_VERSION : STORE_COND_CREATE;
	cond->version = p->version;
	return cur == p->version ? 0 : -ESTALE;
}

static int open_status(struct fs_ctx *c, struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_new(H_STATUS, ".recfs/status");
	int rc;

	if (!h)
		return -ENOMEM;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		handle_free(h);
		return -EACCES;
	}
	rc = fs_status_json(c, &h->text, &h->text_len);
	if (rc) {
		handle_free(h);
		return rc;
	}
	fi->direct_io = 1;
	fi->fh = (uintptr_t)h;
	return 0;
}

static int open_read(struct fs_ctx *c, const struct fs_path *p,
		     struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_new(H_READ, p->id);
	int rc;

	if (!h)
		return -ENOMEM;
	rc = store_reader_open(c->store, p->id, &h->rd);
	if (p->kind == FS_COND && p->version &&
	    (rc == -ENOENT ||
	     (rc == 0 && store_reader_meta(h->rd)->version != p->version))) {
		handle_free(h);
		return fs_hist_open(c, p->id, p->version, fi);
	}
	if (rc == 0 && p->kind == FS_COND && p->version == 0)
		rc = -ENOENT; /* ID@0 names no version */
	if (rc) {
		handle_free(h);
		return rc;
	}
	if (p->kind == FS_COND)
		fi->direct_io = 1;
	else
		cache_open(c, h, p->id, store_reader_meta(h->rd)->version, fi);
	fi->noflush = 1; /* nothing to commit: spare close a round trip */
	fi->fh = (uintptr_t)h;
	return 0;
}

static int open_scratch(struct fs_ctx *c, const struct fs_path *p,
			struct fuse_file_info *fi)
{
	struct fs_handle *h;
	struct fs_scratch *sc = fs_scratch_get(c, p->id);

	if (!sc)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY && (fi->flags & O_TRUNC)) {
		int rc = store_stage_truncate(sc->st, 0);

		if (rc) {
			fs_scratch_put(c, sc);
			return rc;
		}
	}
	h = handle_new(H_SCRATCH, p->id);
	if (!h) {
		fs_scratch_put(c, sc);
		return -ENOMEM;
	}
	h->sc = sc;
	fi->direct_io = 1; /* its content is ours only; keep no stale pages */
	fi->fh = (uintptr_t)h;
	return 0;
}

void fs_deleted_unseen(struct fs_ctx *c)
{
	pthread_mutex_lock(&c->mu);
	clock_gettime(CLOCK_MONOTONIC, &c->unseen_until);
	c->unseen_until.tv_sec += FS_ENTRY_TIMEOUT + 1;
	pthread_mutex_unlock(&c->mu);
}

/*
 * Is a write open of `id` without O_CREAT, O_TRUNC or O_APPEND that finds
 * no record an open(O_CREAT) the kernel sent without it? It drops O_CREAT
 * for a name it holds, and it may hold the name of a record deleted where
 * it could not see (fs_deleted_unseen): so, within that time, a missing
 * record that has been deleted before (it has a tombstone) is created.
 * (The kernel cannot be asked to forget the name instead: that waits
 * uninterruptibly for the directory's lock, and a daemon killed then
 * never exits.)
 */
static bool create_dropped(struct fs_ctx *c, const struct fs_path *p, int flags)
{
	struct store_meta m;
	struct timespec now;
	uint64_t last = 0;
	bool recent;

	if (p->kind != FS_RECORD || (flags & (O_CREAT | O_TRUNC | O_APPEND)))
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&c->mu);
	recent = now.tv_sec < c->unseen_until.tv_sec ||
		 (now.tv_sec == c->unseen_until.tv_sec &&
		  now.tv_nsec < c->unseen_until.tv_nsec);
	pthread_mutex_unlock(&c->mu);
	return recent && store_stat(c->store, p->id, &m, false) == -ENOENT &&
	       store_last_version(c->store, p->id, &last) == 0 && last > 0;
}

/* A write handle on a record: see the top of this file. */
static int open_write(struct fs_ctx *c, const struct fs_path *p, int flags,
		      bool created, mode_t mode, struct fuse_file_info *fi)
{
	struct fs_handle *h;
	int rc;

	if (c->cfg.read_only)
		return -EROFS;
	h = handle_new(H_WRITE, p->id);
	if (!h)
		return -ENOMEM;
	h->via_cond = p->kind == FS_COND;
	rc = cond_of(c, p, &h->cond);
	if (rc)
		goto fail;
	/* ID@0 passed its check, so ID does not exist: a name the kernel
	   still knows from an earlier create (its entry is cached; the
	   kernel drops O_CREAT from an open) is created as create() would */
	if (p->kind == FS_COND && p->version == 0 && !created) {
		created = true;
		mode = 0666 & ~fuse_get_context()->umask;
	}
	if (!created && create_dropped(c, p, flags)) {
		/* created only if still absent at commit time */
		h->cond.kind = STORE_COND_CREATE;
		created = true;
		mode = 0666 & ~fuse_get_context()->umask;
	}
	if (created && (flags & O_APPEND) && !(flags & (O_TRUNC | O_EXCL)) &&
	    p->kind != FS_COND) {
		/* `>>` creating the record: others may create it too before
		   this commits, so it appends like any other `>>` */
		h->cond.kind = STORE_COND_APPEND;
		rc = store_stage_new(c->store, &h->st);
		h->staged = true;
		h->dirty = true;
		h->mode = (int)(mode & 07777);
	} else if (created || (flags & O_TRUNC)) {
		if (created && p->kind != FS_COND && (flags & O_EXCL))
			h->cond.kind = STORE_COND_CREATE;
		rc = store_stage_new(c->store, &h->st);
		h->staged = true;
		h->dirty = true;
		if (created)
			h->mode = (int)(mode & 07777);
	} else if ((flags & O_APPEND) && p->kind != FS_COND) {
		h->cond.kind = STORE_COND_APPEND;
		rc = store_stage_new(c->store, &h->st);
		h->staged = true;
	} else {
		rc = store_reader_open(c->store, p->id, &h->rd);
		if (rc == 0 && p->kind != FS_COND) {
			h->cond.kind = STORE_COND_IF_VERSION;
			h->cond.version = store_reader_meta(h->rd)->version;
		}
	}
	if (rc)
		goto fail;
	fs_who_now(&h->who);
	fs_cache_forget(c, p->id);
	writer_add(c, h);
	fi->direct_io = 1; /* its stage is its own: see "the page cache" */
	fi->fh = (uintptr_t)h;
	return 0;
fail:
	handle_free(h);
	return rc;
}

int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_path p;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return rc == -EINVAL ? -ENOENT : rc;
	switch (p.kind) {
	case FS_META_STATUS:
		return open_status(c, fi);
	case FS_META_HISTORY:
		return fs_hist_tree_open(c, p.id, fi);
	case FS_SCRATCH:
		return open_scratch(c, &p, fi);
	case FS_RECORD:
	case FS_COND:
		if ((fi->flags & O_ACCMODE) == O_RDONLY)
			return open_read(c, &p, fi);
		return open_write(c, &p, fi->flags, false, 0, fi);
	default:
		return -EISDIR;
	}
}

int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_handle *h;
	struct fs_scratch *sc;
	struct fs_path p;
	int rc = fs_path_parse(c, path, &p);

	if (rc)
		return rc;
	if (!S_ISREG(mode))
		return -EPERM;
	switch (p.kind) {
	case FS_RECORD:
	case FS_COND:
		return open_write(c, &p, fi->flags, true, mode, fi);
	case FS_SCRATCH:
		if (c->cfg.read_only)
			return -EROFS;
		rc = fs_scratch_create(c, p.id, mode, &sc);
		if (rc)
			return rc;
		h = handle_new(H_SCRATCH, p.id);
		if (!h) {
			fs_scratch_unlink(c, p.id);
			fs_scratch_put(c, sc);
			return -ENOMEM;
		}
		h->sc = sc;
		fi->direct_io = 1;
		fi->fh = (uintptr_t)h;
		return 0;
	default:
		return -EACCES;
	}
}

/* ---- read / write ------------------------------------------------------- */

static ssize_t pread_fd(int fd, char *buf, size_t size, off_t off)
{
	return io_pread_all(NULL, NULL, fd, buf, size, off);
}

int fs_read(const char *path, char *buf, size_t size, off_t off,
	    struct fuse_file_info *fi)
{
	struct fs_handle *h = fh(fi);
	ssize_t n;

	switch (h->kind) {
	case H_READ:
		cache_confirm(fs_ctx(), h);
		n = store_reader_pread(h->rd, buf, size, off);
		break;
	case H_WRITE:
		pthread_mutex_lock(&h->mu);
		if (h->staged && h->cond.kind != STORE_COND_APPEND)
			n = pread_fd(store_stage_fd(h->st), buf, size, off);
		else if (h->rd)
			n = store_reader_pread(h->rd, buf, size, off);
		else
			n = -EBADF;
		pthread_mutex_unlock(&h->mu);
		break;
	case H_SCRATCH:
		n = pread_fd(store_stage_fd(h->sc->st), buf, size, off);
		break;
	case H_STATUS:
		if ((size_t)off >= h->text_len)
			return 0;
		n = (ssize_t)((h->text_len - (size_t)off) < size
				      ? h->text_len - (size_t)off
				      : size);
		memcpy(buf, h->text + off, (size_t)n);
		break;
	default:
		n = -EBADF;
	}
	return (int)n;
}

int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size,
		off_t off, struct fuse_file_info *fi)
{
	struct fs_handle *h = fh(fi);
	struct fuse_bufvec *bv = malloc(sizeof(*bv));
	int n;

	if (!bv)
		return -ENOMEM;
	*bv = FUSE_BUFVEC_INIT(size);
	if (h->kind == H_READ) {
		cache_confirm(fs_ctx(), h);
		/* hand libfuse the fd: it can splice straight from it */
		bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv->buf[0].fd = store_reader_fd(h->rd);
		bv->buf[0].pos = off;
		*bufp = bv;
		return 0;
	}
	bv->buf[0].mem = malloc(size ? size : 1);
	if (!bv->buf[0].mem) {
		free(bv);
		return -ENOMEM;
	}
	n = fs_read(path, bv->buf[0].mem, size, off, fi);
	if (n < 0) {
		free(bv->buf[0].mem);
		free(bv);
		return n;
	}
	bv->buf[0].size = (size_t)n;
	*bufp = bv;
	return 0;
}

/*
 * Make h->st writable: copy the record into it on the first write of a
 * partial-write handle, or copy the committed stage after a commit (it is
 * the record's content now). h->mu held.
 */
static int make_writable(struct fs_ctx *c, struct fs_handle *h)
{
	struct store_stage *st = NULL;
	uint64_t base;
	int rc;

	if (!h->staged) {
		rc = store_stage_copy(c->store, h->id, &base, &st);
		if (rc)
			return rc;
		store_reader_free(h->rd);
		h->rd = NULL;
	} else if (h->st_committed) {
		rc = store_stage_new(c->store, &st);
		if (rc)
			return rc;
		if (h->cond.kind != STORE_COND_APPEND) {
			ssize_t n =
				io_copy_fd(NULL, NULL, store_stage_fd(h->st),
					   store_stage_fd(st));

			if (n < 0) {
				store_stage_free(st);
				return (int)n;
			}
		}
	} else {
		return 0;
	}
	store_stage_free(h->st);
	h->st = st;
	h->staged = true;
	h->st_committed = false;
	return 0;
}

int fs_write(const char *path, const char *buf, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_handle *h = fh(fi);
	struct stat sb;
	ssize_t n;
	int fd, rc;

	if (h->kind == H_SCRATCH) {
		n = store_stage_write(h->sc->st, buf, size, (uint64_t)off);
		return (int)n;
	}
	if (h->kind != H_WRITE)
		return -EBADF;
	pthread_mutex_lock(&h->mu);
	rc = make_writable(c, h);
	if (rc)
		goto out;
	fd = store_stage_fd(h->st);
	if (h->cond.kind == STORE_COND_APPEND) {
		if (fstat(fd, &sb) < 0) {
			rc = -errno;
			goto out;
		}
		off = sb.st_size;
	}
	if ((uint64_t)off + size > c->cfg.max_record_size) {
		rc = -EFBIG;
		goto out;
	}
	n = store_stage_write(h->st, buf, size, (uint64_t)off);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	h->dirty = true;
	h->touched = true;
	rc = (int)n;
out:
	if (rc < 0 && !h->err)
		h->err = rc; /* the stage misses these bytes now */
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int fs_ftruncate(struct fs_handle *h, off_t size)
{
	struct fs_ctx *c = fs_ctx();
	int rc;

	if (h->kind == H_SCRATCH)
		return store_stage_truncate(h->sc->st, (uint64_t)size);
	if (h->kind != H_WRITE)
		return -EBADF;
	if ((uint64_t)size > c->cfg.max_record_size)
		return -EFBIG;
	pthread_mutex_lock(&h->mu);
	rc = make_writable(c, h);
	if (rc == 0)
		rc = store_stage_truncate(h->st, (uint64_t)size);
	if (rc == 0)
		h->dirty = h->touched = true;
	else if (!h->err)
		h->err = rc;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

/* ---- the commit point --------------------------------------------------- */

/* Commit what h has staged. h->mu held. */
static int commit_handle(struct fs_ctx *c, struct fs_handle *h)
{
	struct store_commit_args args = {.mode = -1};
	struct fs_xattr *xattrs = NULL;
	struct store_result res;
	int rc;

	if (!h->dirty)
		return 0;
	if (h->err) {
		/* a write failed: the stage is not what was written; keep the
		   previous version and say why (again after further writes) */
		h->dirty = false;
		h->touched = false;
		return h->err;
	}
	pthread_mutex_lock(&c->mu);
	if (h->orphan) {
		pthread_mutex_unlock(&c->mu);
		h->dirty = false;
		return 0;
	}
	args.mode = h->mode;
	if (h->has_mtime)
		args.mtime = &h->mtime;
	pthread_mutex_unlock(&c->mu);
	args.cond = h->cond;
	args.who = &h->who;
	rc = store_commit(c->store, h->id, h->st, &args, &res);
	pthread_mutex_lock(&c->mu);
	if (rc) {
		/* reported by this close/fsync: a later release must not
		   commit it after all (behind the writer's next commits) */
		c->commit_errors++;
		h->err = rc;
		h->dirty = false;
		h->touched = false;
	} else {
		c->commits++;
		h->dirty = false;
		h->touched = false;
		h->mode = -1;
		h->has_mtime = false;
		xattrs = h->xattrs;
		h->xattrs = NULL;
		if (!res.noop)
			h->st_committed = true;
		/* a further commit from this handle builds on this one */
		if (h->cond.kind == STORE_COND_IF_VERSION ||
		    h->cond.kind == STORE_COND_CREATE) {
			h->cond.kind = STORE_COND_IF_VERSION;
			h->cond.version = res.version;
		}
	}
	pthread_mutex_unlock(&c->mu);
	/* user attributes set before the record existed (cp -a) */
	for (struct fs_xattr *x = xattrs; x && rc == 0; x = x->next)
		rc = store_xattr_set(c->store, h->id, x->name, x->value,
				     x->size, 0);
	fs_xattr_free(xattrs);
	fs_cache_forget(c, h->id);
	return rc;
}

#define DELETED " (deleted)"

/*
 * Does process `pid` still have the file at `path` open (on another fd
 * than the one being closed)? Read from /proc/PID/fd: at flush the closed
 * fd is already gone from the table. Unknown (no /proc, another user's
 * process, no mount point known): false.
 */
static bool pid_holds(const struct fs_ctx *c, pid_t pid, const char *path)
{
	char dir[64], link[PATH_MAX], want[PATH_MAX];
	struct dirent *de;
	bool held = false;
	ssize_t n;
	int len;
	DIR *d;

	if (!c->cfg.mountpoint || !path || pid <= 0)
		return false;
	len = snprintf(want, sizeof(want), "%s%s", c->cfg.mountpoint, path);
	if (len < 0 || (size_t)len >= sizeof(want))
		return false;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return false;
	while (!held && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(d), de->d_name, link, sizeof(link));
		/* " (deleted)": the kernel dropped the dentry (a concurrent
		   lookup revalidated it away), not necessarily the file */
		held = n >= len && memcmp(link, want, (size_t)len) == 0 &&
		       (n == len ||
			(n == len + (ssize_t)strlen(DELETED) &&
			 memcmp(link + len, DELETED, strlen(DELETED)) == 0));
	}
	closedir(d);
	return held;
}

int fs_flush(const char *path, struct fuse_file_info *fi)
{
	struct fs_handle *h = fh(fi);
	int rc = 0;

	if (h->kind != H_WRITE)
		return 0;
	pthread_mutex_lock(&h->mu);
	if (h->touched ||
	    (h->dirty && !pid_holds(fs_ctx(), fuse_get_context()->pid, path)))
		rc = commit_handle(fs_ctx(), h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fs_handle *h = fh(fi);
	int rc = 0;

	if (h->kind == H_SCRATCH)
		return fdatasync(store_stage_fd(h->sc->st)) < 0 ? -errno : 0;
	if (h->kind != H_WRITE)
		return 0;
	pthread_mutex_lock(&h->mu);
	rc = commit_handle(fs_ctx(), h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int fs_release(const char *path, struct fuse_file_info *fi)
{
	struct fs_ctx *c = fs_ctx();
	struct fs_handle *h = fh(fi);

	if (h->kind == H_WRITE) {
		int rc;

		pthread_mutex_lock(&h->mu);
		rc = commit_handle(c, h);
		pthread_mutex_unlock(&h->mu);
		if (rc)
			rlog_err("record %s: changes not committed at "
				 "release: %s",
				 h->id, strerror(-rc));
		writer_remove(c, h);
	}
	if (h->kind == H_READ)
		cache_close(c, h);
	if (h->kind == H_SCRATCH)
		fs_scratch_put(c, h->sc);
	handle_free(h);
	return 0;
}
