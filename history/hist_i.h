/*
 * hist_i.h - what the files of history/ share: the history context, the
 * in-memory index of versions, history.idx frames, the batch a commit is
 * built from and the commit message codec. Not for use outside history/.
 *
 * The layers, each file using only those below it (no loop; checked
 * with a grep of who calls what), bottom up:
 *   history_util.c    libgit2 errors as -errno, the clock, paths
 *   history_path.c    record IDs as tree paths
 *   history_msg.c     commit messages: trailer blocks, quoting, times
 *   history_hidx.c    the index in memory (struct hidx)
 *   history_epoch.c   a prune's new epoch put in place (its intent)
 *   history_vdx.c     history.vdx: a record's versions by jumps (hidx)
 *   history_index.c   history.idx: frames written, entries read back
 *                     (hidx, vdx)
 *   history_read.c    lookups, reads, walks, verify (index, hidx, vdx,
 *                     path)
 *   history_idxload.c history.idx opened, caught up from git, rebuilt
 *                     (index, hidx, vdx, read, msg)
 *   history_refs.c    refs/heads/main and the side branch (msg)
 *   history_pack.c    a batch's objects as one pack; merging packs
 *   history_odb.c     the writer's object databases (pack)
 *   history_bspool.c  a batch's versions and tree changes spooled out
 *                     of memory, sorted in runs
 *   history_tree.c    a batch's trees, a chunk of paths at a time
 *                     (bspool, pack)
 *   history_commit.c  a batch made one commit (index, msg, odb, pack,
 *                     refs, bspool, tree)
 *   history_batch.c   the store's changes read into a batch (commit,
 *                     pack, read, path)
 *   history_writer.c  the writer thread, drains, blob links (batch)
 *   history_prune.c   pruning by retention (writer, read, idxload,
 *                     epoch, refs, odb, msg, path)
 *   history.c         creating, opening and closing (all of the above)
 * Below history/: base/ (io, log, util, buf, bytes), journal/ (only the
 * frame format of history.idx), the store's IDs (id.h) and its public
 * change interface (changes.h: struct store_change; store_history.h:
 * struct store_version), which the store feeds through the struct
 * hist_source it hands to hist_open. Nothing here includes a store
 * internal.
 */
#ifndef RECFS_HIST_I_H
#define RECFS_HIST_I_H

#include "history.h"
#include "buf.h"

#include <git2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- history_index.c: the index -------------------------------------- */

enum {
	HENT_DELETED = 1,
	HENT_MISSING = 2, /* no content: no blob */
	HENT_HASH = 4,	  /* `hash` is known */
	HENT_SYMLINK = 8, /* a symlink: the blob is its target */
	HENT_META = 16,	  /* `mode`, `ouid`, `ogid` are known */
	HENT_PRUNED = 32, /* pruned by a retention policy: its blob is gone,
			     its trailer stays (history_prune.c) */
	HENT_ALL = 63,
};

/*
 * One version (or delete) of a record, about 110 bytes. The index holds
 * these in memory only for the versions that are not in history.idx (a
 * read-only open, or after history.idx could not be written): the others
 * are read from the file when asked for, so that the memory of a mounted
 * store does not grow with its history.
 */
struct hent {
	uint64_t version, revision, size;
	int64_t time_ns;
	struct hrec *rec; /* the record it belongs to */
	uint32_t commit;  /* number in the index's commit table */
	uint32_t uid, pid;
	uint8_t flags;
	git_oid blob;
	uint8_t hash[16];
	char comm[16];
	uint32_t mode, ouid, ogid; /* the version's own (HENT_META) */
};

/*
 * A record: where its versions are. Those in history.idx form a chain
 * from the last one back (each entry names the offset of the one
 * before); those held in memory (all newer than the file's) are listed
 * as positions in `chunks`. About 48 bytes and the ID per record, whatever
 * its number of versions.
 */
struct hrec {
	uint64_t last;	       /* offset in history.idx of its last entry, 0 */
	uint64_t vlast;	       /* ordinal + 1 of its last entry in
				  history.vdx (history_vdx.c), 0: none */
	uint32_t *pos;	       /* its versions held in memory */
	uint32_t n, cap;
	uint32_t hv;
	uint16_t id_len;
	char id[];
};

#define HIDX_CHUNK 4096

