/*
 * test_txn.c - changes of several records at once (store_txn, store/txn.c):
 * all parts in one revision, conditions and no-ops, limits, concurrency
 * with single commits, and the history (one git commit with one trailer
 * block per version). Crashes and I/O errors: test_txn_crash.c. Rollback
 * and import, built on txns: test_rollback.c. The fixture is in
 * txn_helpers.h.
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
