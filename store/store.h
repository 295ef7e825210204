/*
 * store.h - the record store: versioned records, compare-and-swap commits,
 * metadata, namespaces. Used by the mount (fusefs/) and by recfsctl.
 *
 * Every function returns 0 (or a positive count) on success and -errno on
 * failure; errors are logged with the record ID and the cause where they
 * happen. Objects returned through `**out` belong to the caller and are
 * released with their _free function; returned pointers are borrowed.
 * All functions are thread-safe on one `struct store`.
 *
 * Where a write is committed: store_commit() in store/commit.c.
 */
#ifndef RECFS_STORE_H
#define RECFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

struct io;
struct store;
struct store_stage;
struct store_reader;

#define STORE_FORMAT_VERSION 1
#define STORE_DEFAULT_MAX_RECORD (1ull << 30)
#define STORE_XATTR_NAME_MAX 255
#define STORE_XATTR_VALUE_MAX 65536
#define STORE_XATTR_TOTAL_MAX 65536 /* all user xattrs of one record */
#define STORE_XATTR_COUNT_MAX 64
#define STORE_SYMLINK_MAX                                                      \
	4095 /* bytes of a symlink's target (PATH_MAX - 1)                     \
	      */

enum store_backend {
	STORE_BACKEND_FILE,   /* the default: a store directory on disk */
	STORE_BACKEND_MEMORY, /* in memory, not durable: for unit tests */
};

struct store_opts {
	const char *path; /* store directory (FILE backend) */
	enum store_backend backend;
	bool create;		   /* create the store if it does not exist */
	bool read_only;		   /* refuse every change with -EROFS */
	bool no_write;		   /* read_only, and write nothing at all in
				      the store directory (recfsctl verify):
				      the lock is taken shared, without a
				      record; recovery only checks that the
				      journal's last changes are in place
				      (store_open fails with -EROFS, naming
				      them, if one is not); a torn journal
				      tail, stray stages and history.idx
				      are left as they are */
	uint64_t max_record_size;  /* 0: STORE_DEFAULT_MAX_RECORD */
	uint64_t checkpoint_bytes; /* journal size that triggers a checkpoint;
				      0: default (64 MiB) */
	struct io *io; /* failpoints; NULL for real I/O (borrowed) */
	bool no_cas;   /* MEMORY backend only: pretend the backend
			  cannot do CAS (tests fail-closed) */

	/* The history (STORE/history.git, SPEC section 5; FILE backend).
	   0 means the default; see store/history.h. */
	unsigned history_batch_max; /* versions per git commit (4096) */
	unsigned history_delay_ms;  /* at most one commit per this, unless
				       a batch is full (100) */
	uint64_t history_lag_max;   /* backpressure: a change waits while
				       the history is more than this many
				       revisions behind (100000) */
	unsigned history_wait_ms;   /* the longest such wait, and how long
				       store_history_get waits for a
				       version not written yet (10000) */
	unsigned history_drain_ms;  /* store_close waits this long for the
				       history to catch up (10000) */
	unsigned retain_period_s;   /* a serving process prunes what the
				       retention policies say this often
				       (86400), the first time a minute
				       (or this, if less) after it starts */
	int64_t retain_now_ns;	    /* tests: the time (ns since the epoch)
				       a retention prune takes as now; 0:
				       the clock */
	unsigned sync_batch_ms;	    /* 0: sync=close, a commit returns once
				       durable; else sync=batch: a new
				       version returns once journaled and
				       is durable within this many ms
				       (SPEC section 3; store_sync) */
};

/* sync=batch: the default window, and the bounds the daemon takes. */
#define STORE_SYNC_BATCH_DEFAULT_MS 100u
#define STORE_SYNC_BATCH_MIN_MS 1u
#define STORE_SYNC_BATCH_MAX_MS 60000u

