/*
 * history_refs.c - refs/heads/main and the side branch: reading them
 * (at open, after a prune) and moving them after a batch, git's way (a
 * lock file renamed in place).
 */
#include "hist_i.h"
#include "io.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REF_MAIN "refs/heads/main"
#define SIDE_NAME HIST_SIDE_NAME

/* Read refs/heads/recfs-versions (see hist_side_prepare), if any. */
static int read_side(struct hist *h)
{
	int rc = git_reference_name_to_id(&h->side, h->repo, HIST_REF_SIDE);

	h->has_side = rc == 0;
	if (rc == GIT_ENOTFOUND)
		return 0;
	return rc < 0 ? hist_git_error(rc, "reading " HIST_REF_SIDE, NULL) : 0;
}

/*
 * A head commit of a large batch (a million versions: some 300 MB of
 * trailers) is not read whole: it is streamed (as stream_commit wrote
 * it, a loose object) and scanned line by line for its tree and its last
 * Recfs-Upto, keeping only the start of each line.
 */
size_t hist_head_stream_min = (size_t)1 << 20;

struct head_scan {
	char line[96]; /* the start of the current line */
	size_t len;
	bool first;
	bool has_tree;
	git_oid tree;
	uint64_t upto;
};

static void scan_line(struct head_scan *hs)
{
	hs->line[hs->len] = '\0';
	if (hs->first && !strncmp(hs->line, "tree ", 5))
		hs->has_tree = git_oid_fromstr(&hs->tree, hs->line + 5) == 0;
	else if (!strncmp(hs->line, "Recfs-Upto:", 11))
		hs->upto = hist_msg_upto(hs->line);
	hs->first = false;
	hs->len = 0;
}

static void scan_bytes(struct head_scan *hs, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;
		size_t room = sizeof(hs->line) - 1 - hs->len;

		memcpy(hs->line + hs->len, p, k < room ? k : room);
		hs->len += k < room ? k : room;
		if (!nl)
			return;
		scan_line(hs);
		p = nl + 1;
		n -= k + 1;
	}
}

/* The tree and Recfs-Upto of the head commit, streamed. Returns 0, 1 if
   it is small or cannot be streamed (read it whole), or -errno. */
static int head_streamed(struct hist *h, git_oid *tree, uint64_t *upto)
{
	struct head_scan hs = {.first = true};
	git_odb_stream *st = NULL;
	git_object_t type;
	git_odb *odb = NULL;
	char buf[65536];
	size_t size;
	int rc, n = 0;

	if (git_repository_odb(&odb, h->repo) < 0)
		return 1;
	rc = git_odb_read_header(&size, &type, odb, &h->head) < 0 ||
			     type != GIT_OBJECT_COMMIT ||
			     size < hist_head_stream_min
		     ? 1
		     : 0;
	if (rc == 0 &&
	    git_odb_open_rstream(&st, &size, &type, odb, &h->head) < 0)
		rc = 1; /* a pack: read it whole */
	while (rc == 0 && (n = git_odb_stream_read(st, buf, sizeof(buf))) > 0)
		scan_bytes(&hs, buf, (size_t)n);
	if (rc == 0 && n < 0)
		rc = hist_git_error(n, "reading the last commit", NULL);
	if (rc == 0 && hs.len)
		scan_line(&hs);
	if (rc == 0 && !hs.has_tree)
		rc = rerr_set(-EBADMSG, "%s: the last commit has no tree",
			      h->path);
	*tree = hs.tree;
	*upto = hs.upto;
	git_odb_stream_free(st);
	git_odb_free(odb);
	return rc;
}

/* The head commit's tree and Recfs-Upto (into h->head_tree, h->done). */
static int head_info(struct hist *h)
{
	git_commit *c = NULL;
	git_oid tree;
	int rc = head_streamed(h, &tree, &h->done);

	if (rc == 0 &&
	    (rc = git_tree_lookup(&h->head_tree, h->repo, &tree)) < 0)
		rc = hist_git_error(rc, "reading the last commit", NULL);
	if (rc != 1)
		return rc;
	rc = git_commit_lookup(&c, h->repo, &h->head);
	if (rc == 0)
		rc = git_commit_tree(&h->head_tree, c);
	if (rc < 0)
		rc = hist_git_error(rc, "reading the last commit", NULL);
	/* only its Recfs-Upto: the versions are not needed here */
	if (rc == 0)
		h->done = hist_msg_upto(git_commit_message_raw(c));
	git_commit_free(c);
	return rc;
}

