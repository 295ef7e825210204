/*
 * history.h - the git history of a store (SPEC section 5): every committed
 * version of every record in STORE/history.git, a bare repository written
 * with libgit2 by one writer thread, off the write path, in batches.
 *
 * The journal is the queue: the writer reads journal records after the
 * last revision it made durable in git ("done"), turns a batch of them
 * into one git commit (a blob per version, the tree of the store as of the
 * batch's last revision, one trailer block per version in the message),
 * writes the objects without per-object fsync, syncs once, then moves
 * refs/heads/main. The store keeps journal segments until both a snapshot
 * and the history cover them, so a crash never loses a version: the next
 * open writes what is missing. Memory is bounded by the batch size.
 *
 * Content of a version: PUT records carry it inline, or name a stage that
 * the store hard-linked as journal/blobs/<stage> before committing (the
 * writer removes that link once the commit is durable); a RENAME's content
 * is the blob its source had in the history. Versions the history never
 * saw (files adopted with `recfsctl init --adopt`, and every version of a
 * store made before it had a history: its history starts with the journal
 * it had when history.git was created) are not in git; when such content
 * is needed (a rename of one) it is taken from the record's file if that
 * still holds it (checked by hash), else the version is recorded with
 * "Recfs-Missing: true" and no blob.
 *
 * Commit message of a batch: a summary line, then for each version a
 * block of trailers separated by blank lines:
 *   Recfs-Id: <id>            Recfs-Version: <n>   Recfs-Revision: <rev>
 *   Recfs-Blob: <oid>         Recfs-Hash: xxh3-128:<hex>
 *   Recfs-Size: <bytes>
 *   Recfs-Owner: <uid>:<gid>  Recfs-Mode: 0<octal>  (the version's own;
 *                              not in commits written before recfs kept
 *                              them: then store_version.meta_known is
 *                              false)
 *   Recfs-Symlink: true       (a symlink: the blob is its target; its
 *                              tree entry has mode 120000)
 *   Recfs-Uid: <uid>          Recfs-Pid: <pid>     Recfs-Comm: <comm>
 *   Recfs-Time: <RFC 3339 UTC with nanoseconds>
 *   Recfs-Deleted: true       (deletes; no Blob/Hash/Size; Version is
 *                              the version that was deleted)
 *   Recfs-From: <id>          (renames: the version of the target)
 *   Recfs-To: <id>            (renames: a second block, the deletion of
 *                              the source, Deleted: true)
 *   Recfs-Missing: true       (content not available: no Blob)
 * and a last paragraph "Recfs-Upto: <revision>": the history is complete
 * up to that store revision (read back at open). Values that are not
 * plain printable UTF-8 (an ID with a newline, a quote, a backslash,
 * control bytes, leading or trailing blanks) are written as a C-style
 * quoted string: "..." with \\ \" \n \t \r and \ooo escapes, as git does
 * for such paths. Git itself only sees the last paragraph as trailers
 * (`git interpret-trailers`); recfs parses every block.
 *
 * STORE/history.idx is an index of the versions (ID, version -> commit,
 * blob, metadata), appended after each batch and not fsynced: git is the
 * truth, and the file is caught up (or rebuilt, if it is corrupt) from the
 * commits at open. Lookups are served from the file: the index keeps only
 * a few bytes per record in memory, not per version.
 */
#ifndef RECFS_HISTORY_H
#define RECFS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "changes.h"
#include "id.h"
#include "store_history.h"

struct io;
struct hist;

#define HIST_DIR "history.git"
#define HIST_INDEX_FILE "history.idx"
/* its versions of a record by jumps (history_vdx.c) */
#define HIST_VDX_FILE "history.vdx"
#define HIST_BLOBS_DIR "blobs" /* inside STORE/journal */