/* A slot of the records' table (open addressing): the hash is kept in
   it, so that a probe reads no record but the one it finds. */
struct hslot {
	uint32_t hv;
	struct hrec *r; /* NULL: free */
};

struct hidx {
	struct hslot *slots; /* nslots, a power of two, at most 3/4 full */
	size_t nslots, nrecs;
	char **arena; /* the records, packed in chunks (never freed one by
			 one: a record stays for the life of the index) */
	size_t narena, arena_used; /* chunks; bytes used of the last */
	struct hent **chunks; /* versions held in memory, in revision order */
	size_t n, nchunks;
	git_oid *commits; /* of the versions held in memory */
	size_t ncommits, commits_cap;
	uint64_t upto;		/* Recfs-Upto of the last commit added */
	uint64_t disk_end;	/* history.idx: the entries before this offset
				   are part of the index */
	uint64_t disk_versions; /* ... and how many versions they are */
};

int hidx_init(struct hidx *x);
/* Room for `nrecs` records without growing (an estimate: only faster). */
void hidx_reserve(struct hidx *x, size_t nrecs);
void hidx_destroy(struct hidx *x);
/* Entry number `i` (< x->n). */
struct hent *hidx_at(const struct hidx *x, size_t i);
struct hrec *hidx_rec(const struct hidx *x, const char *id, size_t id_len);
/* The version `version` of `id` with content (not a delete) held in
   memory, or NULL. */
const struct hent *hidx_find(const struct hidx *x, const char *id,
			     size_t id_len, uint64_t version);
/* The record `id` (added if new; NULL: no memory). */
struct hrec *hidx_rec_add(struct hidx *x, const char *id, size_t id_len);
/* A version held in memory, of commit number e->commit. Returns 0 or
   -ENOMEM. */
int hidx_add(struct hidx *x, const char *id, size_t id_len,
	     const struct hent *e);
/* The number of `oid` in the commit table (added). 0 or -ENOMEM. */
int hidx_add_commit(struct hidx *x, const git_oid *oid, uint32_t *no);
/* Fill a public version from an entry held in memory. */
void hidx_export(const struct hidx *x, const struct hent *e, hist_version *out);

/*
 * history.idx entries (history_index.c), for the readers: the entry at
 * `off` of record `r`, read from the file (h->idx_rfd). ent_step reads
 * only what a walk down the chain needs; ent_read all of it (the record
 * ID is checked against r). Return 0, or -EIO for an entry that does not
 * read back as one (logged).
 */
int hidx_ent_step(struct hist *h, uint64_t off, uint64_t *prev,
		  uint64_t *version, uint8_t *flags);
int hidx_ent_read(struct hist *h, const struct hrec *r, uint64_t off,
		  hist_version *out);
/*
 * Call fn for every entry of history.idx before `end`, in file (so
 * revision) order; `id` is NUL-terminated. A non-zero return stops and
 * is returned; -EIO for a frame that does not read back (logged).
 */
int hidx_file_each(struct hist *h, uint64_t end,
		   int (*fn)(void *arg, const char *id, const hist_version *v),
		   void *arg);

/*
 * The chains of a few records, held in memory for lookups of their old
 * versions (history_read.c): without them, version k back from the
 * newest costs k reads of history.idx, and reading every version of a
 * record with n versions n*n/2. A lookup that has walked HIST_CHAIN_WALK
 * entries without reaching its version goes on through r's slot: what
 * the walk reads on is kept there, entries newer than those held on one
 * side and older ones on the other, so each entry is read once and a
 * lookup of a held version is two binary searches. Entries in the file
 * never change: a slot stays true. At most HIST_CHAIN_MAX entries a slot
 * (16 bytes each; a slot that would grow past it starts again), slots
 * taken in turn; chain_mu protects them.
 */
#define HIST_CHAINS 4
#define HIST_CHAIN_WALK 32
#define HIST_CHAIN_MAX ((size_t)1 << 18)

/* An entry of a chain: its offset and version (version << 1 | 1 for a
   delete). */
struct hlink {
	uint64_t off, ver;
};

struct hspan {
	size_t n, cap;
	struct hlink *v;
};

struct hchain {
	const struct hrec *r; /* NULL: free */
	struct hspan hi;      /* the newer entries, oldest first */
	struct hspan lo;      /* the older ones, newest first, below hi's */
	uint64_t rest;	      /* the entry below the oldest held, 0 */
};

