/*
 * test_bigtxn.c - changes of any size (store/txn.c, store/txn_commit.c):
 * a txn of 100,000 records is one store revision that spans many journal
 * frames (REC_TXN_PART frames and the REC_TXN that ends them), survives a
 * reopen, and a process crash at every frame boundary and at every
 * failpoint on its path leaves all of it or none after recovery.
 *
 * Crashes are process crashes (IO_CRASH: the child _exits at the armed
 * failpoint), as in test_crash.c and test_txn.c; the store lives in
 * /dev/shm by default (sandbox.h), which a process crash does not lose.
 */
#include "io.h"
#include "jnl.h"
#include "sandbox.h"
#include "store.h"
#include "txn.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NBIG 100000u /* records of the big change */

static char base[PATH_MAX];
static char spath[PATH_MAX + 32];
static int ncase;

static void setup(void)
{
	sandbox_new(base, sizeof(base), "bigtxn", true);
	snprintf(spath, sizeof(spath), "%s/store", base);
}

static void teardown(void)
{
	sandbox_rm(base);
}

TestSuite(bigtxn, .init = setup, .fini = teardown, .timeout = 1800);

static void next_case(void)
{
	sandbox_rm(spath);
	snprintf(spath, sizeof(spath), "%s/case%d", base, ++ncase);
}

static struct store *open_io(struct io *io)
{
	struct store_opts o = {
		.path = spath, .create = true, .io = io, .history_drain_ms = 1};
	struct store *s = NULL;
	int rc = store_open(&s, &o);

	cr_assert_eq(rc, 0, "store_open %s: %s", spath, strerror(-rc));
	return s;
}

static struct store *open_store(void)
{
	return open_io(NULL);
}

static void key(char *id, size_t len, unsigned i)
{
	snprintf(id, len, "k/%06u", i);
}

static size_t value(char *buf, size_t len, unsigned i)
{
	return (size_t)snprintf(buf, len, "value of %u", i * 7u);
}

/* The big change: n new records, a new version of "p", a delete. */
static int big_txn_of(struct store *s, unsigned n, struct store_txn_result *res)
{
	struct store_txn *t = NULL;
	char id[32], v[64];
	int rc = store_txn_new(s, &t);

	for (unsigned i = 0; i < n && rc == 0; i++) {
		key(id, sizeof(id), i);
		rc = store_txn_put(t, id, v, value(v, sizeof(v), i), NULL);
	}
	if (rc == 0)
		rc = store_txn_put(t, "p", "p-2", 3, NULL);
	if (rc == 0)
		rc = store_txn_delete(t, "del", NULL);
	if (rc == 0)
		rc = store_txn_commit(t, NULL, res);
	store_txn_free(t);
	return rc;
}

static int big_txn(struct store *s, struct store_txn_result *res)
{
	return big_txn_of(s, NBIG, res);
}

static bool holds(struct store *s, const char *id, const char *text,
		  uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t got = 0;
	bool ok;

	if (store_get(s, id, &buf, &got, &m) != 0)
		return false;
	ok = got == strlen(text) && memcmp(buf, text, got) == 0 &&
	     m.version == version;
	free(buf);
	return ok;
}

enum outcome { OLD, NEW, TORN };

/* All of the change of n records (NEW), none (OLD), or some (TORN).
   Every record is looked at; every 997th one's content is read too. */
static enum outcome outcome_n(struct store *s, unsigned n)
{
	unsigned there = 0;
	char id[32], v[64];
	bool old, new;

	for (unsigned i = 0; i < n; i++) {
		struct store_meta m;

		key(id, sizeof(id), i);
		if (store_stat(s, id, &m, false) == 0) {
			there++;
			if (m.version != 1)
				return TORN;
		}
		if (i % 997 == 0 && there == i + 1) {
			value(v, sizeof(v), i);
			if (!holds(s, id, v, 1))
				return TORN;
		}
	}
	old = there == 0 && holds(s, "p", "p-1", 1) &&
	      holds(s, "del", "del-1", 1);
	new = there == n &&holds(s, "p", "p-2", 2) &&
	      store_stat(s, "del", &(struct store_meta){0}, false) == -ENOENT;
	return old ? OLD : new ? NEW : TORN;
}

