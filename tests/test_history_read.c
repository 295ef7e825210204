/*
 * test_history_read.c - the git history of a store (store/history.h, SPEC
 * section 5), checked from the outside: reading it back (store_history_get,
 * store_history_each), old versions of long chains, the index served
 * from history.idx.
 * The fixture and helpers the test_history_*.c files share are in
 * history_helpers.h.
 */
#include "admin.h"
#include "helpers.h"
#include "hist_i.h"
#include "history_helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>
#include <git2.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(history, .init = history_setup, .fini = history_teardown,
	  .timeout = 300);

/* ---- store_history_* -------------------------------------------------------
 */

Test(history, history_get_reads_every_version_right_after_the_write)
{
	char text[32];
	void *buf = NULL;
	size_t len = 0;
	struct store_version v;
	struct store *s = open_slow(1000, NULL);

	for (int i = 1; i <= 20; i++) {
		snprintf(text, sizeof(text), "content %d", i);
		put(s, "r", text);
		/* no drain: the read waits for the writer */
		cr_assert_eq(
			store_history_get(s, "r", (uint64_t)i, &buf, &len, &v),
			0, "r@%d", i);
		cr_assert(len == strlen(text) && !memcmp(buf, text, len));
		cr_assert_eq(v.version, (uint64_t)i);
		free(buf);
	}
	for (int i = 1; i <= 20; i++) {
		snprintf(text, sizeof(text), "content %d", i);
		cr_assert_eq(store_history_get(s, "r", (uint64_t)i, &buf, &len,
					       NULL),
			     0);
		cr_assert(len == strlen(text) && !memcmp(buf, text, len));
		free(buf);
	}
	close_store(s);
}

/*
 * The old versions of a record with a long chain in history.idx: every
 * one is found (a delete in the middle, versions added later included),
 * and reading all n of them takes O(n) reads of the index, not n*n/2
 * (one per newer version, each time).
 */
Test(history, old_versions_of_a_long_chain_take_few_index_reads)
{
	enum { N = 3000, GONE = 1200, MORE = 100 };
	struct store_opts o = {0};
	struct store_result d;
	struct io *io = NULL;
	char text[32];
	unsigned before, reads;
	void *buf = NULL;
	size_t len;
	struct store *s;

	cr_assert_eq(io_new(&io), 0);
	o.io = io;
	s = open_opts(&o);
	for (int i = 1; i <= N; i++) {
		snprintf(text, sizeof(text), "hot %d", i);
		put(s, "hot", text);
		if (i % 7 == 0)
			put(s, "cold",
			    text); /* chains interleave in the file */
		if (i == GONE)	   /* the delete repeats version GONE */
			cr_assert_eq(store_delete(s, "hot", NULL, NULL, &d), 0);
	}
	drain(s);
	before = io_hits(io, "hist.idx.read");
	for (uint64_t v = 1; v <= N; v++)
		check_hot_version(s, v);
	reads = io_hits(io, "hist.idx.read") - before;
	cr_assert_lt(reads, 40u * N, "%u reads of the index for %d versions",
		     reads, N);
	/* versions written after the chain was read */
	for (int i = N + 1; i <= N + MORE; i++) {
		snprintf(text, sizeof(text), "hot %d", i);
		put(s, "hot", text);
	}
	drain(s);
	for (int v = N + MORE; v >= 1; v -= 37)
		check_hot_version(s, (uint64_t)v);
	check_hot_version(s, 1);
	check_hot_version(s, GONE);
	cr_assert_eq(
		store_history_get(s, "hot", N + MORE + 1, &buf, &len, NULL),
		-ENOENT);
	cr_assert_eq(store_history_get(s, "hot", 0, &buf, &len, NULL), -ENOENT);
	close_store(s);
	io_free(io);
}

struct chain_reader {
	struct store *s;
	unsigned seed;
	int rounds;
	volatile uint64_t *known; /* versions of each record readable */
	int bad;		  /* lookups that failed or read wrong */
	char what[96];
};