/* Free the slots (history close). */
void hist_chains_free(struct hist *h);

/* ---- history_vdx.c: history.vdx, the versions of a record by jumps ------ */

/* history.vdx: what the readers use (n, fd), and at open or in the
   writer only, what is being checked or written. */
struct hvdx {
	int fd;		 /* -1: none (lookups walk history.idx) */
	bool writable;	 /* appended to (not read-only, no write failed) */
	bool checking;	 /* at open: the file's entries are being checked */
	uint64_t n;	 /* entries published (under ix_lock) */
	uint64_t file_n; /* at open: entries in the file */
	uint8_t *wbuf;	 /* entries wbuf_at.. not written yet (wbuf_n) */
	uint64_t wbuf_at, wbuf_n;
	uint8_t *rbuf; /* at open: entries rbuf_at.. as read (rbuf_n) */
	uint64_t rbuf_at, rbuf_n;
};

struct hframe;
/* Open history.vdx at hist_index_load (without it, or on any trouble,
   lookups walk history.idx); close it at hist_close. */
void hvdx_open(struct hist *h);
void hvdx_close(struct hist *h);
/* history.idx is started afresh: so is history.vdx. */
void hvdx_reset(struct hist *h);
/* hidx_file_read's entries, in order (ordinal h->ix.disk_versions):
   checked against the file, or written to it from the first that does
   not check; r->vlast is set. hvdx_load_end: after the last one. */
void hvdx_load_ent(struct hist *h, struct hrec *r, uint64_t off,
		   uint64_t version, uint8_t flags);
void hvdx_load_end(struct hist *h);
/* The writer: the entries of a frame just written to history.idx,
   written here; returns each version's new vlast (malloc'd), or NULL
   if they could not be (no more are written: lookups walk). Then, with
   ix_lock held (write), hvdx_publish makes them the records'. */
uint64_t *hvdx_frame(struct hist *h, const struct hframe *f);
void hvdx_publish(struct hist *h, const struct hframe *f, const uint64_t *ords);
/* Where version `version` of r (with content) is in history.idx, given
   its last entry there (`last`) and here (`vlast` <= vdx.n, read under
   ix_lock with it). Returns 0 (*at), -ENOENT, or 1: walk the chain. */
int hvdx_find(struct hist *h, const struct hrec *r, uint64_t last,
	      uint64_t vlast, uint64_t version, uint64_t *at);

/* ---- history_msg.c: commit messages ---------------------------------- */

/* One trailer block, for formatting and as parsed. */
struct hmsg_ver {
	const char *id; /* formatting: borrowed; parsing: the parser's */
	size_t id_len;
	const char *from, *to; /* rename target / renamed source, or NULL */
	size_t from_len, to_len;
	struct hent e; /* e.rec and e.commit unused */
};

/* Append the block of `v` to a message. */
void hmsg_block(struct buf *b, const struct hmsg_ver *v);
/* Append a value, quoted if it has to be. */
void hmsg_value(struct buf *b, const char *s, size_t n);

/*
 * Parse a commit message: `fn` gets each version block (pointers valid
 * during the call), *upto the Recfs-Upto (0 if none). Blocks that cannot
 * be parsed are counted in *bad and skipped. Returns 0, fn's non-zero
 * return, or -ENOMEM.
 */
int hmsg_parse(const char *msg, size_t len,
	       int (*fn)(void *arg, const struct hmsg_ver *v), void *arg,
	       uint64_t *upto, unsigned *bad);

/* RFC 3339 UTC with nanoseconds; buf >= 40 bytes. */
void hmsg_time(int64_t ns, char *buf, size_t len);

/* ---- history_util.c ----------------------------------------------------- */

/* CLOCK_MONOTONIC in ns. */
int64_t hist_mono_ns(void);
/* "a/b" in a new string (NULL: no memory). */
char *hist_join(const char *a, const char *b);

/* ---- history_index.c: history.idx --------------------------------------- */

/* history.idx (history_index.c): its header, 16 bytes */
#define HIDX_MAGIC "RECFSH03"
#define HIDX_HDR 16

/* A frame being built: payload after a JNL_FRAME_HDR gap, to be written
   at h->idx_end; per version, its record and where its entry goes. */
