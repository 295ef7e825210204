/*
 * backend.h - the interface between the store core and where record
 * content lives. Not for use outside store/. The core (every file of
 * store/ but be_*.c) reaches a backend only through `s->be->ops` and the
 * capability flags of struct backend; nothing else of a backend is
 * visible to it.
 *
 * The contract, for every op (a new backend, e.g. one on etcd, is
 * written against this):
 *  - Errors are negative errno values; 0 is success. -ENOTSUP means "this
 *    backend does not have that feature": the core only calls such an op
 *    when the matching capability flag says it may, and treats -ENOTSUP
 *    from an optional op as "nothing to do" where noted.
 *  - Record IDs and namespaces are checked by the core (id.h) before any
 *    op sees them. A backend must still refuse to reach outside its own
 *    storage whatever the ID (the file backend never follows a symlink).
 *  - Ops may be called from many threads at once; the core serialises
 *    changes to one record (entry busy flag) and holds its `gate` around
 *    namespace changes, nothing more. A backend protects its own state.
 *  - The core keeps the metadata (versions, xattrs, deleted flags) in its
 *    index and journal; a backend stores only content and namespaces.
 *
 * Durability. A backend with `journal` set is not crash-safe by itself:
 * the core writes every change to its local journal (STORE/journal, see
 * store_i.h) before it calls publish/move/remove, and replays the journal
 * after a crash. Such a backend must then give named stages (stage_open,
 * publish of a stage known only by name, stage_link, sync_stages,
 * clean_stages, mkparents), because the journal refers to stages by name
 * and recovery finishes what a crash interrupted. A backend without
 * `journal` (the memory backend; a backend with its own durability such
 * as etcd) gets no journal and no recovery: what publish/move/remove
 * return is final, and those ops must be atomic and, if `durable`, durable
 * when they return. The named-stage ops of such a backend may return
 * -ENOTSUP.
 *
 * Own durability. A backend with `own_commit` (etcd, be_etcd.c) makes
 * each change durable itself, atomically, and numbers it: the core calls
 * its `commit` op where it would append to the journal (change_journal),
 * hands it the decoded change with its content inline, and takes the
 * revision it returns as the change's. Its publish/move/remove are then
 * not called (the apply step only updates the index), its records are
 * read through `open_version` (the version the index knows), its `stat`
 * answers for namespaces only (the index knows the records), and the
 * index is loaded from it at open (`load`), not from a journal.
 *
 * Scratch files (scratch.h) live in a plain directory tree beside the
 * records (STORE/scratch) and are resolved with the backend's rules
 * (tree_open, tree_parent). They exist only when the backend sets
 * `tree`; every tree op of a backend without it returns -ENOTSUP.
 */
#ifndef RECFS_BACKEND_H
#define RECFS_BACKEND_H

#include "store.h"

struct rec; /* store_i.h: a decoded change */

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct backend;
struct io;

#define STORE_STAGE_NAME_MAX 64

/*
 * A stage: a temp file that becomes a version's content. While every
 * store_stage_write so far came in order from offset 0 (hashed == the
 * offset of the next one), `hs` holds the hash of bytes [0, hashed), and
 * a commit of a stage that is `hashed` bytes long takes it instead of
 * reading the stage again (stage_hash in commit.c).
 */
struct store_stage {
	struct store *s;
	int fd;
	char name[STORE_STAGE_NAME_MAX]; /* the backend's name for it, or
					    "" (no named stages) */
	bool published;		 /* renamed into place: nothing to remove */
	struct XXH3_state_s *hs; /* NULL until the first write at 0 */
	uint64_t hashed;
	bool hash_off; /* a write out of order: hash the whole stage */
};

struct backend_ops {
	const char *name;
	/* optional (NULL): start what runs in the background (after a
	   fork, in the serving process); failure only costs speed */
	int (*start)(struct backend *be);

	/* ---- stages: every backend ---- */
	/* a new empty stage: st->fd open read-write, st->name set if the
	   backend has named stages */
	int (*stage_new)(struct backend *be, struct store_stage *st);
	/* close the stage and forget it unless published; never fails */
	void (*stage_drop)(struct backend *be, struct store_stage *st);
	/* make the stage's content and its name durable (before a
	   by-reference journal record names it); 0 if not `journal` */
	int (*stage_sync)(struct backend *be, struct store_stage *st);
	/* atomically make the stage the content of `id`, replacing any:
	   readers see the old or the new content, never a mix. Sets
	   st->published. -ENOENT: the namespace of `id` (or a stage known
	   only by name) is gone; -EISDIR: `id` is a namespace */
	int (*publish)(struct backend *be, struct store_stage *st,
		       const char *id);

	/* ---- named stages: `journal` backends; else -ENOTSUP ---- */
	/* open the stage called `name` (`flags` of open(2)); io point
	   `point`. -ENOENT if it is gone */
	int (*stage_open)(struct backend *be, const char *point,
			  const char *name, int flags, int *fd);
	/* hard-link the stage called `name` as `as` in directory `dirfd`
	   (the history's blob directory), without syncing that directory */
	int (*stage_link)(struct backend *be, const char *name, int dirfd,
			  const char *as);
	/* make every stage written so far durable, at once (syncfs) */
	int (*sync_stages)(struct backend *be);
	/* remove every stage (after recovery: none is in use); returns
	   how many were removed. Never fails: what stays is logged */
	int (*clean_stages)(struct backend *be);
	/* create the missing namespaces above `id` (recovery, repair) */
	int (*mkparents)(struct backend *be, const char *id);

