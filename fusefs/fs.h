/*
 * fs.h - the FUSE frontend of recfs: a context for one mount and the
 * operations table handed to libfuse's high-level API. main.c builds the
 * context (owning the store) and runs the loop.
 */
#ifndef RECFS_FS_H
#define RECFS_FS_H

#include <stdbool.h>
#include <stdint.h>

struct fs_ctx;
struct fuse_operations;
struct store;

#define FS_DEFAULT_SCRATCH ".*.??????:.*.sw?:4913:*~:sed??????"

struct fs_config {
	bool read_only;
	uint64_t max_record_size;
	const char *scratch; /* ':'-separated fnmatch patterns; NULL: default */
	bool snapdir_visible;
	const char *mountpoint; /* absolute; NULL if unknown (borrowed) */
};

/* Create the context of a mount over the open store `s` (borrowed). */
int fs_ctx_new(struct fs_ctx **out, struct store *s,
	       const struct fs_config *cfg);
void fs_ctx_free(struct fs_ctx *c);

/* Commits and failed commits so far (for the shutdown report). */
void fs_ctx_counts(struct fs_ctx *c, uint64_t *commits, uint64_t *errors);

/* The operations table; private_data must be the fs_ctx. */
const struct fuse_operations *fs_operations(void);

#endif
