/*
 * inval.c - keeping the kernel's caches exact. The kernel keeps names and
 * attributes for FS_CACHE_TIMEOUT and pages across opens, so every change
 * it did not make itself is told to it:
 *   - attributes: at once, from the request that made the change, before
 *     it replies. Invalidating attributes takes no lock the kernel could
 *     hold for the request (fuse_reverse_inval_inode with a negative
 *     offset only marks them stale), so the next stat, read near EOF or
 *     open by any process asks again: with FUSE_CAP_AUTO_INVAL_DATA a
 *     changed size or mtime also drops the pages then.
 *   - pages and names: from a thread of its own (libfuse's
 *     invalidate_path.c), because dropping pages waits on page locks held
 *     by reads that need a daemon thread, and dropping a name takes the
 *     parent directory's lock, which the kernel holds during a rename or
 *     unlink in that directory. Until the thread has told the kernel, the
 *     daemon answers for what it knows: an open of such an inode drops
 *     the pages (keep_cache off, pages_stale), and a request on a name
 *     whose record is gone gets ESTALE, which makes the kernel look the
 *     name up again (ops.c).
 *
 * Each time the kernel is told of an inode, it takes as stale every
 * GETATTR of it that was under way then: it drops the reply and goes on
 * with the size it had. A read that came just after a commit, asked for
 * the new size and got its reply dropped by a later notice read the new
 * content cut (or padded with zeros) at the old size. So for one change
 * the kernel is told of the attributes once, in the same hold of the
 * inode's mu as the version the daemon shows moves (draft.c,
 * show_version), and an open waits until the page drops queued for its
 * inode were told (fs_inval_wait_drops) before it reads: no notice can
 * then come between its GETATTR and its READ for a version it saw.
 */
#include "fs_i.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long an open waits for the page drops of its inode: they take a
   round trip or two; past this, it reads around the pages instead. */
#define DROP_WAIT_MS 1000

enum inval_kind { INVAL_PAGES, INVAL_NAME };

struct fs_inval {
	struct fs_inval *next;
	enum inval_kind kind;
	fuse_ino_t ino;		/* PAGES: the inode; NAME: the parent */
	struct fs_inode *inode; /* PAGES: held until told */
	uint64_t gen;		/* PAGES: its stale_gen then */
	char name[];		/* NAME */
};

int fs_inval_init(struct fs_ctx *c)
{
	return util_cond_init_mono(&c->qdone);
}

static void enqueue(struct fs_ctx *c, struct fs_inval *q)
{
	pthread_mutex_lock(&c->qmu);
	q->next = NULL;
	if (c->qtail)
		c->qtail->next = q;
	else
		c->qhead = q;
	c->qtail = q;
	pthread_cond_signal(&c->qcv);
	pthread_mutex_unlock(&c->qmu);
}

static void notify(struct fs_ctx *c, const struct fs_inval *q)
{
	int rc;

	if (q->kind == INVAL_PAGES)
		rc = fuse_lowlevel_notify_inval_inode(c->se, q->ino, 0, 0);
	else
		rc = fuse_lowlevel_notify_inval_entry(c->se, q->ino, q->name,
						      strlen(q->name));
	/* -ENOENT: the kernel no longer holds it, nothing to drop */
	if (rc && rc != -ENOENT && rc != -ENOTCONN && rc != -ENODEV) {
		rlog_warn("kernel cache invalidation failed: %s",
			  strerror(-rc));
		return;
	}
	if (q->kind != INVAL_PAGES)
		return;
	/* the kernel holds no page older than this request: opens may keep
	   the pages again, unless they went stale once more meanwhile */
	pthread_mutex_lock(&q->inode->mu);
	if (q->inode->stale_gen == q->gen)
		q->inode->pages_stale = false;
	pthread_mutex_unlock(&q->inode->mu);
}

/* q is done with: its inode's waiters may go on. qmu held. */
static void told(struct fs_ctx *c, struct fs_inval *q)
{
	if (q->kind == INVAL_PAGES) {
		q->inode->drops_queued--;
		pthread_cond_broadcast(&c->qdone);
	}
	pthread_mutex_unlock(&c->qmu);
	if (q->inode)
		fs_inode_put(c, q->inode);
	free(q);
	pthread_mutex_lock(&c->qmu);
}

static void *inval_main(void *arg)
{
	struct fs_ctx *c = arg;
	struct fs_inval *q;

	pthread_mutex_lock(&c->qmu);
	for (;;) {
		while (!c->qhead && !c->qstop)
			pthread_cond_wait(&c->qcv, &c->qmu);
		if (!c->qhead)
			break; /* stopping with nothing left */
		q = c->qhead;
		c->qhead = q->next;
		if (!c->qhead)
			c->qtail = NULL;
		pthread_mutex_unlock(&c->qmu);
		if (!c->qstop)
			notify(c, q);
		pthread_mutex_lock(&c->qmu);
		told(c, q);
	}
	pthread_mutex_unlock(&c->qmu);
	return NULL;
}

