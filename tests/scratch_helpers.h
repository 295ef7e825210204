/*
 * scratch_helpers.h - the fixture of the test_scratch*.c executables
 * (suite "scratch"). Each test builds its store in a fresh sandbox
 * directory (sandbox_store.h).
 */
#ifndef RECFS_TEST_SCRATCH_HELPERS_H
#define RECFS_TEST_SCRATCH_HELPERS_H

#include "io.h"
#include "store.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define BIG_LEN ((size_t)(1u << 20) + 777) /* committed by reference */

extern char dpath[PATH_MAX + 32]; /* base/copy */

/* The sandbox (sandbox_store) and dpath, as the suite's .init. */
void scratch_setup(void);

/* Open the store at `path` (read-only: `ro`; else creating it) with `io`
   (may be NULL), asserting that it opens; the same at spath. */
struct store *open_opts(const char *path, struct io *io, bool ro);
struct store *open_store(struct io *io);
/* Commit `text` to `id`, asserting that it works; the new version. */
uint64_t put_str(struct store *s, const char *id, const char *text);

/* Make scratch file `path` holding `len` bytes of `buf`, mode `mode`. */
void mk_scratch_buf(struct store *s, const char *path, const void *buf,
		    size_t len, mode_t mode);
void mk_scratch(struct store *s, const char *path, const char *text);
/* The content of scratch file `path` as a string (caller frees). */
char *read_scratch(struct store *s, const char *path);
void expect_scratch(struct store *s, const char *path, const char *text);
bool scratch_there(struct store *s, const char *path);
/* Record `id` holds exactly `len` bytes `want` at `version`. */
void expect_record(struct store *s, const char *id, const void *want,
		   size_t len, uint64_t version);
void set_xattr(struct store *s, const char *path, const char *name,
	       const char *value);
void set_mtime(struct store *s, const char *path, const struct timespec *t);

/* What store_list (with `collect`) or store_scratch_list named. */
struct names {
	char buf[4096];
	size_t len;
	int n;
};

int collect(void *arg, const char *name, bool is_ns);

#endif
