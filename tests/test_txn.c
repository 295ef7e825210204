/*
 * test_txn.c - changes of several records at once (store_txn, store/txn.c):
 * all parts in one revision, conditions and no-ops, limits, concurrency
 * with single commits, crashes at every failpoint of the txn commit path
 * (all or nothing after recovery, verify clean), I/O errors at each of
 * them, and the history (one git commit with one trailer block per
 * version). Rollback and import, built on txns: test_rollback.c.
 *
 * Stores live in fresh mkdtemp directories, on tmpfs when there is one
 * (RECFS_TEST_TMPDIR overrides). What the store logs is dropped unless
 * RECFS_TEST_VERBOSE is set.
 */
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"

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

#define BIG_LEN ((size_t)(1u << 20) + 777) /* by reference in a txn */

static int ncase;

static void setup(void)
{
	sandbox_store("txn", true);
}

TestSuite(txn, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

/* A fresh store directory (the last one is removed). */
static void next_case(void)
{
	sandbox_rm(spath);
	snprintf(spath, sizeof(spath), "%s/case%d", base, ++ncase);
}

static struct store *open_io(struct io *io)
{
	struct store_opts o = {.path = spath, .create = true, .io = io};
	return open_ok(&o);
}

static struct store *open_store(void)
{
	return open_io(NULL);
}

static struct store *open_memory(void)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, &o), 0);
	return s;
}

static void tput(struct store_txn *t, const char *id, const char *text)
{
	int rc = store_txn_put(t, id, text, strlen(text), NULL);

	cr_assert_eq(rc, 0, "txn put %s: %s", id, strerror(-rc));
}

/* ---- semantics ----------------------------------------------------------- */

static void applies_all_parts(struct store *s)
{
	struct store_txn_result res;
	struct store_txn *t = NULL;
	const struct store_result *pr;
	uint64_t rev0;

	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	put_text(s, "c", "c-1");
	put_text(s, "e", "e-1");
	cr_assert_eq(store_delete(s, "e", NULL, NULL, NULL), 0);
	rev0 = store_revision(s);

	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "a", "a-2");
	tput(t, "c", "c-1"); /* the same: a no-op */
	tput(t, "d", "d-1");
	tput(t, "e", "e-again");
	cr_assert_eq(store_txn_delete(t, "b", NULL), 0);
	cr_assert_eq(store_txn_count(t), 5);
	/* nothing is visible before the commit */
	cr_assert(holds_text(s, "a", "a-1", 1));
	cr_assert_eq(store_stat(s, "d", &(struct store_meta){0}, false),
		     -ENOENT);
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	cr_assert_eq(res.revision, rev0 + 1, "one revision for the txn");
	cr_assert_eq(store_revision(s), rev0 + 1);
	cr_assert_eq(res.changes, 4);
	cr_assert_eq(res.noops, 1);
	cr_assert(holds_text(s, "a", "a-2", 2));
	cr_assert(holds_text(s, "c", "c-1", 1));
	cr_assert(holds_text(s, "d", "d-1", 1));
	/* re-created after a delete at version 1: version 2 */
	cr_assert(holds_text(s, "e", "e-again", 2));
	cr_assert(gone(s, "b", 1));
	pr = store_txn_part_result(t, 0);
	cr_assert_eq(pr->version, 2);
	cr_assert_eq(pr->revision, rev0 + 1);
	pr = store_txn_part_result(t, 1);
	cr_assert(pr->noop);
	cr_assert_eq(pr->version, 1);
	cr_assert_lt(pr->revision, rev0);
	cr_assert_null(store_txn_part_result(t, 5));
	/* a txn is committed once */
	cr_assert_eq(store_txn_commit(t, NULL, NULL), -EINVAL);
	cr_assert_eq(store_txn_put(t, "z", "z", 1, NULL), -EINVAL);
	store_txn_free(t);
}

