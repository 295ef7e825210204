/*
 * test_txn_crash.c - txns (store/txn.c) crashing at every failpoint of
 * the txn commit path (all or nothing after recovery, verify clean), and
 * I/O errors at each of them (nothing changed before the commit point, all
 * of it after). The fixture is in txn_helpers.h.
 */
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"
#include "txn.h"
#include "txn_helpers.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(txn, .init = txn_setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- crashes ------------------------------------------------------------- */

#define NMID 9		    /* over TXN_SYNC_EACH_MAX by-reference parts */
#define MID_LEN (70u << 10) /* over TXN_INLINE_PART: by reference */

static uint8_t mid[MID_LEN];

/*
 * The txn under test: a small put, a big put (by reference), a delete, a
 * new record in a namespace and a re-creation after a delete; with
 * `many`, NMID more new records by reference (so that they are synced
 * with one syncfs). The old state is what make_fixture leaves.
 */
static int crash_txn(struct store *s, bool many)
{
	struct store_txn *t = NULL;
	char id[16];
	int rc = store_txn_new(s, &t);

	for (unsigned i = 0; many && i < NMID && rc == 0; i++) {
		snprintf(id, sizeof(id), "m%u", i);
		mid[0] = (uint8_t)i;
		rc = store_txn_put(t, id, mid, sizeof(mid), NULL);
	}

	if (rc == 0)
		rc = store_txn_put(t, "p", "p-2", 3, NULL);
	if (rc == 0)
		rc = store_txn_put(t, "big", big, sizeof(big), NULL);
	if (rc == 0)
		rc = store_txn_delete(t, "del", NULL);
	if (rc == 0)
		rc = store_txn_put(t, "ns/new", "new-1", 5, NULL);
	if (rc == 0)
		rc = store_txn_put(t, "re", "re-2", 4, NULL);
	if (rc == 0)
		rc = store_txn_commit(t, NULL, NULL);
	store_txn_free(t);
	return rc;
}

static void make_fixture(void)
{
	struct store *s;

	next_case();
	s = open_store();
	put_text(s, "p", "p-1");
	put_text(s, "big", "big-1");
	put_text(s, "del", "del-1");
	put_text(s, "re", "re-1");
	put_text(s, "other", "o-1");
	cr_assert_eq(store_delete(s, "re", NULL, NULL, NULL), 0);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_close(s), 0);
}

enum outcome { OLD, NEW, TORN };

/* Are the NMID records of a `many` txn there (1), all absent (0)? */
static int mids_there(struct store *s)
{
	unsigned n = 0, absent = 0;
	char id[16];

	for (unsigned i = 0; i < NMID; i++) {
		snprintf(id, sizeof(id), "m%u", i);
		mid[0] = (uint8_t)i;
		n += holds(s, id, mid, sizeof(mid), 1);
		absent += store_stat(s, id, &(struct store_meta){0}, false) ==
			  -ENOENT;
	}
	return n == NMID ? 1 : absent == NMID ? 0 : -1;
}

static enum outcome outcome_of(struct store *s, bool many)
{
	int mids = many ? mids_there(s) : -2;
	bool old = holds_text(s, "p", "p-1", 1) &&
		   holds_text(s, "big", "big-1", 1) &&
		   holds_text(s, "del", "del-1", 1) &&
		   store_stat(s, "ns/new", &(struct store_meta){0}, false) ==
			   -ENOENT &&
		   gone(s, "re", 1);
	bool new = holds_text(s, "p", "p-2", 2) &&
		   holds(s, "big", big, sizeof(big), 2) && gone(s, "del", 1) &&
		   holds_text(s, "ns/new", "new-1", 1) &&
		   holds_text(s, "re", "re-2", 2);

	if (many) {
		old = old && mids == 0;
		new = new &&mids == 1;
	}
	return old ? OLD : new ? NEW : TORN;
}

/* Versions in the history at revision `rev`. */
static int count_rev(void *arg, const char *id, const struct store_version *v)
{
	uint64_t *c = arg;

	if (v->revision == c[0])
		c[1]++;
	return 0;
}