static enum outcome outcome_of(struct store *s)
{
	return outcome_n(s, NBIG);
}

static void make_fixture(void)
{
	struct store *s;

	next_case();
	s = open_store();
	cr_assert_eq(store_put(s, "p", "p-1", 3, NULL, NULL), 0);
	cr_assert_eq(store_put(s, "del", "del-1", 5, NULL, NULL), 0);
	cr_assert_eq(store_put(s, "other", "o-1", 3, NULL, NULL), 0);
	cr_assert_eq(store_mkdir(s, "k", 0755), 0);
	cr_assert_eq(store_close(s), 0);
}

/* Journal frames of revision `rev` (segments in STORE/journal). */
struct frames {
	uint64_t rev;
	unsigned n;
};

static int count_frame(void *arg, uint64_t seq, const void *payload, size_t len)
{
	struct frames *f = arg;

	(void)payload;
	(void)len;
	f->n += seq == f->rev;
	return 0;
}

static unsigned frames_of(uint64_t rev)
{
	char path[PATH_MAX + 64];
	struct frames f = {rev, 0};
	int fd;

	snprintf(path, sizeof(path), "%s/journal", spath);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(jnl_scan(NULL, fd, rev - 1, count_frame, &f, NULL), 0);
	close(fd);
	return f.n;
}

Test(bigtxn, a_txn_of_100000_records_is_one_revision_and_survives_reopen)
{
	struct store_txn_result res;
	struct store *s;
	uint64_t rev0;

	make_fixture();
	s = open_store();
	rev0 = store_revision(s);
	cr_assert_eq(big_txn(s, &res), 0);
	cr_assert_eq(res.revision, rev0 + 1);
	cr_assert_eq(res.changes, NBIG + 2);
	cr_assert_eq(store_revision(s), rev0 + 1);
	cr_assert_eq(outcome_of(s), NEW);
	/* what a crash now would recover from: many frames, one seq */
	cr_assert_gt(frames_of(res.revision), 2);
	cr_assert_eq(store_close(s), 0);

	s = open_store();
	cr_assert_eq(store_revision(s), rev0 + 1);
	cr_assert_eq(outcome_of(s), NEW);
	cr_assert(holds(s, "other", "o-1", 1));
	/* and it takes new changes */
	cr_assert_eq(store_put(s, "k/000001", "x", 1, NULL, NULL), 0);
	cr_assert(holds(s, "k/000001", "x", 2));
	cr_assert_eq(store_revision(s), rev0 + 2);
	cr_assert_eq(store_close(s), 0);
}

/* (the memory backend holds a memfd per record: fewer of them) */
Test(bigtxn, a_txn_on_the_memory_backend_goes_the_same_way)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store_txn_result res;
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, &o), 0);
	cr_assert_eq(store_put(s, "p", "p-1", 3, NULL, NULL), 0);
	cr_assert_eq(store_put(s, "del", "del-1", 5, NULL, NULL), 0);
	cr_assert_eq(store_mkdir(s, "k", 0755), 0);
	cr_assert_eq(big_txn_of(s, 500, &res), 0);
	cr_assert_eq(res.revision, 3);
	cr_assert_eq(res.changes, 502);
	cr_assert_eq(outcome_n(s, 500), NEW);
	cr_assert_eq(store_close(s), 0);
}

/* ---- crashes ------------------------------------------------------------- */

