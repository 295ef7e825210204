/*
 * test_crash_recover.c - the durability protocol of the store: crashes and
 * errors during recovery, and regressions of recovery. The fixture and the
 * failpoint tables are in crash_helpers.h.
 */
#include "admin.h"
#include "crash_helpers.h"
#include "helpers.h"
#include "io.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(crash, .init = crash_setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- regressions -----------------------------------------------------------
 */

static int rename_ra_rb(struct store *s, struct io *io, const void *arg)
{
	return store_rename(s, "ra", "rb", NULL, NULL, NULL);
}

static void ra_moved(struct store *s, const char *what)
{
	char p[PATH_MAX + 64];

	cr_assert(gone(s, "ra", 1), "%s: ra still there", what);
	cr_assert(holds_text(s, "rb", "same", 2), "%s: rb", what);
	snprintf(p, sizeof(p), "%s/records/ra", spath);
	cr_assert_neq(access(p, F_OK), 0, "%s: the file of ra is left", what);
}

/*
 * Recovery of a rename whose target already holds the source's bytes: the
 * target looks done, but the source must still be removed.
 */
Test(crash, crash_in_rename_onto_identical_content_removes_the_source)
{
	static const char *const at[] = {"commit.move", "commit.move.dirsync"};

	for (size_t i = 0; i < 2; i++) {
		struct store *s;
		char what[96];

		next_case();
		s = open_store(NULL, NO_CHECKPOINT);
		cr_assert_eq(puts_(s, "ra", "same") | puts_(s, "rb", "same"),
			     0);
		cr_assert_eq(store_close(s), 0);
		cr_assert_eq(in_child(rename_ra_rb, NULL, false, at[i]),
			     IO_CRASH_STATUS);
		snprintf(what, sizeof(what), "rename crashed at %s", at[i]);
		s = open_store(NULL, 0);
		ra_moved(s, what);
		check_no_strays(what, false);
		check_verify_all(s, what);
		cr_assert_eq(store_close(s), 0);
	}
}

/*
 * After a failure past the commit point the records directory is behind
 * the journal. A checkpoint then (here the automatic one after the change
 * itself, with a tiny checkpoint_bytes) must not retire the journal, or
 * the change is lost.
 */
Test(crash, broken_store_keeps_its_journal_for_the_next_open)
{
	static const char *const at[] = {"commit.publish", "commit.rename"};

	fill(big_new, sizeof(big_new), 4);
	for (size_t i = 0; i < 2; i++)
		for (int big = 0; big < 2; big++) {
			struct io *io = NULL;
			struct store *s;

			next_case();
			cr_assert_eq(io_new(&io), 0);
			s = open_store(io, 1);
			cr_assert_eq(puts_(s, "x", "old"), 0);
			io_arm(io, at[i], IO_FAIL, EIO, 1, 0);
			cr_assert_eq(big ? put(s, "x", big_new, BIG_LEN)
					 : puts_(s, "x", "new"),
				     0);
			cr_assert_eq(store_checkpoint(s), -EIO);
			store_close(s);
			io_free(io);
			s = open_store(NULL, 0);
			cr_assert(big ? holds(s, "x", big_new, BIG_LEN, 2)
				      : holds_text(s, "x", "new", 2),
				  "%s, %s put: acknowledged change lost", at[i],
				  big ? "big" : "small");
			check_verify_all(s, at[i]);
			cr_assert_eq(store_close(s), 0);
		}
}

/* ---- (c) crashes during recovery ----------------------------------------- */

/* Points passed while a store with a journal to replay is opened. */
static const char *const recovery_points[] = {
	"snapshot.load",   "snapshot.read",    "jnl.scan.open",
	"jnl.scan.read",   "read.open",	       "hash.read",
	"recover.write",   "commit.rename",    "jnl.open",
	"jnl.truncate",	   "jnl.fsync",	       "jnl.hdr.write",
	"jnl.hdr.fsync",   "jnl.dir.fsync",    "ckpt.syncfs",
	"snapshot.open",   "snapshot.write",   "snapshot.fsync",
	"snapshot.rename", "snapshot.dirsync", "jnl.drop.unlink",
};

#define NRECOVERY (sizeof(recovery_points) / sizeof(recovery_points[0]))

/* What the journal holds when recovery starts. */
struct pending {
	const char *name;
	size_t len; /* of the change crashed after the commit point */
	const char *crash_at;
	bool garbage; /* and junk after it (a torn tail) */
};

static const struct pending pendings[] = {
	{"small put not in place", 100, "commit.publish", false},
	{"big put not in place", BIG_LEN, "commit.rename", false},
	{"small put, then a torn tail", 100, "commit.publish", true},
};

