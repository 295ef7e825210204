/*
 * draft.c - open records and the commit point.
 *
 * The kernel keeps one page cache per inode, shared by every descriptor of
 * the file, and writes go through it (so shared writable mmap works),
 * except those of a write-only descriptor that replaces the content
 * (replaces_write_only in handle.c, where descriptors are opened, flushed
 * and released). The daemon therefore keeps the uncommitted changes per
 * inode too, as a disk keeps them in the inode: a draft (fs_draft in
 * fs_i.h, its states and transitions there). Reads are the draft if any, else
 * the committed version the inode shows; a commit through any descriptor
 * replaces that version, so every descriptor follows the record in place
 * (tail -f, sqlite), as on a local disk. While a draft is open, other
 * descriptors of the same record on this mount see its bytes, as the
 * kernel's shared pages show them; other mounts, ID@N and the store never
 * see uncommitted bytes.
 *
 * The commit point is flush (close(2)) or fsync of a descriptor that may
 * write: the draft becomes the next version, conditional on how it began
 * (SPEC section 4): REPLACE is last-writer-wins (create-only for O_EXCL,
 * or the condition of ID@N), PATCH only if the record is still at the
 * version it copied, APPEND rebased on whatever version is current. One
 * case needs more than the request says: a draft that was only created or
 * truncated, with no byte written (`cmd > f` opens, dup2()s and closes the
 * first descriptor before it writes). Its flush commits unless the closing
 * process still has a descriptor on the same inode, read from
 * /proc/PID/fdinfo by mount id and inode number (handle.c): exact for the
 * process that closes; a child that inherited it commits at its own close.
 * A draft left when the last writer goes (mmap pages written back after
 * close) is committed at release, where a failure can only be logged.
 */
#include "err.h"
#include "fs_i.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the draft's states ----------------------------------------------- */

static const struct fs_draft clean_draft = {.state = D_CLEAN, .mode = -1};

const struct fs_draft *fs_draft_peek(const struct fs_inode *ino)
{
	return ino->d ? ino->d : &clean_draft;
}

/* ino's draft to change, made clean if it has none; NULL: no memory.
   mu held. */
static struct fs_draft *draft_get(struct fs_inode *ino)
{
	if (!ino->d && (ino->d = malloc(sizeof(*ino->d))) != NULL)
		*ino->d = clean_draft;
	return ino->d;
}

void fs_draft_drop(struct fs_inode *ino)
{
	struct fs_draft *d = ino->d;

	ino->draft_gen++;
	if (!d)
		return;
	store_stage_free(d->st);
	fs_xattr_free(d->xattrs);
	free(d);
	ino->d = NULL;
}

static bool dirty(const struct fs_draft *d)
{
	return d && d->state != D_CLEAN;
}

/*
 * Show version v on ino. The kernel's attributes are made stale first,
 * with mu held: an open that finds the inode at v (and so does not drop
 * them itself) must not read at the size the kernel cached for the older
 * version, or a read is cut there (t_contention: "1000" read at the
 * version holding "1000\n"). Marking them stale takes no lock the kernel
 * could hold for a request (inval.c). mu held.
 */
static void show_version(struct fs_ctx *c, struct fs_inode *ino, uint64_t v)
{
	if (v != ino->version)
		fs_inval_attr(c, ino);
	ino->version = v;
}

/* The committed version the inode shows, opened if it is not. mu held. */
static int reader(struct fs_ctx *c, struct fs_inode *ino)
{
	int rc;

	if (ino->rd)
		return 0;
	if (ino->deleted)
		return -ESTALE;
	rc = store_reader_open(c->store, ino->id, &ino->rd);
	if (rc == 0)
		show_version(c, ino, store_reader_meta(ino->rd)->version);
	return rc;
}

/* Size of the committed version the inode shows. mu held. */
static int committed_size(struct fs_ctx *c, struct fs_inode *ino,
			  uint64_t *size)
{
	int rc = reader(c, ino);

	if (rc == 0)
		*size = store_reader_meta(ino->rd)->size;
	return rc;
}

