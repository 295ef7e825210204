/*
 * fs.h - the FUSE frontend of recfs: a context for one mount and its
 * session on libfuse's low-level API. main.c builds the context (owning
 * the store), makes the session and runs the loop.
 */
#ifndef RECFS_FS_H
#define RECFS_FS_H

#include <stdbool.h>
#include <stdint.h>

struct fs_ctx;
struct fuse_args;
struct fuse_session;
struct store;

#define FS_DEFAULT_SCRATCH ".*.??????:.*.sw?:4913:*~:sed??????"

struct fs_config {
	bool read_only;
	uint64_t max_record_size;
	const char *scratch; /* ':'-separated fnmatch patterns; NULL: default */
	bool snapdir_visible;
	const char *mountpoint; /* absolute; NULL if unknown (borrowed) */
	bool single_thread;	/* -s: an open cannot wait for another
				   request to be served (inval.c) */
};

/* Create the context of a mount over the open store `s` (borrowed). */
int fs_ctx_new(struct fs_ctx **out, struct store *s,
	       const struct fs_config *cfg);
void fs_ctx_free(struct fs_ctx *c);

/* Commits and failed commits so far (for the shutdown report). */
void fs_ctx_counts(struct fs_ctx *c, uint64_t *commits, uint64_t *errors);

/* The low-level session serving `c` (fuse_session_new with recfs's
   operations); NULL on failure (libfuse said why). The caller owns it. */
struct fuse_session *fs_session_new(struct fuse_args *args, struct fs_ctx *c);

/* Start and stop the thread that tells the kernel which of its caches
   went stale (after the session is mounted; before it is destroyed). */
int fs_ctx_start(struct fs_ctx *c);
void fs_ctx_stop(struct fs_ctx *c);

#endif