static const char *const chain_ids[] = {"c0", "c1", "c2", "c3", "c4", "c5"};
#define CHAIN_IDS (sizeof(chain_ids) / sizeof(chain_ids[0]))

static void *chain_reader(void *arg)
{
	struct chain_reader *cr = arg;

	for (int i = 0; i < cr->rounds; i++) {
		unsigned k = (unsigned)rand_r(&cr->seed) % CHAIN_IDS;
		uint64_t max = cr->known[k];
		uint64_t v = 1 + (uint64_t)rand_r(&cr->seed) % max;
		char want[32];
		void *buf = NULL;
		size_t len = 0;
		int rc = store_history_get(cr->s, chain_ids[k], v, &buf, &len,
					   NULL);

		snprintf(want, sizeof(want), "%s %" PRIu64, chain_ids[k], v);
		if (rc || len != strlen(want) || memcmp(buf, want, len)) {
			if (!cr->bad++)
				snprintf(cr->what, sizeof(cr->what),
					 "%s@%" PRIu64 ": rc %d, %zu bytes",
					 chain_ids[k], v, rc, len);
		}
		free(buf);
	}
	return NULL;
}

/*
 * Lookups of old versions from several threads while new versions are
 * written: more records with long chains than there are slots, so slots
 * are taken from each other, filled at both ends and read at once.
 */
Test(history, old_versions_read_by_threads_while_versions_are_added)
{
	enum { FIRST = 600, MORE = 150, READERS = 4 };
	volatile uint64_t known[CHAIN_IDS];
	struct chain_reader r[READERS];
	pthread_t t[READERS];
	char text[32];
	struct store *s = open_store();

	for (int v = 1; v <= FIRST; v++) {
		for (size_t k = 0; k < CHAIN_IDS; k++) {
			snprintf(text, sizeof(text), "%s %d", chain_ids[k], v);
			put(s, chain_ids[k], text);
		}
	}
	drain(s);
	for (size_t k = 0; k < CHAIN_IDS; k++)
		known[k] = FIRST;
	for (int i = 0; i < READERS; i++) {
		r[i] = (struct chain_reader){.s = s,
					     .seed = 17u + (unsigned)i,
					     .rounds = 1500,
					     .known = known};
		cr_assert_eq(pthread_create(&t[i], NULL, chain_reader, &r[i]),
			     0);
	}
	for (int v = FIRST + 1; v <= FIRST + MORE; v++) {
		for (size_t k = 0; k < CHAIN_IDS; k++) {
			snprintf(text, sizeof(text), "%s %d", chain_ids[k], v);
			put(s, chain_ids[k], text);
		}
		if (v % 50 == 0) {
			drain(s);
			for (size_t k = 0; k < CHAIN_IDS; k++)
				known[k] = (uint64_t)v;
		}
	}
	for (int i = 0; i < READERS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].bad, 0, "reader %d: %d bad lookups, first %s",
			     i, r[i].bad, r[i].what);
	}
	close_store(s);
}

Test(history, versions_that_never_existed_are_enoent)
{
	void *buf = NULL;
	size_t len;
	char c[41];
	struct store *s = open_store();

	put(s, "r", "one");
	drain(s);
	cr_assert_eq(store_history_get(s, "r", 0, &buf, &len, NULL), -ENOENT);
	cr_assert_eq(store_history_get(s, "r", 2, &buf, &len, NULL), -ENOENT);
	cr_assert_eq(store_history_get(s, "nope", 1, &buf, &len, NULL),
		     -ENOENT);
	cr_assert_eq(store_history_get(s, "../x", 1, &buf, &len, NULL),
		     -EINVAL);
	cr_assert_eq(store_history_commit(s, "r", 7, c), -ENOENT);
	cr_assert_eq(store_history_commit(s, "r", 1, c), 0);
	cr_assert_eq(strlen(c), 40);
	close_store(s);
}

struct listing {
	char ids[64][16];
	uint64_t versions[64], revisions[64];
	bool deleted[64];
	int n;
};