Test(txn, commit_applies_every_part_in_one_revision)
{
	struct store *s = open_store();

	applies_all_parts(s);
	check_verify(s, "after the txn", NULL);
	cr_assert_eq(store_close(s), 0);
	/* and it is all there after reopening */
	s = open_store();
	cr_assert(holds_text(s, "a", "a-2", 2));
	cr_assert(holds_text(s, "d", "d-1", 1));
	cr_assert(holds_text(s, "e", "e-again", 2));
	cr_assert(gone(s, "b", 1));
	cr_assert_eq(store_close(s), 0);
}

Test(txn, commit_applies_every_part_on_the_memory_backend)
{
	struct store *s = open_memory();

	applies_all_parts(s);
	cr_assert_eq(store_close(s), 0);
}

Test(txn, stale_condition_fails_the_whole_txn_and_changes_nothing)
{
	struct store *s = open_store();
	struct store_commit_args at1 = {.cond = {STORE_COND_IF_VERSION, 1},
					.mode = -1};
	struct store_commit_args create = {.cond = {STORE_COND_CREATE, 0},
					   .mode = -1};
	struct store_cond del_at2 = {STORE_COND_IF_VERSION, 2};
	struct store_txn_result res;
	struct store_txn *t = NULL;
	uint64_t rev0;

	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	put_text(s, "b", "b-2");
	rev0 = store_revision(s);

	/* part 2 (b at version 1) is stale */
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "a", "x", 1, &at1), 0);
	cr_assert_eq(store_txn_put(t, "new", "n", 1, &create), 0);
	cr_assert_eq(store_txn_put(t, "b", "y", 1, &at1), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), -ESTALE);
	cr_assert_eq(res.failed, 2);
	cr_assert_eq(res.current, 2);
	cr_assert_eq(res.revision, 0);
	store_txn_free(t);
	cr_assert_eq(store_revision(s), rev0);
	cr_assert(holds_text(s, "a", "a-1", 1));
	cr_assert(holds_text(s, "b", "b-2", 2));
	cr_assert_eq(store_stat(s, "new", &(struct store_meta){0}, false),
		     -ENOENT);

	/* create-only on an existing record */
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "a", "x", 1, &create), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), -ESTALE);
	cr_assert_eq(res.failed, 0);
	cr_assert_eq(res.current, 1);
	store_txn_free(t);

	/* the right versions: it goes through */
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "a", "x", 1, &at1), 0);
	cr_assert_eq(store_txn_delete(t, "b", &del_at2), 0);
	cr_assert_eq(store_txn_put(t, "new", "n", 1, &create), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	cr_assert_eq(res.revision, rev0 + 1);
	store_txn_free(t);
	cr_assert(holds_text(s, "a", "x", 2));
	cr_assert(gone(s, "b", 2));
	cr_assert(holds_text(s, "new", "n", 1));
	check_verify(s, "after", NULL);
	cr_assert_eq(store_close(s), 0);
}

Test(txn, txn_of_only_noops_commits_nothing)
{
	struct store *s = open_store();
	struct store_txn_result res;
	struct store_txn *t = NULL;
	uint64_t rev0;

	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	rev0 = store_revision(s);
	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "a", "a-1");
	tput(t, "b", "b-1");
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	cr_assert_eq(res.revision, 0);
	cr_assert_eq(res.changes, 0);
	cr_assert_eq(res.noops, 2);
	store_txn_free(t);
	cr_assert_eq(store_revision(s), rev0);
	cr_assert(holds_text(s, "a", "a-1", 1));

	/* an empty txn too */
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	cr_assert_eq(res.revision, 0);
	store_txn_free(t);
	cr_assert_eq(store_revision(s), rev0);
	cr_assert_eq(store_close(s), 0);
}

