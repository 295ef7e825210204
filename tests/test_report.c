/*
 * test_report.c - errors the store reports (base/err.h) instead of
 * logging: each names the path or record and the cause, is this thread's
 * alone, and a successful open leaves no stale one behind. And stage
 * reads and writes go through the store's I/O shim (the failpoints
 * "stage.read", "stage.write" and "stage.copy"), which fusefs relies on.
 *
 * Each test builds its store in a fresh sandbox directory
 * (sandbox_store.h).
 */
#include "err.h"
#include "helpers.h"
#include "io.h"
#include "sandbox_store.h"
#include "store.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void setup(void)
{
	sandbox_store("report", true);
}

TestSuite(report, .init = setup, .fini = sandbox_store_rm, .timeout = 120);

static struct store *open_io(struct io *io)
{
	struct store_opts o = {.path = spath, .create = true, .io = io};
	struct store *s = NULL;
	int rc = store_open(&s, &o);

	cr_assert_eq(rc, 0, "store_open %s: %s", spath, rerr_what(rc));
	return s;
}

Test(report, open_of_a_plain_directory_names_it_and_the_way_out)
{
	struct store_opts o = {.path = base};
	struct store *s = NULL;
	char hint[PATH_MAX + 64];
	const char *want[] = {base, "not a recfs store", hint};

	snprintf(hint, sizeof(hint), "`recfsctl init --adopt %s`", base);
	rerr_clear();
	cr_assert_eq(store_open(&s, &o), -ENOENT);
	cr_assert_null(s);
	expect_report(-ENOENT, want, 3);
}

Test(report, init_refusals_name_the_directory_and_the_reason)
{
	char plain[PATH_MAX + 32], f[PATH_MAX + 64];
	const char *not_empty[] = {plain, "directory is not empty",
				   "(found \"f\")"};
	const char *exists[] = {spath, "already a recfs store"};
	FILE *fp;

	snprintf(plain, sizeof(plain), "%s/plain", base);
	snprintf(f, sizeof(f), "%s/f", plain);
	cr_assert_eq(mkdir(plain, 0700), 0);
	fp = fopen(f, "w");
	cr_assert_not_null(fp);
	fclose(fp);
	cr_assert_eq(store_init(plain, false), -ENOTEMPTY);
	expect_report(-ENOTEMPTY, not_empty, 3);

	cr_assert_eq(store_init(spath, false), 0);
	cr_assert_null(rerr_last(), "a successful init leaves no error");
	cr_assert_eq(store_init(spath, false), -EEXIST);
	expect_report(-EEXIST, exists, 2);
}

Test(report, a_successful_open_leaves_no_error_behind)
{
	struct store *s;

	rerr_set(-EIO, "stale");
	s = open_io(NULL);
	cr_assert_null(rerr_last(), "store_open succeeded yet reports %s",
		       rerr_last() ? rerr_last()->msg : "");
	store_close(s);
}

Test(report, a_failed_stage_copy_names_the_record_and_the_cause)
{
	struct io *io = NULL;
	struct store_stage *st = NULL;
	struct store *s;
	uint64_t ver = 0;
	const char *want[] = {"record doc", "copy into stage",
			      strerror(ENOSPC)};

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io);
	cr_assert_eq(store_put(s, "doc", "hello", 5, NULL, NULL), 0);
	cr_assert_eq(io_arm(io, "stage.copy", IO_FAIL, ENOSPC, 1, 1), 0);
	rerr_clear();
	cr_assert_eq(store_stage_copy(s, "doc", &ver, &st), -ENOSPC);
	cr_assert_null(st);
	expect_report(-ENOSPC, want, 3);
	/* and once the failpoint is spent, the copy works */
	cr_assert_eq(store_stage_copy(s, "doc", &ver, &st), 0);
	cr_assert_eq(ver, 1);
	store_stage_free(st);
	store_close(s);
	io_free(io);
}

Test(report, stage_reads_and_writes_pass_the_store_failpoints)
{
	struct io *io = NULL;
	struct store_stage *st = NULL;
	struct store *s;
	char buf[16] = {0};

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io);
	cr_assert_eq(store_stage_new(s, &st), 0);
	cr_assert_eq(store_stage_write(st, "abcdef", 6, 0), 6);
	cr_assert_eq(store_stage_pread(st, buf, sizeof(buf), 2), 4);
	cr_assert_arr_eq(buf, "cdef", 4);
	cr_assert_geq(io_hits(io, "stage.write"), 1);
	cr_assert_geq(io_hits(io, "stage.read"), 1);

	cr_assert_eq(io_arm(io, "stage.read", IO_FAIL, EIO, 1, 1), 0);
	cr_assert_eq(store_stage_pread(st, buf, sizeof(buf), 0), -EIO);
	cr_assert_eq(io_arm(io, "stage.write", IO_FAIL, ENOSPC, 1, 1), 0);
	cr_assert_eq(store_stage_write(st, "x", 1, 6), -ENOSPC);
	/* past the failures: the stage still holds what was written */
	cr_assert_eq(store_stage_pread(st, buf, sizeof(buf), 0), 6);
	cr_assert_arr_eq(buf, "abcdef", 6);
	cr_assert_eq(store_stage_pread(st, buf, 1, (uint64_t)INT64_MAX + 1),
		     -EINVAL);
	store_stage_free(st);
	store_close(s);
	io_free(io);
}
