/*
 * fs_i.h - what the files of fusefs/ share: the mount's context, per-open
 * handles, scratch files and path classification. Not for use outside
 * fusefs/.
 *
 * The frontend only translates: every record change is a store call
 * (store/store.h). Writes are staged per open handle and committed in
 * flush/fsync (the commit point of close(2)); see handle.c.
 */
#ifndef RECFS_FS_I_H
#define RECFS_FS_I_H

#define FUSE_USE_VERSION 314
#include <fuse.h>

#include "fs.h"
#include "id.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* What a path names. */
enum fs_kind {
	FS_ROOT,
	FS_RECORD,	 /* a record ID (or a namespace: the store tells) */
	FS_COND,	 /* ID@N: conditional name */
	FS_SCRATCH,	 /* an unversioned scratch file */
	FS_META_DIR,	 /* /.recfs */
	FS_META_STATUS,	 /* /.recfs/status */
	FS_META_HISTORY, /* /.recfs/history[/...]: id holds what follows */
	FS_META_OTHER,	 /* anything else under /.recfs */
};

struct fs_path {
	enum fs_kind kind;
	char id[ID_MAX_LEN + 1]; /* the ID (without @N), or scratch path */
	uint64_t version;	 /* FS_COND: N */
};

/* An xattr of a scratch file. */
struct fs_xattr {
	struct fs_xattr *next;
	char *name;
	void *value;
	size_t size;
};

/* A scratch file: content in a store stage, attributes in memory. */
struct fs_scratch {
	struct fs_scratch *next; /* in ctx->scratch, protected by ctx->mu */
	char *path;		 /* as an ID: "ns/.name.XXXXXX" */
	struct store_stage *st;
	mode_t mode;
	struct timespec mtime;
	bool mtime_set; /* mtime was set (utimens) or kept from a record:
			   committed as the version's time; else the
			   commit time is */
	struct fs_xattr *xattrs;
	unsigned refs; /* the table's reference + one per open handle */
	bool linked;   /* still in the table (not unlinked/renamed) */
};

enum fs_hkind { H_READ, H_WRITE, H_SCRATCH, H_STATUS };

/* Per-open state, in fi->fh; created in open/create, freed in release. */
struct fs_handle {
	enum fs_hkind kind;
	pthread_mutex_t mu; /* serialises write/flush/truncate on it */
	struct fs_handle *next, *prev; /* ctx->writers (H_WRITE) or
					  ctx->readers (H_READ using the
					  page cache), ctx->mu */
	char *id;
	struct store_reader *rd; /* H_READ; H_WRITE until content is staged */
	struct store_stage *st;	 /* H_WRITE: the content to commit */
	bool st_committed;	 /* st became a version: copy before writing */
	bool staged;		 /* st holds the full content (or the bytes
				    to append); else reads go to rd */
	struct store_cond cond;	 /* condition of the next commit */
	bool dirty;		 /* changed since the last commit */
	bool touched;		 /* written or truncated since then: only
				    then does flush commit (see handle.c) */
	bool orphan;		 /* the record was unlinked: drop changes */
	bool via_cond;		 /* opened as ID@N: the kernel's inode is
				    ID@N's, so ID's attributes must not
				    show this stage (fs_writer_size) */
	int err;		 /* a write or truncate failed: every commit
				    from this handle fails with it (the
				    stage is incomplete) */
	struct fs_xattr *xattrs; /* user xattrs set while the record did not
				    exist yet (cp -a): applied at commit;
				    protected by ctx->mu */
	int mode;		 /* pending chmod, or -1 */
	bool has_mtime;		 /* pending utimens */
	struct timespec mtime;
	struct store_who who; /* the process that opened it */
	/* H_READ on ctx->readers (ctx->mu): the hash of the ID whose kernel
	   inode it reads, the version its pages hold (UINT64_MAX once renamed:
	   none), and whether its open had the kernel drop the cached pages,
	   which its first read confirms (see handle.c) */
	uint64_t cache_hv;
	uint64_t cache_version;
	atomic_bool cache_confirm;
	struct fs_scratch *sc; /* H_SCRATCH */
	char *text;	       /* H_STATUS */
	size_t text_len;
};

