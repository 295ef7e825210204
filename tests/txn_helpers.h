/*
 * txn_helpers.h - the fixture of the test_txn*.c executables (suite
 * "txn"). Stores live in fresh sandbox directories (sandbox_store.h), on
 * tmpfs when there is one (RECFS_TEST_TMPDIR overrides). What the store
 * logs is dropped unless RECFS_TEST_VERBOSE is set.
 */
#ifndef RECFS_TEST_TXN_HELPERS_H
#define RECFS_TEST_TXN_HELPERS_H

#include "io.h"
#include "store.h"
#include "txn.h"

#include <stdint.h>

#define BIG_LEN ((size_t)(1u << 20) + 777) /* by reference in a txn */

/* A buffer of BIG_LEN bytes for the tests to fill. */
extern uint8_t big[BIG_LEN];

/* The sandbox (sandbox_store), as the suite's .init. */
void txn_setup(void);
/* A fresh store directory (the last one is removed). */
void next_case(void);
/* Open (creating) the store at spath, with `io` (may be NULL). */
struct store *open_io(struct io *io);
struct store *open_store(void);
struct store *open_memory(void);
/* Add a put of `text` to `t`, asserting that it works. */
void tput(struct store_txn *t, const char *id, const char *text);

#endif
