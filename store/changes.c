/*
 * changes.c - following the committed changes of a store in revision
 * order (store_changes_*, changes.h), for `recfsctl watch`. Read-only: it
 * takes no lock and writes nothing, so it runs next to the daemon.
 *
 * Where the changes come from. A change of revision R is first a record
 * of the journal (STORE/journal, seq R), later also part of a commit of
 * the history (STORE/history.git, refs/heads/main), and the journal
 * segment that held it is dropped only once the history has it (see
 * store_i.h). So the reader keeps one number, `pos` (every revision up
 * to it was handed out), and reads revision pos + 1:
 *  - from the journal, following its segments as they are written (a
 *    frame that is not complete, or zeros written ahead of the records,
 *    is simply not there yet; a frame is taken only when its checksum
 *    holds, and only up to the revision the caller knows is durable);
 *  - if the journal no longer holds it (its segment was dropped), from
 *    git: the commits whose Recfs-Upto is after pos, found by walking
 *    refs/heads/main back along first parents (history is never
 *    rewritten), each read once, its trailer blocks of revisions after
 *    pos handed out, and pos moved to its Recfs-Upto.
 * Git is read, not history.idx: the index is a cache that is not synced,
 * may lag git (a full disk) and is rebuilt at the next open, whereas the
 * ref only ever moves forward to commits that are durable.
 *
 * Revisions that neither holds (versions from before the store had a
 * history) are skipped, with a warning, once it is certain that they
 * are gone: the journal starts after them and git did not move while
 * that was looked at (segments are dropped only after git has them).
 *
 * Waiting: an inotify watch on STORE/journal (every commit writes a
 * segment there, rotations create one, checkpoints remove them), exposed
 * as store_changes_fd for the caller's poll(2).
 */
#include "store_i.h"
#include "changes.h"
#include "format.h"
#include "change_decode.h"
#include "history.h"
#include "jnl.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <git2.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF_MAIN "refs/heads/main"
#define TAIL_READ_MIN ((size_t)64 << 10)
#define SEG_NAME_DIGITS 20 /* "%020llu.log", jnl.h */

/* What reading the journal found. */
enum tail_res {
	TAIL_NONE = 0,	 /* revision pos + 1 is not (completely) written yet */
	TAIL_RECORD = 1, /* it was: queued, pos moved */
	TAIL_GONE = 2,	 /* the journal no longer holds it */
};

/* The journal segment being followed and the place in it. */
struct tail {
	int fd;		/* segment `first`, or -1 */
	uint64_t first; /* its first seq */
	uint64_t next;	/* seq of the frame at `off` */
	uint64_t off;
	/* buf[0..len) holds the file bytes at boff */
	uint8_t *buf;
	size_t cap, len;
	uint64_t boff;
};

/* One change handed out, with the strings it owns. */
struct qent {
	struct store_change ch;
	char *id, *other;
};

struct store_changes {
	char *path;
	int dirfd;  /* STORE */
	int jnl_fd; /* STORE/journal */
	int ino_fd; /* inotify on STORE/journal */
	git_repository *repo;
	bool git_inited;

	uint64_t pos; /* every revision <= pos is handed out or queued */
	struct tail t;
	bool t_ok; /* t is placed at or before pos + 1 */

	git_oid *todo; /* commits to read, the oldest last */
	size_t ntodo, todo_cap;

	struct qent *q; /* changes of one record or commit */
	size_t qn, qi, qcap;
};

/* ---- the queue ----------------------------------------------------------- */

static void queue_clear(struct store_changes *c)
{
	for (size_t i = 0; i < c->qn; i++) {
		free(c->q[i].id);
		free(c->q[i].other);
	}
	c->qn = c->qi = 0;
}

/* change_decode, hist_msg_changes: a change at the end of the queue, its
   strings copied, without its content (which points into a frame). */
