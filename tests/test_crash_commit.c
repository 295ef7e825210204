/*
 * test_crash_commit.c - the durability protocol of the store: a crash (a child
 * killed at the point) or an I/O error at each failpoint of each kind of change
 * and of a checkpoint.
 * The fixture and the failpoint tables are in crash_helpers.h.
 */
#include "admin.h"
#include "crash_helpers.h"
#include "helpers.h"
#include "io.h"
#include "store.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(crash, .init = crash_setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- (a) crashes -----------------------------------------------------------
 */

/* Child: open, pre_ops, arm a crash at `point`, make the change. Exits
   IO_CRASH_STATUS if the point was reached, 0 if not. */
static void crash_child(enum op op, const char *point, unsigned nth)
{
	struct store_opts o = {.path = spath,
			       .checkpoint_bytes = NO_CHECKPOINT};
	struct store *s = NULL;
	struct io *io = NULL;

	s = child_open(&o, &io);
	if (pre_ops(s))
		_exit(3);
	if (io_arm(io, point, IO_CRASH, 0, nth, 1))
		_exit(4);
	if (do_op(s, op))
		_exit(5);
	_exit(0); /* no close: like kill -9 right after the change */
}

static int fork_and_wait(enum op op, const char *point, unsigned nth)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		crash_child(op, point, nth);
	return child_status(pid);
}

static void crash_op(enum op op)
{
	char what[128];

	unsigned crashes = 0;

	fill(big_new, sizeof(big_new), 1);
	for (size_t i = 0; i < npoints; i++) {
		const struct point *pt = &points[i];
		bool expected = pt->ops & B(op);
		enum outcome want;
		int code;

		snprintf(what, sizeof(what), "%s, crash at %s", op_names[op],
			 pt->name);
		make_fixture();
		code = fork_and_wait(op, pt->name, 1);
		cr_assert(code == IO_CRASH_STATUS || code == 0,
			  "%s: child failed (%d)", what, code);
		cr_assert_eq(code == IO_CRASH_STATUS, expected,
			     "%s: point %s (update the table)", what,
			     expected ? "not reached" : "reached");
		if (!expected)
			want = NEW; /* the change completed */
		else if (pt->when == BEFORE)
			want = OLD;
		else if (pt->when == AFTER || pt->when == TIDY)
			want = NEW;
		else
			want = TORN; /* old or new */
		check_reopened(op, want, what);
		crashes += code == IO_CRASH_STATUS;
	}
	cr_log_info("%s: %u crashes injected, at %u of the %zu failpoints",
		    op_names[op], crashes, crashes, npoints);
}

Test(crash, crash_during_small_put_keeps_old_or_new)
{
	crash_op(OP_PUT);
}

Test(crash, crash_during_big_put_keeps_old_or_new)
{
	crash_op(OP_PUT_BIG);
}

Test(crash, crash_during_append_keeps_old_or_new)
{
	crash_op(OP_APPEND);
}

Test(crash, crash_during_delete_keeps_old_or_new)
{
	crash_op(OP_DELETE);
}

Test(crash, crash_during_rename_keeps_both_old_or_both_new)
{
	crash_op(OP_RENAME);
}

Test(crash, crash_during_set_meta_keeps_old_or_new)
{
	crash_op(OP_SET_META);
}

Test(crash, crash_during_checkpoint_loses_nothing)
{
	crash_op(OP_CHECKPOINT);
}

/*
 * Each change, made in-process without a fault, passes exactly the
 * failpoints the table gives it (counted by io_hits, not read from the
 * table), and every failpoint is passed by some change.
 */
static void count_reached(enum op op, unsigned *by)
{
	unsigned *before = calloc(npoints, sizeof(*before));
	struct io *io = NULL;
	struct store *s;
	int rc;

	cr_assert_not_null(before);
	make_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io, NO_CHECKPOINT);
	cr_assert_eq(pre_ops(s), 0, "%s: pre_ops", op_names[op]);
	for (size_t i = 0; i < npoints; i++)
		before[i] = io_hits(io, points[i].name);
	rc = do_op(s, op);
	cr_assert_eq(rc, 0, "%s: %s", op_names[op], strerror(-rc));
	for (size_t i = 0; i < npoints; i++) {
		bool reached = io_hits(io, points[i].name) > before[i];

		cr_assert_eq(reached, (points[i].ops & B(op)) != 0,
			     "%s: point %s %s (update the table)", op_names[op],
			     points[i].name,
			     reached ? "reached" : "not reached");
		by[i] += reached;
	}
	cr_assert_eq(store_close(s), 0);
	io_free(io);
	free(before);
}

