/*
 * test_report2.c - more errors the store reports (base/err.h) instead of
 * logging (issue 14): a conditional commit or txn that fails, a rollback
 * past the current revision, an import of a missing directory, a corrupt
 * index snapshot or journal segment at open, and a verify that finds a
 * damaged record. Each call fails with its -errno and leaves a message
 * naming the record or path and the cause.
 *
 * Each test builds its store in a fresh sandbox directory
 * (sandbox_store.h).
 */
#include "err.h"
#include "helpers.h"
#include "sandbox_store.h"
#include "store.h"
#include "txn.h"
#include "admin.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void setup(void)
{
	sandbox_store("report2", true);
}

TestSuite(report2, .init = setup, .fini = sandbox_store_rm, .timeout = 120);

static struct store *open_store(void)
{
	struct store_opts o = {.path = spath, .create = true};
	struct store *s = NULL;
	int rc = store_open(&s, &o);

	cr_assert_eq(rc, 0, "store_open %s: %s", spath, rerr_what(rc));
	return s;
}

/* A store with "doc" at version 2, closed. */
static void make_store(void)
{
	struct store *s = open_store();

	cr_assert_eq(store_put(s, "doc", "one", 3, NULL, NULL), 0);
	cr_assert_eq(store_put(s, "doc", "two", 3, NULL, NULL), 0);
	cr_assert_eq(store_close(s), 0);
}

Test(report2, a_failed_conditional_put_names_the_record_and_versions)
{
	struct store_commit_args a = {
		.cond = {.kind = STORE_COND_IF_VERSION, .version = 5},
		.mode = -1};
	struct store_commit_args c = {.cond = {.kind = STORE_COND_CREATE},
				      .mode = -1};
	const char *stale[] = {"record doc", "version 2", "expected 5"};
	const char *exists[] = {"record doc", "exists already"};
	struct store_result res;
	struct store *s;

	make_store();
	s = open_store();
	rerr_clear();
	cr_assert_eq(store_put(s, "doc", "x", 1, &a, &res), -ESTALE);
	cr_assert_eq(res.current, 2);
	expect_report(-ESTALE, stale, 3);
	rerr_clear();
	cr_assert_eq(store_put(s, "doc", "x", 1, &c, &res), -ESTALE);
	expect_report(-ESTALE, exists, 2);
	cr_assert_eq(store_close(s), 0);
}

Test(report2, a_failed_conditional_txn_part_names_the_record)
{
	struct store_commit_args a = {
		.cond = {.kind = STORE_COND_IF_VERSION, .version = 1},
		.mode = -1};
	const char *want[] = {"record doc", "version 2", "expected 1"};
	struct store_txn_result tr;
	struct store_txn *t = NULL;
	struct store *s;

	make_store();
	s = open_store();
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "other", "o", 1, NULL), 0);
	cr_assert_eq(store_txn_put(t, "doc", "x", 1, &a), 0);
	rerr_clear();
	cr_assert_eq(store_txn_commit(t, NULL, &tr), -ESTALE);
	expect_report(-ESTALE, want, 3);
	store_txn_free(t);
	cr_assert_eq(store_close(s), 0);
}

Test(report2, a_rollback_past_the_current_revision_names_both)
{
	const char *want[] = {spath, "revision 99", "after the current one",
			      "(2)"};
	struct store *s;

	make_store();
	s = open_store();
	rerr_clear();
	cr_assert_eq(store_rollback_to(s, 99, NULL, NULL), -EINVAL);
	expect_report(-EINVAL, want, 4);
	cr_assert_eq(store_close(s), 0);
}

Test(report2, an_import_of_a_missing_directory_names_it)
{
	char dir[PATH_MAX + 32];
	const char *want[] = {dir, "cannot open the directory",
			      strerror(ENOENT)};
	struct store *s = open_store();

	snprintf(dir, sizeof(dir), "%s/nowhere", base);
	rerr_clear();
	cr_assert_eq(store_import(s, dir, NULL, NULL), -ENOENT);
	expect_report(-ENOENT, want, 3);
	cr_assert_eq(store_close(s), 0);
}

Test(report2, a_corrupt_index_snapshot_at_open_names_the_store_and_offset)
{
	char path[PATH_MAX + 64], junk[256];
	const char *want[] = {spath, "recovery", "index",
			      "corrupt index snapshot", "at byte"};
	struct store_opts o = {.path = spath};
	struct store *s = NULL;

	make_store();
	snprintf(path, sizeof(path), "%s/index", spath);
	memset(junk, 'z', sizeof(junk));
	write_file_mode(path, junk, sizeof(junk), 0644);
	rerr_clear();
	cr_assert_eq(store_open(&s, &o), -EBADMSG);
	cr_assert_null(s);
	expect_report(-EBADMSG, want, 5);
}

Test(report2, a_corrupt_journal_segment_at_open_names_the_store_and_file)
{
	char path[PATH_MAX + 96], junk[64];
	const char *want[] = {spath, "recovery", "journal is corrupt",
			      "journal 00000000000000099999.log"};
	struct store_opts o = {.path = spath};
	struct store *s = NULL;

	make_store();
	snprintf(path, sizeof(path), "%s/journal/00000000000000099999.log",
		 spath);
	memset(junk, 'z', sizeof(junk));
	write_file_mode(path, junk, sizeof(junk), 0644);
	rerr_clear();
	cr_assert_eq(store_open(&s, &o), -EBADMSG);
	cr_assert_null(s);
	expect_report(-EBADMSG, want, 4);
}

Test(report2, a_verify_problem_names_the_record_and_what_is_wrong)
{
	char path[PATH_MAX + 64];
	const char *want[] = {spath, "1 problems", "record doc",
			      "content does not match version 2"};
	struct store_verify_report rep;
	struct store *s;

	make_store();
	snprintf(path, sizeof(path), "%s/records/doc", spath);
	write_file_mode(path, "garbage", 7, 0644);
	s = open_store();
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_eq(rep.bad, 1);
	expect_report(-EBADMSG, want, 4);
	cr_assert_eq(store_close(s), 0);
}
