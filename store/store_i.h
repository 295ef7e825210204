/*
 * store_i.h - what the files of store/ share: the store context, the
 * in-memory index of record metadata and the journal record codec (the
 * backend interface is backend.h). Not for use outside store/.
 *
 * Durability protocol (file backend), see commit.c and recover.c:
 *  1. the new content is staged in STORE/tmp/ (O_EXCL, 0600);
 *  2. a journal record describing the change is appended and fdatasync'ed
 *     (group commit). Records up to CODEC_INLINE_MAX carry the content
 *     itself; larger ones name the stage, which was fsync'ed (with its
 *     directory) first. This is the commit point;
 *  3. the stage is renamed into STORE/records/ID. A rename between two
 *     records (store_rename) also fsyncs the directories before the next
 *     change to either record may start.
 * Recovery replays, for each record, only the *last* journal record that
 * touches it: from inline content, from the stage, or by finishing a move.
 *
 * A change of several records (store_txn, txn.c) is one REC_TXN record
 * holding a REC_PUT or REC_DEL per record, all at the txn's seq (one
 * store revision): step 2 appends that one record, so it is the commit
 * point of every part at once; step 3 starts only after it. A txn too big
 * for one journal frame (JNL_MAX_RECORD) is N frames of REC_TXN_PART and
 * a last REC_TXN frame, all at one seq, written with jnl_big_*: readers
 * see all of them or none. Recovery treats each part of each frame as a
 * record of that seq, so either the txn record is in the journal and
 * every part is finished, or it is not and no part was put in place
 * (stages and blob links left behind are removed at open).
 * A checkpoint (syncfs + index snapshot) retires journal segments, but
 * only those the history (history.h) has written to git too.
 *
 * History: a by-reference stage is also hard-linked as
 * STORE/journal/blobs/<stage> (and that directory fsynced) before step
 * 2, so the content of that version survives later overwrites until the
 * history writer has it; after step 2 the writer is notified
 * (hist_notify). The journal is the writer's queue.
 */
#ifndef RECFS_STORE_I_H
#define RECFS_STORE_I_H

#include "store.h"
#include "backend.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

struct hist;
struct jnl;
struct store_lock;
struct store_status;	    /* admin.h */
struct store_verify_report; /* admin.h */

/* Content up to this size travels inside the journal record. */
#define CODEC_INLINE_MAX (1u << 20)

#define STORE_RECORDS_DIR "records"
#define STORE_JOURNAL_DIR "journal"
#define STORE_TMP_DIR "tmp"
#define STORE_SCRATCH_DIR "scratch" /* scratch files (scratch.h) */
#define STORE_INDEX_FILE "index"

/* ---- codec.c: journal and snapshot records ------------------------- */

enum rec_type {
	REC_PUT = 1,	  /* a new version of `id` */
	REC_DEL = 2,	  /* `id` deleted (meta.version = its last version) */
	REC_META = 3,	  /* mode/owner/mtime/xattrs of the current version
			     changed */
	REC_RENAME = 4,	  /* `id` gets `from`'s content as a new version;
			     `from` is deleted */
	REC_STATE = 5,	  /* snapshot: the state of one record */
	REC_TXN = 6,	  /* one store change made of several REC_PUT and
			     REC_DEL parts (store_txn, txn.c); all parts
			     share the record's seq */
	REC_TXN_PART = 7, /* parts like REC_TXN's, with the same seq as the
			     REC_TXN frame that ends the change (a change
			     of many frames; the journal delivers all frames
			     of one seq one after another) */
};

/* One decoded record; pointers borrow the encoded buffer. */
struct rec {
	enum rec_type type;
	const char *id;
	size_t id_len;
	const char *from; /* REC_RENAME */
	size_t from_len;
	uint64_t from_version;	/* REC_RENAME: version of `from` deleted */
	struct store_meta meta; /* version, hash, size, mtime, mode, deleted;
				   revision only for REC_STATE */
	uint64_t ino;		/* REC_STATE: inode of the content file */
	const uint8_t *xa;	/* packed user xattrs (see xa_* below) */
	size_t xa_len;
	struct store_who who;
	int64_t time_ns;   /* wall-clock time of the change */
	const char *stage; /* REC_PUT by reference: stage name in tmp/ */
	size_t stage_len;
	bool has_data; /* REC_PUT inline: `data` holds the content */
	const uint8_t *data;
	size_t data_len;
	/* REC_PUT of a scratch file renamed onto the record: that file (its
	   scratch path, inode and ctime), removed by the commit without a
	   sync and again by a replay if it is still the same file (see
	   store_scratch_commit); `origin` is NULL otherwise */
	const char *origin;
	size_t origin_len;
	uint64_t origin_ino;
	int64_t origin_ctime_ns;
	/* REC_TXN: `nparts` encoded parts at `parts` (codec_txn_next);
	   `id` is NULL */
	uint32_t nparts;
	const uint8_t *parts;
	size_t parts_len;
};