/*
 * Record IDs as tree paths (history_path.c, the rule in recfs(5)): a
 * component that is ".git" or ".gitmodules" in any ASCII case, or that
 * ends in HIST_PATH_SUFFIX, gets one more HIST_PATH_SUFFIX. Reversible.
 */
#define HIST_PATH_SUFFIX "~recfs"
#define HIST_PATH_MAX (ID_MAX_LEN + ID_MAX_COMPONENTS * 6)

/* Is this component of an ID escaped in the tree? */
bool hist_path_escaped(const char *comp, size_t len);
/* The tree path of the ID id[0..len) into out (NUL-terminated). Returns
   its length, or -EINVAL (not an ID's length). */
int hist_path_from_id(char out[HIST_PATH_MAX + 1], const char *id, size_t len);
/* The ID whose tree path is path[0..len), into out (NUL-terminated).
   Returns its length, or -EINVAL if no ID has that path. */
int hist_id_from_path(char out[ID_MAX_LEN + 1], const char *path, size_t len);

/* One version of a record as the history knows it (store_history.h). */
typedef struct store_version hist_version;

/*
 * Where the writer reads the store's changes: the store hands one to
 * hist_open (store_hist.c reads its journal), so the history never reads
 * the journal's record format. A reader goes over the journal's frames
 * in revision order; one revision (one store change) is one frame, or
 * several with the same revision of which only the last has `ends`.
 * Its functions are called by one thread at a time (the writer, or
 * hist_open/hist_clean_blobs before it starts).
 */
struct hist_frame {
	uint64_t revision;
	size_t len; /* its bytes: what its changes take, roughly */
	bool ends;  /* the last frame of its revision */
};

struct hist_source {
	/* A new reader at the first frame after revision `after`. Returns
	   0 or -errno. */
	int (*open)(void *arg, uint64_t after, void **cur);
	/* Go to the next frame of a revision at most `target`: 1 with *f,
	   0 if there is none (yet), or -errno. */
	int (*next)(void *cur, uint64_t target, struct hist_frame *f);
	/* Call fn for each change of the frame `next` went to (a change
	   and what it points to are valid during the call). Returns 0,
	   fn's non-zero return, or -errno. */
	int (*changes)(void *cur,
		       int (*fn)(void *arg, const struct store_change *ch),
		       void *arg);
	/* The revision of the frame the reader is at (its next), and going
	   back to the first frame of revision `rev` (read before). */
	uint64_t (*pos)(void *cur);
	int (*seek)(void *cur, uint64_t rev);
	void (*close)(void *cur);
	void *arg;
};

struct hist_opts {
	struct io *io;
	const char *store_path; /* STORE, for libgit2 (borrowed) */
	int store_dirfd;	/* STORE (borrowed) */
	int jnl_dirfd;		/* STORE/journal, where blobs/ is (borrowed) */
	struct hist_source src; /* the store's changes (no reader if its
				   open is NULL: read-only) */
	bool read_only;		/* no writer, nothing written */
	unsigned batch_max;	/* versions per git commit at most (0: 4096) */
	unsigned delay_ms;	/* at most one commit per delay_ms unless a
				   batch is full or a drain asks (0: 100) */
	uint64_t lag_max;	/* hist_throttle: revisions of lag allowed
				   (0: 100000) */
	uint64_t pack_mem_max;	/* bytes of new objects held in memory
				   before they are written out as a pack
				   (0: 32 MiB; tests set less) */
	/* Open the current content of record `id` read-only (the fallback
	   for content the history never saw). May be NULL. */
	int (*open_record)(void *arg, const char *id, int *fd);
	/* A batch failed with ENOSPC; `frees`: it holds a delete or a
	   rename, which frees space once written. Returns true if the
	   store freed space for it (its reserve): the batch is tried once
	   more at once. Called by the writer, no lock held. May be NULL. */
	bool (*space_low)(void *arg, bool frees);
	void *arg;
};

