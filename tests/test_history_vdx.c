/*
 * test_history_vdx.c - history.vdx (history/history_vdx.c): an old
 * version of a record with thousands of versions is found in a few reads
 * (no walk over its newer versions), right after the writes, after a
 * reopen, after its tail is torn or its writes fail, and for a store
 * made before it existed.
 */
#include "helpers.h"
#include "history.h"
#include "history_helpers.h"
#include "io.h"
#include "sandbox.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(history_vdx, .init = history_setup, .fini = history_teardown,
	  .timeout = 300);

enum { N = 3000, GONE = 1200 };

/* Versions 1..N of "hot" ("hot V"), deleted after GONE and made again
   (version GONE + 1 on), with "cold" written between (chains interleave
   in the index). */
static void fill_versions(struct store *s)
{
	char text[32];

	for (int i = 1; i <= N; i++) {
		snprintf(text, sizeof(text), "hot %d", i);
		put(s, "hot", text);
		if (i % 7 == 0)
			put(s, "cold", text);
		if (i == GONE) /* the delete repeats version GONE */
			cr_assert_eq(store_delete(s, "hot", NULL, NULL, NULL),
				     0);
	}
	drain(s);
}

static struct store *open_io(struct io *io, bool read_only)
{
	struct store_opts o = {.io = io, .read_only = read_only};

	return open_opts(&o);
}

/* hot@v reads "hot v" in few reads of history.idx and history.vdx. */
static void check_one(struct store *s, struct io *io, uint64_t v, bool cheap)
{
	unsigned idx0 = io_hits(io, "hist.idx.read");
	unsigned vdx0 = io_hits(io, "hist.vdx.read");
	unsigned idx, vdx;

	check_hot_version(s, v);
	idx = io_hits(io, "hist.idx.read") - idx0;
	vdx = io_hits(io, "hist.vdx.read") - vdx0;
	/* the entry and its frame's commit; O(log N) jumps (Myers: at most
	   about 3 log2 N steps, two reads each) */
	if (cheap)
		cr_assert(idx <= 2 && vdx <= 80,
			  "hot@%" PRIu64 ": %u reads of history.idx, %u of "
			  "history.vdx",
			  v, idx, vdx);
}

/* Version 1, the deleted one, the middle, the latest, one that never
   was (ENOENT), and every 97th. */
static void check_all(struct store *s, struct io *io, bool cheap)
{
	void *buf = NULL;
	size_t len;

	check_one(s, io, 1, cheap);
	check_one(s, io, GONE, cheap);
	check_one(s, io, N / 2, cheap);
	check_one(s, io, N, cheap);
	for (uint64_t v = 2; v < N; v += 97)
		check_one(s, io, v, cheap);
	cr_assert_eq(store_history_get(s, "hot", N + 1, &buf, &len, NULL),
		     -ENOENT);
	cr_assert_eq(store_history_get(s, "hot", 0, &buf, &len, NULL), -ENOENT);
	cr_assert_eq(store_history_get(s, "nothing", 1, &buf, &len, NULL),
		     -ENOENT);
}

static void vdx_path(char *p, size_t n)
{
	snprintf(p, n, "%s/%s", spath, HIST_VDX_FILE);
}

static off_t vdx_size(void)
{
	char p[PATH_MAX + 64];
	struct stat st;

	vdx_path(p, sizeof(p));
	cr_assert_eq(stat(p, &st), 0);
	return st.st_size;
}

Test(history_vdx, old_versions_in_few_reads_then_after_reopen)
{
	struct io *io = NULL;
	struct store *s;
	off_t size;

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, false);
	fill_versions(s);
	check_all(s, io, true);
	close_store(s);
	size = vdx_size();
	/* a header, then one entry per version of history.idx (N of hot,
	   N / 7 of cold, the delete) */
	cr_assert_eq(size, 16 + 48 * (N + N / 7 + 1));
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);
	s = open_io(io, true); /* read-only */
	check_all(s, io, true);
	close_store(s);
	io_free(io);
}