/* A copy of the committed content to change (PATCH). mu held. */
static int begin_patch(struct fs_ctx *c, struct fs_inode *ino)
{
	struct fs_draft *d = ino->d;
	struct store_stage *st = NULL;
	uint64_t base = 0;
	int rc = store_stage_copy(c->store, ino->id, &base, &st);

	if (rc)
		return rc;
	if (ino->kind == FS_COND && base != ino->cas_next) {
		store_stage_free(st);
		return -ESTALE;
	}
	if (d->state == D_APPEND) {
		/* the bytes added so far go on top of the copy */
		rc = fs_stage_append(d->st, st);
		if (rc) {
			store_stage_free(st);
			return rc;
		}
		store_stage_free(d->st);
	}
	d->st = st;
	d->base = base;
	d->state = D_PATCH;
	return 0;
}

static int begin_replace(struct fs_ctx *c, struct fs_inode *ino)
{
	struct fs_draft *d = ino->d;

	if (d->st && d->state != D_APPEND) {
		int rc = store_stage_truncate(d->st, 0);

		if (rc)
			return rc;
	} else {
		struct store_stage *st = NULL;
		int rc = store_stage_new(c->store, &st);

		if (rc)
			return rc;
		store_stage_free(d->st);
		d->st = st;
	}
	d->state = D_REPLACE;
	return 0;
}

static int begin_append(struct fs_ctx *c, struct fs_inode *ino)
{
	struct fs_draft *d = ino->d;
	int rc = committed_size(c, ino, &d->base_size);

	if (rc == 0)
		rc = store_stage_new(c->store, &d->st);
	if (rc == 0) {
		d->base = ino->version;
		d->state = D_APPEND;
	}
	return rc;
}

/* What happens to the draft. */
enum draft_event {
	EV_TRUNC_OPEN, /* open with O_TRUNC, or create */
	EV_WRITE,      /* a write at `off` (`append`: from O_APPEND) */
	EV_TRUNCATE,   /* a truncate to `off` */
};

/*
 * The one transition function: make the draft ready for `ev` (see the
 * table in fs_i.h). A failure moves it to D_FAILED, whose commit reports
 * the error: the stage no longer holds what was written. mu held.
 */
static int draft_step(struct fs_ctx *c, struct fs_inode *ino,
		      enum draft_event ev, bool append, uint64_t off)
{
	struct fs_draft *d = draft_get(ino);
	uint64_t end = 0;
	int rc = 0;

	if (!d)
		return -ENOMEM;
	if (d->state == D_FAILED)
		return d->err;
	if (ev == EV_TRUNC_OPEN) {
		rc = begin_replace(c, ino);
	} else if (d->state == D_CLEAN) {
		if (ev == EV_TRUNCATE && off == 0)
			rc = begin_replace(c, ino);
		else if (ev == EV_WRITE && append && ino->kind == FS_RECORD &&
			 committed_size(c, ino, &end) == 0 && off == end)
			rc = begin_append(c, ino);
		else
			rc = begin_patch(c, ino);
	} else if (d->state == D_APPEND) {
		struct stat sb;

		if (fstat(store_stage_fd(d->st), &sb) < 0)
			rc = -errno;
		else if (ev != EV_WRITE || !append ||
			 off != d->base_size + (uint64_t)sb.st_size)
			rc = begin_patch(c, ino);
	}
	if (rc) {
		/* the store said why (a stage it could not make or fill) */
		fs_log_reported(ino->id, rc);
		if (dirty(d)) {
			d->state = D_FAILED;
			d->err = rc;
		}
		return rc;
	}
	clock_gettime(CLOCK_REALTIME, &d->changed);
	return 0;
}

/* The draft's size as the kernel sees it. mu held. */
static int draft_size(const struct fs_draft *d, uint64_t *size)
{
	struct stat sb;

	if (!d->st) {
		*size = 0;
		return 0;
	}
	if (fstat(store_stage_fd(d->st), &sb) < 0)
		return -errno;
	*size = (uint64_t)sb.st_size +
		(d->state == D_APPEND ? d->base_size : 0);
	return 0;
}

/* ---- reading and writing ---------------------------------------------- */

ssize_t fs_record_read(struct fs_ctx *c, struct fs_inode *ino, char *buf,
		       size_t size, off_t off)
{
	const struct fs_draft *d;
	ssize_t n = 0;
	int rc;

	pthread_mutex_lock(&ino->mu);
	d = fs_draft_peek(ino);
	if (d->st && (d->state == D_REPLACE || d->state == D_PATCH ||
		      d->state == D_FAILED)) {
		n = store_stage_pread(d->st, buf, size, (uint64_t)off);
		goto out;
	}
	rc = reader(c, ino);
	if (rc) {
		n = rc;
		goto out;
	}
	if (d->state == D_APPEND && (uint64_t)off + size > d->base_size) {
		size_t head = (uint64_t)off < d->base_size
				      ? (size_t)(d->base_size - (uint64_t)off)
				      : 0;
		ssize_t m = 0;

		if (head)
			n = store_reader_pread(ino->rd, buf, head, off);
		if (n >= 0 && (size_t)n == head)
			m = store_stage_pread(d->st, buf + head, size - head,
					      (uint64_t)off + head -
						      d->base_size);
		n = m < 0 ? m : n + m;
		goto out;
	}
	n = store_reader_pread(ino->rd, buf, size, off);
out:
	pthread_mutex_unlock(&ino->mu);
	return n;
}

