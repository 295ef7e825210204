/*
 * changes.h - following the committed changes of a store in revision
 * order (changes.c): what `recfsctl watch` prints and what the history
 * writer reads (history.h's change source, through change_decode.h).
 * Works on a store directory by its path, without the store lock: it
 * needs no `struct store`.
 *
 * Ownership: a `struct store_changes` is the caller's from
 * store_changes_open until store_changes_free. The strings and content
 * of a `struct store_change` it fills are borrowed: valid until the next
 * store_changes_next (or, from change_decode, during the callback).
 * store_changes_fd is borrowed too.
 *
 * Thread-safety: one store_changes is used by one thread at a time (it
 * has no lock); any number of them may follow one store, in any number
 * of processes, next to the daemon that writes it.
 */
#ifndef RECFS_CHANGES_H
#define RECFS_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* --- Following committed changes (changes.c) ------------------------ */

/*
 * The committed changes of a store, in revision order, each once: what
 * `recfsctl watch` prints. Read-only and without the store lock, so it
 * works while the store is mounted (it needs read access to the store
 * directory). Each new version and each delete is one change; a rename
 * is a put of its target then a delete of its source, a txn one change
 * per part, all with the revision of that store change. Revisions that
 * made no version (mode, owner, times, xattrs) have none, nor have
 * versions from before the store had a history that its journal no
 * longer holds. Changes come from the history (STORE/history.git), then
 * from the journal for the revisions git does not have yet, then from
 * the journal as they are committed.
 */
enum store_change_op {
	STORE_CHANGE_PUT = 1,	 /* a new version */
	STORE_CHANGE_DELETE = 2, /* `version` was deleted */
};

struct store_change {
	uint64_t revision;
	enum store_change_op op;
	const char *id;	   /* borrowed: valid until the next call */
	const char *other; /* of a rename: the source (for the put) or the
			      target (for the delete); else NULL. Borrowed */
	uint64_t version;
	uint8_t hash[16]; /* put: xxh3-128 of the content, if hash_valid */
	bool hash_valid;
	uint64_t size;	      /* put: of the content */
	bool symlink;	      /* put: a symbolic link */
	struct timespec time; /* of the change */
	uint32_t uid, pid;    /* who made it */
	char comm[17];
	/* The rest is what the history writer needs (history.h, its change
	   source); store_changes_next fills id_len and other_len too. */
	size_t id_len, other_len; /* of id and other (which a decoded
				     journal record does not NUL-terminate) */
	uint64_t other_version;	  /* the put of a rename: the version of
				     `other` whose content it took */
	bool meta_known;	  /* put: mode, owner_uid, owner_gid are the
				     version's own */
	uint32_t mode, owner_uid, owner_gid;
	/* put: where the content is: inline (has_data: data[0..data_len)),
	   or a stage linked as journal/blobs/<stage[0..stage_len)> */
	bool has_data;
	const uint8_t *data;
	size_t data_len;
	const char *stage;
	size_t stage_len;
};

struct store_changes;

/* `after` for store_changes_open: the changes made from now on. */
#define STORE_CHANGES_NOW UINT64_MAX

/*
 * Follow the changes of the store at `path` after revision `after`
 * (STORE_CHANGES_NOW: after the last one written now). *out is the
 * caller's (store_changes_free). Returns 0, or -errno (logged): -ENOENT,
 * -EACCES, -EBADMSG (not a store, or no history), ...
 */
int store_changes_open(struct store_changes **out, const char *path,
		       uint64_t after);

/*
 * The next change into *out (its strings valid until the next call).
 * A change is taken from the journal only if its revision is at most
 * `durable`: the caller's knowledge of what is committed (a mount's
 * revision, user.recfs.revision of its root); UINT64_MAX takes every
 * completely written record, which is right when no daemon serves the
 * store. Returns 1 (a change), 0 (none yet: poll store_changes_fd for
 * POLLIN, then call again), -EAGAIN (one is written after `durable`:
 * call again soon with a newer `durable`), or -errno (logged).
 */
int store_changes_next(struct store_changes *c, uint64_t durable,
		       struct store_change *out);

/* Every revision up to this one has been returned (or had no change). */
uint64_t store_changes_pos(const struct store_changes *c);

/* A file descriptor (borrowed) that is readable when the store's journal
   changed since the last store_changes_next; that call empties it. */
int store_changes_fd(const struct store_changes *c);

/* Free. Accepts NULL. */
void store_changes_free(struct store_changes *c);

#endif