#define FS_CACHE_SLOTS 65536

/* How long the kernel keeps names (fs.c, fs_init). */
#define FS_ENTRY_TIMEOUT 10

struct fs_ctx {
	struct store *store;
	struct fs_config cfg;
	char **scratch_pat; /* NULL-terminated fnmatch patterns */
	uid_t uid;
	gid_t gid;
	pthread_mutex_t mu;	    /* protects writers, scratch, cache */
	struct fs_handle *writers;  /* open write handles */
	struct fs_handle *readers;  /* read handles using the page cache */
	struct fs_scratch *scratch; /* scratch files */
	/*
	 * Which version of a path the kernel may hold in its page cache:
	 * an open for reading keeps the cache only if the slot says the same
	 * version (a bounded, direct-mapped table: a collision just costs
	 * a re-read). See handle.c for who may use the cache at all.
	 */
	uint64_t cache_hv[FS_CACHE_SLOTS];
	uint64_t cache_ver[FS_CACHE_SLOTS];
	bool cache_ok[FS_CACHE_SLOTS]; /* the kernel has dropped older pages */
	uint64_t commits, commit_errors; /* protected by mu */
	uint64_t ctl_calls;		 /* control verbs run; mu */
	struct timespec unseen_until;	 /* see fs_deleted_unseen; mu */
};

/* The context of the running mount. */
struct fs_ctx *fs_ctx(void);

/*
 * A record was deleted where the kernel could not see it (rm ID@N, a
 * whole-store rollback): for the next FS_ENTRY_TIMEOUT seconds the kernel
 * may still hold names of deleted records and send an open(O_CREAT) of
 * one without O_CREAT (handle.c, open_write). Takes c->mu.
 */
void fs_deleted_unseen(struct fs_ctx *c);

/* path.c */ /* path.c */
int fs_path_parse(const struct fs_ctx *c, const char *path, struct fs_path *p);
bool fs_is_scratch_name(const struct fs_ctx *c, const char *name);
int fs_scratch_patterns(const char *list, char ***out);
void fs_scratch_patterns_free(char **pat);

/* scratch.c: the table; callers hold no lock, these take ctx->mu. */
int fs_scratch_create(struct fs_ctx *c, const char *path, mode_t mode,
		      struct fs_scratch **out);
/* Find and take a reference; NULL if absent. */
struct fs_scratch *fs_scratch_get(struct fs_ctx *c, const char *path);
void fs_scratch_put(struct fs_ctx *c, struct fs_scratch *sc);
/* Remove from the table (the content lives on while referenced). */
int fs_scratch_unlink(struct fs_ctx *c, const char *path);
int fs_scratch_rename(struct fs_ctx *c, const char *from, const char *to);
int fs_scratch_stat(struct fs_ctx *c, struct fs_scratch *sc, struct stat *st);
/* Call filler for each scratch file directly in namespace `ns`. */
void fs_scratch_list(struct fs_ctx *c, const char *ns, void *buf,
		     fuse_fill_dir_t filler);
int fs_scratch_xattr_set(struct fs_ctx *c, struct fs_scratch *sc,
			 const char *name, const void *value, size_t size,
			 int flags);
ssize_t fs_scratch_xattr_get(struct fs_ctx *c, struct fs_scratch *sc,
			     const char *name, void *value, size_t size);
ssize_t fs_scratch_xattr_list(struct fs_ctx *c, struct fs_scratch *sc,
			      char *list, size_t size);
int fs_scratch_xattr_remove(struct fs_ctx *c, struct fs_scratch *sc,
			    const char *name);
/* The same on any attribute list; callers hold ctx->mu. */
int fs_xattr_set(struct fs_xattr **list, const char *name, const void *value,
		 size_t size, int flags);
