/*
 * history_helpers.h - the fixture of the test_history_*.c executables
 * (suite "history") and their helpers: the store, and its history as
 * stock git shows it.
 *
 * Each test builds its store in a fresh sandbox directory (sandbox.h), on
 * tmpfs (/dev/shm) when there is one (RECFS_TEST_TMPDIR overrides).
 */
#ifndef RECFS_TEST_HISTORY_HELPERS_H
#define RECFS_TEST_HISTORY_HELPERS_H

#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define BIG_LEN ((size_t)(1u << 20) + 12345) /* committed by reference */

/* A fresh sandbox and libgit2; the sandbox removed (unmounted first if
   small_fs was used). */
void history_setup(void);
void history_teardown(void);

/* Open the store at spath, creating it, with the options in *o. */
struct store *open_opts(struct store_opts *o);
struct store *open_store(void);

/* A store whose history commits at most every `delay_ms`. */
struct store *open_slow(unsigned delay_ms, struct io *io);
void close_store(struct store *s);

/* Commit, asserting it works. */
struct store_result put_buf(struct store *s, const char *id, const void *buf,
			    size_t len);
struct store_result put(struct store *s, const char *id, const char *text);

/* Read version v of record "hot" and check it says "hot v". */
void check_hot_version(struct store *s, uint64_t v);

/* Wait until the history has every change (at most 60 s). */
void drain(struct store *s);

/* Wait (at most 10 s) until the history has `revision`, without asking
   the writer to hurry (as a drain does). */
void wait_history(struct store *s, uint64_t revision);

/* The git blob id of `buf`, in hex. */
void blob_hex(const void *buf, size_t len, char out[41]);

/* ---- trailer blocks as stock git shows them ---------------------------- */

struct block {
	char commit[41];
	char id[512];
	uint64_t version, revision, size;
	char blob[41];
	char hash[80];
	char from[512], to[512];
	bool deleted, missing, has_time, has_uid;
};

struct log {
	struct block *b;
	size_t n;
	size_t commits;
	uint64_t last_upto;
};

void log_free(struct log *l);

/* Every trailer block of refs/heads/main, parsed from `git log`. */
void read_log(struct log *l);

/* The blocks of (id, version): how many there are, the last in *out. */
unsigned find_blocks(const struct log *l, const char *id, uint64_t version,
		     bool deleted, const struct block **out);

/* What a test wrote: to compare with the history. */
struct wrote {
	const char *id;
	uint64_t version, revision;
	const void *buf;
	size_t len;
};

/* (id, version) has exactly one block, with the right fields, and both
   git and store_history_get give back its content. */
void check_version(struct store *s, const struct log *l, const struct wrote *w);

/* The tree of refs/heads/main holds exactly the live records, each with
   its current content. */
void check_tree(struct store *s);

#endif