static void crash_child(const char *point, unsigned nth)
{
	struct store_opts o = {.path = spath, .history_drain_ms = 1};
	struct store *s = NULL;
	struct io *io = NULL;

	if (io_new(&io))
		_exit(2);
	o.io = io;
	if (store_open(&s, &o))
		_exit(3);
	if (io_arm(io, point, IO_CRASH, 0, nth, 1))
		_exit(4);
	if (big_txn(s, NULL))
		_exit(5);
	_exit(0); /* no close: like kill -9 right after the change */
}

/* Crash at hit `nth` of `point`; recover; all or nothing. Returns whether
   the point was reached. */
static bool crash_case(const char *point, unsigned nth, enum outcome want)
{
	char what[128];
	struct store *s;
	enum outcome got;
	int status = 0, code;
	pid_t pid;

	make_fixture();
	snprintf(what, sizeof(what), "crash at %s, hit %u", point, nth);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		crash_child(point, nth);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "%s: signal %d", what, WTERMSIG(status));
	code = WEXITSTATUS(status);
	cr_assert(code == IO_CRASH_STATUS || code == 0, "%s: child failed (%d)",
		  what, code);
	s = open_store();
	got = outcome_of(s);
	cr_assert_neq(got, TORN, "%s: part of the change only", what);
	if (code == IO_CRASH_STATUS && want != TORN)
		cr_assert_eq(got, want, "%s: %s", what,
			     got == OLD ? "old, expected new"
					: "new, expected old");
	if (code == 0)
		cr_assert_eq(got, NEW, "%s", what);
	cr_assert(holds(s, "other", "o-1", 1), "%s", what);
	/* it takes new changes */
	cr_assert_eq(store_put(s, "other", "o-2", 3, NULL, NULL), 0, "%s",
		     what);
	cr_assert_eq(store_close(s), 0);
	cr_log_info("%s: %s", what,
		    code == 0	 ? "not reached"
		    : got == OLD ? "old"
				 : "new");
	return code == IO_CRASH_STATUS;
}

/* Every hit of `point` until the change passes it (at most `max`). */
static unsigned crash_every_hit(const char *point, enum outcome want,
				unsigned max)
{
	unsigned nth = 1;

	while (nth <= max && crash_case(point, nth, want))
		nth++;
	return nth - 1;
}

Test(bigtxn, a_crash_at_every_frame_boundary_is_all_or_nothing)
{
	/* before each frame but the last (the commit frame) */
	unsigned frames = crash_every_hit("txn.frame", OLD, 64);

	cr_assert_gt(frames, 1, "the change spans %u frames", frames + 1);
	/* before each frame's write (the record is not whole: none of it),
	   and at the sync that ends the record (a process crash keeps what
	   was written: either) */
	cr_assert_eq(crash_every_hit("jnl.big.write", OLD, 64), frames + 1);
	cr_assert_geq(crash_every_hit("jnl.big.fsync", TORN, 1), 1);
}

Test(bigtxn, a_crash_at_every_failpoint_on_its_path_is_all_or_nothing)
{
	static const struct {
		const char *name;
		enum outcome want;
		unsigned nth[2]; /* hits to crash at (0: none) */
	} points[] = {
		{"stage.create", OLD, {NBIG / 2, 0}},
		{"stage.write", OLD, {NBIG, 0}},
		{"hash.read", OLD, {1, 0}},
		{"txn.spool.write", OLD, {2, 0}},
		{"txn.spool.read", OLD, {3, 0}},
		{"txn.stage.open", OLD, {NBIG / 2, 0}},
		{"stage.read", OLD, {NBIG, 0}},
		{"commit.journal", OLD, {1, 0}},
		{"commit.publish", NEW, {1, NBIG + 1}},
		{"commit.rename", NEW, {NBIG / 2, 0}},
		{"commit.unlink", NEW, {1, 0}},
	};
	unsigned reached = 0;

	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++)
		for (size_t k = 0; k < 2 && points[i].nth[k]; k++)
			reached += crash_case(points[i].name, points[i].nth[k],
					      points[i].want);
	cr_assert_gt(reached, 11);
}