/*
 * Encode `r` except for the inline data bytes (which the caller passes as
 * a second iovec of r->data_len bytes when r->has_data). *out is the
 * caller's (free()). Returns 0 or -ENOMEM/-EINVAL.
 */
int codec_encode(const struct rec *r, uint8_t **out, size_t *len);

/* Decode untrusted bytes. Returns 0 or -EBADMSG. A REC_TXN is checked
   whole: each part decodes and is a REC_PUT or REC_DEL. */
int codec_decode(const uint8_t *buf, size_t len, struct rec *r);

/*
 * Encode a REC_TXN of the `n` parts (REC_PUT/REC_DEL, inline data
 * included) as one buffer: [u8 6][u8 0][u32 n], then per part [u32 len]
 * and the part as codec_encode + its inline bytes. *out is the caller's.
 * Returns 0, -EINVAL (no parts, a part of another type), -ENOMEM.
 */
int codec_encode_txn(const struct rec *parts, size_t n, uint8_t **out,
		     size_t *len);

/* One part as it is in a REC_TXN payload: [u32 len] and the part as
   codec_encode + its inline bytes. *out is the caller's. Returns 0,
   -EINVAL (not a REC_PUT or REC_DEL), -ENOMEM. */
int codec_encode_part(const struct rec *p, uint8_t **out, size_t *len);

/* The head of a REC_TXN or REC_TXN_PART payload of `n` parts, which
   codec_encode_part's follow. */
#define CODEC_TXN_HEAD 6
void codec_txn_head(uint8_t head[CODEC_TXN_HEAD], enum rec_type type,
		    uint32_t n);

/* The next part of a decoded REC_TXN or REC_TXN_PART from *off (start at
   0). Returns 1 with *part (borrowing the buffer), 0 after the last,
   -EBADMSG. */
int codec_txn_next(const struct rec *txn, size_t *off, struct rec *part);

/* Packed xattrs: repeated [u16 name_len][name][u32 value_len][value]. */
int xa_get(const uint8_t *xa, size_t xa_len, const char *name,
	   const uint8_t **value, size_t *size);
/* New packed buffer with `name` set (value != NULL) or removed (NULL).
   Returns 0, -ENODATA (remove of absent), -EEXIST/-ENODATA for flags,
   -ENOSPC over limits, -ENOMEM. */
int xa_update(const uint8_t *xa, size_t xa_len, const char *name,
	      const void *value, size_t size, int flags, uint8_t **out,
	      size_t *out_len);
ssize_t xa_list(const uint8_t *xa, size_t xa_len, char *list, size_t size);
/* New packed buffer: `cur` with every attribute of `add` set over it
   (*out NULL when empty). Returns 0, -EBADMSG, -ENOSPC, -ENOMEM. */
int xa_merge(const uint8_t *cur, size_t cur_len, const uint8_t *add,
	     size_t add_len, uint8_t **out, size_t *len);
/* Check a packed buffer from untrusted input. Returns 0 or -EBADMSG. */
int xa_validate(const uint8_t *xa, size_t xa_len);

/* ---- index.c: id -> metadata ------------------------------------- */

/* One per record, for the life of the store: its fields are ordered so
   that it has no padding (116 bytes and the ID on x86-64, rounded up to
   8; a million records take some 140 MB with the hash table). Recovery tells a
   record's last change by meta.revision, which only a new version or a
   delete sets (the seq of its journal record). */
