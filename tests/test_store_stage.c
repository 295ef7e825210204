/*
 * test_store_stage.c - the record store (store/): stages made ahead (file
 * backend, after store_serve_start) and big stages written in order. The
 * fixture and helpers the test_store_*.c files share are in store_helpers.h.
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "jnl.h"
#include "store.h"
#include "store_helpers.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

TestSuite(store, .init = store_setup, .fini = sandbox_store_rm, .timeout = 120);

/* ---- stages made ahead (file backend, after store_serve_start) ---------- */

#define AHEAD 8 /* STAGE_AHEAD in store/be_file.c */

/* How many stages ("st.*") are in the store's tmp/ right now. */
static int stages_in_tmp(void)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/tmp", spath);
	return (int)count_names(p, "st.", "");
}

/* Wait (up to 10 s) until tmp/ holds `want` stages; false if it never does. */
static bool wait_stages(int want)
{
	for (int i = 0; i < 10000; i++) {
		if (stages_in_tmp() == want)
			return true;
		usleep(1000);
	}
	return false;
}

static struct store *open_serving(struct io *io)
{
	struct store *s = open_io(STORE_BACKEND_FILE, io);

	cr_assert_eq(store_serve_start(s), 0);
	return s;
}

/* The pool fills, commits take from it (creating none), close empties it. */
Test(store, stages_made_ahead_serve_commits_and_go_at_close)
{
	struct io *io;
	struct store *s;
	char id[32], text[32];

	cr_assert_eq(io_new(&io), 0);
	s = open_serving(io);
	cr_assert(wait_stages(AHEAD), "tmp/ holds %d stages, expected %d",
		  stages_in_tmp(), AHEAD);
	/* no stage can be created in place now: only the pool serves */
	cr_assert_eq(io_arm(io, "stage.create", IO_FAIL, ENOSPC, 1, 0), 0);
	for (int i = 0; i < AHEAD; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "made ahead %d", i);
		cr_assert_eq(must_put(s, id, text), 1);
	}
	io_disarm_all(io);
	for (int i = 0; i < AHEAD; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "made ahead %d", i);
		expect(s, id, text, 1);
	}
	cr_assert(wait_stages(AHEAD), "the pool was not refilled: %d",
		  stages_in_tmp());
	close_store(s);
	cr_assert_eq(stages_in_tmp(), 0, "close left stages in tmp/");
	io_free(io);
}

/* A read-only store makes no stages. */
Test(store, read_only_store_makes_no_stages_ahead)
{
	struct store_opts o = {.backend = STORE_BACKEND_FILE,
			       .path = spath,
			       .read_only = true};
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, "a", "x");
	close_store(s);
	s = open_with(&o);
	cr_assert_eq(store_serve_start(s), 0);
	usleep(50 * 1000);
	cr_assert_eq(stages_in_tmp(), 0);
	close_store(s);
}

/* When the thread cannot create stages, commits create their own; once it
   can again, it refills the pool at the next commit. */
Test(store, failing_stages_ahead_leave_commits_to_create_theirs)
{
	struct io *io;
	struct store *s;
	char id[32];

	cr_assert_eq(io_new(&io), 0);
	cr_assert_eq(io_arm(io, "stage.ahead", IO_FAIL, ENOSPC, 1, 0), 0);
	s = open_serving(io);
	for (int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "f%d", i);
		cr_assert_eq(must_put(s, id, id), 1);
	}
	cr_assert_geq(io_hits(io, "stage.create"), 30,
		      "commits did not create their stages");
	cr_assert_eq(stages_in_tmp(), 0);
	io_disarm_all(io);
	must_put(s, "again", "again");
	cr_assert(wait_stages(AHEAD), "no refill after the failure: %d",
		  stages_in_tmp());
	for (int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "f%d", i);
		expect(s, id, id, 1);
	}
	close_store(s);
	io_free(io);
}

static void serve_and_die(void *arg)
{
	struct store *s = NULL;
	struct store_opts o = {.backend = STORE_BACKEND_FILE, .path = spath};

	(void)arg;
	if (store_open(&s, &o) || store_serve_start(s) ||
	    store_put(s, "kept", "kept", 4, NULL, NULL) || !wait_stages(AHEAD))
		_exit(1);
	_exit(0); /* like kill -9: no close */
}

/* Stages left by a daemon that died are removed at the next open. */
Test(store, stages_left_by_a_dead_daemon_are_removed_at_open)
{
	struct store *s = open_store(STORE_BACKEND_FILE);

	close_store(s);
	cr_assert(exited_with(run_child(serve_and_die, NULL), 0));
	cr_assert_eq(stages_in_tmp(), AHEAD);
	s = open_store(STORE_BACKEND_FILE);
	cr_assert_eq(stages_in_tmp(), 0, "open left the dead one's stages");
	expect(s, "kept", "kept", 1);
	close_store(s);
}