Test(txn, bad_parts_are_refused)
{
	struct store *s = open_store();
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};
	struct store_cond create = {STORE_COND_CREATE, 0};
	struct store_txn_result res;
	struct store_txn *t = NULL;

	put_text(s, "a", "a-1");
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "../x", "x", 1, NULL), -EINVAL);
	cr_assert_eq(store_txn_put(t, "a@3", "x", 1, NULL), -EINVAL);
	cr_assert_eq(store_txn_put(t, "a", "x", 1, &app), -EINVAL);
	cr_assert_eq(store_txn_delete(t, "a", &create), -EINVAL);
	cr_assert_eq(store_txn_count(t), 0);
	/* the same ID twice */
	tput(t, "a", "x");
	tput(t, "b", "y");
	cr_assert_eq(store_txn_delete(t, "a", NULL), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), -EINVAL);
	cr_assert_lt(res.failed, 3);
	store_txn_free(t);
	/* a delete of nothing; a put onto a namespace; a missing one */
	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "b", "y");
	cr_assert_eq(store_txn_delete(t, "nothing", NULL), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), -ENOENT);
	cr_assert_eq(res.failed, 1);
	store_txn_free(t);
	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "ns", "y");
	cr_assert_eq(store_txn_commit(t, NULL, NULL), -EISDIR);
	store_txn_free(t);
	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "b", "y");
	tput(t, "nons/b", "y");
	cr_assert_eq(store_txn_commit(t, NULL, &res), -ENOENT);
	cr_assert_eq(res.failed, 1);
	store_txn_free(t);
	cr_assert_eq(store_stat(s, "b", &(struct store_meta){0}, false),
		     -ENOENT);
	cr_assert(holds_text(s, "a", "a-1", 1));
	check_verify(s, "after the refusals", NULL);
	cr_assert_eq(store_close(s), 0);
}

/* (issue 14: a txn is no longer bounded by one journal record; this
   test asserted -E2BIG past about 9000 such parts) */
Test(txn, txn_over_one_journal_record_commits_as_one_revision)
{
	struct store *s = open_store();
	struct store_txn *t = NULL;
	struct store_txn_result res;
	char id[256];
	size_t n = 0;
	int rc = 0;

	/* 255-byte IDs: about 9000 parts filled one 4 MiB record */
	cr_assert_eq(store_txn_new(s, &t), 0);
	while (n < 20000) {
		memset(id, 'a', sizeof(id) - 1);
		id[sizeof(id) - 1] = '\0';
		snprintf(id, 12, "%010zu", n);
		id[10] = 'x';
		rc = store_txn_put(t, id, "", 0, NULL);
		if (rc)
			break;
		n++;
	}
	cr_assert_eq(rc, 0, "part %zu: %s", n, strerror(-rc));
	cr_assert_eq(store_txn_count(t), 20000);
	/* all of it commits, as one revision */
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	cr_assert_eq(res.changes, 20000);
	store_txn_free(t);
	cr_assert_eq(store_revision(s), 1);
	memset(id, 'a', sizeof(id) - 1);
	snprintf(id, 12, "%010zu", n - 1);
	id[10] = 'x';
	cr_assert(holds_text(s, id, "", 1));
	cr_assert_eq(store_close(s), 0);
	s = open_store();
	cr_assert_eq(store_revision(s), 1);
	cr_assert(holds_text(s, id, "", 1));
	cr_assert_eq(store_close(s), 0);
}

/* ---- concurrency --------------------------------------------------------- */

#define CONC_IDS 6
#define CONC_ROUNDS 150

struct conc {
	struct store *s;
	unsigned seed;
	uint64_t done[CONC_IDS]; /* successful new versions per record */
};

static const char *const conc_ids[CONC_IDS] = {"r0", "r1", "r2",
					       "r3", "r4", "r5"};

