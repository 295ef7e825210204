/*
 * sandbox_store.h - the sandbox of a test that uses a store (sandbox.h's
 * sandbox, with the paths in it the suites share; made in sandbox.c).
 * A header of its own, so that a suite keeping its own `base` and
 * `spath` can still include sandbox.h.
 */
#ifndef RECFS_TEST_SANDBOX_STORE_H
#define RECFS_TEST_SANDBOX_STORE_H

#include "sandbox.h"

#include <limits.h>
#include <stdbool.h>

/*
 * base (the sandbox itself), spath (base/store; a test may point it
 * elsewhere) and gitdir (base/store/history.git).
 */
extern char base[PATH_MAX];
extern char spath[PATH_MAX + 32];
extern char gitdir[PATH_MAX + 64];

/* sandbox_new(base, .., name, quiet), then spath and gitdir. */
void sandbox_store(const char *name, bool quiet);

/* sandbox_rm(base): a TestSuite's .fini. */
void sandbox_store_rm(void);

#endif