static int list_cb(void *arg, const char *id, const struct store_version *v)
{
	struct listing *l = arg;

	cr_assert_lt(l->n, 64);
	snprintf(l->ids[l->n], sizeof(l->ids[0]), "%s", id);
	l->versions[l->n] = v->version;
	l->revisions[l->n] = v->revision;
	l->deleted[l->n] = v->deleted;
	l->n++;
	return 0;
}

Test(history, history_each_lists_versions_in_revision_order)
{
	struct listing all = {0}, one = {0};
	struct store *s = open_store();

	put(s, "a", "1");
	put(s, "b", "1");
	put(s, "a", "2");
	cr_assert_eq(store_delete(s, "b", NULL, NULL, NULL), 0);
	drain(s);
	cr_assert_eq(store_history_each(s, NULL, list_cb, &all), 0);
	cr_assert_eq(all.n, 4);
	for (int i = 1; i < all.n; i++)
		cr_assert_gt(all.revisions[i], all.revisions[i - 1]);
	cr_assert_str_eq(all.ids[3], "b");
	cr_assert(all.deleted[3]);
	cr_assert_eq(store_history_each(s, "a", list_cb, &one), 0);
	cr_assert_eq(one.n, 2);
	cr_assert_eq(one.versions[0], 1);
	cr_assert_eq(one.versions[1], 2);
	close_store(s);
}

Test(history, commit_is_eagain_while_pending_and_status_shows_the_lag)
{
	struct store_status st;
	struct io *io = NULL;
	char c[41];
	struct store *s;

	cr_assert_eq(io_new(&io), 0);
	s = open_slow(1, io);
	cr_assert_eq(io_arm(io, "hist.commit", IO_STALL, 0, 1, 0), 0);
	put(s, "p", "1");
	put(s, "p", "2");
	cr_assert_eq(store_history_commit(s, "p", 2, c), -EAGAIN);
	store_status_get(s, &st);
	cr_assert(st.history);
	cr_assert_eq(st.history_lag, 2);
	cr_assert_eq(st.history_done, 0);
	io_disarm_all(io);
	drain(s);
	cr_assert_eq(store_history_commit(s, "p", 2, c), 0);
	store_status_get(s, &st);
	cr_assert_eq(st.history_lag, 0);
	cr_assert_eq(st.history_done, store_revision(s));
	close_store(s);
	io_free(io);
}

/* ---- the index is served from history.idx -------------------------------- */

struct counted {
	uint64_t n, deletes, last_rev;
	bool ordered;
};

static int count_cb(void *arg, const char *id, const struct store_version *v)
{
	struct counted *c = arg;

	(void)id;
	c->n++;
	c->deletes += v->deleted;
	if (v->revision <= c->last_rev)
		c->ordered = false;
	c->last_rev = v->revision;
	return 0;
}

/* Versions 1..n of "hot", 1..n/2 of "warm", a delete and re-create of
   "warm" (n/2 + 1): each version's content names it. */
static void fill_hot(struct store *s, int n)
{
	char text[32];

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	for (int i = 1; i <= n; i++) {
		snprintf(text, sizeof(text), "hot %d", i);
		put(s, "ns/hot", text);
		if (i <= n / 2) {
			snprintf(text, sizeof(text), "warm %d", i);
			put(s, "warm", text);
		}
		if (i % 500 == 0)
			drain(s);
	}
	cr_assert_eq(store_delete(s, "warm", NULL, NULL, NULL), 0);
	put(s, "warm", "warm again");
	drain(s);
}