Test(crash, every_failpoint_is_reached_by_some_change)
{
	unsigned *by = calloc(npoints, sizeof(*by));

	cr_assert_not_null(by);
	fill(big_new, sizeof(big_new), 1);
	for (int op = 0; op < OP_N; op++)
		count_reached((enum op)op, by);
	for (size_t i = 0; i < npoints; i++)
		cr_assert_gt(by[i], 0, "%s is reached by nothing",
			     points[i].name);
	free(by);
}

static void error_case(enum op op, const struct point *pt,
		       const struct fault *f)
{
	char what[160];
	struct store *s;
	struct io *io = NULL;
	unsigned hits;
	bool reached;
	int rc;

	snprintf(what, sizeof(what), "%s, %s at %s", op_names[op], f->name,
		 pt->name);
	make_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io, NO_CHECKPOINT);
	cr_assert_eq(pre_ops(s), 0, "%s: pre_ops", what);
	hits = io_hits(io, pt->name);
	cr_assert_eq(io_arm(io, pt->name, f->act, f->err, 1, pt->err_times), 0);
	rc = do_op(s, op);
	reached = io_hits(io, pt->name) > hits;
	io_disarm_all(io);
	cr_assert_eq(reached, (pt->ops & B(op)) != 0, "%s: point %s", what,
		     reached ? "reached" : "not reached");
	if (!reached) {
		cr_assert_eq(rc, 0, "%s: %s", what, strerror(-rc));
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		cr_assert_eq(store_close(s), 0);
		io_free(io);
		return;
	}
	if (pt->when == TIDY) {
		cr_assert_eq(rc, 0, "%s: %s", what, strerror(-rc));
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		check_others(s, op, what);
		check_no_strays(what, true);
		cr_assert_eq(puts_(s, "next", "next"), 0, "%s: next change",
			     what);
		cr_assert_eq(store_close(s), 0, "%s: close", what);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	if (pt->when == AFTER) {
		/* durable: success; but the records directory is behind the
		   journal, so nothing may change until a reopen */
		cr_assert_eq(rc, 0,
			     "%s: the change is journaled but "
			     "returned %s",
			     what, strerror(-rc));
		cr_assert_eq(puts_(s, "after", "x"), -EIO,
			     "%s: a broken store took a change", what);
		cr_assert_eq(store_checkpoint(s), -EIO,
			     "%s: a broken store checkpointed", what);
		store_close(s);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	if (rc == 0 && f->err == ENOSPC &&
	    (op == OP_DELETE || op == OP_RENAME)) {
		/* a delete or rename frees space: it was tried once more
		   with the space reserve released (store/reserve.c), which
		   is made again at once here, where there is room */
		struct store_status st;

		store_status_get(s, &st);
		cr_assert(st.reserve_held && st.reserve_released == 1,
			  "%s: succeeded, but not with the reserve", what);
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		check_others(s, op, what);
		cr_assert_eq(store_close(s), 0, "%s: close", what);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	cr_assert_eq(rc, -f->err, "%s: returned %d (%s)", what, rc,
		     strerror(-rc));
	cr_assert_eq(outcome_of(s, op), op == OP_CHECKPOINT ? NEW : OLD,
		     "%s: the failed change is visible", what);
	check_others(s, op, what);
	check_no_strays(what, false);
	/* the next try works */
	rc = do_op(s, op);
	cr_assert_eq(rc, 0, "%s: retry: %s", what, strerror(-rc));
	cr_assert_eq(outcome_of(s, op), NEW, "%s: retry", what);
	cr_assert_eq(puts_(s, "next", "next"), 0, "%s: next change", what);
	cr_assert_eq(store_close(s), 0, "%s: close", what);
	io_free(io);
	check_reopened(op, NEW, what);
}

static void error_op(enum op op)
{
	unsigned errors = 0, at = 0;

	fill(big_new, sizeof(big_new), 2);
	for (size_t i = 0; i < npoints; i++) {
		at += (points[i].ops & B(op)) != 0;
		for (size_t k = 0; k < nfaults; k++)
			if (faults[k].act != IO_SHORT || points[i].write) {
				error_case(op, &points[i], &faults[k]);
				errors += (points[i].ops & B(op)) != 0;
			}
	}
	cr_log_info("%s: %u I/O errors injected, at %u of the %zu failpoints",
		    op_names[op], errors, at, npoints);
}

Test(crash, errors_during_small_put)
{
	error_op(OP_PUT);
}

Test(crash, errors_during_big_put)
{
	error_op(OP_PUT_BIG);
}

Test(crash, errors_during_append)
{
	error_op(OP_APPEND);
}

Test(crash, errors_during_delete)
{
	error_op(OP_DELETE);
}

Test(crash, errors_during_rename)
{
	error_op(OP_RENAME);
}

Test(crash, errors_during_set_meta)
{
	error_op(OP_SET_META);
}

Test(crash, errors_during_checkpoint)
{
	error_op(OP_CHECKPOINT);
}
