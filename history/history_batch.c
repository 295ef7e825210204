/*
 * history_batch.c - one batch of the history writer: the store's changes
 * to one git commit (made by history_commit.c).
 *
 * Changes are read through the store's change source (h->o.src, see
 * history.h), whole revisions at a time, up to the revision the store
 * said is durable: a revision of many frames (a large change) is never
 * split between commits, so a commit's Recfs-Upto range holds all of a
 * revision or none of it; a batch is full only at a revision's end.
 * Each version's blob is written as soon as its change is read (the
 * change's bytes are only valid until the next one), and the new objects
 * go out as a pack whenever the mempack holds HIST_PACK_MEM_MAX of them
 * (also within a revision). The versions themselves go to a spool
 * (history_bspool.c) that holds a megabyte in memory and spills the rest
 * to an unlinked file, so a batch of any size holds a constant in
 * memory (before: some 240 bytes a version; recfsctl import of 1,000,000
 * small files peaked at 669 MB RSS). The commit is streamed from the
 * spool, see history_commit.c.
 * Then the tree (history_tree.c: the previous tree updated in chunks of
 * sorted paths; paths are the record IDs
 * as hist_path_from_id escapes them; a symlink's entry has mode 120000; the
 * last change of a path in the batch wins; deletes remove), one commit whose
 * parent is the previous main, one syncfs of the repository's file system
 * (libgit2 writes objects without fsync), and only then refs/heads/main moves
 * (written and fsynced with its directory). After that the index learns
 * the versions, the blob links of the batch are removed, and the caller
 * advances "done".
 *
 * A failure anywhere leaves refs/heads/main where it was: the reader goes
 * back to the start of the batch and the whole batch is tried again
 * later. Objects written by a failed attempt are unreferenced (the next
 * attempt writes the same ones); no version is ever skipped.
 */
#include "hist_i.h"
#include <git2/sys/commit.h>
#include "id.h"
#include "io.h"
#include "jnl.h" /* JNL_MAX_RECORD: history.idx frames */
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define SPACE_SLACK ((uint64_t)1 << 20) /* a batch's own files, roughly */

#define DEFAULT_BATCH_MAX 4096
#define DEFAULT_DELAY_MS 100
/* history.idx frames must stay under JNL_MAX_RECORD: room for one more
   version with the longest ID */
#define IDX_BUDGET ((size_t)JNL_MAX_RECORD - 2 * (ID_MAX_LEN + 128))
#define READ_CHUNK ((size_t)1 << 20)

static void batch_free(struct batch *b)
{
	bsp_free(&b->vers);
	buf_free(&b->enc);
	free(b->cur);
	memset(b, 0, sizeof(*b));
}

static unsigned batch_max(const struct hist *h)
{
	return h->o.batch_max ? h->o.batch_max : DEFAULT_BATCH_MAX;
}

/* On a full disk: the batch holds what the room there is can take. */
static bool over_cap(const struct batch *b)
{
	return b->capped && b->bytes > 0 && b->bytes >= b->space_cap;
}

static bool batch_full(const struct hist *h, const struct batch *b)
{
	/* the objects of the batch are held in memory until its pack is
	   written (history_pack.c) */
	return b->cut || b->n >= batch_max(h) || b->idx_bytes >= IDX_BUDGET ||
	       hist_pack_bytes(h) >= hist_pack_mem_max(h) || over_cap(b);
}

/* The version of `ch` in b->cur (added to the batch at the end of
   add_change). */
static struct bver *batch_add(struct batch *b, const struct store_change *ch)
{
	bool linked =
		ch->op != STORE_CHANGE_DELETE && !ch->other && !ch->has_data;
	struct bver *v = b->cur;
	int plen = hist_path_from_id(v->path, ch->id, ch->id_len);