static void check_hot(struct store *s, int n)
{
	struct counted all = {.ordered = true}, hot = {.ordered = true};
	char text[32];
	void *buf;
	size_t len;
	int probes[] = {1, 2, n / 3, n / 2, n - 1, n};

	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		snprintf(text, sizeof(text), "hot %d", probes[i]);
		cr_assert_eq(store_history_get(s, "ns/hot", (uint64_t)probes[i],
					       &buf, &len, NULL),
			     0, "ns/hot@%d", probes[i]);
		cr_assert(len == strlen(text) && !memcmp(buf, text, len),
			  "ns/hot@%d", probes[i]);
		free(buf);
	}
	cr_assert_eq(store_history_get(s, "warm", 1, &buf, &len, NULL), 0);
	cr_assert(len == 6 && !memcmp(buf, "warm 1", 6));
	free(buf);
	cr_assert_eq(store_history_get(s, "warm", (uint64_t)(n / 2 + 1), &buf,
				       &len, NULL),
		     0);
	cr_assert(len == 10 && !memcmp(buf, "warm again", 10));
	free(buf);
	cr_assert_eq(store_history_get(s, "ns/hot", (uint64_t)n + 1, &buf, &len,
				       NULL),
		     -ENOENT);
	cr_assert_eq(store_history_get(s, "nothing", 1, &buf, &len, NULL),
		     -ENOENT);
	cr_assert_eq(store_history_each(s, "ns/hot", count_cb, &hot), 0);
	cr_assert_eq(hot.n, (uint64_t)n);
	cr_assert(hot.ordered);
	cr_assert_eq(store_history_each(s, NULL, count_cb, &all), 0);
	cr_assert_eq(all.n, (uint64_t)(n + n / 2 + 2)); /* + delete + again */
	cr_assert_eq(all.deletes, 1);
	cr_assert(all.ordered);
}

static uint64_t resident(struct store *s)
{
	struct store_status st;

	store_status_get(s, &st);
	return st.history_resident;
}

Test(history, index_memory_does_not_grow_with_the_versions)
{
	struct store_opts ro = {.read_only = true};
	struct store *s = open_store();
	char p[PATH_MAX + 64];
	struct stat st;

	fill_hot(s, 2000);
	/* every version is read back from history.idx: none in memory */
	cr_assert_eq(resident(s), 0);
	check_hot(s, 2000);
	close_store(s);
	s = open_store();
	cr_assert_eq(resident(s), 0);
	check_hot(s, 2000);
	close_store(s);

	/* read-only, history.idx cut short: caught up in memory only */
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(truncate(p, st.st_size / 2), 0);
	s = open_opts(&ro);
	cr_assert_gt(resident(s), 0);
	cr_assert_lt(resident(s), 3002);
	check_hot(s, 2000);
	close_store(s);
	/* writable: caught up in the file again */
	s = open_store();
	cr_assert_eq(resident(s), 0);
	check_hot(s, 2000);
	close_store(s);
}

Test(history, a_history_idx_frame_out_of_its_chains_is_rebuilt)
{
	char p[PATH_MAX + 64];
	struct store *s = open_store();
	struct stat st;
	uint8_t *d;
	off_t o = 16, last = -1;
	int fd;

	fill_hot(s, 300);
	close_store(s);
	/* the last frame appended a second time: a valid frame (its
	   checksum holds, its revision does not go back), whose entries do
	   not continue the records' chains */
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	cr_assert_eq(stat(p, &st), 0);
	d = malloc((size_t)st.st_size);
	fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, d, (size_t)st.st_size, 0), st.st_size);
	while (o + 24 <= st.st_size) { /* 24: the journal's frame header */
		uint32_t plen = (uint32_t)d[o + 4] | (uint32_t)d[o + 5] << 8 |
				(uint32_t)d[o + 6] << 16 |
				(uint32_t)d[o + 7] << 24;

		last = o;
		o += 24 + (off_t)plen;
	}
	cr_assert_eq(o, st.st_size);
	cr_assert_gt(last, 16);
	cr_assert_eq(
		pwrite(fd, d + last, (size_t)(st.st_size - last), st.st_size),
		st.st_size - last);
	free(d);
	close(fd);
	s = open_store();
	check_hot(s, 300);
	cr_assert_eq(resident(s), 0);
	close_store(s);
	/* rebuilt: no longer than before */
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, o);
}