struct hframe {
	struct buf b;
	size_t count_at;
	uint32_t count;
	uint64_t at;	 /* the file offset of b.p[0] */
	git_oid commit;
	uint64_t upto;
	int err; /* of a part written before (frame_put) */
	struct pub {
		struct hrec *r;
		uint64_t off;
	} * pub;
	size_t npub, cap;
	/* each record's last entry in the frame: a hash of its hrec to
	   1 + its last index in pub (0: free), nslots a power of two */
	uint32_t *slots;
	size_t nslots;
};

/* Start a frame of the versions of `commit` (Recfs-Upto `upto`), add
   versions (written in parts of at most JNL_MAX_RECORD as it grows; an
   error sticks), end it (the last part). hidx_frame_end returns 0 or the
   first error (the versions are then held in memory, or missing until
   the next open). */
void hidx_frame_start(struct hist *h, struct hframe *f, const git_oid *commit,
		      uint64_t upto);
void hidx_frame_put(struct hist *h, struct hframe *f, const struct hmsg_ver *v);
int hidx_frame_end(struct hist *h, struct hframe *f);
void hidx_frame_free(struct hframe *f);
/* Read history.idx (h->idx_fd) into the index: *last is the commit of its
   last complete frame (*has_last), *damaged if its tail is damaged.
   Returns 0, -EBADMSG (rebuild it) or -errno. */
int hidx_file_read(struct hist *h, git_oid *last, bool *has_last,
		   bool *damaged);

/* ---- history.c: the context ------------------------------------------ */

struct hist {
	struct hist_opts o;
	char *path;	 /* STORE/history.git */
	char *idx_path;	 /* STORE/history.idx, for messages */
	int repo_fd;	 /* STORE/history.git */
	int heads_fd;	 /* its refs/heads */
	int blobs_fd;	 /* STORE/journal/blobs, -1 if read-only */
	bool git_inited; /* git_libgit2_init was called */

	struct hremote *remote; /* the pusher (history_remote.c) or NULL;
				   set under mu */

	/* The writer's (and, before hist_start, hist_open's) repository
	   and state: only the thread that writes touches them. */
	git_repository *repo;
	git_odb_backend *mempack; /* in repo's odb, first: a batch's objects
				     until they are written as one pack */
	git_odb *big_odb;	  /* loose objects only: large blobs */
	git_odb_backend *pack_backend; /* in repo's odb (hist_pack_packs) */
	uint64_t pack_gen;	       /* packs written: the pack backend lists
					  objects/pack again (history_odb.c) */
	unsigned packs;		       /* packs in objects/pack, as last counted
					  plus those written since; 0: unknown */
	void *cur;		       /* o.src's reader */
	git_oid head;
	bool has_head;
	git_tree *head_tree;
	git_oid side; /* refs/heads/recfs-versions (if has_side) */
	bool has_side;
	git_oid ref_maybe; /* a commit a failed ref update may have left
			      in refs/heads/main */
	bool has_ref_maybe;
	int idx_fd; /* history.idx, -1 if it cannot be written */
	uint64_t idx_end;
	int64_t last_commit_ns; /* CLOCK_MONOTONIC */
	bool space_short;	/* the last batch failed with ENOSPC, or was cut
				   to the room there was: batches are cut to it
				   (history_batch.c) */
	bool batch_frees; /* the last batch held a delete or a rename: once
			     written, space is freed */

	/* Readers' repository: libgit2 objects are not shared between
	   threads. */
	pthread_mutex_t rmu; /* protects rrepo */
	git_repository *rrepo;

	/* Held shared by lookups and walks of the index, exclusive while a
	   prune puts its new epoch in place (history_prune.c). */
	pthread_rwlock_t epoch_lock;
	/* A prune got past its intent but could not finish: the writer
	   stays paused (one hist_pause held) until one does. Only
	   hist_prune touches it; its callers run one prune at a time. */
	bool epoch_pending;
	pthread_rwlock_t ix_lock; /* protects ix */
	struct hidx ix;
	int idx_rfd;	 /* history.idx for the readers (pread only), or -1;
			    open as long as the history is */
	struct hvdx vdx; /* n: under ix_lock */
	pthread_mutex_t chain_mu; /* protects chains, chain_next */
	struct hchain chains[HIST_CHAINS];
	unsigned chain_next;

