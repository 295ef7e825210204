/*
 * handle.c - open descriptors of records: opening (a handle per open, the
 * private inode of an ID@N writer, write-only opens around the page
 * cache), the commit at flush (and whether the closing process still
 * holds the file), release. The drafts and the commit itself are
 * draft.c's.
 */
#include "err.h"
#include "fs_i.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- who opens ------------------------------------------------------ */

void fs_who(fuse_req_t req, struct store_who *w)
{
	const struct fuse_ctx *fc = req ? fuse_req_ctx(req) : NULL;
	char path[64];
	ssize_t n;
	int fd;

	memset(w, 0, sizeof(*w));
	if (!fc)
		return;
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

/* ---- does the closing process still hold the file? -------------------- */

/* The mount's id in /proc/self/mountinfo (the last mount on the mount
   point), or -1. */
static int find_mnt_id(const struct fs_ctx *c)
{
	char line[8192], mnt[4096];
	int id = -1, mid;
	FILE *f;

	if (!c->cfg.mountpoint)
		return -1;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%d %*d %*s %*s %4095s", &mid, mnt) == 2 &&
		    strcmp(mnt, c->cfg.mountpoint) == 0)
			id = mid;
	fclose(f);
	return id;
}

/* Does fdinfo file `name` in `dir` describe our inode `ino`? */
static bool fdinfo_is(int dir, const char *name, int mnt_id, uint64_t ino)
{
	char buf[512];
	int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	const char *m, *i;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	m = strstr(buf, "mnt_id:");
	i = strstr(buf, "\nino:");
	return m && i && atoi(m + 7) == mnt_id &&
	       strtoull(i + 5, NULL, 10) == ino;
}

static bool pid_holds(struct fs_ctx *c, pid_t pid, uint64_t ino)
{
	char path[64];
	struct dirent *de;
	bool held = false;
	DIR *d;

	if (c->mnt_id < 0)
		c->mnt_id = find_mnt_id(c);
	if (c->mnt_id < 0 || pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!held && (de = readdir(d)) != NULL)
		held = de->d_name[0] != '.' &&
		       fdinfo_is(dirfd(d), de->d_name, c->mnt_id, ino);
	closedir(d);
	return held;
}

int fs_flush(struct fs_ctx *c, fuse_req_t req, struct fs_handle *h,
	     uint64_t lock_owner)
{
	struct fs_inode *ino = h->dino;
	bool only_created;

	(void)lock_owner;
	if (!h->writable || (h->kind != H_RECORD && h->kind != H_COND))
		return 0;
	pthread_mutex_lock(&ino->mu);
	only_created = fs_draft_peek(ino)->state != D_CLEAN &&
		       !fs_draft_peek(ino)->written;
	pthread_mutex_unlock(&ino->mu);
	if (only_created && pid_holds(c, fuse_req_ctx(req)->pid, h->ino->ino))
		return 0; /* `cmd > f`: committed at the close after writing */
	return fs_commit_by(c, ino, h);
}

/* Unlink h from ctx->handles, drop its inode, free it. */
static void handle_free(struct fs_ctx *c, struct fs_handle *h)
{
	pthread_mutex_lock(&c->mu);
	if (h->prev)
		h->prev->next = h->next;
	else
		c->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&c->mu);
	fs_record_released(h->ino);
	if (h->fd >= 0)
		close(h->fd);
	free(h->buf);
	fs_inode_put(c, h->ino);
	free(h);
}

/* A writer of ID@N goes: its draft is committed and its inode freed. */
static void release_private(struct fs_ctx *c, struct fs_handle *h)
{
	int rc = fs_commit(c, h->dino);

	if (rc)
		rlog_err("record %s: changes not committed at release: %s",
			 h->dino->id, rerr_what(rc));
	pthread_mutex_lock(&c->mu);
	if (h->ino->shadow == h->dino)
		h->ino->shadow = NULL;
	pthread_mutex_unlock(&c->mu);
	fs_inode_put(c, h->dino);
}

void fs_release(struct fs_ctx *c, struct fs_handle *h)
{
	struct fs_inode *ino = h->ino;
	unsigned left;
	int rc;

	if (h->writable) {
		pthread_mutex_lock(&c->mu);
		left = --ino->writers;
		pthread_mutex_unlock(&c->mu);
		if (h->dino && h->dino != ino) {
			release_private(c, h);
		} else if (left == 0 && h->kind == H_RECORD) {
			rc = fs_commit(c, ino);
			if (rc)
				rlog_err("record %s: changes not committed at "
					 "release: %s",
					 ino->id, rerr_what(rc));
		}
	}
	handle_free(c, h);
}

void fs_handles_free(struct fs_ctx *c)
{
	while (c->handles) {
		struct fs_handle *h = c->handles;

		if (h->dino != h->ino)
			fs_inode_put(c, h->dino);
		handle_free(c, h);
	}
}