static void crash_child(const char *point, unsigned nth, bool many)
{
	struct store_opts o = {.path = spath};
	struct store *s = NULL;
	struct io *io = NULL;

	s = child_open(&o, &io);
	if (io_arm(io, point, IO_CRASH, 0, nth, 1))
		_exit(4);
	if (crash_txn(s, many))
		_exit(5);
	_exit(0); /* no close: like kill -9 right after the change */
}

#define FEW 1  /* reached by the txn of few by-reference parts */
#define MANY 2 /* and by the one of many */

/* Every failpoint of the txn path, and which txns reach it. */
static const struct {
	const char *name;
	enum outcome want; /* TORN: old or new */
	unsigned txns;
} txn_points[] = {
	{"stage.create", OLD, FEW | MANY},
	{"stage.write", OLD, FEW | MANY},
	{"hash.read", OLD, FEW | MANY},
	{"txn.stage.open", OLD, FEW | MANY},
	{"stage.read", OLD, FEW | MANY},
	{"stage.fsync", OLD, FEW},
	{"stage.dirsync", OLD, FEW},
	{"txn.syncfs", OLD, MANY},
	{"commit.blob.link", OLD, FEW | MANY},
	{"commit.blob.dirsync", OLD, FEW | MANY},
	{"commit.journal", OLD, FEW | MANY},
	{"jnl.write", OLD, FEW | MANY},
	{"jnl.fsync", TORN, FEW | MANY},
	{"commit.publish", NEW, FEW | MANY},
	{"commit.rename", NEW, FEW | MANY},
	{"commit.drop", NEW, FEW | MANY},
	{"commit.unlink", NEW, FEW | MANY},
};

static void crash_every_point(bool many)
{
	char what[128];
	unsigned cases = 0;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13 + 5);
	for (size_t i = 0; i < sizeof(txn_points) / sizeof(txn_points[0]);
	     i++) {
		const char *pt = txn_points[i].name;
		bool expected = txn_points[i].txns & (many ? MANY : FEW);
		bool reached = false;

		/* every hit of the point in turn, until the txn passes it */
		for (unsigned nth = 1; nth < 64; nth++) {
			struct store *s;
			enum outcome got;
			uint64_t c[2] = {0, 0};
			int status = 0, code;
			pid_t pid;

			make_fixture();
			snprintf(what, sizeof(what),
				 "%s txn, crash at %s, "
				 "hit %u",
				 many ? "many" : "few", pt, nth);
			pid = fork();
			cr_assert_geq(pid, 0);
			if (pid == 0)
				crash_child(pt, nth, many);
			cr_assert_eq(waitpid(pid, &status, 0), pid);
			cr_assert(WIFEXITED(status), "%s: signal %d", what,
				  WTERMSIG(status));
			code = WEXITSTATUS(status);
			cr_assert(code == IO_CRASH_STATUS || code == 0,
				  "%s: child failed (%d)", what, code);
			s = open_store();
			got = outcome_of(s, many);
			cr_assert_neq(got, TORN, "%s: neither old nor new",
				      what);
			if (code == IO_CRASH_STATUS &&
			    txn_points[i].want != TORN)
				cr_assert_eq(got, txn_points[i].want,
					     "%s: %s, expected %s", what,
					     got == OLD ? "old" : "new",
					     got == OLD ? "new" : "old");
			if (code == 0)
				cr_assert_eq(got, NEW, "%s", what);
			cr_assert(holds_text(s, "other", "o-1", 1), "%s", what);
			check_verify(s, what, NULL);
			/* the history has the txn's versions or none */
			c[0] = store_revision(s);
			cr_assert_eq(store_history_drain(s, 60000), 0);
			cr_assert_eq(store_history_each(s, NULL, count_rev, c),
				     0);
			cr_assert_eq(c[1],
				     got == NEW ? 5 + (many ? NMID : 0) : 1,
				     "%s: %" PRIu64 " versions", what, c[1]);
			/* and it takes new changes */
			put_text(s, "p", "p-next");
			cr_assert(holds_text(s, "p", "p-next",
					     got == NEW ? 3 : 2),
				  "%s", what);
			cr_assert_eq(store_close(s), 0);
			cases++;
			if (code == 0)
				break;
			reached = true;
		}
		cr_assert_eq(reached, expected, "point %s is %s the txn path",
			     pt, expected ? "not on" : "on");
	}
	cr_assert_gt(cases, 20);
}

