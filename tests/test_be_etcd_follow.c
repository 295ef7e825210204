/*
 * test_be_etcd_follow.c - two stores on one etcd prefix, as two hosts: B
 * follows what A commits (store/be_etcd_watch.c, store_follow.c) on a
 * real one-member etcd started per test (etcd_helpers.c, always stopped):
 * new versions, deletes, renames, metadata, namespaces and txns reach B's
 * index within a second and its change hook once each; B's own commits
 * are not told; a CAS on B against a version A moved on is ESTALE; the
 * status says the watch is ok at the revision applied.
 */
#include "admin.h"
#include "err.h"
#include "etcd_helpers.h"
#include "store.h"
#include "txn.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct etcd_cluster cl;
static char uri[512];
static struct store *a, *b;

/* What B's hook was told: "id" or "ns:id", one a line. */
static pthread_mutex_t told_mu = PTHREAD_MUTEX_INITIALIZER;
static char told[8192];

#define OK(call)                                                               \
	do {                                                                   \
		int rc_ = (call);                                              \
		cr_assert_eq(rc_, 0, "%s: %s", #call, rerr_what(rc_));         \
	} while (0)

static void hook(void *arg, const char *id, bool is_ns)
{
	size_t n;

	(void)arg;
	pthread_mutex_lock(&told_mu);
	n = strlen(told);
	snprintf(told + n, sizeof(told) - n, "%s%s\n", is_ns ? "ns:" : "", id);
	pthread_mutex_unlock(&told_mu);
}

static int told_count(const char *line)
{
	char want[128];
	int n = 0;

	snprintf(want, sizeof(want), "%s\n", line);
	pthread_mutex_lock(&told_mu);
	for (const char *p = told; (p = strstr(p, want)) != NULL; p++)
		if (p == told || p[-1] == '\n')
			n++;
	pthread_mutex_unlock(&told_mu);
	return n;
}

static struct store *open_uri(bool create)
{
	struct store_opts o = {.path = uri, .create = create};
	struct store *t = NULL;
	int rc = store_open(&t, &o);

	cr_assert_eq(rc, 0, "open: %s", rerr_what(rc));
	return t;
}

static void start(void)
{
	char msg[512];

	cr_assert_eq(etcd_cluster_start(&cl, 1, NULL, msg, sizeof(msg)), 0,
		     "etcd: %s", msg);
	snprintf(uri, sizeof(uri), "etcd://%s/recfs/f", cl.uri_members);
	a = open_uri(true);
	b = open_uri(false);
	told[0] = '\0';
	store_set_change_hook(b, hook, NULL);
	OK(store_serve_start(a));
	OK(store_serve_start(b));
}

static void stop(void)
{
	store_close(b);
	store_close(a);
	a = b = NULL;
	etcd_cluster_stop(&cl);
}

TestSuite(follow, .init = start, .fini = stop, .timeout = 120);

static uint64_t put(struct store *s, const char *id, const char *text)
{
	struct store_result res = {0};

	OK(store_put(s, id, text, strlen(text), NULL, &res));
	return res.version;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* B's store_stat of id: version `v` (0: absent) within 1 s. */
static void b_sees(const char *id, uint64_t v)
{
	uint64_t until = now_ms() + 1000;
	struct store_meta m;
	int rc;

	for (;;) {
		rc = store_stat(b, id, &m, false);
		if ((v == 0 && rc == -ENOENT) ||
		    (v && rc == 0 && m.version == v))
			return;
		cr_assert_lt(now_ms(), until,
			     "%s on B: rc %d version %llu, "
			     "want %llu",
			     id, rc, rc ? 0ull : (unsigned long long)m.version,
			     (unsigned long long)v);
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
}

/* Is `id` at version `v` in store `t`? */
static bool store_is_there(struct store *t, const char *id, uint64_t v)
{
	struct store_meta m;

	return store_stat(t, id, &m, false) == 0 && m.version == v;
}

static void b_reads(const char *id, const char *text)
{
	void *buf = NULL;
	size_t len = 0;

	OK(store_get(b, id, &buf, &len, NULL));
	cr_assert(len == strlen(text) && memcmp(buf, text, len) == 0,
		  "%s on B: %.*s", id, (int)len, (char *)buf);
	free(buf);
}

Test(follow, versions_deletes_renames_and_metadata_reach_b)
{
	struct store_result res;
	struct store_meta m;
	uint64_t last = 0;

	cr_assert_eq(put(a, "x", "one"), 1);
	b_sees("x", 1);
	b_reads("x", "one");
	cr_assert_eq(put(a, "x", "two"), 2);
	b_sees("x", 2);
	b_reads("x", "two");
	OK(store_set_meta(a, "x", NULL, 0600));
	for (uint64_t until = now_ms() + 1000;
	     store_stat(b, "x", &m, false) == 0 && m.mode != 0600;)
		cr_assert_lt(now_ms(), until, "B: mode %o", m.mode);
	OK(store_rename(a, "x", "y", NULL, NULL, &res));
	b_sees("y", 1);
	b_sees("x", 0);
	b_reads("y", "two");
	OK(store_delete(a, "y", NULL, NULL, &res));
	b_sees("y", 0);
	OK(store_last_version(b, "y", &last));
	cr_assert_eq(last, 1, "B knows y's last version: %llu",
		     (unsigned long long)last);
	OK(store_last_version(b, "x", &last));
	cr_assert_eq(last, 2, "B knows x's last version: %llu",
		     (unsigned long long)last);
	/* B's next versions go on from there */
	cr_assert_eq(put(b, "y", "back"), 2);
	cr_assert_eq(put(b, "x", "back"), 3);
	cr_assert_geq(told_count("x"), 1);
	cr_assert_geq(told_count("y"), 1);
	/* A learns B's two commits through its own watch: awaited */
	for (uint64_t until = now_ms() + 5000;
	     store_revision(a) != store_revision(b) && now_ms() < until;)
		usleep(2000);
	cr_assert_eq(store_revision(b), store_revision(a));
}

Test(follow, namespaces_and_txns_reach_b)
{
	struct store_txn *t = NULL;
	struct store_txn_result tr;
	struct stat st;
	uint64_t until = now_ms() + 1000;

	OK(store_mkdir(a, "d", 0750));
	while (store_ns_stat(b, "d", &st) != 0)
		cr_assert_lt(now_ms(), until, "B: no namespace d");
	cr_assert_eq(st.st_mode & 07777, 0750);
	put(a, "d/r", "in d");
	put(a, "t1", "old");
	OK(store_txn_new(a, &t));
	OK(store_txn_put(t, "t1", "new", 3, NULL));
	OK(store_txn_put(t, "t2", "two", 3, NULL));
	OK(store_txn_delete(t, "d/r", NULL));
	OK(store_txn_commit(t, NULL, &tr));
	store_txn_free(t);
	/* every part of the one etcd txn */
	b_sees("t1", 2);
	b_sees("t2", 1);
	b_sees("d/r", 0);
	b_reads("t1", "new");
	OK(store_rmdir(a, "d"));
	until = now_ms() + 1000;
	while (store_ns_stat(b, "d", &st) == 0)
		cr_assert_lt(now_ms(), until, "B: namespace d still there");
	cr_assert_geq(told_count("ns:d"), 2);
}

Test(follow, own_commits_are_not_told_and_cas_sees_the_other_host)
{
	struct store_commit_args ca = {.cond = {STORE_COND_IF_VERSION, 1},
				       .mode = -1};
	struct store_result res;
	struct store_status st;

	put(b, "mine", "b's");
	put(a, "sync", "marker");
	b_sees("sync", 1); /* every event up to it is applied */
	/* A follows B too: its commit goes on from B's version */
	for (uint64_t until = now_ms() + 1000; !store_is_there(a, "mine", 1);)
		cr_assert_lt(now_ms(), until, "A does not see B's mine");
	cr_assert_eq(told_count("mine"), 0, "told: %s", told);
	cr_assert_eq(told_count("sync"), 1, "told: %s", told);
	/* A moves "mine" on; B's CAS on the version it had is ESTALE */
	put(a, "mine", "a's");
	cr_assert_eq(store_put(b, "mine", "late", 4, &ca, &res), -ESTALE);
	b_sees("mine", 2);
	b_reads("mine", "a's");
	store_status_get(b, &st);
	cr_assert_str_eq(st.watch, "ok");
	cr_assert_eq(st.watch_revision, store_revision(a));
}