	if (plen < 0 || ch->id_len > ID_MAX_LEN ||
	    (linked && ch->stage_len > HIST_STAGE_MAX))
		return NULL; /* not reached: the journal holds only IDs */
	memset(&v->m, 0, sizeof(v->m));
	memcpy(v->id, ch->id, ch->id_len);
	v->id[ch->id_len] = '\0';
	v->has_stage = linked;
	v->stage[0] = '\0';
	if (linked && ch->stage_len) {
		memcpy(v->stage, ch->stage, ch->stage_len);
		v->stage[ch->stage_len] = '\0';
	}
	v->m.id = v->id;
	v->m.id_len = ch->id_len;
	v->m.e.revision = ch->revision;
	v->m.e.time_ns =
		(int64_t)ch->time.tv_sec * 1000000000 + ch->time.tv_nsec;
	v->m.e.uid = ch->uid;
	v->m.e.pid = ch->pid;
	memcpy(v->m.e.comm, ch->comm, strnlen(ch->comm, sizeof(v->m.e.comm)));
	v->m.e.version = ch->version;
	b->idx_bytes += 100 + ch->id_len;
	return v;
}

static int set_other(struct bver *v, const char *s, size_t n, bool from)
{
	if (n > ID_MAX_LEN)
		return -EINVAL; /* not reached: the journal holds only IDs */
	memcpy(v->other, s, n);
	v->other[n] = '\0';
	if (from) {
		v->m.from = v->other;
		v->m.from_len = n;
	} else {
		v->m.to = v->other;
		v->m.to_len = n;
	}
	return 0;
}

/* ---- blobs ------------------------------------------------------------- */

/*
 * Write all of `fd` as a blob, streaming; *same tells whether its
 * xxh3-128 is `want` (and its size `size`).
 */