/* Metadata of one version of a record. */
struct store_meta {
	uint64_t version;  /* 1, 2, ...; for a deleted record the last one */
	uint64_t revision; /* store revision that made this version */
	uint8_t hash[16];  /* xxh3-128 of the content (canonical, big-endian) */
	bool hash_valid;   /* false until computed, for adopted files */
	uint64_t size;
	struct timespec mtime; /* time of the version, or as set by utimens */
	uint32_t mode;	       /* permission bits (07777) */
	uint32_t uid, gid;     /* owner and group */
	bool symlink; /* a symbolic link: its content is the link target */
	bool deleted; /* a tombstone: the last version was deleted */
};

/* Who made a change (kept in history). */
struct store_who {
	uint32_t uid;
	uint32_t pid;
	char comm[17];
};

/* The condition of a commit (SPEC section 4). */
enum store_cond_kind {
	STORE_COND_ANY,	       /* last writer wins */
	STORE_COND_IF_VERSION, /* only if the current version is `version` */
	STORE_COND_CREATE,     /* only if the record does not exist */
	STORE_COND_APPEND,     /* append the stage to the current content */
};

struct store_cond {
	enum store_cond_kind kind;
	uint64_t version; /* for STORE_COND_IF_VERSION */
};

/* What a commit did. */
struct store_result {
	uint64_t version;  /* the new (or, for a no-op, current) version */
	uint64_t revision; /* the store revision of it */
	bool noop;	   /* content and metadata equal the current version */
	uint64_t current;  /* on -ESTALE: the version that was found
			      (0 if the record did not exist) */
};

/* Owner and group of a record. */
struct store_owner {
	uint32_t uid, gid;
};

/* Optional parts of a commit. */
struct store_commit_args {
	struct store_cond cond;
	const struct timespec *mtime; /* NULL: the commit time */
	int mode;		      /* -1: the current mode, or 0644 */
	const struct store_who *who;  /* NULL: unknown */
	/* NULL: the current owner; a new record (or one re-created after
	   a delete) gets uid who->uid (0 without `who`) and gid 0 */
	const struct store_owner *owner;
	bool symlink; /* the new version is a symbolic link whose target is
			 the content (at most STORE_SYMLINK_MAX bytes); false:
			 a regular file (also for a record that was a link) */
};

/* Open or create a store. On failure *out is NULL and the cause logged. */
int store_open(struct store **out, const struct store_opts *opts);

/*
 * Close: wait for commits in flight, checkpoint, release the lock, free.
 * Returns the first error met (the store is freed regardless). Accepts
 * NULL.
 */
int store_close(struct store *s);

/*
 * Make every change acknowledged so far durable, and put in place (with
 * sync=batch, what fsync(2) waits for; with sync=close every change is
 * durable when it returns, and this costs nothing). Returns 0 or -EIO
 * (the journal could not be synced: acknowledged changes may be lost,
 * and the store refuses changes until it is reopened).
 */
int store_sync(struct store *s);

/*
 * Create a store directory at `path` (mode 0700, files 0600). With
 * `adopt`, `path` may be an existing directory of plain files: they are
 * moved under records/ by one rename each, without being rewritten, and
 * become version 1 of their records lazily. Returns 0 or -errno (-EEXIST
 * if it already is a store).
 */
int store_init(const char *path, bool adopt);

/* Current store revision. */
uint64_t store_revision(struct store *s);

/* Record count (live records) and tombstones, for status and stats. */
void store_counts(struct store *s, uint64_t *records, uint64_t *tombstones);

/*
 * Metadata of the current version of `id`. Returns 0 for a record,
 * -EISDIR if `id` is a namespace (meta untouched), -ENOENT if neither
 * (a deleted record is -ENOENT too), -EINVAL for a bad ID. With
 * `want_hash`, an adopted file's hash is computed (and kept) first.
 */
int store_stat(struct store *s, const char *id, struct store_meta *meta,
	       bool want_hash);

/*
 * Last known version of `id` including tombstones: 0 and -ENOENT if it
 * never existed. Used for "re-create after delete gives n+1".
 */
int store_last_version(struct store *s, const char *id, uint64_t *version);

/* --- Reading ------------------------------------------------------- */

/*
 * Open the current version of `id` for reading. The reader sees that
 * version to the end, whatever is committed meanwhile. Returns 0, -ENOENT,
 * -EISDIR, -EINVAL.
 */
