/*
 * store.h - the record store: versioned records, compare-and-swap commits,
 * metadata, namespaces. What the frontend (fusefs/) uses for every
 * request, and what every other part of the store API builds on: opening
 * and closing a store and its options, records (stat, read, stage,
 * commit, put, delete, rename, metadata, xattrs) and namespaces. The rest
 * of the API is in headers by concern, each included by those who use it:
 *   txn.h           changes of several records at once (store_txn_*),
 *                   rollback and import
 *   store_history.h the versions of a record (store_history_*,
 *                   store_open_history)
 *   changes.h       the stream of committed changes (store_changes_*)
 *   admin.h         verify, backup, retention, checkpoint, status, statfs,
 *                   the store lock, store_serve_start
 *   scratch.h       scratch files (store_scratch_*)
 *
 * Every function returns 0 (or a positive count) on success and -errno on
 * failure; errors are logged with the record ID and the cause where they
 * happen. Where a write is committed: store_commit() in store/commit.c.
 *
 * Ownership: a `struct store` is the caller's from store_open until
 * store_close. Objects returned through `**out` (readers, stages) belong
 * to the caller and are released with their _free function, before the
 * store is closed; buffers returned through `void **buf` are the
 * caller's to free(). Returned pointers (store_path, store_reader_meta)
 * and file descriptors (store_reader_fd, store_stage_fd) are borrowed:
 * valid until their object is freed.
 *
 * Thread-safety: every function taking a `struct store *` may be called
 * from any number of threads at once on one store (changes to one record
 * are serialized by the store, changes to different records run in
 * parallel; a read waits only for a commit of the same record that is
 * putting its content in place), except store_open, which makes it, and
 * store_close, which must be the last call: no other call may be in
 * flight on that store or start after it. A reader may be read
 * (store_reader_pread) from several threads at once; a stage is used by
 * one thread at a time (store_commit takes it for the call). store_init
 * and store_hash_format need no store and are reentrant.
 */
#ifndef RECFS_STORE_H
#define RECFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
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
	const char *history_dir;    /* a store on etcd: the local directory
				       of its history.git (etcd_hist.h);
				       NULL: no history */
	const char *history_remote; /* push the history to this git URL
				       (kept in history.git's config; ""
				       removes it); NULL: the one kept
				       there, if any (history_remote.h) */
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
	uint64_t size;
	struct timespec mtime; /* time of the version, or as set by utimens */
	uint32_t mode;	       /* permission bits (07777) */
	uint32_t uid, gid;     /* owner and group */
	bool hash_valid;       /* false until computed, for adopted files */
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

/*
 * A commit of `id` failed with `err` before it reached the store (a write
 * to its stage, say): logs it, naming the cause, and keeps a full disk
 * (-ENOSPC) as the status's last space error.
 */
void store_commit_failed(struct store *s, const char *id, int err);

/* Where the store is (FILE backend) or NULL. */
const char *store_path(const struct store *s);

/* Format `hash` as "xxh3-128:" + 32 hex digits into buf[64]. */
void store_hash_format(const uint8_t hash[16], char buf[64]);

#endif