/*
 * The kernel clears setuid and setgid when a process without CAP_FSETID
 * writes through the pages (a SETATTR); a direct handle's writes skip
 * that, so they clear them here. Root is taken to hold CAP_FSETID.
 */
static void kill_privs(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	mode_t kill;
	struct stat st;

	if (!fc || fc->uid == 0 || fs_record_attr(c, ino, &st) != 0)
		return;
	kill = st.st_mode & S_ISUID;
	if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	if (!kill)
		return;
	pthread_mutex_lock(&ino->mu);
	if (dirty(ino->d))
		ino->d->mode = (int)(st.st_mode & 07777 & ~kill);
	pthread_mutex_unlock(&ino->mu);
	fs_inval_attr(c, ino);
}

/*
 * An O_APPEND write lands at the end of the content as the daemon has it
 * (the draft, else the version the inode shows), whatever offset the
 * kernel computed from its i_size. That size can be behind: a LOOKUP of
 * the name by another process, answered before a write and handled by
 * the kernel after it, sets it back, and a write at the kernel's offset
 * would overwrite the last append (lines lost in t_append's race of `>>`
 * creators). *moved: the kernel's pages differ from the draft now (they
 * are marked stale at its commit). mu held.
 */
static int append_at(struct fs_ctx *c, struct fs_inode *ino, off_t *off,
		     bool *moved)
{
	const struct fs_draft *d = fs_draft_peek(ino);
	uint64_t end = 0;
	int rc = 0;

	*moved = false;
	if (ino->kind != FS_RECORD || d->state == D_FAILED)
		return 0;
	rc = dirty(d) ? draft_size(d, &end) : committed_size(c, ino, &end);
	if (rc == 0 && (uint64_t)*off != end) {
		*off = (off_t)end;
		*moved = true;
	}
	return rc;
}

ssize_t fs_record_write(struct fs_ctx *c, fuse_req_t req, struct fs_handle *h,
			bool writepage, const char *buf, size_t size, off_t off)
{
	struct fs_inode *ino = h->dino;
	struct fs_draft *d;
	/* pages written back (mmap) through an O_APPEND handle are not
	   appends: they go where the mapping put them */
	bool append = (h->flags & O_APPEND) && !writepage, moved = false;
	ssize_t n;
	int rc;

	if (h->direct)
		kill_privs(c, req, ino);
	pthread_mutex_lock(&ino->mu);
	d = ino->d;
	if ((uint64_t)off + size > c->cfg.max_record_size) {
		/* the draft misses these bytes: its commit must fail */
		if (dirty(d)) {
			d->state = D_FAILED;
			d->err = -EFBIG;
		}
		pthread_mutex_unlock(&ino->mu);
		return -EFBIG;
	}
	if (ino->deleted && !dirty(d)) {
		/* unlinked while open: the bytes go nowhere, as they would
		   into an unlinked file on a disk */
		pthread_mutex_unlock(&ino->mu);
		return (ssize_t)size;
	}
	rc = append ? append_at(c, ino, &off, &moved) : 0;
	if (rc == 0)
		rc = draft_step(c, ino, EV_WRITE, append, (uint64_t)off);
	if (rc) {
		pthread_mutex_unlock(&ino->mu);
		return rc;
	}
	d = ino->d; /* draft_step made it */
	n = store_stage_write(
		d->st, buf, size,
		(uint64_t)off - (d->state == D_APPEND ? d->base_size : 0));
	if (n < 0) {
		d->state = D_FAILED;
		d->err = (int)n;
	} else {
		d->written = true;
		d->unseen |= h->direct || moved;
		d->who = h->who;
		if (d->state == D_APPEND) {
			h->app_end = d->cut + (uint64_t)off - d->base_size +
				     (uint64_t)n;
			h->app_gen = ino->draft_gen;
		}
	}
	pthread_mutex_unlock(&ino->mu);
	return n;
}

