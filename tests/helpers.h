/*
 * helpers.h - what the unit test executables share besides the sandbox
 * (sandbox.h): files, shell commands, children, stderr capture, small
 * file systems, polling with a bound, and checks on a store's records.
 * Every helper asserts (Criterion) instead of returning an error, unless
 * it is a predicate.
 */
#ifndef RECFS_TEST_HELPERS_H
#define RECFS_TEST_HELPERS_H

#include "io.h"
#include "store.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store_verify_report; /* admin.h */

/* ---- files and bytes ---------------------------------------------------- */

/* A deterministic pattern of `len` bytes for `seed`. */
void fill(uint8_t *buf, size_t len, unsigned seed);

/* The whole file, NUL-terminated (caller frees); its size in *len. */
char *read_file(const char *path, size_t *len);

/* Create or replace `path` (mode 0600) with `len` bytes of `buf`. */
void write_file(const char *path, const void *buf, size_t len);

/* The same, the file created with `mode` (less the umask). */
void write_file_mode(const char *path, const void *buf, size_t len,
		     mode_t mode);

/* write_file of a string, without its NUL. */
void write_text(const char *path, const char *text);

/* The 16-byte XXH3-128 of `buf`, in canonical order. */
void hash_of(const void *buf, size_t len, uint8_t out[16]);

/* How many times `needle` is in `hay`. */
unsigned count_str(const char *hay, const char *needle);

/* How many entries of `dir` begin with `prefix` and hold `part` ("":
   any). */
unsigned count_names(const char *dir, const char *prefix, const char *part);

/* ---- time and waiting --------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t now_ms(void);

/*
 * Poll `cond(arg)` every millisecond until it holds or `timeout_ms` has
 * passed; returns its last value. For tests that wait for a condition:
 * never a fixed sleep.
 */
bool wait_for(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* The kernel's id of the calling thread (for thread_asleep). */
int thread_id(void);

/* Is thread `tid` of this process blocked (state S or D in /proc)? */
bool thread_asleep(int tid);

/*
 * Wait (at most `timeout_ms`) until the thread whose id is stored in *tid
 * (by the thread itself, with thread_id(); 0 until then) is blocked: for
 * a test that needs another thread to be waiting inside the store, where
 * nothing else shows that it is.
 */
bool wait_asleep(atomic_int *tid, unsigned timeout_ms);

/* ---- processes ---------------------------------------------------------- */

/* The output of a shell command (caller frees); asserts it exited 0. */
char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run `fn(arg)` in a child process (which then exits 0); its status. */
int run_child(void (*fn)(void *arg), void *arg);

/* Wait for child `pid`, assert that it exited (no signal); its code. */
int child_status(pid_t pid);

/* Did the child exit normally with `code`? */
bool exited_with(int status, int code);

/* What is written to stderr between capture_start and capture_end. */
struct captured {
	int saved;
	char path[PATH_MAX + 32];
};

/* Send stderr to DIR/stderr.txt. */
void capture_start(struct captured *c, const char *dir);

/* Give stderr back; what it got (caller frees). */
char *capture_end(struct captured *c);

/* ---- a small file system ------------------------------------------------ */

/*
 * Mount a tmpfs of `size` ("2M") on `dir` in a mount namespace of this
 * test process's own (gone with it). Skips the test if that needs root.
 */
void small_fs(const char *dir, const char *size);

/* Take every free byte of the file system of `path` with that file. */
void fill_fs(const char *path);

/* ---- a store's records -------------------------------------------------- */

/* The record `id` holds exactly `len` bytes `want` at `version` (0: any). */
void expect_buf(struct store *s, const char *id, const void *want, size_t len,
		uint64_t version);

/* store_open with `o`, asserting that it opens. */
struct store *open_ok(const struct store_opts *o);

/* Commit `text` to `id` unconditionally, asserting that it works. */
void put_text(struct store *s, const char *id, const char *text);

/*
 * In a child process: open the store with options `o` and a new io for
 * failpoints (in *io). Exits the child with 2 if there is no io, 3 if the
 * store does not open.
 */
struct store *child_open(struct store_opts *o, struct io **io);

/* Is `id` live with exactly this content and version? */
bool holds(struct store *s, const char *id, const void *want, size_t len,
	   uint64_t version);
bool holds_text(struct store *s, const char *id, const char *text,
		uint64_t version);

/* Is `id` deleted, its last version `last`? */
bool gone(struct store *s, const char *id, uint64_t last);

/* store_verify finds nothing wrong; its report in *rep (may be NULL). */
void check_verify(struct store *s, const char *what,
		  struct store_verify_report *rep);

/* The last reported error (base/err.h) is `code` and its message holds
   every one of `want`. */
void expect_report(int code, const char *const *want, size_t n);

#endif