/*
 * Create STORE/history.git (bare, HEAD on refs/heads/main, no commit yet;
 * core.protectNTFS/HFS off so that every valid record ID is a valid tree
 * path). It is made under a temporary name and renamed into place, so a
 * crash leaves either none or a complete one. Returns 0, -EEXIST, or
 * -errno (logged).
 */
int hist_init_repo(const char *store_path, int store_dirfd);

/*
 * Open the history of a store: the repository, its "done" revision (the
 * Recfs-Upto of refs/heads/main) and the (ID, version) index (from
 * history.idx, caught up or rebuilt from the commits). Does not start the
 * writer: it starts on first use (hist_start, hist_notify, hist_drain,
 * hist_throttle), so that a process may fork (daemonise) after opening.
 * Sets libgit2's process-wide options (see history.c). Returns 0,
 * -ENOENT if there is no history.git, or -errno (logged with the cause).
 */
int hist_open(struct hist **out, const struct hist_opts *opts);

/* The revision up to which the history is durable. */
uint64_t hist_done(struct hist *h);

/* The writer's last error (0 if its last batch was written). */
int hist_error(struct hist *h);

/*
 * Remove the links in journal/blobs/ that no journal record after
 * hist_done (up to `last`, the journal's last durable revision) names
 * (their versions are in git, or their commit failed). For recovery,
 * before hist_start. Returns 0 or -errno.
 */
int hist_clean_blobs(struct hist *h, uint64_t last);

/* Start the writer thread if it is not running. Returns 0, -EROFS, or
   -errno. */
int hist_start(struct hist *h);

/* Tell the writer that the journal now holds records up to `rev`
   (durable). */
void hist_notify(struct hist *h, uint64_t rev);

/*
 * Write everything up to `rev` (durable in the journal) now and wait for
 * it, at most timeout_ms (0: no limit). Returns 0, -ETIMEDOUT, -EAGAIN if
 * no writer runs (read-only), or the error of a batch that failed while
 * waiting.
 */
int hist_drain(struct hist *h, uint64_t rev, unsigned timeout_ms);

/*
 * Backpressure: wait (at most timeout_ms) while the history lags behind
 * `rev` by more than opts->lag_max revisions. Returns 0, or -ETIMEDOUT if
 * it still lags (the caller goes on: a stuck history must not stop the
 * store; it is logged).
 */
int hist_throttle(struct hist *h, uint64_t rev, unsigned timeout_ms);

/*
 * Pause the writer: returns once the batch in progress (if any) is
 * written; until hist_resume, the writer writes nothing to history.git
 * and removes no blob link, so the repository and journal/blobs stay as
 * they are (store_backup copies them). Drains wait meanwhile. Calls nest.
 */
void hist_pause(struct hist *h);
void hist_resume(struct hist *h);

/* Stop the writer after the batch in progress (what is not written
   stays in the journal). The history can still be read. */
void hist_stop(struct hist *h);

/* hist_stop, and free. Accepts NULL. */
void hist_close(struct hist *h);

/* Look up version `version` of `id` (a version with content, not a
   delete). -ENOENT if the history has none (yet). */
int hist_lookup(struct hist *h, const char *id, uint64_t version,
		hist_version *out);

/* Read the content of a version found by hist_lookup into a new buffer
   (caller frees); its hash is checked. Returns 0, -ENOENT (a delete or
   missing content), -EIO (the blob does not match), or -errno. */
int hist_read(struct hist *h, const hist_version *v, void **buf, size_t *len);

/* Call fn for every version of `id` (NULL: of every record) in revision
   order, deletes included; a non-zero return stops and is returned. */
int hist_each(struct hist *h, const char *id,
	      int (*fn)(void *arg, const char *id, const hist_version *v),
	      void *arg);

/* Call fn for the ID of every record with a version (or a delete) in
   the index, in no order; a non-zero return stops and is returned. IDs
   are copied out first: fn runs without the index's locks. Returns 0,
   fn's return or -ENOMEM. */