Test(txn, crash_at_every_failpoint_of_a_txn_is_all_or_nothing)
{
	crash_every_point(false);
}

Test(txn, crash_at_every_failpoint_of_a_txn_of_many_stages_too)
{
	crash_every_point(true);
}

/* Files in STORE/DIR (not . and ..). */
static unsigned files_in(const char *dir)
{
	char path[PATH_MAX + 64];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", spath, dir);
	d = opendir(path);
	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static void reopen_is_new(bool many, const char *what)
{
	struct store *s = open_store();

	cr_assert_eq(outcome_of(s, many), NEW, "%s: not new after reopening",
		     what);
	cr_assert(holds_text(s, "other", "o-1", 1), "%s", what);
	check_verify(s, what, NULL);
	cr_assert_eq(store_close(s), 0);
}

/* An I/O error at hit `nth` of `pt`: false if the txn did not get there. */
static bool error_case(size_t pi, unsigned nth, int err, bool many)
{
	const char *pt = txn_points[pi].name;
	struct io *io = NULL;
	struct store *s;
	char what[160];
	unsigned hits;
	int rc;

	snprintf(what, sizeof(what), "%s txn, %s at %s, hit %u",
		 many ? "many" : "few", strerror(err), pt, nth);
	make_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_io(io);
	hits = io_hits(io, pt);
	cr_assert_eq(io_arm(io, pt, IO_FAIL, err, nth, 1), 0);
	rc = crash_txn(s, many);
	io_disarm_all(io);
	if (io_hits(io, pt) - hits < nth) {
		cr_assert_eq(rc, 0, "%s: %s", what, strerror(-rc));
		cr_assert_eq(store_close(s), 0);
		io_free(io);
		return false;
	}
	if (txn_points[pi].want == NEW) {
		/* after the commit point: durable, so success */
		cr_assert_eq(rc, 0, "%s: journaled but returned %s", what,
			     strerror(-rc));
		if (strcmp(pt, "commit.drop") == 0)
			/* removing the old content: only logged */
			cr_assert_eq(outcome_of(s, many), NEW, "%s", what);
		else
			/* the records directory is behind the journal:
			   nothing may change until a reopen finishes it */
			cr_assert_eq(store_put(s, "x", "x", 1, NULL, NULL),
				     -EIO, "%s: a broken store took a change",
				     what);
		store_close(s);
		io_free(io);
		reopen_is_new(many, what);
		return true;
	}
	/* before the commit point (jnl.fsync included: its failure is
	   undone): the error, nothing changed, nothing left behind */
	cr_assert_eq(rc, -err, "%s: returned %s", what, strerror(-rc));
	cr_assert_eq(outcome_of(s, many), OLD, "%s: partly visible", what);
	cr_assert_eq(files_in("tmp"), 0, "%s: stages left in tmp/", what);
	cr_assert_eq(files_in("journal/blobs"), 0, "%s: blob links left", what);
	/* the same txn then goes through */
	cr_assert_eq(crash_txn(s, many), 0, "%s: second try", what);
	cr_assert_eq(outcome_of(s, many), NEW, "%s", what);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
	reopen_is_new(many, what);
	return true;
}

static void errors_everywhere(bool many)
{
	static const int errs[] = {EIO, ENOSPC};
	unsigned cases = 0;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13 + 5);
	for (size_t i = 0; i < sizeof(txn_points) / sizeof(txn_points[0]);
	     i++) {
		bool expected = txn_points[i].txns & (many ? MANY : FEW);

		for (size_t e = 0; e < 2; e++) {
			unsigned nth = 1;

			/* jnl.fsync: the first hit only (a second failure
			   would fail the undo and break the journal) */
			while (error_case(i, nth, errs[e], many) &&
			       strcmp(txn_points[i].name, "jnl.fsync") &&
			       nth < 64)
				nth++, cases++;
			cr_assert(nth > 1 || !expected ||
					  !strcmp(txn_points[i].name,
						  "jnl.fsync"),
				  "%s not reached", txn_points[i].name);
		}
	}
	cr_assert_gt(cases, 20);
}

Test(txn, io_errors_before_the_commit_point_change_nothing_after_it_all)
{
	errors_everywhere(false);
}

Test(txn, io_errors_in_a_txn_of_many_stages_too)
{
	errors_everywhere(true);
}