#define AHEAD_THREADS 4
#define AHEAD_PUTS 200

struct ahead_writer {
	struct store *s;
	int t, failed;
};

static void ahead_text(char *buf, size_t n, int t, int i)
{
	/* distinct, and of different lengths: a shared stage shows */
	snprintf(buf, n, "writer %d put %d %.*s", t, i, (i * 7 + t) % 40,
		 "........................................");
}

static void *ahead_put_many(void *arg)
{
	struct ahead_writer *w = arg;
	char id[32], text[96];

	for (int i = 0; i < AHEAD_PUTS; i++) {
		snprintf(id, sizeof(id), "w%d/r%d", w->t, i % 50);
		ahead_text(text, sizeof(text), w->t, i);
		if (store_put(w->s, id, text, strlen(text), NULL, NULL))
			w->failed++;
	}
	return NULL;
}

/* Writers in parallel never get the same stage. */
Test(store, parallel_commits_each_get_their_own_stage)
{
	struct ahead_writer w[AHEAD_THREADS];
	pthread_t t[AHEAD_THREADS];
	struct store *s = open_serving(NULL);
	char id[32], text[96];

	for (int i = 0; i < AHEAD_THREADS; i++) {
		char ns[8];

		snprintf(ns, sizeof(ns), "w%d", i);
		cr_assert_eq(store_mkdir(s, ns, 0755), 0);
		w[i] = (struct ahead_writer){.s = s, .t = i};
		cr_assert_eq(pthread_create(&t[i], NULL, ahead_put_many, &w[i]),
			     0);
	}
	for (int i = 0; i < AHEAD_THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].failed, 0, "writer %d: %d puts failed", i,
			     w[i].failed);
	}
	for (int i = 0; i < AHEAD_THREADS; i++)
		for (int r = 0; r < 50; r++) {
			snprintf(id, sizeof(id), "w%d/r%d", i, r);
			ahead_text(text, sizeof(text), i, AHEAD_PUTS - 50 + r);
			expect(s, id, text, AHEAD_PUTS / 50);
		}
	close_store(s);
	cr_assert_eq(stages_in_tmp(), 0);
}

/* Write `mib` MiB into a new stage in 1 MiB pieces, in order or (from the
   second piece on) each piece before the one that precedes it, and commit
   it as `id`; `buf` gets the content. */
static void write_big(struct store *s, const char *id, unsigned mib,
		      bool in_order, char *buf)
{
	const size_t piece = 1u << 20;
	struct store_stage *st = NULL;
	struct store_result r;

	for (size_t i = 0; i < mib * piece; i++)
		buf[i] = (char)(i * 2654435761u >> 24);
	cr_assert_eq(store_stage_new(s, &st), 0);
	for (unsigned k = 0; k < mib; k++) {
		unsigned p = in_order || k == 0 ? k : mib - k;
		cr_assert_eq(store_stage_write(st, buf + p * piece, piece,
					       (uint64_t)p * piece),
			     (ssize_t)piece);
	}
	cr_assert_eq(store_commit(s, id, st, NULL, &r), 0, "%s", id);
	store_stage_free(st);
}

/* A big stage written in order has its writeback started every 8 MiB
   behind the writer (so the fsync at commit has less left to do); one
   written out of order does not; a failing hint loses nothing. */
Test(store, big_stages_written_in_order_start_their_writeback_early)
{
	const unsigned mib = 20;
	char *buf = malloc((size_t)mib << 20);
	struct io *io;
	struct store *s;

	cr_assert_not_null(buf);
	cr_assert_eq(io_new(&io), 0);
	s = open_io(STORE_BACKEND_FILE, io);
	write_big(s, "in-order", mib, true, buf);
	cr_assert_eq(io_hits(io, "stage.writeback"), mib / 8,
		     "writeback started %u times for %u MiB in order",
		     io_hits(io, "stage.writeback"), mib);
	expect_buf(s, "in-order", buf, (size_t)mib << 20, 1);

	write_big(s, "out-of-order", mib, false, buf);
	cr_assert_eq(io_hits(io, "stage.writeback"), mib / 8,
		     "writeback started for a stage written out of order");
	expect_buf(s, "out-of-order", buf, (size_t)mib << 20, 1);

	cr_assert_eq(io_arm(io, "stage.writeback", IO_FAIL, EIO, 1, 0), 0);
	write_big(s, "hint-fails", mib, true, buf);
	expect_buf(s, "hint-fails", buf, (size_t)mib << 20, 1);
	close_store(s);
	io_free(io);
	free(buf);
}