struct entry {
	struct entry *next; /* hash chain */
	struct store_meta meta;
	uint64_t ino;	      /* inode of the current content (0: unknown) */
	uint64_t pending_ino; /* inode of the content being committed */
	uint8_t *xa;	      /* packed user xattrs (owned) */
	uint32_t hv;
	uint32_t xa_len; /* <= STORE_XATTR_TOTAL_MAX and its packing */
	uint16_t id_len; /* <= ID_MAX_LEN */
	bool busy;	 /* a change to this record is in flight */
	bool pending;	 /* sync=batch: that change is journaled but not
			    durable, and not in place (batch.c) */
	char id[];
};

struct index {
	struct entry **slots;
	size_t nslots; /* power of two */
	size_t count;
	/* entries live as long as the index: carved from blocks (each
	   starts with a pointer to the one before), without malloc's
	   header and rounding (index.c) */
	char *block;
	size_t block_used;
};

int idx_init(struct index *ix);
void idx_destroy(struct index *ix);
struct entry *idx_find(struct index *ix, const char *id, size_t len);
/* idx_find of n IDs into out[], overlapping their cache misses; hv[] is
   the caller's scratch of n. */
void idx_find_many(struct index *ix, const char *const *ids, const size_t *lens,
		   size_t n, uint32_t *hv, struct entry **out);
/* Is `id` a record now (not deleted)? Takes s->mu. */
bool store_is_live(struct store *s, const char *id);
/* Find or add (meta zeroed). Returns NULL on -ENOMEM. */
struct entry *idx_add(struct index *ix, const char *id, size_t len);
/* Call fn for every entry; non-zero return stops and is returned. */
int idx_each(struct index *ix, int (*fn)(void *arg, struct entry *e),
	     void *arg);

/* ---- backends: backend.h ---------------------------------------- */

/* ---- the store context -------------------------------------------- */

struct store {
	struct store_opts opts;
	char *path;
	int dirfd; /* STORE, -1 for the memory backend */
	struct io *io;
	struct backend *be;
	struct jnl *jnl; /* NULL: not journaled (store_journaled) */
	int jnl_dirfd;
	int blobs_fd;	   /* STORE/journal/blobs, -1 without history */
	int scratch_fd;	   /* STORE/scratch, -1: none (no be->tree, or
			      a read-only store that has none yet) */
	struct ehist *eh;  /* a store on etcd with -o history_dir: who
			      writes the history (etcd_hist.h); or NULL */
	struct hist *hist; /* NULL: no history (memory backend, or a
			      read-only store made before history) */
	struct store_lock *lock;

	/*
	 * Commits and namespace changes hold `gate` shared; checkpoints
	 * and rmdir/mkdir hold it exclusive, so they see no change in
	 * flight. Never held while waiting for `mu`'s condition.
	 */
	pthread_rwlock_t gate;

	pthread_mutex_t mu; /* protects: ix, revision_mem, broken */
	pthread_cond_t cv;  /* an entry stopped being busy */
	struct index ix;
	uint64_t revision; /* last committed revision (memory backend,
			      read-only opens) */
	int broken;	   /* -errno once the records dir and the journal may
			      disagree: every change fails until reopened */

	pthread_mutex_t ckpt_mu; /* one checkpoint at a time */
	/* One retention change or prune at a time (retain.c); a backup
	   holds it too, so that it never copies a history a prune is
	   switching to its new epoch. Taken before ckpt_mu. */
	pthread_mutex_t retain_mu;
	struct retain_timer *retain_timer; /* retain.c: the periodic prune
					      of a serving process, or NULL */
	struct store_batch *batch;	   /* sync=batch (batch.c), or NULL */
	struct reserve *reserve;  /* NULL: none (read-only, memory backend) */
	uint64_t space_ckpt_done; /* history done at the last checkpoint of
				     a space episode; protected by mu */
	bool paranoid; /* RECFS_PARANOID=1 in the environment: check every
			  running stage hash against the content (tests) */
	/* store_set_change_hook: called by store_follow.c, under hook_mu
	   (so that setting it NULL waits for a call in progress) */
	pthread_mutex_t hook_mu;
	store_change_hook change_hook;
	void *change_arg;
};

/*
 * Does this store write its journal? Only a writable open of a backend
 * with `journal` (backend.h) has one; without it there is no group
 * commit, no checkpoint and no history feed, and a change is final when
 * the backend op returns.
 */