	pthread_mutex_t mu;   /* protects the fields below */
	pthread_cond_t wake;  /* the writer: notify, drain, stop */
	pthread_cond_t moved; /* drainers and throttled commits */
	uint64_t target;      /* durable in the journal */
	uint64_t done;	      /* durable in git */
	int err;	      /* of the last batch */
	uint64_t begun;	      /* batches begun */
	uint64_t attempts;    /* batches tried (ended) */
	unsigned kicks;	      /* drains waiting: no delay, no backoff */
	unsigned paused;      /* hist_pause calls not resumed yet */
	bool in_batch;	      /* the writer is writing a batch */
	uint64_t wake_at;     /* while it waits for more of a batch: the
				 target at which hist_notify wakes it (a
				 batch's worth later); 0: at any change */
	bool stop, running, started;
	pthread_t thread;
};

/*
 * Moving refs/heads/main to `oid` (history.c), git's way: prepare writes
 * refs/heads/main.lock (not synced: the caller's syncfs does it), commit
 * renames it over refs/heads/main and fsyncs refs/heads, abort removes
 * it. Return 0 or -errno (-ESTALE: moved by someone else meanwhile).
 */
/*
 * Versions that a batch records but whose blobs its tree does not hold
 * (a record changed twice in one batch: only the last change is in the
 * tree) are kept reachable by a side branch, HIST_REF_SIDE: one commit
 * per such batch, parent the previous one, tree "ID@VERSION" -> blob. It
 * carries no trailers; git clone and git gc keep its blobs. The batch
 * writes its lock file before the syncfs and renames it in place just
 * before refs/heads/main (hist_side_prepare, hist_side_commit).
 */
#define HIST_REF_SIDE "refs/heads/recfs-versions"
int hist_side_prepare(struct hist *h, const git_oid *oid);
int hist_side_commit(struct hist *h);

int hist_ref_prepare(struct hist *h, const git_oid *oid);
int hist_ref_commit(struct hist *h, const git_oid *oid);
void hist_ref_abort(struct hist *h);

/* Blobs larger than this are streamed as loose objects (h->big_odb)
   rather than held in the mempack. */
#define HIST_PACK_BLOB_MAX ((uint64_t)1 << 20)
/* A batch of this many versions or more (more than batch_max allows: a
   large revision) has its commit streamed as a loose object too
   (history_commit.c): 16384, a variable so that tests can make it small. */
extern size_t hist_stream_commit_min;

/*
 * history_pack.c: hist_pack_write writes the objects held in h->mempack
 * as one pack (not synced: the batch's syncfs does it) and empties the
 * mempack, whatever happens; hist_pack_tidy merges packs when there are
 * too many (made durable before the old ones are removed). Return 0 or
 * -errno.
 */
int hist_pack_write(struct hist *h);
/* *reopen: packs were removed, the caller opens the object databases
   again (hist_reopen_odbs). */
int hist_pack_tidy(struct hist *h, bool *reopen);
/* The backend that holds a batch's objects (h->mempack): a mempack that
   knows what it holds. Returns 0 or a libgit2 error. */
int hist_pack_backend(git_odb_backend **out);
/* The bytes of the objects h->mempack holds now. A batch that holds
   HIST_PACK_MEM_MAX takes no more versions. */
uint64_t hist_pack_bytes(const struct hist *h);
/* What the mempack may hold before it goes out as a pack (o.pack_mem_max,
   or HIST_PACK_MEM_MAX). */
uint64_t hist_pack_mem_max(const struct hist *h);
/* Drop what h->mempack holds (a batch attempt starts afresh). */
void hist_pack_reset(struct hist *h);
#define HIST_PACK_MEM_MAX ((uint64_t)32 << 20)
/* libgit2's pack windows (history.c): their size, and what may stay
   mapped of all of them. */
#define HIST_MWINDOW ((size_t)4 << 20)
#define HIST_MWINDOW_MAPPED ((size_t)32 << 20)
/* The writer's pack backend over `objects` (repo_fd: the repository):
   git_odb_backend_pack's, listing objects/pack again only when it
   changed. Returns 0 or a libgit2 error. */
int hist_pack_packs(git_odb_backend **out, const char *objects, int repo_fd,
		    const uint64_t *gen);

