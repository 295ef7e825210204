/*
 * crash_helpers.h - the fixture of the test_crash_*.c executables (suite
 * "crash"): the durability protocol of the store (store_i.h, commit.c,
 * recover.c) under crashes and I/O errors at every failpoint on the commit
 * path:
 *
 *  - crash: a child process makes one change and is killed (IO_CRASH is
 *    _exit, like kill -9) at the point; reopening must find the record at
 *    exactly its old or its new version (the new one if the point is
 *    after the commit point), everything committed before intact (some of
 *    it only in the journal), no stray file, a clean verify, and a store
 *    that takes new commits (test_crash_commit.c);
 *  - error: the point fails with EIO, ENOSPC or a short write; before the
 *    commit point the change returns that error and leaves the old version,
 *    after it the change succeeds and the store refuses changes until it is
 *    reopened, which finishes the change (test_crash_commit.c);
 *  - crashes during recovery, twice in a row; errors during recovery
 *    (the open fails or gets past them; the next open loses nothing)
 *    (test_crash_recover.c);
 *  - random kills of a child doing random changes (test_crash_kill.c).
 *
 * Stores live in fresh sandbox directories (sandbox.h), on tmpfs when there
 * is one (RECFS_TEST_TMPDIR overrides): a process crash does not lose the
 * page cache, so the disk adds nothing here but time. What the store logs
 * is dropped unless RECFS_TEST_VERBOSE is set.
 */
#ifndef RECFS_TEST_CRASH_HELPERS_H
#define RECFS_TEST_CRASH_HELPERS_H

#include "io.h"
#include "sandbox_store.h"
#include "store.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BIG_LEN ((size_t)(1u << 20) + 4096) /* committed by reference */
#define NO_CHECKPOINT (1ull << 40)	    /* checkpoint_bytes */

/* The sandbox (sandbox_store), as the suite's .init. */
void crash_setup(void);

/* A fresh store directory for the next case (the last one is removed). */
void next_case(void);

/* ---- the failpoints and the changes ------------------------------------ */

enum when {
	BEFORE, /* before the commit point: a crash keeps the old version, an
		   error is returned and keeps it */
	AT,	/* jnl.fsync: the record is written, not yet synced; a crash
		   may keep either (a process crash keeps the page cache, so
		   in fact the new one); an error is returned */
	AFTER,	/* after the commit point: the new version survives a crash;
		   an error is not returned, the store refuses changes until
		   reopened, and reopening finishes the change */
	CKPT,	/* inside a checkpoint: no record changes either way */
	TIDY,	/* after the commit point, removing the old content: a crash
		   keeps the new version; an error is only logged (the file is
		   removed at the next open) and the store goes on */
};

enum op {
	OP_PUT,	    /* small: content inline in the journal */
	OP_PUT_BIG, /* > 1 MiB: the journal names the synced stage */
	OP_APPEND,  /* rebased on the current content */
	OP_DELETE,
	OP_RENAME,     /* onto a live record */
	OP_SET_META,   /* mtime and mode, no new version */
	OP_CHECKPOINT, /* with changes in the journal to retire */
	OP_N
};

extern const char *const op_names[OP_N];

#define B(op) (1u << (op))
#define CHANGES (B(OP_PUT) | B(OP_PUT_BIG) | B(OP_APPEND))
#define JOURNALED (CHANGES | B(OP_DELETE) | B(OP_RENAME) | B(OP_SET_META))

/*
 * Every failpoint in store/ and journal/ that a change or a
 * checkpoint passes, with the changes that reach it. The test checks that
 * each is reached exactly by those (so this table cannot silently go
 * stale) and that every point is reached by at least one. Points only
 * passed when the store is opened are in recovery_points below; reads
 * (read.pread), namespaces (ns.*) and recover.mkdir (a journaled record's
 * namespace is never missing: namespaces are not journaled, and rmdir
 * needs them empty) are not on these paths.
 */
struct point {
	const char *name;
	enum when when;
	unsigned ops;	    /* B(op) of the changes that reach it */
	bool write;	    /* a write: IO_SHORT applies */
	unsigned err_times; /* how many hits fail in the error test; 0: all */
};

extern const struct point points[];
extern const size_t npoints;

/* ---- the fixture --------------------------------------------------------- */

/* The new content of OP_PUT_BIG (the test fills it). */
extern uint8_t big_new[BIG_LEN];

/* Open the store of the case, creating it, with `io` (may be NULL). */
struct store *open_store(struct io *io, uint64_t ckpt);
int put(struct store *s, const char *id, const void *buf, size_t len);
int puts_(struct store *s, const char *id, const char *text);

/* The part of the fixture that is checkpointed: made in-process, in a
   new case. */
void make_fixture(void);

/* Changes made in the session of the change under test, before it: they
   are only in the journal when it crashes. */
int pre_ops(struct store *s);
int do_op(struct store *s, enum op op);

/* ---- checking ------------------------------------------------------------ */

enum outcome { OLD, NEW, TORN };

/* Where the records of `op` are: exactly old, exactly new, or neither. */
enum outcome outcome_of(struct store *s, enum op op);

/* Every fixture record but those of `op` is as it was; so is ns/k3's
   tombstone and ns/k1's xattr. */
void check_others(struct store *s, enum op op, const char *what);

/* Nothing but the store's own files in STORE, STORE/tmp, STORE/journal
   (whose blobs/ holds the content the history has not written yet). */
void check_no_strays(const char *what, bool tmp_may_hold);

/* A clean verify, with no unindexed file. */
void check_verify_all(struct store *s, const char *what);

/* A check of what a case adds to the fixture. */
typedef void (*extra_fn)(struct store *s, const char *what);

/*
 * Reopen the store and check it after a crash or an error during `op`:
 * `want` is OLD, NEW, or TORN meaning "old or new". `extra` (may be NULL)
 * checks more on the first open.
 */
void check_reopened_x(enum op op, enum outcome want, const char *what,
		      extra_fn extra);
void check_reopened(enum op op, enum outcome want, const char *what);

/* An I/O error to inject. */
struct fault {
	enum io_action act;
	int err;
	const char *name;
};

/* EIO, ENOSPC, a short write then ENOSPC. */
extern const struct fault faults[];
extern const size_t nfaults;

/* In a child: the options of the case's store, with a new io whose
   `point` (NULL: none) gets `act` and `err` from its first hit on,
   `times` times (0: always). Exits the child with 2 if that fails. */
struct store_opts child_opts(const char *point, enum io_action act, int err,
			     unsigned times);

/* Fork a child that opens the store with failpoints, runs `fn` and exits
   with its result (0 or 5), or crashes at an armed point. */
typedef int (*child_fn)(struct store *s, struct io *io, const void *arg);

int in_child(child_fn fn, const void *arg, bool arm_before_open,
	     const char *point);

#endif
