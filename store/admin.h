/*
 * admin.h - maintaining a store (recfsctl and the daemon's control
 * files): checkpoint, retention (retain.c), verify and repair
 * (verify.c), backup (backup.c), status and statfs (status.c), the lock
 * of a store directory (lock holder, forced unlock), and starting the
 * background threads of a serving process (store_serve_start).
 *
 * Ownership: reports and status are filled into the caller's structs;
 * the strings of a store_retain_policy passed to store_retain_each's
 * callback are borrowed for the call. Nothing returned needs freeing.
 *
 * Thread-safety: all of them may be called from any thread while the
 * store serves other calls. They serialize among themselves where they
 * must: one checkpoint at a time; one retention change, prune or backup
 * at a time; a backup holds the commits (never the readers) back for
 * its short final step only, and store_verify_repair for each repair of
 * one record. store_serve_start is called once, by the serving process,
 * before it serves. store_lock_holder, store_unlock_force and
 * store_retain_prefix_check need no store and are reentrant.
 */
#ifndef RECFS_ADMIN_H
#define RECFS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct statvfs;

/* --- Maintenance --------------------------------------------------- */

/*
 * Make everything committed so far reach the records directory and a new
 * index snapshot, then drop journal segments no longer needed.
 */
int store_checkpoint(struct store *s);

/* --- Retention (retain.c; SPEC section 7, recfsctl retain) ------------ */

enum store_retain_kind {
	STORE_RETAIN_OFF,  /* no policy: keep every version (the default) */
	STORE_RETAIN_KEEP, /* keep the newest n versions of each record */
	STORE_RETAIN_DAYS, /* keep the versions current within n days */
};

/* The policy of the records under `prefix` ("/" for all of them). */
struct store_retain_policy {
	const char *prefix;
	enum store_retain_kind kind;
	uint64_t n; /* >= 1 */
};

/* What a prune did (or, store_retain_plan, would do). */
struct store_retain_report {
	uint64_t policies;	 /* policies in force */
	uint64_t versions;	 /* versions pruned */
	uint64_t records;	 /* records they belong to */
	uint64_t bytes;		 /* their content (sizes) */
	uint64_t history_before; /* bytes of history.git's objects */
	uint64_t history_after;	 /* ... after the prune (0: none) */
};

/* Is `prefix` one a policy can have ("/", a record ID or a namespace,
   a trailing '/' allowed)? Returns 0, or -EINVAL with why in msg. */
int store_retain_prefix_check(const char *prefix, char *msg, size_t len);

/*
 * Set the policy p->prefix (STORE_RETAIN_OFF: remove it; -ENOENT if there
 * is none) in STORE/retain.json, and prune at once what the policies say.
 * Returns 0, -EINVAL (prefix, n == 0), -EROFS, -ENOTSUP (no history), or
 * -errno of the prune (logged; the policy is set then).
 */
int store_retain_set(struct store *s, const struct store_retain_policy *p,
		     struct store_retain_report *rep);

/* Prune what the policies say now: the history drained, then versions
   past their policy removed from it (a new history epoch), the current
   version of every record and every trailer kept. Returns 0 or -errno. */
int store_retain_prune(struct store *s, struct store_retain_report *rep);

/* What store_retain_prune would remove now (nothing is changed; versions
   not in the history yet are not counted). Returns 0 or -errno. */
int store_retain_plan(struct store *s, struct store_retain_report *rep);

/* Only rep->history_before (the size of history.git) and rep->policies:
   cheap, for a status. Returns 0 or -errno. */
int store_retain_summary(struct store *s, struct store_retain_report *rep);

/* Call fn for each policy; a non-zero return stops and is returned. */
typedef int (*store_retain_cb)(void *arg, const struct store_retain_policy *p);
int store_retain_each(struct store *s, store_retain_cb fn, void *arg);

/* What store_verify found. */
struct store_verify_report {
	uint64_t records;   /* records checked */
	uint64_t bad;	    /* records whose content does not match */
	uint64_t strays;    /* stray temp files */
	uint64_t unindexed; /* files not in the index (adopted lazily) */
	/* the history (after a drain): */
	uint64_t hist_versions; /* versions in its index */
	uint64_t hist_bad;	/* blobs missing from the repository, or
				   head tree entries that differ from the
				   live records */
	uint64_t hist_absent;	/* live records whose current version is
				   not in the history (adopted files and
				   versions from before it) */
	/* store_verify_repair only: */
	uint64_t repaired;     /* problems repaired */
	uint64_t unrepairable; /* problems found that could not be */
};

/*
 * Check every record's content against its hash and the journal state;
 * log each problem naming the record. With a history, it is drained
 * first (at most opts.history_drain_ms), then every version in it must
 * have its blob in the repository and the tree of refs/heads/main must
 * hold exactly the live records, each with its current content. Returns
 * 0 if clean, -EBADMSG if not (report filled either way), -errno on I/O
 * errors (-ETIMEDOUT if the history could not catch up).
 */
int store_verify(struct store *s, struct store_verify_report *rep);

/*
 * store_verify, repairing what can be repaired safely (recfsctl verify
 * --repair), each repair logged naming the record:
 *  - a record whose file does not match its current version, or is
 *    missing, gets the content of that version back from the history
 *    (checked against the version's hash), without a new version;
 *  - the file of a deleted record that was left behind is removed if its
 *    content is a version in the history (else left, reported);
 *  - a blob missing from history.git whose content a record still has
 *    (same hash, hence the same object id) is written back.
 * Nothing committed is lost and history is never rewritten. Returns 0 if
 * nothing is left unrepaired, -EBADMSG otherwise (rep->unrepairable),
 * -errno on I/O errors.
 */