/* Remove the temp files of a pack write cut short by a crash. */
int hist_pack_clean(struct hist *h);
/* history_odb.c: open the writer's and the readers' object databases
   again (after packs were removed). Returns 0 or -errno. */
int hist_reopen_odbs(struct hist *h);
/* history_odb.c: the writer's object databases for `repo` (at `path`,
   open as repo_fd): the mempack of a batch's objects, loose objects and
   packs (*mempack, *packs: its backends), and loose objects alone for
   large blobs (*big, replaced). Returns 0 or a libgit2 error. */
int hist_writer_odb(git_repository *repo, const char *path, int repo_fd,
		    const uint64_t *gen, git_odb_backend **mempack,
		    git_odb_backend **packs, git_odb **big);

/* ---- history_prune.c, history_epoch.c: pruning -------------------------- */

#define HIST_SIDE_NAME "recfs-versions" /* HIST_REF_SIDE in refs/heads */
/* The summary line of the commit that starts epoch N (N >= 2) on
   refs/heads/main, followed by N (history_remote.c finds it) */
#define HIST_EPOCH_SUMMARY "recfs: retention prune, history epoch "
#define HIST_PRUNE_DIR                                                         \
	"recfs-prune"	      /* in history.git: a prune's pack                \
				 and intent until it is in place */
#define HIST_PACK_NAME_MAX 64 /* "pack-" + hex + suffix */

/* A new epoch: its pack (in HIST_PRUNE_DIR, name without suffix) and
   the heads it gives the refs. */
struct hist_epoch {
	char pack[HIST_PACK_NAME_MAX];
	git_oid main, side;
	bool has_side;
};

/* Write HIST_PRUNE_DIR/intent (dirfd: that directory) durably: the
   commit point of a prune. Returns 0 or -errno. */
int hist_epoch_intent_write(struct hist *h, int dirfd,
			    const struct hist_epoch *ep);
/* Put the epoch whose intent is written in place (see history_epoch.c);
   each step can be done again. Returns 0 or -errno (logged). */
int hist_epoch_install(struct hist *h, int dirfd, const struct hist_epoch *ep);
/* At open (before the repository is): finish a prune whose intent is
   written, or remove one cut short before it. Returns 0 or -errno. */
int hist_epoch_recover(struct hist *h);
/* history_refs.c: read refs/heads/main (h->head, h->head_tree, h->done
   from its Recfs-Upto) and the side branch: at open (hist_head_read),
   again after a prune (hist_head_reload). Return 0 or -errno. */
int hist_head_read(struct hist *h);
int hist_head_reload(struct hist *h);
/* history_index.c: start history.idx and the index afresh from the
   commits of refs/heads/main (after a prune; epoch_lock held exclusive,
   the writer paused). Returns 0 or -errno. */
int hist_index_rebuild(struct hist *h);

/* ---- history_batch.c, history_commit.c: a batch ---------------------- */

/*
 * history_bspool.c: records spooled out of memory, in a buffer of at most
 * a megabyte spilled to an unlinked file in the repository (so a batch
 * of a million versions holds a few megabytes, not some 300 bytes a
 * version); read back in order by a bsp_reader.
 */
struct bspool {
	struct hist *h;
	int fd;		/* the spill file, -1: none yet */
	uint64_t flen;	/* bytes in it */
	struct buf mem; /* the records after them */
	size_t n;	/* records */
};

void bsp_init(struct bspool *s, struct hist *h);
void bsp_free(struct bspool *s);
/* Append one record: `alen` bytes of `a`, then `blen` of `b`. Returns
   0 or -errno. */
int bsp_put(struct bspool *s, const void *a, size_t alen, const void *b,
	    size_t blen);
/* The offset after the last record. */
uint64_t bsp_end(const struct bspool *s);

/* Reads the records in [off, end) in turn; what bsp_next gives is valid
   until the next call (and while the spool takes no record). */
struct bsp_reader {
	const struct bspool *s;
	uint64_t off, end;
	uint8_t *buf; /* bytes [at, at + len) of the file */
	size_t cap, len;
	uint64_t at;
};

void bsp_reader_init(struct bsp_reader *r, const struct bspool *s,
		     uint64_t start, uint64_t end);