/* Read refs/heads/main: head, its tree and its Recfs-Upto (done). */
int hist_head_read(struct hist *h)
{
	char hexid[GIT_OID_HEXSZ + 1];
	int rc;

	rc = git_reference_name_to_id(&h->head, h->repo, REF_MAIN);
	if (rc == GIT_ENOTFOUND)
		return 0; /* no commit yet */
	if (rc < 0)
		return hist_git_error(rc, "reading " REF_MAIN, NULL);
	h->has_head = true;
	git_oid_tostr(hexid, sizeof(hexid), &h->head);
	rc = head_info(h);
	if (rc)
		return rc;
	if (h->done == 0)
		return rerr_set(-EBADMSG,
				"%s: %s (commit %s) has no Recfs-Upto line: "
				"not a recfs history",
				h->path, REF_MAIN, hexid);
	return read_side(h);
}

int hist_head_reload(struct hist *h)
{
	int rc;

	git_tree_free(h->head_tree);
	h->head_tree = NULL;
	h->has_head = h->has_side = h->has_ref_maybe = false;
	pthread_mutex_lock(&h->mu); /* read_head sets done (unchanged) */
	rc = hist_head_read(h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

/* ---- refs/heads/main ----------------------------------------------------- */

/* Is the ref still where we left it? (Another git process may have
   moved it: then we stop rather than lose its commits.) */
static int ref_check(struct hist *h)
{
	git_oid cur;
	int rc = git_reference_name_to_id(&cur, h->repo, REF_MAIN);

	if (rc == GIT_ENOTFOUND && !h->has_head)
		return 0;
	if (rc < 0)
		return hist_git_error(rc, "reading " REF_MAIN, NULL);
	if ((h->has_head && git_oid_equal(&cur, &h->head)) ||
	    (h->has_ref_maybe && git_oid_equal(&cur, &h->ref_maybe)))
		return 0;
	return rerr_set(-ESTALE,
			"%s: %s was moved by something else than recfs; the "
			"history stops until it points at the last recfs "
			"commit again",
			h->path, REF_MAIN);
}

/* Write `oid` into refs/heads/NAME.lock (O_EXCL, 0600), not synced: the
   batch's syncfs makes it durable with the objects it names. */
static int ref_write_lock(struct hist *h, const char *lock, const git_oid *oid)
{
	char line[GIT_OID_HEXSZ + 2];
	ssize_t n;
	int fd, rc;

	git_oid_tostr(line, sizeof(line), oid);
	line[GIT_OID_HEXSZ] = '\n';
	unlinkat(h->heads_fd, lock, 0);
	fd = io_openat(h->o.io, "hist.ref.open", h->heads_fd, lock,
		       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	n = io_pwrite_all(h->o.io, "hist.ref.write", fd, line,
			  GIT_OID_HEXSZ + 1, 0);
	rc = n < 0 ? (int)n : 0;
	close(fd);
out:
	if (rc) {
		unlinkat(h->heads_fd, lock, 0);
		rerr_set(rc, "%s: cannot write refs/heads/%s: %s", h->path,
			 lock, strerror(-rc));
	}
	return rc;
}

int hist_ref_prepare(struct hist *h, const git_oid *oid)
{
	int rc = ref_check(h);

	return rc ? rc : ref_write_lock(h, "main.lock", oid);
}

int hist_side_prepare(struct hist *h, const git_oid *oid)
{
	return ref_write_lock(h, SIDE_NAME ".lock", oid);
}

int hist_side_commit(struct hist *h)
{
	/* no directory fsync of its own: hist_ref_commit's, of the same
	   directory, follows; if that fails the batch is tried again with
	   a side commit on top of this one */
	int rc = io_renameat(h->o.io, "hist.ref.rename", h->heads_fd,
			     SIDE_NAME ".lock", h->heads_fd, SIDE_NAME, 0);

	if (rc)
		rerr_set(rc, "%s: cannot update %s: %s", h->path, HIST_REF_SIDE,
			 strerror(-rc));
	return rc;
}

int hist_ref_commit(struct hist *h, const git_oid *oid)
{
	int rc = io_renameat(h->o.io, "hist.ref.rename", h->heads_fd,
			     "main.lock", h->heads_fd, "main", 0);

	if (rc == 0) {
		/* the ref may name `oid` now, whatever follows */
		h->ref_maybe = *oid;
		h->has_ref_maybe = true;
		rc = io_fsync(h->o.io, "hist.ref.dirsync", h->heads_fd);
	}
	if (rc)
		rerr_set(rc, "%s: cannot update %s: %s", h->path, REF_MAIN,
			 strerror(-rc));
	return rc;
}

void hist_ref_abort(struct hist *h)
{
	unlinkat(h->heads_fd, "main.lock", 0);
	unlinkat(h->heads_fd, SIDE_NAME ".lock", 0);
}