static uint8_t pend_buf[BIG_LEN];
static size_t pend_len;

static int pending_change(struct store *s, struct io *io, const void *arg)
{
	const struct pending *p = arg;

	if (pre_ops(s) || store_history_drain(s, 0))
		return 1;
	/* A segment that the snapshot and the history cover, for recovery
	   to drop: one more change, checkpointed while the history is held
	   back (so the segment is kept), then written to the history. */
	io_arm(io, "hist.commit", IO_STALL, 0, 1, 1);
	if (puts_(s, "pad", "pad"))
		return 1;
	for (int i = 0; i < 10000 && !io_stalled(io, "hist.commit"); i++)
		usleep(1000);
	if (!io_stalled(io, "hist.commit") || store_checkpoint(s))
		return 1;
	io_release(io);
	/* and a change in place after the snapshot, for recovery to check */
	if (store_history_drain(s, 0) || puts_(s, "pad", "pad-2"))
		return 1;
	io_arm(io, p->crash_at, IO_CRASH, 0, 1, 1);
	return put(s, "pend", pend_buf, p->len);
}

static void pend_there(struct store *s, const char *what)
{
	cr_assert(holds(s, "pend", pend_buf, pend_len, 1),
		  "%s: the change journaled before the crashes is lost", what);
}

static void append_garbage(void)
{
	char dir[PATH_MAX + 64], p[PATH_MAX + 128], last[256] = "";
	struct dirent *de;
	char junk[64];
	DIR *d;
	int fd;

	snprintf(dir, sizeof(dir), "%s/journal", spath);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".log") && strcmp(de->d_name, last) > 0)
			snprintf(last, sizeof(last), "%s", de->d_name);
	closedir(d);
	snprintf(p, sizeof(p), "%s/%s", dir, last);
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0, "%s", p);
	memset(junk, 'g', sizeof(junk));
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
}

Test(crash, crash_during_recovery_twice_loses_nothing)
{
	unsigned reached[NRECOVERY] = {0};
	char what[160];

	for (size_t v = 0; v < sizeof(pendings) / sizeof(pendings[0]); v++) {
		const struct pending *pd = &pendings[v];

		pend_len = pd->len;
		fill(pend_buf, pend_len, 5 + (unsigned)v);
		for (size_t i = 0; i < NRECOVERY; i++) {
			const char *pt = recovery_points[i];
			int code;

			snprintf(what, sizeof(what),
				 "%s, recovery crashed at %s", pd->name, pt);
			make_fixture();
			code = in_child(pending_change, pd, false, NULL);
			cr_assert_eq(code, IO_CRASH_STATUS, "%s: setup (%d)",
				     what, code);
			if (pd->garbage)
				append_garbage();
			/* crash in recovery, then in the recovery of that */
			for (int k = 0; k < 2; k++) {
				code = in_child(NULL, NULL, true, pt);
				cr_assert(code == IO_CRASH_STATUS || code == 0,
					  "%s: open failed (%d)", what, code);
				if (code == 0)
					break;
				reached[i]++;
			}
			check_reopened_x(OP_CHECKPOINT, NEW, what, pend_there);
		}
	}
	for (size_t i = 0; i < NRECOVERY; i++)
		cr_assert_gt(reached[i], 0, "recovery never passed %s",
			     recovery_points[i]);
}

/*
 * Errors (not crashes) during recovery: the open may fail, with the
 * injected error, or get past a point that is only tidying; either way
 * nothing on disk is lost and the next clean open recovers all.
 */
static int open_with_fault(const char *point, const struct fault *f,
			   unsigned times)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store_opts o = child_opts(point, f->act, f->err, times);
		struct store *s = NULL;
		int rc = store_open(&s, &o);

		if (rc == 0)
			_exit(store_close(s) ? 6 : 0);
		_exit(rc == -f->err ? 3 : 4);
	}
	return child_status(pid);
}