void bsp_reader_free(struct bsp_reader *r);
/* Returns 1 (*rec, *len), 0 at the end, or -errno. */
int bsp_next(struct bsp_reader *r, const uint8_t **rec, size_t *len);

/* A change of the batch's tree: the version `order` of the batch. */
struct bop {
	const char *path; /* in the tree (escaped), NUL-terminated */
	uint64_t order, version;
	git_oid blob;
	bool has_blob; /* false: remove */
	bool link;     /* a symlink: mode 120000 */
};

/* Tree changes sorted by (path, order) in runs of a few megabytes,
   merged as they are read back. */
struct bsort {
	struct buf run; /* the records of the run being built */
	size_t *offs;	/* ... where each starts */
	size_t n, cap;
	struct bspool out; /* the sorted runs */
	uint64_t *runs;	   /* where each starts in `out` */
	size_t nruns, runs_cap;
};

void bsort_init(struct bsort *s, struct hist *h);
void bsort_free(struct bsort *s);
/* Add a change (its path is copied). Returns 0 or -errno. */
int bsort_add(struct bsort *s, const struct bop *op);
/* Call fn for every change, by path then order (once: the sort is
   used up); fn's non-zero return stops and is returned. */
int bsort_each(struct bsort *s, int (*fn)(void *arg, const struct bop *op),
	       void *arg);

/* What a batch holds in memory at most, about: the spool's buffer
   (1 MiB), a run of the sort (4 MiB), the paths of one tree update
   (65536); and the size from which the head commit is streamed at open
   (1 MiB, history_refs.c). Variables so that tests can make them
   small. */
extern size_t hist_spool_mem, hist_sort_run, hist_tree_chunk,
	hist_head_stream_min;

#define HIST_STAGE_MAX 255

/* A version of the batch, as added or read back (one at a time: some
   13 KB). */
struct bver {
	struct hmsg_ver m; /* m.id and m.from/m.to point into the fields
			      below */
	bool has_stage;	   /* `stage` is a blob link to remove after the
			      commit */
	char id[ID_MAX_LEN + 1];
	char other[ID_MAX_LEN + 1];
	char path[HIST_PATH_MAX + 1]; /* id in the tree (hist_path_from_id) */
	char stage[HIST_STAGE_MAX + 1];
};

/* Append `v` to the spool (enc: a scratch buffer). 0 or -errno. */
int bver_put(struct bspool *s, struct buf *enc, const struct bver *v);
/* Decode a record of bver_put. Returns 0 or -EIO. */
int bver_get(const uint8_t *rec, size_t len, struct bver *v);
/* Is the record the version `version` of `id` with content? Then its
   blob in *blob. */
bool bver_match(const uint8_t *rec, size_t len, const char *id,
		size_t id_len, uint64_t version, git_oid *blob);

struct batch {
	struct bspool vers; /* the versions, in order (bver_put) */
	size_t n;
	struct bver *cur; /* the version being added */
	struct buf enc;	  /* bver_put's scratch */
	bool frees;	  /* a delete among them */
	uint64_t first;	  /* first revision read (0: none) */
	uint64_t upto;	  /* last revision read */
	size_t idx_bytes;
	bool cut;    /* the next record starts the next batch */
	bool capped; /* h->space_short: cut at `space_cap` bytes of
			content (at least one version) */
	uint64_t space_cap;
	uint64_t bytes; /* content of the versions read */
};

/* history_commit.c: commit the batch `b` read by history_batch.c (git,
   refs/heads/main, then the index and the blob links). Returns 0 or
   -errno: then refs/heads/main is where it was. */
int hist_batch_commit(struct hist *h, struct batch *b);
/* history_tree.c: the tree of the batch (the previous one with its last
   change of each path) in *tree, and the tree of the versions a later
   change in the batch hides in *side (*nside of them; 0: none). Returns
   0 or -errno. */
int hist_batch_trees(struct hist *h, struct batch *b, git_oid *tree,
		     git_oid *side, size_t *nside);

/* history_batch.c: read the next batch from the change source and commit
   it. Returns 0 (*upto: the last revision it covers; unchanged if there was
   nothing to read) or -errno. */
int hist_batch_run(struct hist *h, uint64_t *upto);

/* history_index.c: load history.idx and catch it up with the commits
   (or rebuild it). Returns 0 or -errno. */
int hist_index_load(struct hist *h);

#endif