/* ---- open -----------------------------------------------------------------
 */

/* The version ID@N's inode may commit on, checked now: a stale name fails
   the open already. */
static int cond_check(struct fs_ctx *c, struct fs_inode *ino)
{
	struct store_meta m;
	int rc = store_stat(c->store, ino->id, &m, false);

	if (rc && rc != -ENOENT)
		return rc;
	return (rc ? 0 : m.version) == ino->cas_next ? 0 : -ESTALE;
}

struct fs_handle *fs_handle_new(struct fs_ctx *c, fuse_req_t req,
				enum fs_hkind kind, struct fs_inode *ino,
				int flags)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->kind = kind;
	h->ino = ino;
	h->dino = ino;
	h->flags = flags;
	h->fd = -1;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	if (h->writable) /* who writes is history; a reader needs no name */
		fs_who(req, &h->who);
	pthread_mutex_lock(&c->mu);
	ino->refs++;
	if (h->writable)
		ino->writers++;
	h->next = c->handles;
	if (h->next)
		h->next->prev = h;
	c->handles = h;
	pthread_mutex_unlock(&c->mu);
	fs_record_opened(ino);
	return h;
}

/*
 * A writer of ID@N gets a draft of its own, in a private inode: two
 * processes racing to commit on version N open the same name, and each
 * must commit its own content or fail (ESTALE), never the other's. Its
 * handle uses direct I/O, so its bytes never reach the shared pages.
 */
static int open_private(struct fs_ctx *c, struct fs_handle *h)
{
	struct fs_inode *p = fs_inode_private(c, h->ino);

	if (!p)
		return -ENOMEM;
	h->dino = p;
	pthread_mutex_lock(&c->mu);
	h->ino->shadow = p;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

static void open_abort(struct fs_ctx *c, struct fs_handle *h)
{
	if (h->writable) {
		pthread_mutex_lock(&c->mu);
		h->ino->writers--;
		if (h->ino->shadow == h->dino)
			h->ino->shadow = NULL;
		pthread_mutex_unlock(&c->mu);
	}
	if (h->dino != h->ino)
		fs_inode_put(c, h->dino);
	handle_free(c, h);
}

/*
 * A write-only open that replaces the content (O_TRUNC, or a new record)
 * writes around the kernel's pages (direct_io): `cp` and `dd` then cost
 * one copy less (about 1.4x the MiB/s of a 256 MiB write here, see the
 * README). It is safe: a write-only descriptor cannot be mmapped, the
 * kernel drops the inode's pages at an O_TRUNC open, and the commit marks
 * the pages stale (d->unseen) so other descriptors' cached pages go at
 * once. Appends and patches keep going through the pages: their bytes
 * join pages other descriptors may hold (tail -f).
 */
static bool replaces_write_only(int flags, bool created)
{
	return (flags & O_ACCMODE) == O_WRONLY && !(flags & O_APPEND) &&
	       (created || (flags & O_TRUNC));
}

int fs_open_record(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		   struct fuse_file_info *fi, bool created, mode_t mode)
{
	bool writing = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct fs_handle *h;
	struct fs_inode *d;
	bool around = false;
	uint64_t gen = 0;
	int rc = 0;

	if (writing && c->cfg.read_only)
		return -EROFS;
	if (ino->kind == FS_COND && writing)
		rc = cond_check(c, ino);
	if (rc)
		return rc;
	h = fs_handle_new(c, req, ino->kind == FS_COND ? H_COND : H_RECORD, ino,
			  fi->flags);
	if (!h)
		return -ENOMEM;
	if (ino->kind == FS_COND && writing)
		rc = open_private(c, h);
	d = h->dino;
	if (rc == 0) {
		pthread_mutex_lock(&d->mu);
		rc = fs_draft_open(c, req, d, fi->flags, created, mode, &gen);
		pthread_mutex_unlock(&d->mu);
		if (gen) /* committed where we did not see */
			fs_inval_queue(c, d, gen);
	}
	if (rc == 0 && d->kind == FS_RECORD) {
		/* no notice of the inode may come between this descriptor's
		   first GETATTR and READ (inval.c); if one still might, it
		   reads around the pages, where the size does not cut */
		around = !fs_inval_wait_drops(c, d);
		/* the pages are kept only if no commit was seen since the
		   kernel last dropped them */
		pthread_mutex_lock(&d->mu);
		fi->keep_cache = !d->pages_stale;
		pthread_mutex_unlock(&d->mu);
	}
	if (rc) {
		open_abort(c, h);
		return rc;
	}
	h->direct = ino->kind == FS_RECORD &&
		    replaces_write_only(fi->flags, created);
	/* ID@N's content is not ID's: no pages, no mmap of it */
	fi->direct_io = ino->kind == FS_COND || h->direct || around;
	fi->noflush = !writing;
	fi->fh = (uintptr_t)h;
	return 0;
}