int store_reader_open(struct store *s, const char *id,
		      struct store_reader **out);
const struct store_meta *store_reader_meta(const struct store_reader *r);
/* An fd on the content (borrowed; valid until store_reader_free). */
int store_reader_fd(const struct store_reader *r);
ssize_t store_reader_pread(struct store_reader *r, void *buf, size_t len,
			   off_t off);
void store_reader_free(struct store_reader *r);

/*
 * Read all of the current version of `id` into a new buffer (caller
 * frees *buf with free()). *meta may be NULL. Returns 0 or -errno.
 */
int store_get(struct store *s, const char *id, void **buf, size_t *len,
	      struct store_meta *meta);

/* --- Writing ------------------------------------------------------- */

/*
 * A stage is a private temporary file in the store that will become the
 * content of a new version. Create an empty one, or one holding a copy of
 * the current content of `id` (*base gets that version; 0 and an empty
 * stage if `id` does not exist).
 */
int store_stage_new(struct store *s, struct store_stage **out);
int store_stage_copy(struct store *s, const char *id, uint64_t *base,
		     struct store_stage **out);
/* Read/write fd of the stage content (borrowed). */
int store_stage_fd(const struct store_stage *st);
/* Read up to `len` bytes of the stage at `off` through the store's I/O
   shim (failpoint "stage.read"); returns the bytes read (0 at the end)
   or -errno. */
ssize_t store_stage_pread(struct store_stage *st, void *buf, size_t len,
			  uint64_t off);
/*
 * Write to or truncate a stage. Writes that come in order from offset 0
 * are hashed as they arrive, so that the commit need not read the stage
 * again (any other write, or a truncate to another size than 0 or the
 * current one, makes the commit read it). Once a stage was written this
 * way, change it only through these two calls: a change through the fd
 * to bytes already hashed would not be seen. RECFS_PARANOID=1 in the
 * environment checks every such hash at commit and aborts on a mismatch.
 */
ssize_t store_stage_write(struct store_stage *st, const void *buf, size_t len,
			  uint64_t off);
int store_stage_truncate(struct store_stage *st, uint64_t size);
/* Free a stage; its temp file is removed unless it was committed. */
void store_stage_free(struct store_stage *st);

/*
 * Commit the stage as the next version of `id` under args->cond. On
 * success the new version is durable (it survives a crash or power cut)
 * and visible to new readers; the stage is used up (still free it).
 * Content and metadata equal to the current version: a no-op (res->noop).
 * With STORE_COND_APPEND the stage holds only the bytes to append; they
 * are added to whatever version is current now.
 * Returns 0, -ESTALE (condition not met: res->current says what was
 * found), -EFBIG (over max_record_size), -ENOENT (namespace missing),
 * -EISDIR (`id` is a namespace), -EINVAL (bad ID), -ENAMETOOLONG (an ID
 * component over 255 bytes, an ID over 4096, or a symlink target over
 * STORE_SYMLINK_MAX), -EROFS, -ENOSPC, -EIO.
 * On failure the previous version is intact and the stage can be reused.
 */
int store_commit(struct store *s, const char *id, struct store_stage *st,
		 const struct store_commit_args *args,
		 struct store_result *res);

/* store_commit of `len` bytes at `buf`. `args` may be NULL (ANY). */
int store_put(struct store *s, const char *id, const void *buf, size_t len,
	      const struct store_commit_args *args, struct store_result *res);

/*
 * Delete `id` under `cond` (ANY or IF_VERSION). The version number stays
 * reserved: re-creating gives last + 1. Returns 0, -ENOENT, -ESTALE, ...
 */
int store_delete(struct store *s, const char *id, const struct store_cond *cond,
		 const struct store_who *who, struct store_result *res);

/*
 * Atomically give `to` a new version with the content (and mode, owner,
 * kind -- file or symlink --, mtime, xattrs) of `from` and delete `from`,
 * as one store change; `to_cond`
 * applies to `to` (NULL: ANY). Returns 0, -ENOENT, -ESTALE, -EISDIR, ...
 */
int store_rename(struct store *s, const char *from, const char *to,
		 const struct store_cond *to_cond, const struct store_who *who,
		 struct store_result *res);