static inline bool store_journaled(const struct store *s)
{
	return s->jnl != NULL;
}

/* ---- batch.c: sync=batch ------------------------------------------ */

struct batch_item;
/* Set s->batch up if opts.sync_batch_ms asks for it (after recovery). */
int sbatch_init(struct store *s);
/* Put everything queued in place (durable first) and stop. */
void sbatch_free(struct store *s);
/* A queue entry for a new version of `id`, NULL without sync=batch (or
   on ENOMEM: the change is then made durable at once). */
struct batch_item *sbatch_item_new(struct store *s, const char *id);
void sbatch_item_free(struct batch_item *it);
/* What step 3 needs: the busy entry, its new meta (revision set), the
   content's inode and stage name, the xattrs (taken over). */
void sbatch_item_set(struct batch_item *it, struct entry *e,
		     const struct store_meta *meta, uint64_t ino,
		     const char *stage, uint8_t *xa, size_t xa_len);
/* Queue a journaled (not yet durable) item; it is taken over on
   success. Returns 0 or -errno (then nothing was queued). */
int sbatch_queue(struct store *s, struct batch_item *it);
/* commit_put's step 3 with sync=batch (see batch.c): 0 queued, 1 not
   queued but durable now (do step 3), -EIO. */
struct rec;
int sbatch_defer(struct store *s, struct entry *e, struct store_stage *st,
		 const struct rec *r, struct batch_item **bi, uint8_t **xa,
		 uint64_t ino);
/* Wait until every item queued so far is durable and in place. No
   store lock may be held but the gate. */
void sbatch_drain(struct store *s);
/* Wait until a pending change of `id` is in place (no lock held). */
void store_wait_pending(struct store *s, const char *id);

/* retain.c: start (store_serve_start) and stop (store_close) the thread
   that prunes every opts.retain_period_s. */
int store_retain_timer_start(struct store *s);
void store_retain_timer_stop(struct store *s);

/* Hash of a whole fd's content. Returns 0 or -errno. */
int store_hash_fd(struct store *s, int fd, uint8_t hash[16], uint64_t *size);

/* A new stage holding buf[len], written through failpoint `point` (not
   hashed as it goes). Returns 0 (*out the caller's) or -errno. */
int store_stage_of(struct store *s, const char *point, const void *buf,
		   size_t len, struct store_stage **out);

/* Hash and size of a stage's content: the running hash when it covers
   the stage, else a pass over it (store_hash_fd). */
int store_stage_hash(struct store *s, struct store_stage *st, uint8_t hash[16],
		     uint64_t *size);

/* recover.c: load the snapshot, replay the journal, clean up. */
int store_recover(struct store *s);
/* Write the index snapshot at revision `rev`. */
int store_snapshot_write(struct store *s, uint64_t rev);

/* Wait until `e` is not busy; `mu` held. */
void store_wait_idle(struct store *s, struct entry *e);

/* ---- store_follow.c: other writers of a shared store ------------------ */

/* Start following the changes other writers make (backend_ops.follow);
   0 if the backend has none. store_serve_start calls it. */
int store_follow_start(struct store *s);
/* -EIO (reported) while the index is being read again after its watch
   was cancelled, so that nothing stale is served as current; else 0. */
int store_follow_check(struct store *s);
/* The watch's state for a status ("none" without one) and *rev. */
const char *store_follow_status(struct store *s, uint64_t *rev);

/* ---- spool.c: a temp file written, then read back, in order ------------ */

struct spool {
	struct io *io;
	int fd;
	uint8_t *buf; /* one buffer: what is written or read next */
	size_t len;   /* bytes in buf */
	size_t pos;   /* reading: the next byte of buf */
	uint64_t off; /* file offset of buf[0] */
	uint64_t size;
	bool reading;
};

/* A new empty spool (file backend: unnamed in STORE/tmp; else a memfd).
   Returns 0 or -errno; release with spool_close (also after a failure). */
int spool_open(struct store *s, struct spool *sp);
void spool_close(struct spool *sp);
/* Append (before the first rewind). Returns 0 or -errno. */
int spool_write(struct spool *sp, const void *p, size_t n);
/* Read from the start from now on (may be called again). */
int spool_rewind(struct spool *sp);
/* The next n bytes; -EBADMSG past the end, -errno. */
int spool_read(struct spool *sp, void *p, size_t n);
/* The offset of the next byte read (or written). */
uint64_t spool_tell(const struct spool *sp);
bool spool_at_end(const struct spool *sp);
/* Overwrite n bytes at `at`, reading (not read again before a rewind). */
int spool_pwrite(struct spool *sp, const void *p, size_t n, uint64_t at);

