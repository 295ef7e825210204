/*
 * fs_i.h - what the files of fusefs/ share: the mount's context, the inode
 * table, drafts, open handles and the invalidation queue. Not for use
 * outside fusefs/.
 *
 * The frontend is built on libfuse's low-level API so that it knows what
 * the kernel holds (passthrough_ll's habit): every inode number the kernel
 * was given is in the table with its lookup count until FORGET, and every
 * change the kernel did not make itself (a commit through ID@N, an append
 * rebased on another version, a rollback) is invalidated in the kernel's
 * caches before the request that made it returns (attributes) or from a
 * thread of its own (pages, names). See inode.c for the table, draft.c for
 * the commit point, ops.c for the requests.
 */
#ifndef RECFS_FS_I_H
#define RECFS_FS_I_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "fs.h"
#include "id.h"
#include "store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* How long the kernel may keep names and attributes of records and
   namespaces: every change it does not see is invalidated (inval.c). */
#define FS_CACHE_TIMEOUT 86400.0

/* What an inode is. */
enum fs_kind {
	FS_ROOT,      /* the mount root (namespace "") */
	FS_NS,	      /* a namespace */
	FS_RECORD,    /* a record (regular file or symlink) */
	FS_COND,      /* ID@N: conditional name (zero timeouts) */
	FS_SCRATCH,   /* an unversioned scratch file */
	FS_META_DIR,  /* /.recfs */
	FS_STATUS,    /* /.recfs/status */
	FS_HIST_DIR,  /* /.recfs/history[/PREFIX] */
	FS_HIST_FILE, /* /.recfs/history/ID/N */
};

/*
 * The state of an inode's uncommitted changes. Transitions (draft.c,
 * draft_step is the only place that changes it):
 *   CLEAN   --O_TRUNC open, truncate to 0, create-->   REPLACE
 *   CLEAN   --write from an O_APPEND handle at EOF-->   APPEND
 *   CLEAN   --any other write or truncate-->            PATCH
 *   APPEND  --a write that is not an append-->          PATCH
 *   any     --O_TRUNC open-->                           REPLACE
 *   dirty   --write or truncate fails-->                FAILED
 *   dirty   --commit (flush, fsync, release)-->         CLEAN
 *   any     --unlink, replaced by rename-->             CLEAN (dropped)
 */
enum fs_dstate {
	D_CLEAN,   /* nothing to commit */
	D_REPLACE, /* whole new content: last writer wins (or ID@N's cond) */
	D_PATCH,   /* a copy of version `base` changed: only if still base */
	D_APPEND,  /* bytes to add to whatever version is current */
	D_FAILED,  /* a write or truncate failed: the commit reports it */
};

/* A user xattr set before the record existed (cp -a): kept for the
   commit. */
struct fs_xattr {
	struct fs_xattr *next;
	char *name;
	void *value;
	size_t size;
};

/* Uncommitted changes of one record inode; in fs_inode, under its mu. */
struct fs_draft {
	enum fs_dstate state;
	struct store_stage *st; /* content (APPEND: only the added bytes) */
	uint64_t base;		/* PATCH: the version it was copied from;
				   APPEND: the version read below base_size */
	uint64_t base_size;	/* APPEND: size of that version */
	bool created;		/* the record does not exist yet */
	bool excl;		/* created with O_EXCL: create-only */
	bool written;		/* data written since it began (not just
				   created or truncated; see draft.c) */
	bool unseen;		/* written by a direct handle: the kernel's
				   pages may not hold it */
	uint64_t cut;		/* APPEND: stage bytes committed before the
				   rest (commit_upto) */
	int err;		/* D_FAILED: what failed */
	int mode;		/* chmod while dirty, or -1 */
	bool has_owner;		/* chown while dirty (or the creator) */
	uint32_t uid, gid;
	bool has_mtime; /* utimens while dirty (cp -p) */
	struct timespec mtime;
	struct timespec changed; /* time of the last write (for stat) */
	struct store_who who;	 /* the last writer */
	struct fs_xattr *xattrs; /* set while `created` */
};

/* The attributes of a record last replied (what fstat shows once it is
   deleted): the fields fill() needs, not a whole struct stat. */
struct fs_last {
	uint64_t size;
	struct timespec mtime;
	uint32_t mode; /* permission bits */
	uint32_t uid, gid;
	bool symlink;
};

