/*
 * history_remote.h - pushing the history to a git remote (SPEC section
 * 9, `-o history_remote=URL`, `recfsctl push`).
 *
 * The remote is any URL libgit2's push takes (a path, file://, ssh://,
 * https://). Its URL is kept in history.git's config as the remote
 * "origin" (remote.origin.url, with no fetch refspec: no remote-tracking
 * refs, which would keep pruned objects reachable), so a later mount,
 * `recfsctl push STORE` and retention find it without the option.
 *
 * What is pushed: refs/heads/main and refs/heads/recfs-versions (the
 * side branch, when it exists), each with the refspec "R:R" without '+':
 * a fast-forward of the remote's refs or nothing. A remote that has
 * diverged (someone pushed another commit, or a prune started a new
 * epoch here) refuses; that is reported (logged once, and in the status)
 * and never forced nor merged.
 *
 * When: after each history batch that moved refs/heads/main, the writer
 * kicks a thread of its own (started at the first kick, so after the
 * daemon forked), which pushes with a repository object of its own and
 * holds no lock of the writer or of a commit; the batches of one second
 * are pushed together (at most one background push a second). A failed
 * push is tried again after 1 s, doubling up to 60 s, and at the next
 * kick after that. At close, what the last batches wrote is pushed once
 * more, unless the remote is failing. hist_remote_push pushes now, in the
 * caller's thread (one push at a time). Not done: a push that hangs (an
 * ssh or https remote that does not answer) holds the pusher, and the
 * close, until libgit2 gives up.
 */
#ifndef RECFS_HISTORY_REMOTE_H
#define RECFS_HISTORY_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

struct hist;

#define HIST_REMOTE_NAME "origin"
#define HIST_REMOTE_URL_MAX 1024
#define HIST_REMOTE_MSG_MAX 256

/* What the pusher knows of the remote. */
struct hist_remote_status {
	bool set;			   /* a remote is configured */
	char url[HIST_REMOTE_URL_MAX];	   /* its URL */
	char pushed[41];		   /* refs/heads/main's commit the
					      remote was last given ("": none
					      yet by this process) */
	uint64_t pushed_upto;		   /* its Recfs-Upto: the remote has
					      the history up to this revision */
	int64_t pushed_time;		   /* when (s since the epoch), or 0 */
	int error;			   /* the last push's -errno, 0 if it
					      succeeded; -ESTALE: refused (not
					      a fast-forward) */
	char message[HIST_REMOTE_MSG_MAX]; /* its cause */
	int64_t error_time;		   /* when it failed, or 0 */
	uint64_t pushes, failures;	   /* pushes tried, failed */
	bool pending;			   /* a push is owed (retrying) */
};

/*
 * Set the remote of history `h` to `url` (stored in history.git's config
 * unless the history is read-only); "" removes it. NULL reads the config:
 * the remote a previous mount set, if any. Returns 0 or -errno (logged).
 */
int hist_remote_set(struct hist *h, const char *url);

/* Is a remote set? */
bool hist_remote_is_set(struct hist *h);

/* After a batch moved refs/heads/main: push in the background (no-op
   without a remote). Takes only the pusher's own lock. */
void hist_remote_kick(struct hist *h);

/*
 * Push now to `url` (NULL: the remote that is set), in this thread.
 * Returns 0 (the remote has refs/heads/main as it was when the push
 * began: *upto, if not NULL, gets its Recfs-Upto, 0 if there is no
 * history yet), -ENOENT (no remote set), -ESTALE (refused: not a
 * fast-forward), or -errno; the cause, naming the remote, is in the err.h
 * report.
 */
int hist_remote_push(struct hist *h, const char *url, uint64_t *upto);

void hist_remote_status(struct hist *h, struct hist_remote_status *st);

/* Stop the pusher thread and free its state (hist_close). */
void hist_remote_free(struct hist *h);

#endif