/* Cut history.vdx at `cut` bytes and flip a byte at `flip` (if > 0). */
static void damage(off_t cut, off_t flip)
{
	char p[PATH_MAX + 64];
	int fd;

	vdx_path(p, sizeof(p));
	fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	if (flip > 0) {
		uint8_t b;

		cr_assert_eq(pread(fd, &b, 1, flip), 1);
		b ^= 0x5a;
		cr_assert_eq(pwrite(fd, &b, 1, flip), 1);
	}
	if (cut >= 0)
		cr_assert_eq(ftruncate(fd, cut), 0);
	close(fd);
}

Test(history_vdx, a_torn_or_damaged_tail_is_rebuilt_at_open)
{
	struct io *io = NULL;
	struct store *s;
	off_t size;

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, false);
	fill_versions(s);
	close_store(s);
	size = vdx_size();

	/* torn: half an entry at the end, two thirds in */
	damage(16 + 48 * 2000 + 20, -1);
	s = open_io(io, true); /* read-only: the part that checks is used */
	check_all(s, io, false);
	close_store(s);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);

	/* an entry in the middle damaged: rebuilt from there */
	damage(-1, 16 + 48 * 1500 + 9);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);

	/* entries past the end of history.idx: cut */
	damage(size + 48 * 3 + 5, -1);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);

	/* a bad header: all rebuilt */
	damage(-1, 3);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);
	io_free(io);
}

Test(history_vdx, a_store_without_it_gets_it_at_open)
{
	char p[PATH_MAX + 64];
	struct io *io = NULL;
	struct store *s;
	off_t size;

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, false);
	fill_versions(s);
	close_store(s);
	size = vdx_size();
	vdx_path(p, sizeof(p));
	cr_assert_eq(unlink(p), 0); /* as an older recfs left it */
	s = open_io(io, true);	    /* read-only: walks, and creates none */
	check_all(s, io, false);
	close_store(s);
	cr_assert_eq(access(p, F_OK), -1);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	cr_assert_eq(vdx_size(), size);
	io_free(io);
}

Test(history_vdx, failed_writes_fall_back_to_the_walk_until_reopened)
{
	struct io *io = NULL;
	struct store *s;
	off_t size;
	unsigned w0;

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, false);
	/* the second append torn half way (short), then nothing more
	   appended: the versions after it are found by walking
	   history.idx */
	w0 = io_hits(io, "hist.vdx.write");
	cr_assert_eq(io_arm(io, "hist.vdx.write", IO_SHORT, EIO, 2, 1), 0);
	fill_versions(s);
	cr_assert_eq(io_hits(io, "hist.vdx.write") - w0, 2,
		     "appends after the failed one");
	check_all(s, io, false);
	close_store(s);
	s = open_io(io, false);
	check_all(s, io, true);
	close_store(s);
	size = vdx_size();
	cr_assert_eq(size, 16 + 48 * (N + N / 7 + 1));
	io_free(io);
}

static int id_cb(void *arg, const char *id)
{
	unsigned *seen = arg;

	if (strcmp(id, "hot") == 0)
		seen[0]++;
	else if (strcmp(id, "cold") == 0)
		seen[1]++;
	else if (strcmp(id, "ns/gone") == 0)
		seen[2]++;
	else
		seen[3]++;
	return 0;
}

static int stop_cb(void *arg, const char *id)
{
	(void)id;
	++*(unsigned *)arg;
	return 7;
}

/* store_history_ids (what .recfs/history is resolved from): every record
   with a version once, a deleted one too; fn's return stops it. */
Test(history_vdx, ids_lists_each_record_once)
{
	struct store *s = open_store();
	unsigned seen[4] = {0}, calls = 0;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put(s, "ns/gone", "x");
	cr_assert_eq(store_delete(s, "ns/gone", NULL, NULL, NULL), 0);
	fill_versions(s);
	cr_assert_eq(store_history_ids(s, id_cb, seen), 0);
	cr_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 0,
		  "hot %u, cold %u, ns/gone %u, others %u", seen[0], seen[1],
		  seen[2], seen[3]);
	cr_assert_eq(store_history_ids(s, stop_cb, &calls), 7);
	cr_assert_eq(calls, 1);
	close_store(s);
}