int fs_inval_start(struct fs_ctx *c)
{
	int rc = pthread_create(&c->qthread, NULL, inval_main, c);

	if (rc)
		return -rc;
	c->qrunning = true;
	return 0;
}

void fs_inval_stop(struct fs_ctx *c)
{
	if (!c->qrunning)
		return;
	pthread_mutex_lock(&c->qmu);
	c->qstop = true;
	pthread_cond_signal(&c->qcv);
	pthread_mutex_unlock(&c->qmu);
	pthread_join(c->qthread, NULL);
	c->qrunning = false;
	pthread_mutex_lock(&c->qmu);
	while (c->qhead) { /* left when stopping */
		struct fs_inval *q = c->qhead;

		c->qhead = q->next;
		told(c, q);
	}
	c->qtail = NULL;
	pthread_mutex_unlock(&c->qmu);
}

void fs_inval_attr(struct fs_ctx *c, struct fs_inode *ino)
{
	if (c->se && ino)
		fuse_lowlevel_notify_inval_inode(c->se, ino->ino, -1, 0);
}

bool fs_inval_wait_drops(struct fs_ctx *c, struct fs_inode *ino)
{
	struct timespec until;
	bool done;

	util_deadline_ms(&until, DROP_WAIT_MS);
	pthread_mutex_lock(&c->qmu);
	/* -s: the one thread is this one, and a drop may wait for a READ */
	while (ino->drops_queued && !c->cfg.single_thread &&
	       pthread_cond_timedwait(&c->qdone, &c->qmu, &until) == 0)
		;
	done = ino->drops_queued == 0;
	pthread_mutex_unlock(&c->qmu);
	return done;
}

uint64_t fs_stale_mark(struct fs_ctx *c, struct fs_inode *ino)
{
	ino->pages_stale = true;
	/* counted now, with mu held: an open that finds the new version
	   waits for this drop, though it is not queued yet */
	pthread_mutex_lock(&c->qmu);
	ino->drops_queued++;
	pthread_mutex_unlock(&c->qmu);
	return ++ino->stale_gen;
}

void fs_inval_queue(struct fs_ctx *c, struct fs_inode *ino, uint64_t gen)
{
	struct fs_inval *q;

	if (ino->private || !c->se || !c->qrunning ||
	    !(q = calloc(1, sizeof(*q)))) {
		/* every open still drops them (pages_stale) */
		pthread_mutex_lock(&c->qmu);
		ino->drops_queued--;
		pthread_cond_broadcast(&c->qdone);
		pthread_mutex_unlock(&c->qmu);
		return;
	}
	q->kind = INVAL_PAGES;
	q->ino = ino->ino;
	q->gen = gen;
	q->inode = ino;
	fs_inode_hold(c, ino);
	enqueue(c, q);
}

void fs_inval_name(struct fs_ctx *c, const char *key)
{
	const char *slash = strrchr(key, '/');
	const char *name = slash ? slash + 1 : key;
	size_t plen = slash ? (size_t)(slash - key) : 0;
	char parent[ID_MAX_LEN + 1];
	struct fs_inode *p;
	struct fs_inval *q;

	if (!c->se || !c->qrunning || plen > ID_MAX_LEN)
		return;
	memcpy(parent, key, plen);
	parent[plen] = '\0';
	p = fs_inode_find(c, parent);
	if (!p)
		return; /* the kernel holds no name below it */
	/* its cached listing goes with its attributes (dir.c) */
	fs_inval_attr(c, p);
	q = calloc(1, sizeof(*q) + strlen(name) + 1);
	if (q) {
		q->kind = INVAL_NAME;
		q->ino = p->ino;
		strcpy(q->name, name);
		enqueue(c, q);
	}
	fs_inode_put(c, p);
}

void fs_inval_revalidate(struct fs_ctx *c, struct fs_inode *ino)
{
	struct store_meta m;
	char *key = NULL;
	int rc;

	pthread_mutex_lock(&c->mu);
	if (ino->key)
		key = strdup(ino->key);
	pthread_mutex_unlock(&c->mu);
	if (!key)
		return;
	rc = store_stat(c->store, key, &m, false);
	if (rc == -ENOENT || rc == -EISDIR) {
		fs_record_gone(c, ino, key);
	} else if (rc == 0) {
		bool changed;

		pthread_mutex_lock(&ino->mu);
		changed = m.version != ino->version;
		pthread_mutex_unlock(&ino->mu);
		if (changed)
			fs_record_changed(c, ino, m.version, true);
		else
			fs_inval_attr(c, ino); /* its metadata may have */
	}
	free(key);
}

static void dir_attr(struct fs_ctx *c, struct fs_inode *ino)
{
	fs_inval_attr(c, ino);
}

void fs_inval_all(struct fs_ctx *c)
{
	fs_inode_each(c, false, fs_inval_revalidate);
	/* listings the kernel caches are checked against the directory's
	   mtime once its attributes are stale (dir.c) */
	fs_inode_each(c, true, dir_attr);
}