/* Single puts of one record, or txns over three, in random order. */
static void *conc_worker(void *arg)
{
	struct conc *c = arg;
	char text[64];

	for (unsigned i = 0; i < CONC_ROUNDS; i++) {
		unsigned r = (unsigned)rand_r(&c->seed);
		unsigned a = r % CONC_IDS;

		snprintf(text, sizeof(text), "%u-%u-%u", c->seed, i, r);
		if (r & 16) {
			struct store_txn *t = NULL;
			unsigned ids[3] = {a, (a + 1 + (r >> 8) % 5) % CONC_IDS,
					   0};

			ids[2] = (ids[1] + 1) % CONC_IDS == a
					 ? (ids[1] + 2) % CONC_IDS
					 : (ids[1] + 1) % CONC_IDS;
			if (store_txn_new(c->s, &t))
				return (void *)1;
			for (int k = 0; k < 3; k++)
				if (store_txn_put(t, conc_ids[ids[k]], text,
						  strlen(text), NULL))
					return (void *)2;
			if (store_txn_commit(t, NULL, NULL))
				return (void *)3;
			for (int k = 0; k < 3; k++)
				c->done[ids[k]]++;
			store_txn_free(t);
		} else {
			if (store_put(c->s, conc_ids[a], text, strlen(text),
				      NULL, NULL))
				return (void *)4;
			c->done[a]++;
		}
	}
	return NULL;
}

Test(txn, txns_and_single_commits_run_together_without_deadlock)
{
	struct store *s = open_store();
	struct conc c[4];
	pthread_t th[4];
	uint64_t want[CONC_IDS] = {0};

	for (int i = 0; i < CONC_IDS; i++)
		put_text(s, conc_ids[i], "0");
	for (int i = 0; i < 4; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].s = s;
		c[i].seed = (unsigned)i * 7919 + 1;
		cr_assert_eq(pthread_create(&th[i], NULL, conc_worker, &c[i]),
			     0);
	}
	for (int i = 0; i < 4; i++) {
		void *ret = NULL;

		pthread_join(th[i], &ret);
		cr_assert_null(ret, "worker %d failed at step %p", i, ret);
		for (int k = 0; k < CONC_IDS; k++)
			want[k] += c[i].done[k];
	}
	/* every change landed: versions count them (texts are unique, so
	   no change was a no-op) */
	for (int k = 0; k < CONC_IDS; k++) {
		struct store_meta m;

		cr_assert_eq(store_stat(s, conc_ids[k], &m, false), 0);
		cr_assert_eq(m.version, want[k] + 1,
			     "%s: version %" PRIu64 ", %" PRIu64 " changes",
			     conc_ids[k], m.version, want[k]);
	}
	check_verify(s, "after the concurrent changes", NULL);
	cr_assert_eq(store_close(s), 0);
}

/* ---- history ------------------------------------------------------------- */

static uint8_t big[BIG_LEN];

/* The txn's versions are in one commit, one trailer block each. */
static void check_txn_commit(uint64_t rev, unsigned blocks, unsigned deletes)
{
	char needle[64], *msg, *count;

	msg = run("git -C '%s/history.git' log -1 --format=%%B refs/heads/main",
		  spath);
	snprintf(needle, sizeof(needle), "Recfs-Revision: %" PRIu64 "\n", rev);
	cr_assert_eq(count_str(msg, "Recfs-Id: "), blocks, "%s", msg);
	cr_assert_eq(count_str(msg, needle), blocks, "%s", msg);
	cr_assert_eq(count_str(msg, "Recfs-Deleted: true"), deletes, "%s", msg);
	free(msg);
	/* and no other commit has a block of that revision */
	count = run("git -C '%s/history.git' log --format=%%B refs/heads/main"
		    " | grep -c '^Recfs-Revision: %" PRIu64 "$'",
		    spath, rev);
	cr_assert_eq(strtoul(count, NULL, 10), blocks);
	free(count);
}

