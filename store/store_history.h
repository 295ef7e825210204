/*
 * store_history.h - what callers use of the history of a store (SPEC
 * section 5; written by history/, whose own interface is history.h):
 * the versions of a record (struct store_version), reading one
 * (store_history_get), walking them (store_history_each), the git commit
 * of one, waiting for the history to catch up (store_history_drain), and
 * opening only the history of a store that is mounted
 * (store_open_history).
 *
 * Ownership: store_history_get's *buf is the caller's to free();
 * store_version values are copies, its strings inline; a store from
 * store_open_history is the caller's, released with store_close (store.h).
 *
 * Thread-safety: these functions may be called from any number of
 * threads at once on one store, and next to its changes (the reads take
 * the history's own read locks; git readers are safe next to the writer,
 * also in another process). store_history_each calls fn on the calling
 * thread with the history's read lock held (a retention prune waits for
 * the walk to end, so fn must not wait for one). store_open_history is
 * reentrant.
 */
#ifndef RECFS_STORE_HISTORY_H
#define RECFS_STORE_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct store;

/* --- History (SPEC section 5) --------------------------------------- */

/*
 * One version of a record in the history. Deletes are listed too (with
 * `deleted`, `version` the version that was deleted, no blob).
 */
struct store_version {
	uint64_t version;
	uint64_t revision; /* store revision that made it */
	char commit[41];   /* hex id of the git commit that records it */
	char blob[41];	   /* hex id of its content ("" if none) */
	bool deleted;
	bool missing; /* recorded without content: it predates the history
			 (see store/history.h) */
	uint32_t uid, pid;
	char comm[17];
	struct timespec time; /* of the change */
	uint64_t size;
	uint8_t hash[16]; /* xxh3-128 of the content, if hash_valid */
	bool hash_valid;
	bool symlink; /* a symbolic link: the content is its target */
	/* The version's own mode and owner (not the writer's: that is
	   uid above), when the history recorded them (meta_known; versions
	   written before recfs kept them have none) */
	uint32_t mode, owner_uid, owner_gid;
	bool meta_known;
	bool pruned; /* removed by a retention policy (recfsctl retain): the
			trailer stays, the content is gone (blob names what
			it was) */
};

/*
 * Read version `version` of `id` from the history into a new buffer
 * (caller frees *buf); *v (may be NULL) gets its metadata. A version that
 * is committed but not yet in git is waited for (at most
 * opts.history_wait_ms), so reading ID@N right after a write works; old
 * versions of deleted records are readable. Returns 0, -ENOENT (no such
 * version, or one from before the history), -EAGAIN (still not written
 * after the wait), -ENOTSUP (no history: memory backend), -EIO, ...
 */
int store_history_get(struct store *s, const char *id, uint64_t version,
		      void **buf, size_t *len, struct store_version *v);

/* Called by store_history_each; a non-zero return stops the walk. */
typedef int (*store_version_cb)(void *arg, const char *id,
				const struct store_version *v);

/*
 * Call fn for every version of `id` (NULL: of every record) that is in
 * the history, in revision order. Returns 0, fn's non-zero return,
 * -ENOTSUP, ...
 */
int store_history_each(struct store *s, const char *id, store_version_cb fn,
		       void *arg);

/* Called by store_history_ids; a non-zero return stops the walk. */
typedef int (*store_id_cb)(void *arg, const char *id);

/*
 * Call fn for the ID of every record that has a version (or a delete) in
 * the history, in no order, without the history's locks held. Returns 0,
 * fn's non-zero return, -ENOTSUP or -ENOMEM.
 */
int store_history_ids(struct store *s, store_id_cb fn, void *arg);

/* Does the store have a history? (Not a store on etcd, nor a read-only
   open of a store made before the history.) */
bool store_has_history(const struct store *s);

/*
 * The git commit that records version `version` of `id` (hex, into
 * out[41]). Returns 0, -EAGAIN while the version is committed but not yet
 * in git ("pending"), -ENOENT if there is no such version (or it
 * predates the history), -ENOTSUP.
 */
int store_history_commit(struct store *s, const char *id, uint64_t version,
			 char out[41]);

/*
 * Write the history up to the current revision and wait for it, at most
 * timeout_ms (0: no limit). Returns 0, -ETIMEDOUT, the error of a history
 * batch that failed meanwhile, -EAGAIN (read-only: no writer), -ENOTSUP.
 */
int store_history_drain(struct store *s, unsigned timeout_ms);

/*
 * Open only the history of the store at `path`, read-only and without
 * the store lock, so that it works while the store is mounted (git
 * readers are safe next to the writer). Only the store_history_*
 * reading functions, store_path and store_close may be used on it.
 */
int store_open_history(struct store **out, const char *path);

#endif
