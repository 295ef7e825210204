/*
 * history_idxload.c - opening history.idx (history_index.c): read it, and
 * catch it up with the commits of refs/heads/main that it does not have
 * yet, or rebuild it from all of them.
 */
#include "hist_i.h"
#include "io.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- catching up from git ---------------------------------------------- */

struct catchup {
	struct hist *h;
	struct hframe f;
};

static int catchup_ver(void *arg, const struct hmsg_ver *v)
{
	struct catchup *c = arg;

	hidx_frame_put(c->h, &c->f, v);
	return c->f.b.err ? c->f.b.err : c->f.err;
}

/* Add the versions of commit `oid` to the index and to history.idx. */
static int catchup_commit(struct hist *h, const git_oid *oid)
{
	struct catchup c = {.h = h};
	git_commit *commit = NULL;
	char hexid[GIT_OID_HEXSZ + 1];
	const char *msg;
	unsigned bad = 0;
	uint64_t upto = 0;
	int rc;

	git_oid_tostr(hexid, sizeof(hexid), oid);
	rc = git_commit_lookup(&commit, h->repo, oid);
	if (rc < 0)
		return hist_git_error(rc, "reading a commit", NULL);
	msg = git_commit_message_raw(commit);
	/* the frames of its versions carry it */
	hidx_frame_start(h, &c.f, oid, hist_msg_upto(msg));
	rc = hmsg_parse(msg, strlen(msg), catchup_ver, &c, &upto, &bad);
	if (rc == 0 && (upto == 0 || upto != c.f.upto)) {
		rc = rerr_set(-EBADMSG, "%s: commit %s has no Recfs-Upto line",
			      h->path, hexid);
	}
	if (bad) /* logged: a note, the catch-up goes on */
		rlog_err("%s: commit %s: %u trailer blocks cannot be read; "
			 "those versions are not in the index",
			 h->path, hexid, bad);
	if (rc == 0)
		rc = hidx_frame_end(h, &c.f);
	hidx_frame_free(&c.f);
	git_commit_free(commit);
	return rc;
}

/* Read the commits after `from` (all if NULL) up to the head, oldest
   first, along first parents. */
static int catchup(struct hist *h, const git_oid *from)
{
	git_revwalk *walk = NULL;
	git_oid oid;
	uint64_t count = 0;
	int rc;

	rc = git_revwalk_new(&walk, h->repo);
	if (rc == 0)
		rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
						       GIT_SORT_REVERSE);
	if (rc == 0)
		rc = git_revwalk_push(walk, &h->head);
	if (rc == 0 && from)
		rc = git_revwalk_hide(walk, from);
	if (rc == 0)
		rc = git_revwalk_simplify_first_parent(walk);
	if (rc < 0) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0) {
		rc = catchup_commit(h, &oid);
		if (rc < 0)
			goto out;
		count++;
	}
	if (rc != GIT_ITEROVER) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	rc = 0;
	if (count) /* logged: a note on an open that succeeds */
		rlog_info("%s: %" PRIu64 " commits read back from %s",
			  h->idx_path, count, h->path);
out:
	git_revwalk_free(walk);
	return rc;
}

/* Start history.idx afresh (header only) and the index empty (no
   reader runs yet: hist_open). */
static int idx_reset(struct hist *h)
{
	uint8_t hdr[HIDX_HDR] = HIDX_MAGIC;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&h->chain_mu); /* slots name records of ix */
	hist_chains_free(h);
	pthread_mutex_unlock(&h->chain_mu);
	hidx_destroy(&h->ix);
	hvdx_reset(h);
	rc = hidx_init(&h->ix);
	if (rc || h->idx_fd < 0)
		return rc;
	rc = io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd, 0);
	if (rc == 0) {
		n = io_pwrite_all(h->o.io, "hist.idx.write", h->idx_fd, hdr,
				  sizeof(hdr), 0);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc) { /* logged: the open goes on (the index in memory) */
		rlog_warn("%s: cannot rewrite: %s", h->idx_path, strerror(-rc));
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	h->idx_end = HIDX_HDR;
	h->ix.disk_end = HIDX_HDR;
	return 0;
}

int hist_index_rebuild(struct hist *h)
{
	int rc = idx_reset(h);

	if (rc == 0 && h->has_head)
		rc = catchup(h, NULL);
	return rc;
}

static int idx_open(struct hist *h, bool *fresh)
{
	int flags = O_CLOEXEC | O_NOFOLLOW;
	struct stat st;

	*fresh = false;
	flags |= h->o.read_only ? O_RDONLY : O_RDWR | O_CREAT;
	h->idx_fd = io_openat(h->o.io, "hist.idx.open", h->o.store_dirfd,
			      HIST_INDEX_FILE, flags, 0600);
	if (h->idx_fd == -ENOENT) {
		*fresh = true;
		return 0;
	}
	if (h->idx_fd < 0) {
		int rc = h->idx_fd;

		return rerr_set(rc, "%s: cannot open: %s", h->idx_path,
				strerror(-rc));
	}
	if (fstat(h->idx_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		return rerr_set(-EBADMSG, "%s: not a regular file",
				h->idx_path);
	}
	*fresh = st.st_size == 0;
	return 0;
}

/* Size the records' table for history.idx before it is read (it would
   double ten times on the way to a million records, each time placing
   every record again). An entry takes about this many bytes there or
   more: the estimate errs on the large side. */
#define ENT_MIN_BYTES 100

static void reserve(struct hist *h)
{
	struct stat st;

	if (fstat(h->idx_fd, &st) == 0 && st.st_size > 0)
		hidx_reserve(&h->ix, (size_t)st.st_size / ENT_MIN_BYTES);
}

int hist_index_load(struct hist *h)
{
	bool fresh = false, has_last = false, damaged = false;
	git_oid last;
	int rc;

	rc = idx_open(h, &fresh);
	if (rc == 0 && h->idx_fd >= 0) {
		/* the readers' own: idx_fd is closed if a write fails */
		h->idx_rfd = fcntl(h->idx_fd, F_DUPFD_CLOEXEC, 3);
		if (h->idx_rfd < 0)
			rc = -errno;
	}
	if (rc == 0)
		hvdx_open(h);
	if (rc == 0 && !fresh)
		reserve(h);
	if (rc == 0 && !fresh)
		rc = hidx_file_read(h, &last, &has_last, &damaged);
	hvdx_load_end(h);
	if (h->o.read_only && h->idx_fd >= 0) {
		/* read from, but caught up in memory only */
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (rc == -EBADMSG || fresh) {
		const char *why = rc ? rerr_take(rc) : NULL;

		/* logged: a note, the open goes on and succeeds */
		if (rc)
			rlog_err("%s (rebuilding %s from %s)",
				 why ? why : strerror(-rc), h->idx_path,
				 h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc)
		return rc;
	if (damaged && h->idx_fd >= 0 &&
	    io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd,
			 (off_t)h->idx_end) < 0) {
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (has_last && h->has_head && !git_oid_equal(&last, &h->head) &&
	    git_graph_descendant_of(h->repo, &h->head, &last) != 1) {
		/* logged: notes, the open goes on and succeeds */
		rlog_err("%s: ends with a commit that is not in the history "
			 "of %s; rebuilding it",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	} else if (has_last && !h->has_head) {
		rlog_err("%s: %s has no commit yet; starting it afresh",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc == 0 && h->has_head &&
	    !(has_last && git_oid_equal(&last, &h->head)))
		rc = catchup(h, has_last ? &last : NULL);
	return rc;
}