/* The cause of a control request that failed, for its caller to read
   (ctl.c, fs_ctl_error). */
#define FS_CTL_ERRS 8
struct fs_ctl_err {
	pid_t pid; /* 0: none */
	char msg[512];
};

struct fs_inode {
	uint64_t ino;
	enum fs_kind kind;
	bool private; /* an ID@N writer's own: not in the table */
	/* protected by ctx->mu: */
	char *key;	  /* path from the root ("" root, "a/b", "a@3",
			     ".recfs/history/a"); NULL once detached */
	uint64_t nlookup; /* the kernel's references */
	unsigned refs;	  /* open handles + temporary holds */
	unsigned writers; /* open handles that may write */
	struct fs_inode *hnext_ino, *hnext_key; /* hash chains */
	/* fixed at creation: */
	uint64_t cond;		 /* FS_COND: N; FS_HIST_FILE: the version */
	char *id;		 /* FS_RECORD/COND/HIST_FILE/SCRATCH/NS: the
				    ID or path it was made for (ctx->mu) */
	pthread_mutex_t mu;	 /* protects the rest */
	struct store_reader *rd; /* the committed version it shows, opened
				    lazily (records) */
	uint64_t version;	 /* version the kernel was last told of */
	uint64_t cas_next;	 /* FS_COND: the version a commit through it
				    must find (N, then what it made) */
	bool deleted;		 /* the record is gone: reads go on from rd */
	unsigned opens;		 /* open descriptors (h->ino): the last
				    release closes rd (fs_record_released) */
	bool pages_stale;	 /* the kernel's pages may not be the content:
				    every open drops them, until the thread
				    has had the kernel drop them (inval.c) */
	unsigned drops_queued;	 /* page drops queued for the thread and
				    not yet told (ctx->qmu) */
	uint64_t stale_gen;	 /* counts the times pages went stale */
	struct fs_draft *d;	 /* NULL: no draft (allocated by the first
				    change, freed by fs_draft_drop: most
				    inodes never have one) */
	uint64_t draft_gen;	 /* counts the drafts it had */
	struct fs_inode *shadow; /* FS_COND in the table: the private draft
				    of its latest writer, for stat (ctx->mu) */
	struct fs_last last;	 /* the attributes last replied */
};

/* What an open handle reads and writes. */
enum fs_hkind {
	H_RECORD,  /* a record inode: reads the draft or the version */
	H_COND,	   /* ID@N: like H_RECORD, or an old version in `buf` */
	H_SCRATCH, /* a scratch file: `fd` */
	H_BUF,	   /* a read-only buffer: status, an old version */
};

/* Per-open state, in fi->fh; created in open/create, freed in release. */
struct fs_handle {
	enum fs_hkind kind;
	struct fs_inode *ino;  /* holds a ref */
	struct fs_inode *dino; /* the inode whose draft it writes: `ino`, or
				  for ID@N a private one (see handle.c) */
	int flags;	       /* open flags */
	bool writable;
	bool direct;		   /* writes bypass the kernel's pages (see
				      fs_open_record) */
	uint64_t app_end, app_gen; /* its last append: end in the stage
				      (+ cut) of draft app_gen (draft.c,
				      commit_upto); under dino->mu */
	int fd;			   /* H_SCRATCH */
	char *buf;		   /* H_BUF (and H_COND of an old version) */
	size_t len;
	struct store_who who;	       /* who opened it */
	struct fs_handle *next, *prev; /* ctx->handles, under ctx->mu */
};

/* An open directory's listing (dir.c). */
struct fs_dir;
/* Free the directories the kernel never released (shutdown). */
void fs_dirs_free(struct fs_ctx *c);

/* One pending kernel notification (inval.c). */
struct fs_inval;

struct fs_ctx {
	struct store *store;
	struct fs_config cfg;
	struct fuse_session *se;
	char **scratch_pat; /* NULL-terminated fnmatch patterns */
	pthread_mutex_t mu; /* the inode table, counters */
	struct fs_inode **by_ino, **by_key; /* hash tables, `buckets` each */
	size_t buckets, count;
	uint64_t next_ino;
	uint64_t commits, commit_errors;	 /* protected by mu */
	uint64_t ctl_calls;			 /* control verbs run; mu */
	struct fs_ctl_err ctl_errs[FS_CTL_ERRS]; /* the causes of the last
						    failed ones; mu */
	unsigned ctl_err_next;			 /* mu */
	struct fs_handle *handles; /* open, for a shutdown before their
				      release; mu */
	struct fs_dir *dirs;	   /* open directories, likewise; mu */
	int mnt_id;		   /* of the mount, for fdinfo; -1 */
	/* the invalidation thread (inval.c) */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	pthread_cond_t qdone; /* a page drop was told (drops_queued) */
	struct fs_inval *qhead, *qtail; /* protected by qmu */
	bool qstop, qrunning;
	pthread_t qthread;
};