/*
 * Change metadata of the current version without making a new version:
 * `mtime` (NULL: keep) and `mode` (-1: keep). Journaled; bumps the store
 * revision unless nothing changes. Returns 0, -ENOENT, ...
 */
int store_set_meta(struct store *s, const char *id,
		   const struct timespec *mtime, int mode);

/*
 * Change the owner (`uid`) and group (`gid`) of the current version
 * without making a new version; (uint32_t)-1 keeps that one. Journaled
 * (and in the history with the next version); bumps the store revision
 * unless nothing changes. Permission checks are the caller's (the
 * kernel's with -o allow_other). Returns 0, -ENOENT, -EINVAL, -EROFS, ...
 */
int store_set_owner(struct store *s, const char *id, uint32_t uid,
		    uint32_t gid);

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

/* --- User extended attributes (kept as record metadata) ------------ */

/*
 * Get a user attribute ("user.x") of `id`. With size 0 returns the value
 * length; returns -ERANGE if `size` is too small, -ENODATA if absent.
 */
ssize_t store_xattr_get(struct store *s, const char *id, const char *name,
			void *value, size_t size);
/* List names, NUL-separated, listxattr-style (size 0: needed length). */
ssize_t store_xattr_list(struct store *s, const char *id, char *list,
			 size_t size);
/* Set (flags: XATTR_CREATE / XATTR_REPLACE / 0). -ENOSPC over limits. */
int store_xattr_set(struct store *s, const char *id, const char *name,
		    const void *value, size_t size, int flags);
int store_xattr_remove(struct store *s, const char *id, const char *name);

/* --- Namespaces ---------------------------------------------------- */

/* Called for each entry of a namespace; non-zero return stops. */
typedef int (*store_list_cb)(void *arg, const char *name, bool is_ns);

/* List records and sub-namespaces of `ns` ("" is the root); scratch files
   are not listed (store_scratch_list). */
int store_list(struct store *s, const char *ns, store_list_cb cb, void *arg);
/* -EEXIST if a record or a scratch file has that name. */
int store_mkdir(struct store *s, const char *ns, mode_t mode);
/* Returns -ENOTEMPTY if it holds anything, scratch files included. */
int store_rmdir(struct store *s, const char *ns);
/* Rename an empty namespace; -EXDEV if it holds records or scratch files
   (they are not moved: mv falls back to copy and delete). */
int store_rename_ns(struct store *s, const char *from, const char *to);
/* Stat a namespace's backing directory (mode, owner, times, links). */
int store_ns_stat(struct store *s, const char *ns, struct stat *st);
int store_ns_set_meta(struct store *s, const char *ns,
		      const struct timespec *mtime, int mode);
/*
 * Change owner and group of a namespace's backing directory ((uint32_t)-1
 * keeps one), never through a symlink. Not versioned. Returns 0, -ENOENT,
 * -EPERM (the daemon may not chown), -EROFS, ...
 */
int store_ns_set_owner(struct store *s, const char *ns, uint32_t uid,
		       uint32_t gid);

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

/*
 * Open only the history of the store at `path`, read-only and without
 * the store lock, so that it works while the store is mounted (git
 * readers are safe next to the writer). Only the store_history_*
 * reading functions, store_path and store_close may be used on it.
 */
int store_open_history(struct store **out, const char *path);

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
/*
 * A commit of `id` failed with `err` before it reached the store (a write
 * to its stage, say): logs it, naming the cause, and keeps a full disk
 * (-ENOSPC) as the status's last space error.
 */
void store_commit_failed(struct store *s, const char *id, int err);

void store_status_get(struct store *s, struct store_status *st);

/* statvfs of the file system holding the store (memory: made-up). */
int store_statfs(struct store *s, struct statvfs *out);

/* Where the store is (FILE backend) or NULL. */
const char *store_path(const struct store *s);

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

/* Format `hash` as "xxh3-128:" + 32 hex digits into buf[64]. */
void store_hash_format(const uint8_t hash[16], char buf[64]);

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

/* Scratch files: store_scratch_* */
#include "scratch.h"

#endif
