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

/* Read refs/heads/main: head, its tree and its Recfs-Upto (done). */
int hist_head_read(struct hist *h)
{
	git_commit *c = NULL;
	char hexid[GIT_OID_HEXSZ + 1];
	int rc;

	rc = git_reference_name_to_id(&h->head, h->repo, REF_MAIN);
	if (rc == GIT_ENOTFOUND)
		return 0; /* no commit yet */
	if (rc < 0)
		return hist_git_error(rc, "reading " REF_MAIN, NULL);
	h->has_head = true;
	git_oid_tostr(hexid, sizeof(hexid), &h->head);
	rc = git_commit_lookup(&c, h->repo, &h->head);
	if (rc == 0)
		rc = git_commit_tree(&h->head_tree, c);
	if (rc < 0) {
		rc = hist_git_error(rc, "reading the last commit", NULL);
		goto out;
	}
	/* only its Recfs-Upto: the versions are not needed here */
	h->done = hist_msg_upto(git_commit_message_raw(c));
	if (h->done == 0)
		rc = rerr_set(-EBADMSG,
			      "%s: %s (commit %s) has no Recfs-Upto line: not "
			      "a recfs history",
			      h->path, REF_MAIN, hexid);
	else
		rc = read_side(h);
out:
	git_commit_free(c);
	return rc;
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
