/*
 * store_helpers.h - the fixture of the test_store_*.c executables (suite
 * "store") and their helpers on records.
 *
 * Behaviour that does not depend on the disk runs on both backends (the
 * memory one and the file one). Each test builds its store in a fresh
 * sandbox directory (sandbox.h): on tmpfs (/dev/shm) when there is one,
 * so that the thousands of fsyncs of these tests cost nothing; set
 * RECFS_TEST_TMPDIR=/var/tmp to run them on a real disk (slower).
 */
#ifndef RECFS_TEST_STORE_HELPERS_H
#define RECFS_TEST_STORE_HELPERS_H

#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define BIG_LEN ((size_t)(1u << 20) + 4096) /* committed by reference */

/* The sandbox (sandbox_store), as the suite's .init. */
void store_setup(void);

/* The two backends, file first. */
extern const enum store_backend backends[2];
const char *bname(enum store_backend b);

/* Open (asserting it works) with these options; on backend `b` at spath,
   creating it, with `io` (NULL: none); likewise without an io. */
struct store *open_with(const struct store_opts *o);
struct store *open_io(enum store_backend b, struct io *io);
struct store *open_store(enum store_backend b);
void close_store(struct store *s);

int put_buf(struct store *s, const char *id, const void *buf, size_t len,
	    enum store_cond_kind kind, uint64_t version,
	    struct store_result *res);
int put(struct store *s, const char *id, const char *text,
	struct store_result *res);
int put_if(struct store *s, const char *id, const char *text,
	   enum store_cond_kind kind, uint64_t version,
	   struct store_result *res);

/* Commit `text` unconditionally and insist that it works. */
uint64_t must_put(struct store *s, const char *id, const char *text);

/* The record `id` holds exactly `text` at `version` (0: any). */
void expect(struct store *s, const char *id, const char *text,
	    uint64_t version);

/* get and stat of `id` are -ENOENT. */
void expect_absent(struct store *s, const char *id);
uint64_t version_of(struct store *s, const char *id);

/*
 * A listing of everything under `root`: path, type, mode, size, mtime and
 * a hash of the content of each file, one line each in nftw order (which
 * is readdir order: stable for an unchanged directory). Skips `skip` (a
 * name relative to root, or NULL). With `dir_times`, directories' mtimes
 * too. Caller frees.
 */
char *tree(const char *root, const char *skip, bool dir_times);

/* A store_list callback that does nothing. */
int listed(void *arg, const char *name, bool is_ns);

#endif