Test(crash, errors_during_recovery_lose_nothing)
{
	/* EIO every time it is tried; ENOSPC once */
	static const struct {
		size_t fault;
		unsigned times;
	} cases[] = {{0, 0}, {1, 1}};
	unsigned failed[NRECOVERY] = {0};
	char what[200];

	for (size_t v = 0; v < sizeof(pendings) / sizeof(pendings[0]); v++) {
		const struct pending *pd = &pendings[v];

		pend_len = pd->len;
		fill(pend_buf, pend_len, 9 + (unsigned)v);
		for (size_t i = 0; i < NRECOVERY; i++)
			for (size_t k = 0; k < 2; k++) {
				const struct fault *f = &faults[cases[k].fault];
				const char *pt = recovery_points[i];
				int code;

				snprintf(what, sizeof(what), "%s, %s %s at %s",
					 pd->name, f->name,
					 cases[k].times ? "once" : "every time",
					 pt);
				make_fixture();
				code = in_child(pending_change, pd, false,
						NULL);
				cr_assert_eq(code, IO_CRASH_STATUS,
					     "%s: setup (%d)", what, code);
				if (pd->garbage)
					append_garbage();
				code = open_with_fault(pt, f, cases[k].times);
				/* 3: failed with the injected error; 4: with
				   another one (logged) */
				cr_assert(code == 0 || code == 3 || code == 4,
					  "%s: open ended %d", what, code);
				failed[i] += code != 0;
				check_reopened_x(OP_CHECKPOINT, NEW, what,
						 pend_there);
			}
	}
	/* where an error must stop the open rather than be guessed past */
	for (size_t i = 0; i < NRECOVERY; i++)
		if (strstr(recovery_points[i], "read") ||
		    !strcmp(recovery_points[i], "recover.write"))
			cr_assert_gt(failed[i], 0,
				     "an error at %s never failed the open",
				     recovery_points[i]);
}

static int put_x(struct store *s, struct io *io, const void *arg)
{
	io_arm(io, "commit.publish", IO_CRASH, 0, 1, 1);
	return puts_(s, "x", "new x");
}

/*
 * Publishing swaps the stage with the current file. If recovery finds a
 * directory where a journaled record goes (made there from outside),
 * it must not swap it out of the records tree: the open fails, naming
 * the record, and the directory stays where it was, with its content.
 */
Test(crash, recovery_never_swaps_a_directory_out_of_place)
{
	char p[PATH_MAX + 64];
	struct store_opts o = {.path = spath};
	struct store *s;

	next_case();
	s = open_store(NULL, NO_CHECKPOINT);
	cr_assert_eq(puts_(s, "x", "old x"), 0);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(in_child(put_x, NULL, false, NULL), IO_CRASH_STATUS);
	snprintf(p, sizeof(p), "%s/records/x", spath);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/records/x/inside", spath);
	cr_assert_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	s = NULL;
	cr_assert_eq(store_open(&s, &o), -EISDIR);
	cr_assert_eq(access(p, F_OK), 0, "the directory was moved");
}

struct bg_change {
	struct store *s;
	int rc;
	bool rename; /* rename a -> b, else put a */
	atomic_int tid;
};

static void *bg_change_fn(void *arg)
{
	struct bg_change *c = arg;

	atomic_store(&c->tid, thread_id());
	c->rc = c->rename ? store_rename(c->s, "a", "b", NULL, NULL, NULL)
			  : puts_(c->s, "a", "a-2");
	return NULL;
}

/*
 * A change that was waiting for a record while the change before it broke
 * the store (journaled, not put in place) must be refused too: here a put
 * to `a` behind a rename a -> b whose move failed would overwrite the only
 * copy of b's content.
 */
Test(crash, change_waiting_behind_a_broken_one_is_refused)
{
	struct bg_change ren = {.rename = true}, put = {0};
	struct io *io = NULL;
	pthread_t t1, t2;
	struct store *s;

	next_case();
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io, NO_CHECKPOINT);
	cr_assert_eq(puts_(s, "a", "a-1"), 0);
	ren.s = put.s = s;
	cr_assert_eq(io_arm(io, "commit.journal", IO_STALL, 0, 1, 1), 0);
	pthread_create(&t1, NULL, bg_change_fn, &ren);
	for (int i = 0; i < 10000 && io_stalled(io, "commit.journal") != 1; i++)
		usleep(1000);
	cr_assert_eq(io_stalled(io, "commit.journal"), 1);
	pthread_create(&t2, NULL, bg_change_fn, &put);
	/* the put waits at the busy mark of a */
	cr_assert(wait_asleep(&put.tid, 10000), "the put does not wait");
	cr_assert_eq(io_arm(io, "commit.move", IO_FAIL, EIO, 1, 1), 0);
	io_release(io);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	cr_assert_eq(ren.rc, 0, "the rename is journaled: %s",
		     strerror(-ren.rc));
	cr_assert_eq(put.rc, -EIO, "a broken store took a change (%s)",
		     strerror(-put.rc));
	store_close(s);
	io_free(io);
	s = open_store(NULL, 0);
	cr_assert(holds_text(s, "b", "a-1", 1), "the renamed record is lost");
	cr_assert(gone(s, "a", 1));
	check_verify_all(s, "rename then put");
	cr_assert_eq(store_close(s), 0);
}