int store_verify_repair(struct store *s, struct store_verify_report *rep);

/* What store_backup did. */
struct store_backup_report {
	uint64_t revision; /* the store revision the copy holds */
	uint64_t records;  /* live records in it */
	uint64_t files;	   /* files copied */
	uint64_t bytes;	   /* bytes copied */
	uint64_t gated_files, gated_bytes; /* of those, copied (again) while
					      commits waited */
	uint64_t gate_ms;		   /* how long commits waited */
	uint64_t history_done; /* the copy's history.git has every version
				  up to this revision; its journal has the
				  rest, which its first open writes */
};

/*
 * Copy the store, consistently at one revision, to `dest` (which must not
 * exist, or be an empty directory; -ENOTEMPTY / -EEXIST otherwise): the
 * format file, records, index, journal and history, so the copy is a
 * complete, mountable store. Records and history are copied while
 * commits go on; commits then wait while the journal and the records
 * that changed meanwhile are copied (readers never wait). The copy's
 * history.git has every version up to rep->history_done, its journal
 * the rest, which the copy's first open writes to its history. Created
 * 0700/0600, without the lock; everything is fsync'ed before it returns 0. On
 * failure what was made is removed. `dest` inside the store is -EINVAL. `rep`
 * may be NULL.
 */
int store_backup(struct store *s, const char *dest,
		 struct store_backup_report *rep);

/* What .recfs/status and recfsctl stats report. */
struct store_status {
	uint64_t revision;	/* current store revision */
	uint64_t records;	/* live records */
	uint64_t tombstones;	/* deleted records (versions kept) */
	uint64_t journal_bytes; /* bytes in the current journal segment */
	unsigned sync_batch_ms; /* 0: sync=close, else sync=batch's window */
	uint64_t durable;	/* revision up to which every change is
				   durable (= revision with sync=close) */
	bool read_only;
	bool broken;  /* refusing changes until reopened (see commit.c) */
	bool history; /* the store has a history (FILE backend) */
	uint64_t history_done;	   /* revision up to which git has everything */
	uint64_t history_lag;	   /* revision - history_done */
	int history_error;	   /* -errno of the writer's last batch, or 0 */
	char history_writer[128];  /* a store on etcd: the mount that
				      writes the history ("": unknown) */
	bool history_writer_me;	   /* ... this one */
	bool history_elected;	   /* the history is written by an elected
				      mount (a store on etcd) */
	uint64_t history_resident; /* versions its index holds in memory
				      (0 unless history.idx cannot be
				      written) */
	uint64_t reserve_bytes;	   /* size of the space reserve (0: none) */
	bool reserve_held;	   /* preallocated; false: given back to a
				      full file system */
	unsigned reserve_released; /* times it was given back */
	int space_error;	   /* the last space error (-ENOSPC) or 0 */
	int64_t space_error_time;  /* its time, seconds since the epoch */
	char space_error_what[64]; /* what met it */
};

void store_status_get(struct store *s, struct store_status *st);

/* The history's git remote (SPEC section 9, store_remote.c). */
struct store_remote_state {
	char url[1024];
	char pushed[41];      /* refs/heads/main's commit last pushed, or "" */
	uint64_t pushed_upto; /* the remote has the history up to this
				 revision */
	int64_t pushed_time;  /* when (s since the epoch), or 0 */
	int error;	      /* the last push's -errno (-ESTALE: refused, not
				 a fast-forward), 0 if it succeeded */
	char message[256];    /* its cause */
	int64_t error_time;   /* when, or 0 */
	uint64_t pushes, failures;
	bool pending; /* a failed push is being retried */
};

/* The state of the history remote. Returns 0, or -ENOENT if none is set. */
int store_remote_state(struct store *s, struct store_remote_state *st);

/*
 * Push the history to `url` (NULL: the remote that is set) now, after
 * draining what is committed into it; refs/heads/main and the side branch,
 * fast-forward only. Returns 0, -ENOENT (no remote set), -ESTALE (the
 * remote refused: not a fast-forward), -ENOTSUP (no history), or -errno;
 * the cause, naming the remote, is reported (err.h).
 */
int store_history_push(struct store *s, const char *url);

/* statvfs of the file system holding the store (memory: made-up). */
int store_statfs(struct store *s, struct statvfs *out);

/*
 * In the process that serves the store (after a daemon forked): update
 * the pid in the lock and start the background threads, which a fork
 * would lose, so store_open does not start them: the history writer
 * (otherwise it starts at the first change, drain, status or history
 * call) and, unless read-only, the thread that creates stages ahead of
 * the commits that need them (otherwise each stage is created when it
 * is needed).
 */
int store_serve_start(struct store *s);

/*
 * Who holds the lock of the store at `path`: fills `msg` with a sentence
 * naming the pid, host and start time. Returns 0 if held by a live
 * process, -ENOENT if free, -errno on error.
 */
int store_lock_holder(const char *path, char *msg, size_t msglen);

/*
 * Remove the lock of the store at `path` (recfsctl unlock --force), unless
 * a live process on this host holds it: then -EBUSY, and `msg` names its
 * pid, host and start time. The lock of another host is removed (it
 * cannot be checked from here) and `msg` names it, for a warning. Returns
 * 0 (also if there was no lock), -EBUSY or -errno.
 */
int store_unlock_force(const char *path, char *msg, size_t msglen);

#endif