Test(txn, history_has_one_commit_with_a_trailer_block_per_version)
{
	struct store *s = open_store();
	struct store_txn_result res;
	struct store_txn *t = NULL;
	struct store_version v;
	void *buf = NULL;
	size_t len = 0;
	char *tree;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13 + 5);
	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	put_text(s, "keep", "k");
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	/* so that the txn's record is alone in its batch */
	cr_assert_eq(store_history_drain(s, 60000), 0);
	cr_assert_eq(store_txn_new(s, &t), 0);
	tput(t, "a", "a-2");
	tput(t, "keep", "k"); /* no-op: no block */
	tput(t, "ns/new", "new-1");
	cr_assert_eq(store_txn_put(t, "big", big, sizeof(big), NULL), 0);
	cr_assert_eq(store_txn_delete(t, "b", NULL), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	store_txn_free(t);
	cr_assert_eq(res.changes, 4);
	cr_assert_eq(store_history_drain(s, 60000), 0);
	check_txn_commit(res.revision, 4, 1);
	/* the tree has the new state, the blobs the content */
	tree = run("git -C '%s/history.git' ls-tree -r --name-only "
		   "refs/heads/main",
		   spath);
	cr_assert_str_eq(tree, "a\nbig\nkeep\nns/new\n");
	free(tree);
	cr_assert_eq(store_history_get(s, "big", 1, &buf, &len, &v), 0);
	cr_assert_eq(len, sizeof(big));
	cr_assert_eq(memcmp(buf, big, len), 0);
	cr_assert_eq(v.revision, res.revision);
	free(buf);
	cr_assert_eq(store_history_get(s, "ns/new", 1, &buf, &len, &v), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(buf, "new-1", 5), 0);
	free(buf);
	check_verify(s, "history", NULL);
	cr_assert_eq(store_close(s), 0);
}

Test(txn, a_txn_that_could_overflow_a_history_batch_gets_its_own_commit)
{
	struct store_opts o = {
		.path = spath, .create = true, .history_delay_ms = 30000};
	struct store *s = NULL;
	struct store_txn *t = NULL;
	struct store_txn_result res;
	char id[256], body[400], *msg, *prev;
	void *buf = NULL;
	size_t len = 0;

	cr_assert_eq(store_open(&s, &o), 0);
	put_text(s, "first", "1"); /* the first commit does not wait */
	cr_assert_eq(store_history_drain(s, 60000), 0);
	/* 3000 versions with long IDs wait in the writer's next batch */
	memset(id, 'p', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	for (unsigned i = 0; i < 3000; i++) {
		snprintf(id, 12, "%010u", i);
		id[10] = 'p';
		put_text(s, id, "x");
	}
	/* then a txn of about 3.8 MiB in the journal */
	memset(body, 'b', sizeof(body));
	memset(id, 't', sizeof(id) - 1);
	cr_assert_eq(store_txn_new(s, &t), 0);
	for (unsigned i = 0; i < 5000; i++) {
		snprintf(id, 12, "%010u", i);
		id[10] = 't';
		cr_assert_eq(store_txn_put(t, id, body, sizeof(body), NULL), 0);
	}
	cr_assert_eq(store_txn_commit(t, NULL, &res), 0);
	store_txn_free(t);
	cr_assert_eq(res.changes, 5000);
	cr_assert_eq(store_history_drain(s, 60000), 0);
	/* the txn is alone in the last commit, the puts in the one before */
	msg = run("git -C '%s/history.git' log -1 --format=%%B "
		  "refs/heads/main | grep -c '^Recfs-Id: '",
		  spath);
	cr_assert_eq(strtoul(msg, NULL, 10), 5000, "%s", msg);
	free(msg);
	prev = run("git -C '%s/history.git' log -1 --skip=1 --format=%%B "
		   "refs/heads/main | grep -c '^Recfs-Id: '",
		   spath);
	cr_assert_eq(strtoul(prev, NULL, 10), 3000, "%s", prev);
	free(prev);
	cr_assert_eq(store_close(s), 0);
	/* history.idx was written whole: reopened, a version is found */
	s = open_store();
	snprintf(id, 12, "%010u", 4999u);
	id[10] = 't';
	cr_assert_eq(store_history_get(s, id, 1, &buf, &len, NULL), 0);
	cr_assert_eq(len, sizeof(body));
	free(buf);
	cr_assert_eq(store_close(s), 0);
}

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