int fs_record_truncate(struct fs_ctx *c, struct fs_inode *ino, off_t size,
		       const struct store_who *who)
{
	struct fs_draft *d;
	int rc;

	if ((uint64_t)size > c->cfg.max_record_size)
		return -EFBIG;
	pthread_mutex_lock(&ino->mu);
	rc = draft_step(c, ino, EV_TRUNCATE, false, (uint64_t)size);
	if (rc == 0) {
		d = ino->d;
		rc = store_stage_truncate(d->st, (uint64_t)size);
		if (rc) {
			d->state = D_FAILED;
			d->err = rc;
		} else {
			d->written = true; /* a change to commit */
			d->who = *who;
		}
	}
	pthread_mutex_unlock(&ino->mu);
	return rc;
}

/* ---- attributes --------------------------------------------------------- */

static void fill(const struct fs_inode *ino, const struct store_meta *m,
		 struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino->ino;
	st->st_mode = (m->symlink ? S_IFLNK : S_IFREG) | (m->mode & 07777);
	st->st_nlink = 1;
	st->st_uid = m->uid;
	st->st_gid = m->gid;
	st->st_size = (off_t)m->size;
	st->st_blocks = (blkcnt_t)((m->size + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = m->mtime;
	st->st_ctim = m->mtime;
	st->st_atim = m->mtime;
}

int fs_record_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st)
{
	const struct fs_draft *d;
	struct store_meta m;
	bool changed = false;
	uint64_t size = 0;
	int rc = 0;

	pthread_mutex_lock(&ino->mu);
	d = fs_draft_peek(ino);
	if (ino->deleted && !dirty(d)) {
		memset(&m, 0, sizeof(m));
		m.size = ino->last.size;
		m.mtime = ino->last.mtime;
		m.mode = ino->last.mode;
		m.uid = ino->last.uid;
		m.gid = ino->last.gid;
		m.symlink = ino->last.symlink;
		fill(ino, &m, st);
		st->st_nlink = 0;
		rc = -ESTALE; /* the caller decides: fstat must work */
		goto out;
	}
	memset(&m, 0, sizeof(m));
	rc = d->created ? -ENOENT : store_stat(c->store, ino->id, &m, false);
	if (rc && !(rc == -ENOENT && dirty(d)))
		goto out;
	if (rc) { /* created, not committed yet */
		m.mode = 0644;
		m.uid = d->uid;
		m.gid = d->gid;
	}
	rc = 0;
	if (dirty(d)) {
		if (draft_size(d, &size) == 0)
			m.size = size;
		m.mtime = d->changed;
	} else if (m.version != ino->version) {
		changed = ino->rd != NULL; /* committed where we did not see */
	}
	if (d->mode >= 0)
		m.mode = (uint32_t)d->mode;
	if (d->has_owner) {
		m.uid = d->uid;
		m.gid = d->gid;
	}
	if (d->has_mtime)
		m.mtime = d->mtime;
	fill(ino, &m, st);
	ino->last = (struct fs_last){m.size, m.mtime, m.mode,
				     m.uid,  m.gid,   m.symlink};
out:
	pthread_mutex_unlock(&ino->mu);
	if (changed)
		fs_record_changed(c, ino, m.version, true);
	return rc;
}

void fs_record_gone(struct fs_ctx *c, struct fs_inode *ino, const char *unseen)
{
	pthread_mutex_lock(&ino->mu);
	ino->deleted = true;
	fs_draft_drop(ino);
	pthread_mutex_unlock(&ino->mu);
	fs_inode_detach(c, ino);
	fs_inval_attr(c, ino);
	if (unseen)
		fs_inval_name(c, unseen);
}

void fs_record_opened(struct fs_inode *ino)
{
	pthread_mutex_lock(&ino->mu);
	ino->opens++;
	pthread_mutex_unlock(&ino->mu);
}

void fs_record_released(struct fs_inode *ino)
{
	pthread_mutex_lock(&ino->mu);
	if (--ino->opens == 0 && ino->kind == FS_RECORD && !dirty(ino->d)) {
		store_reader_free(ino->rd);
		ino->rd = NULL;
	}
	pthread_mutex_unlock(&ino->mu);
}

void fs_record_changed(struct fs_ctx *c, struct fs_inode *ino, uint64_t version,
		       bool pages)
{
	uint64_t gen = 0;

	pthread_mutex_lock(&ino->mu);
	if (version == ino->version) {
		/* an open saw it first and did all this (fs_draft_open): a
		   second notice could come between a reader's GETATTR and
		   READ (inval.c) */
		pthread_mutex_unlock(&ino->mu);
		return;
	}
	show_version(c, ino, version);
	store_reader_free(ino->rd);
	ino->rd = NULL;
	if (pages)
		gen = fs_stale_mark(c, ino);
	pthread_mutex_unlock(&ino->mu);
	if (gen)
		fs_inval_queue(c, ino, gen);
}

/* ---- the commit point --------------------------------------------------- */

/* The condition of committing draft d of ino. mu held. */
static struct store_cond draft_cond(const struct fs_inode *ino,
				    const struct fs_draft *d)
{
	struct store_cond cond = {STORE_COND_ANY, 0};

	if (ino->kind == FS_COND) {
		cond.kind = ino->cas_next ? STORE_COND_IF_VERSION
					  : STORE_COND_CREATE;
		cond.version = ino->cas_next;
	} else if (d->state == D_PATCH) {
		cond.kind = STORE_COND_IF_VERSION;
		cond.version = d->base;
	} else if (d->state == D_APPEND) {
		cond.kind = STORE_COND_APPEND;
	} else if (d->excl) {
		cond.kind = STORE_COND_CREATE;
	}
	return cond;
}

/* Tell the record inode of a commit made through ID@N. */
static void cond_committed(struct fs_ctx *c, const char *id, uint64_t version)
{
	struct fs_inode *rec = fs_inode_find(c, id);

	if (!rec)
		return;
	if (rec->kind == FS_RECORD)
		fs_record_changed(c, rec, version, true);
	fs_inode_put(c, rec);
}

/*
 * Appends from several descriptors share one draft, and the kernel may
 * send one write(2) as two requests (a partial page first). A flush or
 * fsync by another descriptor between the two committed half a line as a
 * version of its own (t_append: 801 versions for 800 lines). So a
 * descriptor commits an append draft only up to the end of its own last
 * append: what came before it is whole, as the kernel orders appends
 * under the inode lock; the rest stays the draft. Returns the stage bytes
 * to commit: 0 none, UINT64_MAX all. mu held.
 */
static uint64_t commit_upto(const struct fs_inode *ino,
			    const struct fs_handle *h)
{
	const struct fs_draft *d = fs_draft_peek(ino);

	if (!h || d->state != D_APPEND)
		return UINT64_MAX;
	if (h->app_gen != ino->draft_gen || h->app_end <= d->cut)
		return 0;
	return h->app_end - d->cut;
}

/* After committing `upto` bytes of an append draft: the rest, `tail`,
   is the draft now, on top of the version just made. mu held. */
static void keep_tail(struct fs_ctx *c, struct fs_inode *ino,
		      struct store_stage *tail, uint64_t upto)
{
	struct fs_draft *d = ino->d;

	store_stage_free(d->st);
	d->st = tail;
	d->cut += upto;
	d->base = ino->version;
	d->mode = -1;
	d->has_owner = d->has_mtime = false;
	if (committed_size(c, ino, &d->base_size) != 0) {
		d->state = D_FAILED; /* its commit reports it */
		d->err = -EIO;
	}
}

/* Commit ino's draft (`upto`: see commit_upto); *gen: pages marked stale
   (fs_inval_queue them). mu held. */
static int commit_locked(struct fs_ctx *c, struct fs_inode *ino, uint64_t upto,
			 uint64_t *gen)
{
	struct fs_draft *d = ino->d;
	struct store_owner owner;
	struct store_commit_args args = {0};
	struct store_stage *tail = NULL;
	struct store_result res;
	bool pages = false;
	int rc = 0;

	if (!dirty(d) || upto == 0)
		return 0;
	owner = (struct store_owner){d->uid, d->gid};
	args.mode = d->mode;
	args.who = &d->who;
	if (d->state == D_APPEND && upto != UINT64_MAX)
		rc = fs_stage_split(c->store, d->st, upto, &tail);
	if (rc) {
		d->state = D_FAILED;
		d->err = rc;
	}
	args.cond = draft_cond(ino, d);
	if (d->has_mtime)
		args.mtime = &d->mtime;
	if (d->has_owner)
		args.owner = &owner;
	rc = d->state == D_FAILED
		     ? d->err
		     : store_commit(c->store, ino->id, d->st, &args, &res);
	if (d->state == D_FAILED && rc == -ENOSPC)
		store_commit_failed(c->store, ino->id, rc); /* logged once */
	else if (rc && rc != -ESTALE)
		fs_log_reported(ino->id,
				rc); /* a lost CAS race is not an error */
	if (rc == 0) {
		for (struct fs_xattr *x = d->xattrs; x && rc == 0; x = x->next)
			rc = store_xattr_set(c->store, ino->id, x->name,
					     x->value, x->size, 0);
		/* the pages are the stage, unless an append was rebased on
		   a version committed meanwhile or a direct handle wrote */
		pages = (d->state == D_APPEND && res.version != d->base + 1) ||
			d->unseen;
	} else {
		pages = true; /* the pages hold what was not committed */
	}
	if (!tail || rc)
		fs_draft_drop(ino);
	pthread_mutex_lock(&c->mu);
	if (rc)
		c->commit_errors++;
	else
		c->commits++;
	pthread_mutex_unlock(&c->mu);
	if (rc == 0 && ino->kind == FS_COND)
		ino->cas_next = res.version;
	/* the kernel's attributes go stale once, here, with mu held: a
	   second time later could drop a GETATTR that would have given the
	   kernel the new size (show_version) */
	if (rc == 0 && res.version != ino->version)
		show_version(c, ino, res.version);
	else
		fs_inval_attr(c, ino); /* metadata, or the draft's size gone */
	if (rc == 0 || pages) {
		store_reader_free(ino->rd);
		ino->rd = NULL;
	}
	if (pages && !ino->private)
		*gen = fs_stale_mark(c, ino);
	if (tail && rc == 0)
		keep_tail(c, ino, tail, upto);
	else
		store_stage_free(tail);
	return rc;
}

int fs_commit(struct fs_ctx *c, struct fs_inode *ino)
{
	return fs_commit_by(c, ino, NULL);
}

int fs_commit_by(struct fs_ctx *c, struct fs_inode *ino,
		 const struct fs_handle *h)
{
	uint64_t gen = 0, made;
	bool was_dirty;
	int rc;

	pthread_mutex_lock(&ino->mu);
	was_dirty = dirty(ino->d);
	rc = commit_locked(c, ino, commit_upto(ino, h), &gen);
	made = ino->cas_next;
	pthread_mutex_unlock(&ino->mu);
	if (!was_dirty)
		return 0;
	if (gen)
		fs_inval_queue(c, ino, gen);
	if (rc == 0 && ino->kind == FS_COND)
		cond_committed(c, ino->id, made);
	return rc;
}

/* ---- open ----------------------------------------------------------- */

int fs_draft_open(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		  int flags, bool created, mode_t mode, uint64_t *gen)
{
	struct fs_draft *d = ino->d;
	struct store_meta m;
	int rc;

	if (created && fs_draft_peek(ino)->created) {
		/* another create of the same new name won the race: the
		   file exists now, as on a disk */
		if (flags & O_EXCL)
			return -EEXIST;
		created = false;
	}
	if (created) {
		const struct fuse_ctx *fc = fuse_req_ctx(req);

		rc = draft_step(c, ino, EV_TRUNC_OPEN, false, 0);
		if (rc)
			return rc;
		d = ino->d;
		d->created = true;
		d->excl = (flags & O_EXCL) != 0;
		d->mode = (int)(mode & 07777);
		d->has_owner = true;
		d->uid = fc->uid;
		d->gid = fc->gid;
		clock_gettime(CLOCK_REALTIME, &d->changed);
		return 0;
	}
	if (ino->deleted && !dirty(d))
		return -ESTALE; /* the kernel looks the name up again */
	if (ino->kind == FS_RECORD && !dirty(d)) {
		uint64_t shown = ino->version;

		/* the committed version now: another may have come */
		rc = store_stat(c->store, ino->id, &m, false);
		if (rc)
			return rc == -EISDIR || rc == -ENOENT ? -ESTALE : rc;
		if (m.version != ino->version) {
			store_reader_free(ino->rd);
			ino->rd = NULL;
		}
		rc = reader(c, ino);
		if (rc)
			return rc;
		/* committed where we did not see (also between the stat and
		   the reader, when the last release had closed it): the
		   pages go */
		if (shown && ino->version != shown)
			*gen = fs_stale_mark(c, ino);
	}
	if ((flags & O_ACCMODE) != O_RDONLY && (flags & O_TRUNC))
		return draft_step(c, ino, EV_TRUNC_OPEN, false, 0);
	return 0;
}
