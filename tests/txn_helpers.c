/*
 * txn_helpers.c - the fixture of the test_txn*.c executables (suite
 * "txn"): a store sandbox with a fresh store directory per case, and
 * helpers (txn_helpers.h).
 */
#include "txn_helpers.h"

#include "txn.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

static int ncase;

void txn_setup(void)
{
	sandbox_store("txn", true);
}

/* A fresh store directory (the last one is removed). */
void next_case(void)
{
	sandbox_rm(spath);
	snprintf(spath, sizeof(spath), "%s/case%d", base, ++ncase);
}

struct store *open_io(struct io *io)
{
	struct store_opts o = {.path = spath, .create = true, .io = io};
	return open_ok(&o);
}

struct store *open_store(void)
{
	return open_io(NULL);
}

struct store *open_memory(void)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, &o), 0);
	return s;
}

void tput(struct store_txn *t, const char *id, const char *text)
{
	int rc = store_txn_put(t, id, text, strlen(text), NULL);

	cr_assert_eq(rc, 0, "txn put %s: %s", id, strerror(-rc));
}

uint8_t big[BIG_LEN];