int hist_ids(struct hist *h, int (*fn)(void *arg, const char *id), void *arg);

/* How many versions the index holds in memory: 0 unless history.idx
   cannot be written (read-only, a full disk), see history_index.c. */
uint64_t hist_index_resident(struct hist *h);

/* What hist_verify found. */
struct hist_verify_report {
	uint64_t versions; /* versions checked */
	uint64_t no_blob;  /* versions whose blob is not in the repository */
	uint64_t missing;  /* versions recorded without content */
};

/*
 * Check that every version in the index has its blob in the repository.
 * Returns 0 or -errno; problems are logged and counted.
 */
int hist_verify(struct hist *h, struct hist_verify_report *rep);

/*
 * The records in the tree of refs/heads/main: `fn` is called for each
 * (ID, hex blob oid, whether the entry is a symlink), in tree order; the
 * ID is the path made back into one (hist_id_from_path), or the path as
 * it is if no ID has it. A non-zero return stops and is returned. `fn`
 * must not call back into the history (a lock is held).
 */
int hist_tree_each(struct hist *h,
		   int (*fn)(void *arg, const char *id, const char *blob,
			     bool link),
		   void *arg);

/* Is the blob `blob` (hex) in the repository? Returns 1, 0 or -errno. */
int hist_blob_exists(struct hist *h, const char *blob);

/*
 * Write back a blob that is missing from the repository (verify
 * --repair): `buf` must be its content, which is checked (the object id
 * is the hash of the content), so history is never rewritten. Synced.
 * Returns 0, -EBADMSG (not that blob's content), or -errno.
 */
int hist_blob_restore(struct hist *h, const char *blob, const void *buf,
		      size_t len);

/* One version to prune. */
struct hist_prune_ver {
	const char *id;
	uint64_t version;
};

/* What hist_prune did. */
struct hist_prune_report {
	uint64_t versions; /* trailer blocks marked pruned now */
	uint64_t commits;  /* commits written again for the new epoch */
	uint64_t bytes_before, bytes_after; /* history.git/objects */
	char head[41];			    /* refs/heads/main after it */
};

/*
 * Prune the versions v[0..n) (history_prune.c): a new history epoch
 * without their content, their trailer blocks marked "Recfs-Pruned:"
 * and kept; crash-safe (the old epoch or the new one, finished at the
 * next open). Versions already pruned, and those not in the history, are
 * left as they are; with n == 0, only a prune of this process that got
 * past its commit point but could not finish is finished (the writer
 * waits for that). The caller has drained the history (hist_drain) and
 * chosen the versions: this does not know which is current. Pauses the
 * writer meanwhile. Returns 0 or -errno (logged); *rep is filled either
 * way.
 */
int hist_prune(struct hist *h, const struct hist_prune_ver *v, size_t n,
	       struct hist_prune_report *rep);

/* The bytes of history.git's objects (packs and loose objects). */
int hist_size(struct hist *h, uint64_t *bytes);

/*
 * The versions a history commit message records, as store changes (in
 * the order of its trailer blocks; strings valid during the call, no
 * content), for readers of history.git (changes.c). *upto is its
 * Recfs-Upto (0 if none); blocks that cannot be parsed are counted in
 * *bad and skipped. Returns 0, fn's non-zero return, or -ENOMEM.
 */
int hist_msg_changes(const char *msg, size_t len,
		     int (*fn)(void *arg, const struct store_change *ch),
		     void *arg, uint64_t *upto, unsigned *bad);

/* The Recfs-Upto of a history commit message (its last paragraph), 0 if
   none. */
uint64_t hist_msg_upto(const char *msg);

/* Log a libgit2 failure (git_error_last) and map it to -errno. `what`
   says what failed, `id` the record (may be NULL). */
int hist_git_error(int gerr, const char *what, const char *id);

#endif