/* ---- reserve.c: the space reserve (SPEC section 8) ------------------ */

struct reserve;
/* The reserve's size for a store of `records` records on a file system
   of `fs_bytes` (0: unknown). */
uint64_t reserve_size_for(uint64_t records, uint64_t fs_bytes);
/* Before recovery: if STORE/reserve exists and less than its size is
   free, truncate it (logged), so that the store can open on a full
   disk. */
void reserve_yield_at_open(struct io *io, int dirfd, const char *path);
/* Open STORE/reserve (dirfd, path borrowed) and preallocate it; if there
   is no room for it, it is made later (reserve_restore). Returns 0 or
   -errno; the caller frees *out with reserve_free. */
int reserve_open(struct reserve **out, struct io *io, int dirfd,
		 const char *path, uint64_t records);
/* Accepts NULL. Leaves the file in place for the next open. */
void reserve_free(struct reserve *r);
/* An operation that frees space met ENOSPC (`what` names it, for the log
   and the status): give the reserve back to the file system. Returns
   true if it did (try the operation once more), false if it was not
   held. Accepts NULL (false). */
bool reserve_release(struct reserve *r, const char *what);
/* While the reserve is released: -ENOSPC (noted) if less than its size
   is free, so that new content does not take what deletes freed; else 0.
   Accepts NULL (0). */
int reserve_check_content(struct reserve *r);
/* A delete or rename was committed: in a space episode, the history
   writer may have the reserve from now on (reserve_for_history). */
void reserve_note_freeing(struct reserve *r);
/* The history writer or a checkpoint met ENOSPC while `what`; `frees`:
   what it does holds a delete or a rename. Releases the reserve for it
   if that, or a delete or rename committed since the space episode
   began, says it frees space; else only notes the error. Returns true if
   it released it. Accepts NULL (false). */
bool reserve_release_freeing(struct reserve *r, bool frees, const char *what);
/* Remember a space error (-ENOSPC; others are ignored) for the status. */
void reserve_note(struct reserve *r, int err, const char *what);
/* If twice its size is free again: preallocate it if it was released,
   and, if `may_end`, end the space episode. Returns !reserve_short.
   Accepts NULL. */
bool reserve_restore(struct reserve *r, bool may_end);
/* In a space episode: the reserve is released, or a space error was met
   since there was room last. Accepts NULL (false). */
bool reserve_short(struct reserve *r);
/* Fill the reserve_* and space_* fields of a status. */
void reserve_status(struct reserve *r, struct store_status *st);
/* After a change or a drain: in a space episode (reserve_short), checkpoint
   what the history has written (its journal segments are freed) and make
   the reserve again if there is room (store_hist.c). */
void store_space_recover(struct store *s);

/* ---- change.c: the pipeline every change goes through -------------------- */

/*
 * begin: under s->mu, wait until none of the `n` records (id_at(arg, i))
 * has a change in flight, holding no busy mark (each wait starts the
 * look over again: another may have become busy meanwhile); es[i] gets
 * each one's entry or NULL (es may be NULL). Returns s->broken (0 or
 * -EIO) once all are idle; the caller checks its conditions and marks
 * them busy, all at once, before it unlocks.
 */
int change_wait_idle(struct store *s, size_t n,
		     const char *(*id_at)(void *arg, size_t i), void *arg,
		     struct entry **es);

/* Before begin, for a change of `id` (no lock held): the checks every
   change starts with (commit_precheck), the history's backpressure, the
   index entry of an adopted file; then s->gate is taken shared. Returns 0
   (gate held) or -errno (nothing held). */
int change_enter(struct store *s, const char *id,
		 const struct store_cond *cond);

/* The same for the IDs ids[0..n). */
int change_wait_ids(struct store *s, const char *const *ids, size_t n,
		    struct entry **es);

/* journal: encode `r` and append it (the commit point; a memory store
   only takes the next revision); *seq is its revision. `nosync`: written,
   not durable yet (sync=batch, batch.c). */