/* ---- inode.c: the table --------------------------------------------- */

int fs_table_init(struct fs_ctx *c);
void fs_table_free(struct fs_ctx *c);
/* The inode the kernel calls `ino` (borrowed: valid while the kernel holds
   it, i.e. within the request), or NULL. */
struct fs_inode *fs_inode_get(struct fs_ctx *c, fuse_ino_t ino);
/* The inode named `key` with a temporary ref (fs_inode_put), or NULL. */
struct fs_inode *fs_inode_find(struct fs_ctx *c, const char *key);
/* Find or make the inode for `key` of `kind` and count one kernel lookup;
   `id` and `cond` are set on a new one. Returns NULL on ENOMEM. */
struct fs_inode *fs_inode_lookup(struct fs_ctx *c, const char *key,
				 enum fs_kind kind, const char *id,
				 uint64_t cond);
void fs_inode_hold(struct fs_ctx *c, struct fs_inode *ino);
void fs_inode_put(struct fs_ctx *c, struct fs_inode *ino);
/* A private inode like `like` (an ID@N writer's own draft; never in the
   table), with one ref: released with fs_inode_put. */
struct fs_inode *fs_inode_private(struct fs_ctx *c,
				  const struct fs_inode *like);
/* The kernel forgot `n` lookups. */
void fs_inode_forget(struct fs_ctx *c, fuse_ino_t ino, uint64_t n);
/* The inode no longer has a name (deleted or replaced). */
void fs_inode_detach(struct fs_ctx *c, struct fs_inode *ino);
/* Renamed: `from` (and with `tree`, everything below it) is now `to`;
   what `to` named before is detached. */
void fs_inode_rekey(struct fs_ctx *c, const char *from, const char *to,
		    bool tree);
/* Call fn on every named record inode, or with `dirs` every namespace
   inode and the root (with a ref held, no lock). */
void fs_inode_each(struct fs_ctx *c, bool dirs,
		   void (*fn)(struct fs_ctx *, struct fs_inode *));

/* ---- inval.c: the kernel's caches ---------------------------------- */

/* Log what the store reported (base/err.h) for a failure `rc` about
   record `id`, once, naming the record once: the library reports, the
   daemon logs (fs.c). */
void fs_log_reported(const char *id, int rc);

int fs_inval_start(struct fs_ctx *c);
void fs_inval_stop(struct fs_ctx *c);
/* Attributes of `ino` are stale: told now (never blocks). */
void fs_inval_attr(struct fs_ctx *c, struct fs_inode *ino);
/* Pages of `ino` may differ from its content: mark them stale, in the
   same hold of ino->mu as the change, so that no open keeps them from
   then on; returns the mark, which must go to fs_inval_queue. */
uint64_t fs_stale_mark(struct fs_ctx *c, struct fs_inode *ino);
/* Have the thread drop the pages marked `gen`; once the kernel did,
   opens may keep pages again (unless marked since). No lock held. */
void fs_inval_queue(struct fs_ctx *c, struct fs_inode *ino, uint64_t gen);
/* Wait until the kernel was told to drop every page drop queued for
   `ino` (see inval.c for why an open waits); false if some are still
   queued after a while, or could not be waited for. No lock held. */
bool fs_inval_wait_drops(struct fs_ctx *c, struct fs_inode *ino);
/* Set up the queue's condition variables (fs_ctx_new). */
int fs_inval_init(struct fs_ctx *c);
/* The name of record/namespace `key` changed behind the kernel's back:
   told from the thread (the parent's lock may be held now). */
void fs_inval_name(struct fs_ctx *c, const char *key);
/* Everything the kernel holds may be stale (rollback, import). */
void fs_inval_all(struct fs_ctx *c);
/* One record inode after a change it did not see (many records changed,
   or another mount's commit): compare it with the store and tell the
   kernel what differs. No lock held. */
