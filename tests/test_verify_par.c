/*
 * test_verify_par.c - store_verify's record pass (store/verify.c) with
 * enough records for its hashing threads: every damaged record among many
 * is found, once, whichever thread hashed it; repair puts each back; a
 * missing file is told from a present one by the walk's list.
 */
#include "admin.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N_RECORDS 600 /* > 64 per thread: every thread has work */

static void setup(void)
{
	sandbox_store("verify_par", false);
}

TestSuite(verify_par, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

static struct store *open_store(void)
{
	struct store_opts o = {.path = spath, .create = true};
	return open_ok(&o);
}

static void put_all(struct store *s)
{
	struct store_result r;
	char id[32], text[64];

	for (int k = 0; k < 3; k++) {
		snprintf(id, sizeof(id), "ns%d", k);
		cr_assert_eq(store_mkdir(s, id, 0755), 0);
	}
	for (int i = 0; i < N_RECORDS; i++) {
		snprintf(id, sizeof(id), "ns%d/r%04d", i % 3, i);
		snprintf(text, sizeof(text), "record %d\n", i);
		int rc = store_put(s, id, text, strlen(text), NULL, &r);

		cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	}
	cr_assert_eq(store_history_drain(s, 30000), 0);
}

static void damage(int i, bool remove)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/records/ns%d/r%04d", spath, i % 3, i);
	if (remove)
		cr_assert_eq(unlink(path), 0, "%s", path);
	else
		write_text(path, "garbage, not the record\n");
}

Test(verify_par, every_damaged_record_among_many_is_found_once)
{
	static const int bad[] = {0, 77, 301, 302, 599};
	struct store_verify_report rep;
	struct store *s = open_store();

	put_all(s);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, N_RECORDS);
	cr_assert_eq(rep.bad, 0);
	cr_assert_eq(store_close(s), 0);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		damage(bad[k], k == 2); /* one file removed, four changed */

	s = open_store();
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_eq(rep.records, N_RECORDS - 1,
		     "the removed file is not "
		     "walked");
	cr_assert_eq(rep.bad, 5);
	cr_assert_eq(store_verify_repair(s, &rep), 0);
	cr_assert_eq(rep.repaired, 5);
	cr_assert_eq(rep.unrepairable, 0);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, N_RECORDS);
	expect_buf(s, "ns2/r0077", "record 77\n", 10, 1);
	expect_buf(s, "ns1/r0301", "record 301\n", 11, 1);
	expect_buf(s, "ns2/r0302", "record 302\n", 11, 1);
	cr_assert_eq(store_close(s), 0);
}