int change_journal(struct store *s, const struct rec *r, bool nosync,
		   uint64_t *seq);

/* A copy of n bytes (malloc'ed, at least 1). NULL on ENOMEM. */
uint8_t *change_memdup(const uint8_t *p, size_t n);

#define APPLY_PLACE 1u /* put the content in place (records directory) */
#define APPLY_INDEX 2u /* update the index entry */

/* What the apply step knows besides the record. */
struct apply {
	unsigned steps;		/* APPLY_PLACE | APPLY_INDEX */
	bool replay;		/* recovery: see change_apply */
	bool unmark;		/* clear the records' busy marks */
	struct store_stage *st; /* a live put's stage (else the record's
				   inline data or stage name) */
	struct entry *e;	/* the entry of r->id if known (else found) */
	uint64_t ino;		/* a put's content inode (0: unknown) */
	uint8_t *xa;		/* r->xa as an owned copy, taken over (NULL:
				   r->xa is copied) */
	uint64_t seq;		/* set by change_apply */
	uint64_t fixed, lost;	/* replay: content put in place, and gone */
};

/*
 * apply: the records directory and the index entry after the decoded
 * record `r` at revision `seq` -- the same for every kind of change, live
 * or replayed; a REC_TXN (or REC_TXN_PART) applies each part. Live, a
 * failure to put content in place breaks the store (commit_mark_broken)
 * and is not returned: the change is journaled. Replay (recovery), the
 * content is put in place only by the last record that changes it and
 * only if it is not there yet. Takes s->mu for the index. Returns 0,
 * -ENOMEM, -EBADMSG, or (replay) -errno.
 */
int change_apply(struct store *s, const struct rec *r, uint64_t seq,
		 struct apply *a);

/*
 * journal, history and apply of a change whose record `r` is complete and
 * whose records are marked busy (a->e: r->id's entry; a->xa: r->xa owned,
 * or NULL). On a failure before the commit point the marks are cleared
 * and `what` failed is logged. *seq is the change's revision.
 */
int change_journal_apply(struct store *s, struct rec *r, struct apply *a,
			 const char *what, uint64_t *seq);

/* Replay: remove the source of the rename `r` at `seq` if that rename is
   its last change. */
int change_drop_rename_source(struct store *s, const struct rec *r,
			      uint64_t seq);

/* Does the file of `id` hold content of this hash and size? 1, 0, -errno
   (logged). */
int change_content_is(struct store *s, const char *id,
		      const struct store_meta *m);

/* ---- the steps every change shares (change.c; txn.c uses them) -------- */

/* The version of `e` if it is live, else 0. */
uint64_t commit_live_version(const struct entry *e);

int64_t commit_now_ns(struct timespec *ts);
/* ID, read-only, broken, CAS support of a conditional change. */
int commit_precheck(struct store *s, const char *id,
		    const struct store_cond *cond);
/* Give an adopted file its index entry before a change. */
void commit_ensure_indexed(struct store *s, const char *id);
/* The namespace of `id` exists and `id` is not one. Gate held. */
int commit_check_place(struct store *s, const char *id);
/* The owner of a new version into m->uid/gid: `owner` if given, else
   the current one of `e`, else (a new record) who->uid and group 0. */
void commit_pick_owner(const struct store_owner *owner,
		       const struct store_who *who, const struct entry *e,
		       struct store_meta *m);
/* -ESTALE (res->current set; reported, naming `id`) unless `c` holds
   for version `cur`. */
int commit_check_cond(const char *id, const struct store_cond *c, uint64_t cur,
		      struct store_result *res);
/* A scratch file that a commit takes the content of (scratch.c). */
struct scratch_origin {
	const char *path;
	uint64_t ino;
	int64_t ctime_ns; /* st_ctim: a file changed since is not removed */
};

/*
 * The commit of scratch file `origin` as `id` (scratch.c: a rename onto a
 * record): store_commit with the file's packed user xattrs `xa` (xa_len
 * bytes, may be 0) set over the record's current ones, in the same
 * journal record (the record keeps those the file does not have, as sed
 * -i and editors do not copy them). A commit whose resulting xattrs
 * differ is not a no-op. The record names `origin`, and the file is
 * removed (not synced) once the record is journaled, before the change
 * is applied, with the gate held so that no checkpoint comes between:
 * a replay removes it again (scratch_origin_remove).
 */