void fs_inval_revalidate(struct fs_ctx *c, struct fs_inode *ino);

/* ---- remote.c: other mounts' commits (a store on etcd) ----------------- */

/* The store's change hook on (fs_ctx_new) and off (fs_ctx_free, first). */
void fs_remote_register(struct fs_ctx *c);
void fs_remote_unregister(struct fs_ctx *c);

/* ---- draft.c and handle.c: open files and the commit point ----------- */

/* Who is asking: uid, pid and command name of the calling process. */
void fs_who(fuse_req_t req, struct store_who *w);
/* A handle of `kind` on ino (holds a ref; counts a writer). */
struct fs_handle *fs_handle_new(struct fs_ctx *c, fuse_req_t req,
				enum fs_hkind kind, struct fs_inode *ino,
				int flags);
int fs_open_record(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		   struct fuse_file_info *fi, bool created, mode_t mode);
ssize_t fs_record_read(struct fs_ctx *c, struct fs_inode *ino, char *buf,
		       size_t size, off_t off);
/* `writepage`: the kernel writing back pages (mmap), not a write(2) */
ssize_t fs_record_write(struct fs_ctx *c, fuse_req_t req, struct fs_handle *h,
			bool writepage, const char *buf, size_t size,
			off_t off);
int fs_record_truncate(struct fs_ctx *c, struct fs_inode *ino, off_t size,
		       const struct store_who *who);
/* Commit the inode's draft if it has one. */
int fs_commit(struct fs_ctx *c, struct fs_inode *ino);
/* The commit of a flush or fsync of `h`: of an append draft, only what
   came up to h's own last append (draft.c, commit_upto). */
int fs_commit_by(struct fs_ctx *c, struct fs_inode *ino,
		 const struct fs_handle *h);
int fs_flush(struct fs_ctx *c, fuse_req_t req, struct fs_handle *h,
	     uint64_t lock_owner);
void fs_release(struct fs_ctx *c, struct fs_handle *h);
/* Free the handles the kernel never released (a shutdown while files were
   open): nothing is committed (close never came). */
void fs_handles_free(struct fs_ctx *c);
/* Add all of stage `from` at the end of stage `to` (stage_bytes.c). */
int fs_stage_append(struct store_stage *from, struct store_stage *to);
/* Move the bytes of stage `st` from `at` on into a new stage *tail (NULL
   if there are none), and cut them from `st`. */
int fs_stage_split(struct store *s, struct store_stage *st, uint64_t at,
		   struct store_stage **tail);
/* Drop the draft (unlinked, replaced). */
void fs_draft_drop(struct fs_inode *ino);
/* ino's draft to read: a clean one if it has none. mu held. */
const struct fs_draft *fs_draft_peek(const struct fs_inode *ino);
/* Prepare ino's draft for an open with `flags` (create: `created`,
   `mode`); *gen: pages marked stale (fs_inval_queue them). mu held. */
int fs_draft_open(struct fs_ctx *c, fuse_req_t req, struct fs_inode *ino,
		  int flags, bool created, mode_t mode, uint64_t *gen);
/* Attributes of a record inode as the kernel should see them. */
int fs_record_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st);
/* Record inode `ino` was deleted or replaced: it keeps the version its
   open handles read, loses its name and draft; `unseen`: the name the
   kernel did not see go (invalidated from the thread), or NULL. */
void fs_record_gone(struct fs_ctx *c, struct fs_inode *ino, const char *unseen);
/* A descriptor of `ino` was opened, or released. At the last release a
   record closes the version it reads (its fd), unless a draft is left;
   the kernel may keep its pages, and the next open opens the version
   again. Holding an fd per record read ran the daemon out of them
   (EMFILE) after 20,000 records read. No lock held. */
void fs_record_opened(struct fs_inode *ino);
void fs_record_released(struct fs_inode *ino);
/* The committed version changed where the kernel did not see (commit
   through ID@N, rename, rollback): its attributes are invalidated, the
   reader forgotten, and with `pages` the pages dropped (inval.c). */
void fs_record_changed(struct fs_ctx *c, struct fs_inode *ino, uint64_t version,
		       bool pages);
void fs_xattr_free(struct fs_xattr *list);
int fs_xattr_set(struct fs_xattr **list, const char *name, const void *value,
		 size_t size, int flags);