ssize_t fs_xattr_get(struct fs_xattr *list, const char *name, void *value,
		     size_t size);
void fs_xattr_free(struct fs_xattr *list);
/* Commit a scratch file as the next version of `id` (rename onto it). */
int fs_scratch_commit(struct fs_ctx *c, struct fs_scratch *sc, const char *id,
		      const struct store_cond *cond);
/* Make a scratch file holding record `id` (rename of a record onto a
   scratch name), then delete the record. */
int fs_scratch_from_record(struct fs_ctx *c, const char *id, const char *path);

/* history.c: old versions (ID@N, .recfs/history/ID/N) */
int fs_hist_attr(struct fs_ctx *c, const char *id, uint64_t n, struct stat *st);
int fs_hist_open(struct fs_ctx *c, const char *id, uint64_t n,
		 struct fuse_file_info *fi);
int fs_hist_tree_attr(struct fs_ctx *c, const char *rest, struct stat *st);
int fs_hist_tree_readdir(struct fs_ctx *c, const char *rest, void *buf,
			 fuse_fill_dir_t filler);
int fs_hist_tree_open(struct fs_ctx *c, const char *rest,
		      struct fuse_file_info *fi);

/* handle.c */
/* Who is asking: uid, pid and command name of the calling process. */
void fs_who_now(struct store_who *w);
int fs_open(const char *path, struct fuse_file_info *fi);
int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi);
int fs_read(const char *path, char *buf, size_t size, off_t off,
	    struct fuse_file_info *fi);
int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size,
		off_t off, struct fuse_file_info *fi);
int fs_write(const char *path, const char *buf, size_t size, off_t off,
	     struct fuse_file_info *fi);
int fs_flush(const char *path, struct fuse_file_info *fi);
int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi);
int fs_release(const char *path, struct fuse_file_info *fi);
int fs_ftruncate(struct fs_handle *h, off_t size);
/* Size of a record as the open writers see it; false if none. */
/* Size, mode, mtime of an open writer of `id` into *st (false if none):
   of one opened as ID@N if `via_cond`, else of one opened as ID. */
bool fs_writer_size(struct fs_ctx *c, const char *id, bool via_cond,
		    struct stat *st);
/* chmod/utimens of a record with open writers go to their next commit. */
bool fs_writer_set_meta(struct fs_ctx *c, const char *id, int mode,
			const struct timespec *mtime);
/* User xattrs of a record that only open writers have created so far:
   kept for their commit. -ENOENT if there is no such writer. */
int fs_writer_xattr_set(struct fs_ctx *c, const char *id, const char *name,
			const void *value, size_t size, int flags);
ssize_t fs_writer_xattr_get(struct fs_ctx *c, const char *id, const char *name,
			    void *value, size_t size);
/* Free the write handles the kernel never released (shutdown while files
   were open, or before their release arrived). */
void fs_writers_free(struct fs_ctx *c);
/* The record was unlinked or renamed away: writers drop their changes. */
void fs_writers_orphan(struct fs_ctx *c, const char *id);
/* Forget what the kernel may cache for `id`. */
void fs_cache_forget(struct fs_ctx *c, const char *id);
/* Record `from` was renamed onto `to`: the read handles open on `from`
   now read the kernel inode named `to`. */
void fs_cache_moved(struct fs_ctx *c, const char *from, const char *to);
/* Fill st for a record's metadata. */
void fs_fill_stat(const struct fs_ctx *c, const struct store_meta *m,
		  struct stat *st);
/* ctl.c: the control channel. `verb` follows FS_CTL_PREFIX in the name
   of a setxattr on the mount root; `value` is its argument. Returns 0
   when done, -EPERM for other users, -EOPNOTSUPP for unknown verbs. */
#define FS_CTL_PREFIX "user.recfs.ctl."
int fs_ctl(struct fs_ctx *c, const char *verb, const char *value, size_t size);

/* The JSON of .recfs/status into a new buffer. */
int fs_status_json(struct fs_ctx *c, char **out, size_t *len);

#endif
