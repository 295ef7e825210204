/*
 * txn.h - changes of several records at once: a txn (store_txn_*,
 * txn.c) collects puts and deletes and commits them as one store change;
 * the whole-store operations built on it (rollback.c): store_rollback_to,
 * store_revision_at and store_import. Types of a single change
 * (store_commit_args, store_cond, store_who, store_result) are in
 * store.h.
 *
 * Ownership: a txn is the caller's from store_txn_new until
 * store_txn_free, which must come before store_close of its store. A
 * stage given to store_txn_put_stage belongs to the txn from then on
 * (also on failure). store_txn_part_result returns a pointer into the
 * txn, valid until the next call on it.
 *
 * Thread-safety: a txn is used by one thread at a time (it has no lock);
 * several txns, and any other store call, may run at once on one store:
 * the store stays thread-safe, and parts of concurrent changes of the
 * same record are serialized as single changes are. store_rollback_to,
 * store_import and store_revision_at may be called from any thread,
 * concurrently with other changes (a conflicting change makes a rollback
 * part fail with -ESTALE); the progress callback runs on the calling
 * thread.
 */
#ifndef RECFS_TXN_H
#define RECFS_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct store_stage;
struct store_cond;
struct store_who;
struct store_result;
struct store_commit_args;
struct timespec;

/* --- Changes of several records at once (txn.c) --------------------- */

/*
 * A txn collects puts and deletes of distinct records and commits them as
 * ONE store change: one new store revision, one journal record, one git
 * commit (with one trailer block per version). After a crash either every
 * part is there or none. Each part follows the rules of a single change:
 * a put makes version last + 1 (also after a delete), a part whose
 * content and metadata equal the current version is a no-op and skipped
 * (it makes no version and no history entry), and a condition
 * (STORE_COND_IF_VERSION / STORE_COND_CREATE; no APPEND) that fails makes
 * the whole txn fail with -ESTALE, changing nothing. Mode, owner and
 * xattrs of a put are kept from the current version unless args->mode or
 * args->owner say otherwise (0644 and the txn's who->uid, group 0, for a
 * new record); args->symlink says the kind, as for store_commit;
 * args->who is ignored (see store_txn_commit).
 *
 * Size: a txn has no limit on its parts. Each put's content is staged (a
 * file in STORE/tmp) when it is added, and each part is written to a spool
 * file (also in STORE/tmp): memory stays bounded by one journal frame
 * (JNL_MAX_RECORD) whatever the number of parts. A txn that does not fit
 * one frame is journaled as several frames of one record, which recovery
 * applies whole or not at all.
 *
 * A txn is used by one thread; the store stays thread-safe.
 */
struct store_txn;

/* What store_txn_commit did. */
struct store_txn_result {
	uint64_t revision; /* the store revision of the change; 0 when every
			      part was a no-op (nothing was committed) */
	size_t changes;	   /* parts that made a version or a delete */
	size_t noops;	   /* parts skipped as no-ops */
	size_t failed;	   /* on failure: the part that failed, or SIZE_MAX
			      if none in particular */
	uint64_t current;  /* on -ESTALE: the version that part found */
};

/* A new, empty txn on `s` (caller frees with store_txn_free). */
int store_txn_new(struct store *s, struct store_txn **out);

/*
 * Add a put of `len` bytes at `buf` (copied into a stage now) as the next
 * version of `id`. `args` may be NULL (ANY, keep mode, commit time).
 * Returns 0, -EINVAL (bad ID, APPEND, txn already committed), -EFBIG,
 * -ENOSPC, -EIO, -ENOMEM.
 */
int store_txn_put(struct store_txn *t, const char *id, const void *buf,
		  size_t len, const struct store_commit_args *args);

/* The same with a stage the caller filled; the txn takes it over (and
   frees it, also on failure). */
int store_txn_put_stage(struct store_txn *t, const char *id,
			struct store_stage *st,
			const struct store_commit_args *args);