ssize_t fs_xattr_get(struct fs_xattr *list, const char *name, void *value,
		     size_t size);

/* ---- path.c: names --------------------------------------------------- */

bool fs_is_scratch_name(const struct fs_ctx *c, const char *name);
int fs_scratch_patterns(const char *list, char ***out);
void fs_scratch_patterns_free(char **pat);
/* parent key + "/" + name into out[ID_MAX_LEN + 1]; -ENAMETOOLONG. */
int fs_join(const char *parent, const char *name, char *out);

/* ---- history.c: old versions (ID@N, .recfs/history/ID/N) ------------- */

int fs_hist_attr(struct fs_ctx *c, const char *id, uint64_t n, struct stat *st);
int fs_hist_read(struct fs_ctx *c, const char *id, uint64_t n, char **buf,
		 size_t *len);
/* What .recfs/history/REST is: a directory (*version 0) or version
 *version of *id (a new string, caller frees). */
int fs_hist_resolve(struct fs_ctx *c, const char *rest, char **id,
		    uint64_t *version);
void fs_hist_dir_attr(const struct fs_ctx *c, struct stat *st);
/* Names in .recfs/history/REST, via cb. */
int fs_hist_list(struct fs_ctx *c, const char *rest,
		 int (*cb)(void *arg, const char *name, bool is_dir),
		 void *arg);

/* ---- the requests (ops.c, names.c, files.c, dir.c, xattr.c) ----------- */

#define FS_META ".recfs"
#define FS_HIST_PREFIX ".recfs/history"
#define FS_XATTR_PREFIX "user.recfs."

static inline struct fs_ctx *fs_req(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct fs_handle *fs_fh(const struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

/* How long the kernel may keep a name or attributes of `k`. */
static inline double fs_timeout(enum fs_kind k)
{
	return k == FS_ROOT || k == FS_NS || k == FS_RECORD || k == FS_SCRATCH
		       ? FS_CACHE_TIMEOUT
		       : 0.0;
}

/* ops.c */
/* What `name` in directory inode `parent` is, into *e, counting one
   kernel lookup of it. Returns 0 or -errno (-ENOENT: nothing there). */
int fs_lookup(struct fs_ctx *c, fuse_ino_t parent, const char *name,
	      struct fuse_entry_param *e);
/* The entry of `key`, found to be `kind` (id, cond: fs_inode_lookup's),
   counting one kernel lookup. */
int fs_entry(struct fs_ctx *c, const char *key, enum fs_kind kind,
	     const char *id, uint64_t cond, struct fuse_entry_param *e);
/* The attributes of any inode; -ESTALE for one whose name is gone (an
   unlinked record with open handles still answers, for fstat). */
int fs_inode_attr(struct fs_ctx *c, struct fs_inode *ino, struct stat *st);

/* names.c; and the handlers of the other files, for ops.c's table */
/* The key of `name` in namespace inode `parent`, for a change: -EPERM
   under .recfs, -EROFS, -ENAMETOOLONG, -ESTALE. */
int fs_change_key(struct fs_ctx *c, fuse_ino_t parent, const char *name,
		  char *key);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev);
void fs_op_readlink(fuse_req_t req, fuse_ino_t ino);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);

/* files.c */
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
		     off_t length, struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		 off_t off, struct fuse_file_info *fi);

/* dir.c */
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void fs_op_statfs(fuse_req_t req, fuse_ino_t ino);

/* xattr.c */
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);

/* ctl.c: the control channel. `verb` follows FS_CTL_PREFIX in the name
   of a setxattr on the mount root; `value` is its argument. Returns 0
   when done, -EPERM for other users, -EOPNOTSUPP for unknown verbs. */
#define FS_CTL_PREFIX "user.recfs.ctl."
int fs_ctl(struct fs_ctx *c, fuse_req_t req, const char *verb,
	   const char *value, size_t size);
/* The cause of the last control request of process `pid` that failed,
   into buf (not NUL-terminated): the value of FS_CTL_ERROR on the mount
   root. Returns its length, or -ENODATA if that request succeeded or
   there is none. */
#define FS_CTL_ERROR FS_CTL_PREFIX "error"
int fs_ctl_error(struct fs_ctx *c, pid_t pid, char *buf, size_t size);

/* The JSON of .recfs/status into a new buffer. */
int fs_status_json(struct fs_ctx *c, char **out, size_t *len);

#endif
