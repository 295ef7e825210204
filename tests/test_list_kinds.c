/*
 * test_list_kinds.c - the store's index read in bulk: store_list_kinds
 * (what each name of a listing is, its lookups overlapped) and an index
 * snapshot larger than the window it is read in (recover.c).
 */
#include "helpers.h"
#include "store.h"
#include "store_helpers.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(kinds, .init = store_setup, .fini = sandbox_store_rm, .timeout = 120);

#define NREC 300

/* 300 records of ns/, every third a symlink, every fifth deleted. */
static void fill_ns(struct store *s)
{
	struct store_commit_args l = {.mode = -1, .symlink = true};
	struct store_result r;
	char id[64];

	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	cr_assert_eq(store_mkdir(s, "ns/sub", 0700), 0);
	for (int i = 0; i < NREC; i++) {
		snprintf(id, sizeof(id), "ns/r%d", i);
		if (i % 3 == 0)
			cr_assert_eq(store_put(s, id, "t", 1, &l, &r), 0);
		else
			must_put(s, id, "x");
		if (i % 5 == 0)
			cr_assert_eq(store_delete(s, id, NULL, NULL, NULL), 0);
	}
}

static void kinds_body(enum store_backend b)
{
	struct store *s = open_store(b);
	const char *names[NREC + 2];
	char buf[NREC][16];
	unsigned char kinds[NREC + 2];

	fill_ns(s);
	for (int i = 0; i < NREC; i++) {
		snprintf(buf[i], sizeof(buf[i]), "r%d", i);
		names[i] = buf[i];
	}
	names[NREC] = "sub";
	names[NREC + 1] = "never";
	memset(kinds, 0xaa, sizeof(kinds));
	cr_assert_eq(store_list_kinds(s, "ns", names, NREC + 2, kinds), 0);
	for (int i = 0; i < NREC; i++) {
		int want = i % 5 == 0 ? 0 : i % 3 == 0 ? 2 : 1;

		cr_assert_eq(kinds[i], want, "%s: ns/r%d is %d, not %d",
			     bname(b), i, kinds[i], want);
	}
	cr_assert_eq(kinds[NREC], 0, "%s: a namespace is no record", bname(b));
	cr_assert_eq(kinds[NREC + 1], 0, "%s: nothing there", bname(b));
	/* the root namespace: IDs without a prefix */
	must_put(s, "top", "x");
	names[0] = "top";
	cr_assert_eq(store_list_kinds(s, "", names, 1, kinds), 0);
	cr_assert_eq(kinds[0], 1, "%s: top", bname(b));
	cr_assert_eq(store_list_kinds(s, "ns", names, 0, kinds), 0);
	close_store(s);
}

Test(kinds, records_symlinks_and_the_rest)
{
	for (size_t i = 0; i < 2; i++)
		kinds_body(backends[i]);
}

/* Snapshot frames of about 3 KiB (an xattr each), 6 MB in all: read
   back across windows of 4 MiB. */
Test(kinds, snapshot_larger_than_its_window)
{
	struct store *s = open_store(STORE_BACKEND_FILE);
	static char val[3000], got[3000];
	unsigned char kinds[1];
	const char *name = "x";
	char id[64];
	int n = 2000;

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "r%05d", i);
		must_put(s, id, "x");
		memset(val, 'a' + i % 26, sizeof(val));
		cr_assert_eq(
			store_xattr_set(s, id, "user.v", val, sizeof(val), 0),
			0, "%s", id);
	}
	close_store(s); /* writes the snapshot */
	s = open_store(STORE_BACKEND_FILE);
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "r%05d", i);
		memset(val, 'a' + i % 26, sizeof(val));
		cr_assert_eq(store_xattr_get(s, id, "user.v", got, sizeof(got)),
			     (ssize_t)sizeof(got), "%s", id);
		cr_assert(memcmp(got, val, sizeof(val)) == 0, "%s", id);
	}
	snprintf(id, sizeof(id), "r%05d", n - 1);
	name = id;
	cr_assert_eq(store_list_kinds(s, "", &name, 1, kinds), 0);
	cr_assert_eq(kinds[0], 1);
	close_store(s);
}