/* Add a delete of `id` under `cond` (NULL, ANY or IF_VERSION). */
int store_txn_delete(struct store_txn *t, const char *id,
		     const struct store_cond *cond);

/* Parts added so far. */
size_t store_txn_count(const struct store_txn *t);

/*
 * Commit every part as one store change, made by `who` (NULL: unknown).
 * When it returns 0 the change is durable. A txn can be committed once.
 * Returns 0 (also when every part was a no-op: res->revision 0), -ESTALE
 * (a condition failed: res->failed, res->current), -ENOENT (a delete of a
 * record that does not exist, or a missing namespace), -EISDIR, -EINVAL
 * (the same ID twice), -EROFS, -ENOSPC, -EIO; on failure nothing
 * was changed. `res` may be NULL.
 */
int store_txn_commit(struct store_txn *t, const struct store_who *who,
		     struct store_txn_result *res);

/* After a commit: what part `i` (in the order added) did, or NULL (a
   copy kept in the txn until the next call; it reads the spool). */
const struct store_result *store_txn_part_result(const struct store_txn *t,
						 size_t i);

/* Free a txn (its stages are removed unless committed). Accepts NULL. */
void store_txn_free(struct store_txn *t);

/* --- Whole-store operations built on a txn (rollback.c) ------------- */

/* Options and outcome of store_rollback_to and store_import. */
struct store_bulk_args {
	const struct store_who *who; /* NULL: unknown */
	bool dry_run;		     /* plan only: count, commit nothing */
	/* progress: called every so often with parts done and in all (the
	   total is 0 while it is not known yet); may be NULL */
	void (*progress)(void *arg, size_t done, size_t total);
	void *progress_arg;
};

struct store_bulk_result {
	uint64_t revision; /* of the change; 0 if nothing changed */
	size_t puts;	   /* records given a new version */
	size_t deletes;	   /* records deleted */
	size_t noops;	   /* records already as wanted */
	size_t skipped;	   /* import: files skipped (bad names, ...) */
};

/*
 * Make every record what it was at store revision `revision`, as one
 * txn: records changed since get a new version with that content (mode
 * and xattrs of the current version kept), records created since are
 * deleted, records deleted since are re-created (version last + 1), the
 * others are left alone. History is never rewritten: it only grows. The
 * history is drained first (at most opts.history_drain_ms); each part is
 * conditional on the version the plan saw, so a concurrent change makes
 * it fail with -ESTALE (try again). Namespaces a re-created record needs
 * are created first (outside the txn; they are not versioned). Rolling
 * back to the current revision changes nothing. Returns 0, -EINVAL
 * (revision after the current one), -ENODATA (a record's state at that
 * revision is not in the history: it predates it; logged by ID),
 * -ENOTSUP (no history), -ESTALE, ... `res` may be NULL.
 */
int store_rollback_to(struct store *s, uint64_t revision,
		      const struct store_bulk_args *args,
		      struct store_bulk_result *res);

/*
 * The last store revision made at or before `when` (wall-clock time of
 * the change, as in the history), into *revision (0 if none was).
 * Returns 0, -ENOTSUP (no history), ...
 */
int store_revision_at(struct store *s, const struct timespec *when,
		      uint64_t *revision);

/*
 * Import a directory: every regular file under `dir` (recursively)
 * becomes a new version of the record with the same relative path, and
 * every symlink a symlink record with its target (never followed; a
 * target over STORE_SYMLINK_MAX is skipped); devices, FIFOs and sockets
 * are skipped with a warning; all as one txn (no-ops for files equal to their
 * record). A name that is not a valid record ID is reported by name and skipped
 * (counted in res->skipped); the namespaces are created first. Returns 0,
 * -ENOENT / -ENOTDIR (dir), ... Files are added to the txn as the walk
 * finds them: memory does not grow with the tree.
 */
int store_import(struct store *s, const char *dir,
		 const struct store_bulk_args *args,
		 struct store_bulk_result *res);

#endif