int commit_with_xattrs(struct store *s, const char *id, struct store_stage *st,
		       const struct store_commit_args *args, const uint8_t *xa,
		       size_t xa_len, const struct scratch_origin *origin,
		       struct store_result *res);

/* scratch_xattr.c: the user xattrs of `fd` that a record keeps, packed
   as the index holds them (*xa is the caller's; NULL if there are none).
   Returns 0, -ENOSPC over a record's limits (store.h), -EAGAIN if the
   list grew meanwhile, -errno. */
int scratch_xattrs_read(int fd, uint8_t **xa, size_t *xa_len);
/* Set the packed xattrs `xa` on `fd`. */
int scratch_xattrs_write(int fd, const uint8_t *xa, size_t xa_len);

/* Remove the scratch file that REC_PUT `r` names as its origin if it is
   still that file; not synced. Logs what it cannot remove. */
void scratch_origin_remove(struct store *s, const struct rec *r);
/* A journaled change could not be put in place: refuse changes. */
void commit_mark_broken(struct store *s, const char *id, int err);
/* Append one journal record made of `iov` (the commit point); *seq is
   its revision. Memory store: just the next revision. */
int commit_journal(struct store *s, const struct iovec *iov, int n,
		   uint64_t *seq);
/* Clear `e`'s busy mark and wake waiters; `mu` held. */
void commit_unbusy(struct store *s, struct entry *e);
/* Checkpoint if the journal segment is big enough (no lock held). */
void commit_maybe_checkpoint(struct store *s);

/* ---- scratch.c: what namespace changes need (gate held exclusively) -- */

/*
 * Remove the scratch directory of namespace `ns` if it is empty, so the
 * namespace can go or move. Returns 0 (removed, or there is none),
 * -ENOTEMPTY (it holds scratch files), -errno.
 */
int scratch_ns_drop(struct store *s, const char *ns);

/* ---- store_hist.c: the store's side of the history ------------------ */

/* Open the history (creating STORE/history.git if the store has none);
   before recovery. Returns 0 or -errno. */
int store_hist_open(struct store *s);
/* store_remote.c: set the history remote of store_opts (or the one kept
   in history.git) once the history is open. Returns 0 or -errno. */
int store_remote_open(struct store *s);
/* store_remote.c: before a prune (history drained): 0 if no remote is
   set (*upto: UINT64_MAX) or a push gave it the history up to revision
   *upto, else -errno (reported). */
int store_remote_has_history(struct store *s, uint64_t *upto);
/* Start the history writer if it is not running (it starts on first
   use, never in store_open: see store_serve_start). */
int store_hist_start(struct store *s);
/* A change was journaled at revision `rev`. */
void store_hist_changed(struct store *s, uint64_t rev);
/* Backpressure before a change (see store_opts.history_lag_max). */
void store_hist_throttle(struct store *s);
/* Link a by-reference stage as journal/blobs/<stage>, durably (before the
   journal names it). Returns 0 or -errno. */
int store_hist_link(struct store *s, const struct store_stage *st);
/* The same for `n` stages with one fsync of the directory (txn.c); the
   stages themselves must be durable already. *linked: how many of the
   first were linked (the caller unlinks them if the change fails). */
int store_hist_link_many(struct store *s, const struct store_stage *const *st,
			 size_t n, size_t *linked);
/* Remove that link again (the change failed). */
void store_hist_unlink(struct store *s, const struct store_stage *st);
/* The revision up to which journal segments may be dropped. */
uint64_t store_hist_keep(struct store *s, uint64_t rev);
/* store_close: drain (bounded), report what stays pending, stop the
   writer. The history is freed by store_hist_free. */
void store_hist_stop(struct store *s);
void store_hist_free(struct store *s);
/* One problem store_verify found (or could not repair), naming the
   record and the cause: logged -- the listing verify gives, one line a
   problem -- and kept as this thread's last error (-EBADMSG), which
   store_verify returns with a count in front. */
void verify_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* store_verify's history part; with `repair`, blobs missing from git
   that a record file still holds are written back. */
int store_verify_history(struct store *s, struct store_verify_report *rep,
			 bool repair);

#endif