static int queue_decoded(void *arg, const struct store_change *in)
{
	struct store_changes *c = arg;
	struct qent *e = util_grow(c->q, &c->qcap, c->qn, sizeof(*e), 16);

	if (!e)
		return -ENOMEM;
	c->q = e;
	e = &c->q[c->qn];
	e->ch = *in;
	e->id = strndup(in->id, in->id_len);
	e->other = in->other ? strndup(in->other, in->other_len) : NULL;
	if (!e->id || (in->other && !e->other)) {
		free(e->id);
		free(e->other);
		return -ENOMEM;
	}
	e->ch.id = e->id;
	e->ch.other = e->other;
	e->ch.has_data = false;
	e->ch.data = NULL;
	e->ch.stage = NULL;
	e->ch.data_len = e->ch.stage_len = 0;
	c->qn++;
	return 0;
}

/* ---- following the journal ----------------------------------------------- */

static void seg_name(char name[32], uint64_t first)
{
	snprintf(name, 32, "%0*" PRIu64 ".log", SEG_NAME_DIGITS, first);
}

static bool seg_parse(const char *name, uint64_t *first)
{
	uint64_t v = 0;

	if (strlen(name) != SEG_NAME_DIGITS + 4 ||
	    strcmp(name + SEG_NAME_DIGITS, ".log") != 0)
		return false;
	for (int i = 0; i < SEG_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*first = v;
	return true;
}

/*
 * The segments now: the oldest first seq (*oldest), the newest one not
 * after `want` (*at, 0 if none) and whether one starts after `want`.
 * *oldest is 0 if there are none. Returns 0 or -errno.
 */
static int seg_scan(struct store_changes *c, uint64_t want, uint64_t *oldest,
		    uint64_t *at, bool *later)
{
	struct dirent *de;
	uint64_t first;
	DIR *d;
	int fd = openat(c->jnl_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*oldest = *at = 0;
	*later = false;
	if (fd < 0 || !(d = fdopendir(fd))) {
		int rc = -errno;

		if (fd >= 0)
			close(fd);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		if (!seg_parse(de->d_name, &first) || first == 0)
			continue;
		if (!*oldest || first < *oldest)
			*oldest = first;
		if (first <= want && first > *at)
			*at = first;
		if (first > want)
			*later = true;
	}
	closedir(d);
	return 0;
}

static void tail_close(struct tail *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->len = 0;
}

/* Open segment `first` at its first frame. Returns 1, 0 if it is not
   there (or its header is not written yet), or -errno. */
static int tail_open(struct store_changes *c, uint64_t first)
{
	struct tail *t = &c->t;
	uint8_t fh[JNL_FILE_HDR];
	char name[32];
	ssize_t n;
	int fd;

	seg_name(name, first);
	fd = openat(c->jnl_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = pread(fd, fh, sizeof(fh), 0);
	if (n != (ssize_t)sizeof(fh) || memcmp(fh, JNL_SEGMENT_MAGIC, 8) != 0) {
		close(fd); /* being made (a short or zero header) */
		return n < 0 ? -errno : 0;
	}
	for (int i = 0; i < 8; i++)
		if (fh[8 + i] != (uint8_t)(first >> (8 * i))) {
			close(fd);
			return rerr_set(-EBADMSG,
					"%s/%s/%s: bad segment header", c->path,
					STORE_JOURNAL_DIR, name);
		}
	tail_close(t);
	t->fd = fd;
	t->first = t->next = first;
	t->off = JNL_FILE_HDR;
	return 1;
}

/* Read file bytes at t->off into the buffer, at least `need` of them if
   the file has them. Returns 1 if the file ended before the buffer was
   full, 0 if not, or -errno. */
static int tail_fill(struct tail *t, size_t need)
{
	size_t want = need < TAIL_READ_MIN ? TAIL_READ_MIN : need;
	ssize_t n;

	if (want > t->cap) {
		uint8_t *p = realloc(t->buf, want);

		if (!p)
			return -ENOMEM;
		t->buf = p;
		t->cap = want;
	}
	t->len = 0;
	t->boff = t->off;
	while (t->len < want) {
		n = pread(t->fd, t->buf + t->len, want - t->len,
			  (off_t)(t->off + t->len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		t->len += (size_t)n;
	}
	return 0;
}

/*
 * The frame at t->off. Returns its length (> 0) with *seq, *p, *len set,
 * 0 if there is no complete, valid frame there (yet), or -errno. Bytes
 * read earlier are trusted only if they decode: what was a torn frame or
 * zeros then is read again.
 */
static long tail_frame(struct tail *t, uint64_t *seq, const uint8_t **p,
		       size_t *len, bool *more)
{
	size_t need = JNL_FRAME_HDR, avail;
	bool fresh = false;
	int ended = 0;
	long fl;

	for (;;) {
		avail = t->len && t->off >= t->boff && t->off < t->boff + t->len
				? (size_t)(t->boff + t->len - t->off)
				: 0;
		fl = avail ? jnl_frame_decode_part(t->buf + (t->off - t->boff),
						   avail, seq, p, len, more,
						   &need)
			   : 0;
		if (fl > 0)
			return fl;
		if (fresh && (fl < 0 || ended))
			return 0; /* torn, zeros, or the file ends */
		ended = tail_fill(t, need);
		if (ended < 0)
			return ended;
		fresh = true;
	}
}

/* Is the segment open as t->fd still the one named so? */
static bool tail_same_file(struct store_changes *c)
{
	struct stat a, b;
	char name[32];

	seg_name(name, c->t.first);
	return fstat(c->t.fd, &a) == 0 &&
	       fstatat(c->jnl_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* No frame at t->off: go on in segment t->next if the journal moved to
   it. Returns 1 (moved), TAIL_NONE, TAIL_GONE or -errno. */
static int tail_advance(struct store_changes *c)
{
	uint64_t oldest, at;
	bool later;
	int rc;

	if (c->t.next != c->t.first) {
		rc = tail_open(c, c->t.next);
		if (rc)
			return rc;
	}
	if (!tail_same_file(c)) {
		c->t_ok = false; /* replaced or removed: look again */
		return TAIL_GONE;
	}
	rc = seg_scan(c, c->t.next, &oldest, &at, &later);
	if (rc)
		return rc;
	return later ? TAIL_GONE : TAIL_NONE;
}

/* Place the tail before revision `want`. Returns 1, TAIL_NONE (its
   segment is being made), TAIL_GONE or -errno. */
static int tail_seek(struct store_changes *c, uint64_t want)
{
	uint64_t oldest, at;
	bool later;
	int rc = seg_scan(c, want, &oldest, &at, &later);

	if (rc)
		return rc;
	if (!at)
		return TAIL_GONE;
	rc = tail_open(c, at);
	return rc == 0 ? TAIL_NONE : rc;
}

/* A frame of a change that spans several (REC_TXN_PART) was read but
   not the frame that ends it: forget what it queued and read the whole
   change again later (it may not be committed yet). */
static int tail_undo(struct store_changes *c, int rc)
{
	queue_clear(c);
	c->t_ok = false;
	return rc;
}

/* The frame `seq` at c->t.off (fl bytes; `ends`: not marked
   JNL_FRAME_MORE): queued, pos moved at the end of its revision. Returns
   TAIL_RECORD, TAIL_NONE (more frames of the revision follow), -EAGAIN or
   -errno. */
static int tail_take(struct store_changes *c, uint64_t durable, uint64_t seq,
		     const uint8_t *p, size_t len, long fl, bool ends)
{
	int rc;

	if (seq != c->t.next) {
		char name[32];

		seg_name(name, c->t.first);
		c->t_ok = false;
		return rerr_set(-EBADMSG,
				"%s/%s/%s: record at offset %" PRIu64
				" has seq %" PRIu64 ", expected %" PRIu64,
				c->path, STORE_JOURNAL_DIR, name, c->t.off, seq,
				c->t.next);
	}
	if (seq > c->pos && seq > durable)
		return -EAGAIN;
	c->t.off += (uint64_t)fl;
	if (seq > c->pos) {
		rc = change_decode(p, len, seq, queue_decoded, c, NULL);
		if (rc == -EBADMSG)
			rerr_prefix(rc,
				    "%s/%s: record %" PRIu64 " cannot be "
				    "decoded as a change",
				    c->path, STORE_JOURNAL_DIR, seq);
		if (rc)
			return rc;
	}
	if (!ends)
		return TAIL_NONE;
	c->t.next++;
	if (seq <= c->pos)
		return TAIL_NONE; /* before where we are: seeking */
	c->pos = seq;
	return TAIL_RECORD;
}

/* Read revision pos + 1 from the journal, if it is there and at most
   `durable`. Returns TAIL_*, -EAGAIN (written, not known durable), or
   -errno. */
static int tail_step(struct store_changes *c, uint64_t durable)
{
	const uint8_t *p;
	uint64_t seq;
	size_t len;
	bool mid = false; /* frames of an unfinished revision queued */
	bool more = false;
	long fl;
	int rc;

	if (!c->t_ok) {
		rc = tail_seek(c, c->pos + 1);
		if (rc != 1)
			return rc;
		c->t_ok = true;
	}
	for (;;) {
		fl = tail_frame(&c->t, &seq, &p, &len, &more);
		if (fl < 0)
			return mid ? tail_undo(c, (int)fl) : (int)fl;
		if (fl == 0) {
			rc = mid ? TAIL_NONE : tail_advance(c);
			if (rc == 1)
				continue;
			if (rc == TAIL_GONE || mid)
				c->t_ok = false;
			return mid ? tail_undo(c, rc) : rc;
		}
		rc = tail_take(c, durable, seq, p, len, fl, !more);
		if (rc == TAIL_RECORD)
			return rc;
		if (rc != TAIL_NONE)
			return mid ? tail_undo(c, rc) : rc;
		mid = c->qn > 0 && seq > c->pos;
	}
}

/* ---- reading the history ------------------------------------------------- */

static int read_head(struct store_changes *c, git_oid *head, bool *has)
{
	int rc = git_reference_name_to_id(head, c->repo, REF_MAIN);

	*has = rc == 0;
	if (rc == GIT_ENOTFOUND)
		return 0; /* no commit yet */
	return rc < 0 ? hist_git_error(rc, "reading " REF_MAIN, NULL) : 0;
}

/* The commits whose Recfs-Upto is after pos, from `head` back, into
   c->todo (the newest first). Returns 0 or -errno. */
static int git_collect(struct store_changes *c, const git_oid *head)
{
	git_commit *commit = NULL;
	git_oid oid = *head, *todo;
	int rc = 0;

	c->ntodo = 0;
	for (;;) {
		rc = git_commit_lookup(&commit, c->repo, &oid);
		if (rc < 0) {
			rc = hist_git_error(rc, "reading a commit", NULL);
			break;
		}
		if (hist_msg_upto(git_commit_message_raw(commit)) <= c->pos)
			break;
		todo = util_grow(c->todo, &c->todo_cap, c->ntodo, sizeof(*todo),
				 64);
		if (!todo) {
			rc = -ENOMEM;
			break;
		}
		c->todo = todo;
		c->todo[c->ntodo++] = oid;
		if (git_commit_parentcount(commit) == 0)
			break;
		oid = *git_commit_parent_id(commit, 0);
		git_commit_free(commit);
		commit = NULL;
	}
	git_commit_free(commit);
	if (rc)
		c->ntodo = 0;
	return rc;
}

struct block_arg {
	struct store_changes *c;
	uint64_t after;
	int err;
};

/* hist_msg_changes: queue a change of a revision after `after`. */
static int queue_block(void *arg, const struct store_change *ch)
{
	struct block_arg *a = arg;

	if (ch->revision <= a->after)
		return 0;
	return a->err = queue_decoded(a->c, ch);
}

/* Queue the changes of the oldest commit in c->todo. */
static int git_read_one(struct store_changes *c)
{
	struct block_arg a = {.c = c, .after = c->pos};
	git_commit *commit = NULL;
	const git_oid *oid = &c->todo[--c->ntodo];
	char hex[GIT_OID_HEXSZ + 1];
	const char *msg;
	uint64_t upto = 0;
	unsigned bad = 0;
	int rc;

	rc = git_commit_lookup(&commit, c->repo, oid);
	if (rc < 0)
		return hist_git_error(rc, "reading a commit", NULL);
	msg = git_commit_message_raw(commit);
	rc = hist_msg_changes(msg, strlen(msg), queue_block, &a, &upto, &bad);
	if (rc == 0 && a.err)
		rc = a.err;
	git_oid_tostr(hex, sizeof(hex), oid);
	if (rc == 0 && bad) /* logged: a note, the reading goes on */
		rlog_warn("%s/%s: commit %s: %u trailer blocks cannot be "
			  "read; their changes are skipped",
			  c->path, HIST_DIR, hex, bad);
	if (rc == 0 && upto <= c->pos)
		rc = rerr_set(-EBADMSG,
			      "%s/%s: commit %s: no Recfs-Upto after %" PRIu64,
			      c->path, HIST_DIR, hex, c->pos);
	if (rc == 0) {
		c->pos = upto;
		c->t_ok = false; /* the tail goes on after upto */
	} else {
		queue_clear(c);
		c->ntodo = 0;
	}
	git_commit_free(commit);
	return rc;
}

/*
 * The journal no longer holds revision pos + 1: find it in git. Returns
 * 1 if there is something to read again (commits in c->todo, or pos
 * moved past revisions that are gone for good), 0 if there is nothing
 * yet, or -errno.
 */
static int from_git(struct store_changes *c)
{
	git_oid h1, h2;
	bool has1, has2, later;
	uint64_t oldest, at;
	int rc;

	rc = read_head(c, &h1, &has1);
	if (rc == 0 && has1)
		rc = git_collect(c, &h1);
	if (rc || c->ntodo)
		return rc ? rc : 1;
	rc = seg_scan(c, c->pos + 1, &oldest, &at, &later);
	if (rc == 0)
		rc = read_head(c, &h2, &has2);
	if (rc)
		return rc;
	if (has1 != has2 || (has1 && !git_oid_equal(&h1, &h2)))
		return 1; /* the history moved meanwhile: look again */
	if (!oldest)
		return 0; /* no journal yet */
	if (at)
		return 1; /* it holds pos + 1 (again): read it there */
	/* the journal starts later and git has nothing after pos, and did
	   not move: those revisions predate the history (logged: a
	   note, the reading goes on) */
	rlog_warn("%s: revisions %" PRIu64 "..%" PRIu64 " are neither in the "
		  "history nor in the journal (from before the store had a "
		  "history): skipped",
		  c->path, c->pos + 1, oldest - 1);
	c->pos = oldest - 1;
	c->t_ok = false;
	return 1;
}

/* ---- the API ------------------------------------------------------------- */

/* The last revision the journal holds completely (and git's, if later). */
static int find_now(struct store_changes *c, uint64_t *now)
{
	bool more = false;
	uint64_t oldest, at, seq;
	const uint8_t *p;
	size_t len;
	git_oid head;
	bool later, has;
	git_commit *commit = NULL;
	long fl;
	int rc;

	*now = 0;
	rc = read_head(c, &head, &has);
	if (rc == 0 && has) {
		rc = git_commit_lookup(&commit, c->repo, &head);
		if (rc < 0)
			return hist_git_error(rc, "reading a commit", NULL);
		*now = hist_msg_upto(git_commit_message_raw(commit));
		git_commit_free(commit);
	}
	if (rc == 0)
		rc = seg_scan(c, UINT64_MAX, &oldest, &at, &later);
	if (rc || !at)
		return rc;
	rc = tail_open(c, at);
	while (rc == 1 && (fl = tail_frame(&c->t, &seq, &p, &len, &more)) > 0) {
		c->t.off += (uint64_t)fl;
		c->t.next += !more; /* a change of many frames: at its last */
	}
	if (rc < 0)
		return rc;
	if (rc == 1 && c->t.next - 1 > *now)
		*now = c->t.next - 1;
	tail_close(&c->t);
	return 0;
}

int store_changes_open(struct store_changes **out, const char *path,
		       uint64_t after)
{
	struct store_changes *c = calloc(1, sizeof(*c));
	char *git = NULL;
	int rc = 0;

	*out = NULL;
	if (strncmp(path, "etcd://", 7) == 0) {
		free(c);
		return rerr_set(
			-ENOTSUP,
			"%s: the changes of a store on etcd come from "
			"an etcd watch, not built yet (a later phase of "
			"issue 16)",
			path);
	}
	if (!c)
		return -ENOMEM;
	c->dirfd = c->jnl_fd = c->ino_fd = c->t.fd = -1;
	c->path = strdup(path);
	git = malloc(strlen(path) + sizeof("/" HIST_DIR));
	if (!c->path || !git) {
		rc = -ENOMEM;
		goto out;
	}
	sprintf(git, "%s/%s", path, HIST_DIR);
	rc = format_open_dir(path, &c->dirfd);
	if (rc)
		goto out;
	c->jnl_fd = openat(c->dirfd, STORE_JOURNAL_DIR,
			   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	c->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->jnl_fd < 0 || c->ino_fd < 0) {
		rc = rerr_set(-errno, "%s/%s: %s", path, STORE_JOURNAL_DIR,
			      strerror(errno));
		goto out;
	}
	/* by path: inotify has no *at(); the directory is ours to name */
	sprintf(git, "%s/%s", path, STORE_JOURNAL_DIR);
	if (inotify_add_watch(c->ino_fd, git,
			      IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE |
				      IN_CLOSE_WRITE | IN_ONLYDIR) < 0) {
		rc = rerr_set(-errno, "%s: cannot watch: %s", git,
			      strerror(errno));
		goto out;
	}
	git_libgit2_init();
	c->git_inited = true;
	/* as history.c: this process reads each commit once */
	git_libgit2_opts(GIT_OPT_ENABLE_CACHING, 0);
	sprintf(git, "%s/%s", path, HIST_DIR);
	rc = git_repository_open_ext(
		&c->repo, git,
		GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
	if (rc < 0) {
		rc = hist_git_error(rc, "opening the history", NULL);
		goto out;
	}
	if (after == STORE_CHANGES_NOW)
		rc = find_now(c, &after);
	c->pos = after;
out:
	free(git);
	if (rc) {
		store_changes_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int store_changes_next(struct store_changes *c, uint64_t durable,
		       struct store_change *out)
{
	char ev[4096];
	unsigned stuck = 0;
	int rc;

	/* what happens from here on wakes the caller's next poll */
	while (read(c->ino_fd, ev, sizeof(ev)) > 0)
		;
	for (;;) {
		if (c->qi < c->qn) {
			*out = c->q[c->qi++].ch;
			return 1;
		}
		queue_clear(c);
		if (c->ntodo) {
			rc = git_read_one(c);
			if (rc)
				return rc;
			continue;
		}
		rc = tail_step(c, durable);
		if (rc == TAIL_RECORD)
			continue;
		if (rc != TAIL_GONE)
			return rc; /* TAIL_NONE (0), -EAGAIN, -errno */
		rc = from_git(c);
		if (rc <= 0)
			return rc;
		if (!c->ntodo && ++stuck > 100)
			return rerr_set(-EBADMSG,
					"%s/%s: revision %" PRIu64 " is listed "
					"but cannot be read",
					c->path, STORE_JOURNAL_DIR, c->pos + 1);
	}
}

uint64_t store_changes_pos(const struct store_changes *c)
{
	return c->qi < c->qn ? c->q[c->qi].ch.revision - 1 : c->pos;
}

int store_changes_fd(const struct store_changes *c)
{
	return c->ino_fd;
}

void store_changes_free(struct store_changes *c)
{
	if (!c)
		return;
	queue_clear(c);
	free(c->q);
	free(c->todo);
	tail_close(&c->t);
	free(c->t.buf);
	git_repository_free(c->repo);
	if (c->git_inited)
		git_libgit2_shutdown();
	if (c->ino_fd >= 0)
		close(c->ino_fd);
	if (c->jnl_fd >= 0)
		close(c->jnl_fd);
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c->path);
	free(c);
}