static int blob_from_fd(struct hist *h, int fd, uint64_t size,
			const uint8_t want[16], git_oid *out, bool *same,
			const char *id)
{
	XXH3_state_t *xs = XXH3_createState();
	git_odb_stream *st = NULL;
	git_odb *odb = NULL;
	uint8_t *buf = malloc(READ_CHUNK);
	XXH128_canonical_t got;
	uint64_t off = 0;
	int rc;

	*same = false;
	if (!xs || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_128bits_reset(xs);
	/* a large one is not held in memory: a loose object */
	if (size > HIST_PACK_BLOB_MAX && h->big_odb) {
		git_odb_free(odb);
		odb = h->big_odb;
		rc = git_odb_open_wstream(&st, odb, size, GIT_OBJECT_BLOB);
		odb = NULL;
	} else {
		rc = git_repository_odb(&odb, h->repo);
		if (rc == 0)
			rc = git_odb_open_wstream(&st, odb, size,
						  GIT_OBJECT_BLOB);
	}
	if (rc < 0) {
		rc = hist_git_error(rc, "writing the blob", id);
		goto out;
	}
	while (off < size) {
		size_t want_n = size - off < READ_CHUNK ? (size_t)(size - off)
							: READ_CHUNK;
		ssize_t n = io_pread_all(h->o.io, "hist.blob.read", fd, buf,
					 want_n, (off_t)off);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break; /* shorter than it should be: not the same */
		XXH3_128bits_update(xs, buf, (size_t)n);
		rc = git_odb_stream_write(st, (const char *)buf, (size_t)n);
		if (rc < 0) {
			rc = hist_git_error(rc, "writing the blob", id);
			goto out;
		}
		off += (uint64_t)n;
	}
	if (off != size) {
		rc = -EAGAIN; /* the caller reports it */
		goto out;
	}
	rc = git_odb_stream_finalize_write(out, st);
	if (rc < 0) {
		rc = hist_git_error(rc, "writing the blob", id);
		goto out;
	}
	XXH128_canonicalFromHash(&got, XXH3_128bits_digest(xs));
	*same = memcmp(got.digest, want, 16) == 0;
out:
	git_odb_stream_free(st);
	git_odb_free(odb);
	XXH3_freeState(xs);
	free(buf);
	return rc == -EAGAIN ? 0 : rc;
}

/*
 * Content the history did not get through the journal (a version from
 * before it, or adopted): the record's file, if it still holds exactly
 * that content. Returns 0 with *found, or -errno.
 */
static int blob_from_record(struct hist *h, const char *id,
			    const struct hent *e, git_oid *out, bool *found)
{
	bool same = false;
	int fd = -1, rc;

	*found = false;
	if (!h->o.open_record || !(e->flags & HENT_HASH))
		return 0;
	rc = h->o.open_record(h->o.arg, id, &fd);
	if (rc == -ENOENT || rc == -EISDIR)
		return 0;
	if (rc)
		return rc;
	rc = blob_from_fd(h, fd, e->size, e->hash, out, &same, id);
	close(fd);
	*found = rc == 0 && same;
	return rc;
}

/* The content of a PUT: inline, or the linked stage. */
static int put_blob(struct hist *h, const struct store_change *r,
		    struct bver *v)
{
	struct hent *e = &v->m.e;
	bool same = false;
	int fd, rc;

	if (r->has_data) {
		rc = git_blob_create_from_buffer(&e->blob, h->repo, r->data,
						 r->data_len);
		return rc < 0 ? hist_git_error(rc, "writing the blob", v->id)
			      : 0;
	}
	if (!v->has_stage)
		return -EINVAL; /* not reached: batch_add set it */
	fd = r->stage
		     ? io_openat(h->o.io, "hist.blob.open", h->blobs_fd,
				 v->stage, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0)
		     : -ENOENT;
	if (fd >= 0) {
		rc = blob_from_fd(h, fd, e->size, e->hash, &e->blob, &same,
				  v->id);
		close(fd);
		if (rc)
			return rc;
		if (same)
			return 0;
		rlog_err("record %s: the content linked for version %" PRIu64
			 " (%s/%s) does not match its hash",
			 v->id, e->version, HIST_BLOBS_DIR, v->stage);
	} else if (fd != -ENOENT) {
		rlog_err("record %s: cannot open %s/%s for version %" PRIu64
			 ": %s",
			 v->id, HIST_BLOBS_DIR, v->stage, e->version,
			 strerror(-fd));
		return fd;
	}
	rc = blob_from_record(h, v->id, e, &e->blob, &same);
	if (rc == 0 && !same)
		e->flags |= HENT_MISSING;
	return rc;
}

/* The blob `id` had at `version` in this batch: a read of its spool
   (in memory but for a batch of more than a megabyte of versions). */
static int find_in_batch(struct hist *h, const struct batch *b, const char *id,
			 size_t id_len, uint64_t version, git_oid *out,
			 bool *found)
{
	struct bsp_reader r;
	const uint8_t *rec;
	size_t len;
	int rc;

	*found = false;
	bsp_reader_init(&r, &b->vers, 0, bsp_end(&b->vers));
	while ((rc = bsp_next(&r, &rec, &len)) > 0)
		if (bver_match(rec, len, id, id_len, version, out))
			*found = true; /* the last one */
	bsp_reader_free(&r);
	(void)h;
	return rc;
}

/* The blob `from` had at `version`: in this batch, or in the index. */
static int find_blob(struct hist *h, const struct batch *b, const char *id,
		     size_t id_len, uint64_t version, git_oid *out, bool *found)
{
	char key[ID_MAX_LEN + 1];
	hist_version v;
	int rc = find_in_batch(h, b, id, id_len, version, out, found);

	if (rc || *found || id_len > ID_MAX_LEN)
		return rc;
	memcpy(key, id, id_len);
	key[id_len] = '\0';
	*found = hist_lookup(h, key, version, &v) == 0 && !v.missing &&
		 git_oid_fromstr(out, v.blob) == 0;
	return 0;
}

/* ---- changes to versions ------------------------------------------------ */

static void fill_content(struct hent *e, const struct store_change *ch)
{
	e->size = ch->size;
	if (ch->hash_valid) {
		memcpy(e->hash, ch->hash, 16);
		e->flags |= HENT_HASH;
	}
	if (ch->symlink)
		e->flags |= HENT_SYMLINK;
	if (ch->meta_known) {
		e->flags |= HENT_META;
		e->mode = ch->mode;
		e->ouid = ch->owner_uid;
		e->ogid = ch->owner_gid;
	}
}

/* The target of a rename: the blob its source had at other_version. */
static int rename_blob(struct hist *h, struct batch *b, struct bver *to,
		       const struct store_change *ch)
{
	bool found;
	int rc;

	rc = find_blob(h, b, ch->other, ch->other_len, ch->other_version,
		       &to->m.e.blob, &found);
	if (rc || found)
		return rc;
	/* from's version predates the history: its file moved to `to` (or
	   is about to) */
	rc = blob_from_record(h, to->id, &to->m.e, &to->m.e.blob, &found);
	if (rc == 0 && !found)
		rc = blob_from_record(h, to->other, &to->m.e, &to->m.e.blob,
				      &found);
	if (rc == 0 && !found)
		to->m.e.flags |= HENT_MISSING;
	return rc;
}

/* What a batch being read needs in the source's callback. */
struct reading {
	struct hist *h;
	struct batch *b;
};

/* The content of the version b->cur: its blob, or the one its rename
   source had. */
static int add_content(struct hist *h, struct batch *b,
		       const struct store_change *ch)
{
	struct bver *v = b->cur;
	int rc;

	fill_content(&v->m.e, ch);
	b->bytes += ch->size;
	if (!ch->other) {
		rc = put_blob(h, ch, v);
		/* a revision is never split between commits, so one of many
		   parts writes its objects out as it goes, not all at the
		   end: unreferenced until the commit, like a failed
		   attempt's, and made durable by the batch's syncfs */
		if (rc == 0 && hist_pack_bytes(h) >= hist_pack_mem_max(h))
			rc = hist_pack_write(h);
		return rc;
	}
	rc = set_other(v, ch->other, ch->other_len, true);
	return rc ? rc : rename_blob(h, b, v, ch);
}

/* A new version (or delete) of one record (hist_source.changes). */
static int add_change(void *arg, const struct store_change *ch)
{
	struct reading *rd = arg;
	struct bver *v = batch_add(rd->b, ch);
	int rc = 0;

	if (!v)
		return -ENOMEM;
	if (ch->op == STORE_CHANGE_DELETE) {
		v->m.e.flags = HENT_DELETED;
		rd->b->frees = true;
		if (ch->other)
			rc = set_other(v, ch->other, ch->other_len, false);
	} else {
		rc = add_content(rd->h, rd->b, ch);
	}
	if (rc == 0)
		rc = bver_put(&rd->b->vers, &rd->b->enc, v);
	if (rc == 0)
		rd->b->n++;
	return rc;
}

/* ---- reading a batch ------------------------------------------------------
 */

/*
 * Read the frames of one revision into the batch. Returns 1, 0 if there
 * is none (or, b->cut, it starts the next batch), or -errno.
 */
static int read_revision(struct hist *h, struct batch *b, uint64_t target)
{
	const struct hist_source *src = &h->o.src;
	struct reading rd = {h, b};
	struct hist_frame f = {0};
	bool first = true;
	int rc;

	for (;;) {
		rc = src->next(h->cur, target, &f);
		if (rc < 0 || (rc == 0 && first))
			return rc;
		if (rc == 0) {
			rlog_err("%s: revision %" PRIu64 " ends without the "
				 "frame that ends it",
				 h->path, f.revision);
			return -EBADMSG;
		}
		/* A change's versions all go into one commit: a large one
		   that might not fit the budget of a commit's history.idx
		   after what the batch holds starts the next batch. */
		if (first && b->n && b->idx_bytes + f.len > IDX_BUDGET) {
			rc = src->seek(h->cur, f.revision);
			b->cut = rc == 0;
			return rc;
		}
		first = false;
		rc = io_point(h->o.io, "hist.read");
		if (rc == 0)
			rc = src->changes(h->cur, add_change, &rd);
		if (rc) {
			if (rc == -EBADMSG)
				rlog_err("journal record %" PRIu64 " cannot be "
					 "decoded for the history",
					 f.revision);
			return rc;
		}
		if (f.ends)
			break;
	}
	if (!b->first)
		b->first = f.revision;
	b->upto = f.revision;
	return 1;
}

/* Read what is durable now, whole revisions, until the batch is full. */
static int read_available(struct hist *h, struct batch *b, uint64_t target)
{
	int rc;

	while (!batch_full(h, b)) {
		rc = read_revision(h, b, target);
		if (rc <= 0)
			return rc;
	}
	return 0;
}

/*
 * Collect a batch: what is durable now, then, until the deadline (at most
 * one commit per delay_ms), what comes meanwhile; a drain, a stop or a
 * full batch ends the wait. Returns 0 or -errno.
 */
static int collect(struct hist *h, struct batch *b)
{
	unsigned delay = h->o.delay_ms ? h->o.delay_ms : DEFAULT_DELAY_MS;
	int64_t deadline = h->last_commit_ns + (int64_t)delay * 1000000;

	if (!h->last_commit_ns)
		deadline = 0; /* the first commit does not wait */
	uint64_t target;
	bool hurry;
	int rc;

	for (;;) {
		pthread_mutex_lock(&h->mu);
		target = h->target;
		hurry = h->kicks || h->stop;
		pthread_mutex_unlock(&h->mu);
		/* returns at the end of what is durable, or when full */
		rc = read_available(h, b, target);
		if (rc || batch_full(h, b) || hurry ||
		    hist_mono_ns() >= deadline)
			return rc;
		pthread_mutex_lock(&h->mu);
		if (h->target == target && !h->kicks && !h->stop) {
			struct timespec ts = {
				.tv_sec = (time_t)(deadline / 1000000000),
				.tv_nsec = (long)(deadline % 1000000000),
			};

			/* h->wake runs on CLOCK_MONOTONIC; a commit wakes it
			   only once a batch's worth has come (hist_notify) */
			h->wake_at = target + batch_max(h);
			pthread_cond_timedwait(&h->wake, &h->mu, &ts);
			h->wake_at = 0;
		}
		pthread_mutex_unlock(&h->mu);
	}
}

/*
 * libgit2 does not always say that a write failed for want of space: the
 * message of a failed loose-object stream can be a stale "object not
 * found", and errno is gone by the time it returns. So when a batch fails
 * with an error that could hide it (-EIO, -ENOENT), the file system of the
 * repository is asked: if it has less room than the batch's content, the
 * cause is ENOSPC (kept apart from EIO, STYLE). Returns the error to
 * report.
 */
/* Bytes free for the writer, and whether inodes are left. */
static int space_room(const struct hist *h, uint64_t *room, bool *inodes)
{
	struct statvfs st;

	if (fstatvfs(h->repo_fd, &st) < 0)
		return -errno;
	/* root may use the blocks reserved for it, and does */
	*room = (uint64_t)(geteuid() == 0 ? st.f_bfree : st.f_bavail) *
		st.f_frsize;
	*inodes = !st.f_files || st.f_ffree > 0;
	return 0;
}

static int space_error(const struct hist *h, const struct batch *b, int rc)
{
	uint64_t need = SPACE_SLACK + b->idx_bytes + b->bytes, room;
	bool inodes;

	if (rc != -EIO && rc != -ENOENT)
		return rc;
	if (space_room(h, &room, &inodes))
		return rc;
	if (room < need || !inodes)
		return -ENOSPC;
	return rc;
}

/*
 * After a batch failed with ENOSPC, the next ones hold only as much
 * content as there is room for (less SPACE_SLACK for the pack's index,
 * trees and history.idx), so that the history goes on as space is freed,
 * a little at a time, instead of waiting for room for all it owes. A
 * batch that needed no cut ends that.
 */
static void space_cap(struct hist *h, struct batch *b)
{
	uint64_t room;
	bool inodes;

	if (!h->space_short || space_room(h, &room, &inodes))
		return;
	b->capped = true;
	b->space_cap = room > SPACE_SLACK ? room - SPACE_SLACK : 0;
}

/* Log a failed batch: once per full-disk episode if it is ENOSPC. */
/* Logged: the writer thread has no caller to report to. */
static void log_failure(struct hist *h, uint64_t start, uint64_t upto, int rc)
{
	bool again = rc == -ENOSPC && h->space_short;
	const char *why = rerr_take(rc);

	rlog(again ? RLOG_DEBUG : RLOG_ERR,
	     "%s: the history of revisions %" PRIu64 "..%" PRIu64
	     " is not written yet: %s (%s; tried again later, backing off%s)",
	     h->path, start, upto, why ? why : strerror(-rc),
	     strerrorname_np(-rc) ? strerrorname_np(-rc) : "?",
	     rc == -ENOSPC ? ", in batches that fit as space is freed; "
			     "said once until it is written"
			   : "");
}

int hist_batch_run(struct hist *h, uint64_t *upto)
{
	struct batch b = {0};
	uint64_t start, done;
	int64_t t0;
	int rc;

	pthread_mutex_lock(&h->mu);
	done = h->done;
	pthread_mutex_unlock(&h->mu);
	if (!h->cur) {
		rc = h->o.src.open ? h->o.src.open(h->o.src.arg, done, &h->cur)
				   : -EROFS;
		if (rc) {
			rlog_err("%s: cannot read the journal: %s", h->path,
				 strerror(-rc));
			return rc;
		}
	}
	start = h->o.src.pos(h->cur);
	if (start > done + 1) {
		rlog_info("%s: revisions %" PRIu64 "..%" PRIu64 " are not in "
			  "the journal any more (metadata changes, or from "
			  "before the history); going on at %" PRIu64,
			  h->path, done + 1, start - 1, start);
		b.upto = start - 1;
	}
	bsp_init(&b.vers, h);
	b.cur = malloc(sizeof(*b.cur));
	if (!b.cur)
		return -ENOMEM;
	/* what a failed attempt left in memory: this one writes it again */
	hist_pack_reset(h);
	space_cap(h, &b);
	t0 = hist_mono_ns();
	rc = collect(h, &b);
	if (b.n)
		rlog_debug("%s: batch of %zu versions read in %.1f ms", h->path,
			   b.n, (double)(hist_mono_ns() - t0) / 1e6);
	if (rc == 0 && b.n)
		rc = hist_batch_commit(h, &b);
	if (rc == 0 && b.n)
		h->last_commit_ns = hist_mono_ns();
	if (rc == 0) {
		*upto = b.upto;
		if (h->space_short && !over_cap(&b)) {
			rlog_info("%s: the history is written again, up to "
				  "revision %" PRIu64 " (there is room)",
				  h->path, b.upto);
			h->space_short = false;
		}
	} else {
		int src = h->o.src.seek(h->cur, start);

		if (src)
			rlog_err("%s: cannot go back in the journal: %s",
				 h->path, strerror(-src));
		rc = space_error(h, &b, rc);
		log_failure(h, start, b.upto ? b.upto : start, rc);
		h->batch_frees = b.frees;
		if (rc == -ENOSPC)
			h->space_short = true;
	}
	batch_free(&b);
	return rc;
}