	/* ---- records and namespaces: every backend ---- */
	/* open content read-only; -ENOENT, -EISDIR (namespace) */
	int (*open)(struct backend *be, const char *id, int *fd);
	/* lstat-like: S_IFREG or S_IFDIR; -ENOENT */
	int (*stat)(struct backend *be, const char *id, struct stat *st);
	/* -ENOENT, -EISDIR */
	int (*remove)(struct backend *be, const char *id);
	/* atomically move content of `from` to `to`, replacing it;
	   `durable`: durable on return (the file backend fsyncs both
	   directories). -ENOENT, -EISDIR, -ENOTDIR */
	int (*move)(struct backend *be, const char *from, const char *to,
		    bool durable);
	/* -EEXIST, -ENOENT (no parent) */
	int (*mkdir)(struct backend *be, const char *ns, mode_t mode);
	/* -ENOENT, -ENOTDIR, -ENOTEMPTY */
	int (*rmdir)(struct backend *be, const char *ns);
	/* rename an empty namespace (the core checked that it holds
	   nothing, and answers -EXDEV itself otherwise), replacing an
	   empty `to` as rename(2) does */
	int (*ns_rename)(struct backend *be, const char *from, const char *to);
	/* mtime (NULL: keep) and mode (-1: keep) */
	int (*ns_set_meta)(struct backend *be, const char *ns,
			   const struct timespec *mtime, int mode);
	/* (uint32_t)-1 keeps one; never through a symlink */
	int (*ns_set_owner)(struct backend *be, const char *ns, uint32_t uid,
			    uint32_t gid);
	/* each record and namespace directly under `ns` ("" the root) */
	int (*list)(struct backend *be, const char *ns, store_list_cb cb,
		    void *arg);
	/* make everything published so far durable (checkpoint) */
	int (*sync)(struct backend *be);
	/* an unnamed temp file for a txn spool, read-write, gone at
	   close: near the stages (so that it is on the same file system)
	   or -ENOTSUP / -EOPNOTSUPP / -EISDIR, and the core takes a memfd */
	int (*spool_new)(struct backend *be, int *fd);
	void (*free)(struct backend *be);

	/* ---- the scratch tree: `tree` backends; else -ENOTSUP ---- */
	/* open `path` beneath the directory `root` without following any
	   symlink: fd or -errno. io point `point` (may be NULL) */
	int (*tree_open)(struct backend *be, int root, const char *point,
			 const char *path, int flags, mode_t mode);
	/* open the directory holding `path` beneath `root` into *pfd
	   (*leaf points into `path`); release with tree_parent_put */
	int (*tree_parent)(struct backend *be, int root, const char *path,
			   int *pfd, const char **leaf);
	void (*tree_parent_put)(struct backend *be, int root, int pfd);
	/* rename stage `st` to `leaf` in `pfd` (renameat2 `flags`; with
	   RENAME_EXCHANGE what was there is then under the stage's name) */
	int (*stage_place)(struct backend *be, const char *point,
			   struct store_stage *st, int pfd, const char *leaf,
			   unsigned flags);

	/* ---- own durability: `own_commit` backends; else NULL ---- */
	/* make the change `r` durable as one atomic step: a REC_PUT (its
	   content inline: has_data), REC_DEL, REC_META, REC_RENAME, or a
	   REC_TXN of REC_PUT and REC_DEL parts. *rev: its store revision,
	   above every earlier one. -ESTALE: another writer changed one of
	   the records meanwhile (nothing done); -E2BIG: too many records
	   for one step; -EFBIG; -EIO: not done, or its outcome unknown
	   (etcd unreachable, a timeout). Reported (err.h). */
	int (*commit)(struct backend *be, const struct rec *r, uint64_t *rev);
	/* at open: fn(arg, r) for the state of every record (a REC_STATE:
	   meta with version and revision, xattrs; a deleted one with its
	   last version and meta.deleted); *rev: the store revision then */
	int (*load)(struct backend *be,
		    int (*fn)(void *arg, const struct rec *r), void *arg,
		    uint64_t *rev);
	/* after -ESTALE from commit: read the record id[len] again, and
	   fn(arg, r) with its state as load gives it (a REC_STATE; version
	   0 if it never existed) */
	int (*reload)(struct backend *be, const char *id, size_t len,
		      int (*fn)(void *arg, const struct rec *r), void *arg);
	/* version `version` of `id`, read-only (*fd), and the revision
	   that wrote it (*rev, may be NULL); -ENOENT: no such version */
	int (*open_version)(struct backend *be, const char *id,
			    uint64_t version, int *fd, uint64_t *rev);
};

struct backend {
	const struct backend_ops *ops;
	bool cas;     /* can do compare-and-swap (atomic replace) */
	bool durable; /* published changes survive a crash */
	bool journal; /* durable only through the core's local journal:
			 the named-stage ops work (see the top) */
	bool tree;    /* has the scratch tree ops (see the top) */
	bool own_commit; /* durable by itself: commit, load, open_version
			    (see the top) */
};

/* be_file.c: the store directory. `dirfd` is STORE (borrowed). Sets
   durable, journal, tree. */
int be_file_open(struct backend **out, struct io *io, int dirfd);

/* be_etcd.c: the store `uri` (etcd://HOST:PORT[,...]/PREFIX) on etcd;
   `create`: make it if PREFIX holds no store. *max_record_size is
   lowered to what etcd takes (1 MiB). Sets cas, durable, own_commit.
   Reported (err.h). */
int be_etcd_open(struct backend **out, const char *uri, bool create,
		 uint64_t *max_record_size);

/* be_memory.c: content in memfds; not durable, no journal, no tree. */
int be_memory_open(struct backend **out, bool cas);

#endif
