/*
 * test_etcd.c - the etcd client (store/etcd.h) against real etcd members
 * (etcd_helpers.h): keys and values, transactions and compare-and-swap,
 * leases, watches (order, resuming, compaction), failover between the
 * members of a 3-member cluster, unreachable clusters, URIs; and base64.
 */
#include "base64.h"
#include "err.h"
#include "etcd.h"
#include "etcd_helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct etcd_cluster cl;
static struct etcd *e;

static void start(size_t members, unsigned request_ms)
{
	struct etcd_opts o = {.connect_timeout_ms = 500,
			      .request_timeout_ms = request_ms};
	char msg[512];

	cr_assert_eq(etcd_cluster_start(&cl, members, NULL, msg, sizeof(msg)),
		     0, "etcd: %s", msg);
	cr_assert_eq(etcd_open(cl.endpoints, members, &o, &e), 0, "%s",
		     rerr_last() ? rerr_last()->msg : "");
}

static void start1(void)
{
	start(1, 10000);
}

static void start3(void)
{
	start(3, 3000);
}

static void stop(void)
{
	etcd_close(e);
	e = NULL;
	etcd_cluster_stop(&cl);
}

TestSuite(etcd, .timeout = 180);

#define OK(call)                                                               \
	do {                                                                   \
		int rc_ = (call);                                              \
		cr_assert_eq(rc_, 0, "%s: %s", #call, rerr_what(rc_));         \
	} while (0)

static int64_t put(const char *k, const char *v)
{
	int64_t rev = 0;

	OK(etcd_put(e, k, strlen(k), v, strlen(v), 0, &rev));
	cr_assert_gt(rev, 0);
	return rev;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- base64 and URIs (no etcd)
 * ------------------------------------------------ */

Test(etcd, base64_round_trips_every_length_and_refuses_garbage)
{
	unsigned char in[64], out[64];
	char enc[100];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 255);
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t len = base64_encode(enc, in, n);

		cr_assert_eq(len, base64_encoded_len(n));
		cr_assert_eq(base64_decode(out, enc, len), (long)n, "n %zu", n);
		cr_assert_eq(memcmp(in, out, n), 0);
	}
	base64_encode(enc, "foobar", 6);
	cr_assert_str_eq(enc, "Zm9vYmFy");
	base64_encode(enc, "fo", 2);
	cr_assert_str_eq(enc, "Zm8=");
	cr_assert_eq(base64_decode(out, "Zm9", 3), -EINVAL);
	cr_assert_eq(base64_decode(out, "Zm9*", 4), -EINVAL);
	cr_assert_eq(base64_decode(out, "Z===", 4), -EINVAL);
	cr_assert_eq(base64_decode(out, "Zg==Zg==", 8), -EINVAL);
}

Test(etcd, uri_parses_members_and_prefix)
{
	struct etcd_uri u;

	OK(etcd_uri_parse("etcd://127.0.0.1:2379,db-2.example:2380,[::1]:1/"
			  "stores/conf",
			  &u));
	cr_assert_eq(u.n_endpoints, 3);
	cr_assert_str_eq(u.endpoints[0], "127.0.0.1:2379");
	cr_assert_str_eq(u.endpoints[1], "db-2.example:2380");
	cr_assert_str_eq(u.endpoints[2], "[::1]:1");
	cr_assert_str_eq(u.prefix, "stores/conf");
	etcd_uri_free(&u);
}

static void uri_bad(const char *uri, const char *says)
{
	struct etcd_uri u;
	int rc = etcd_uri_parse(uri, &u);

	cr_assert_eq(rc, -EINVAL, "%s", uri);
	cr_assert_not_null(strstr(rerr_what(rc), says), "%s: '%s' lacks '%s'",
			   uri, rerr_what(rc), says);
	cr_assert_null(u.endpoints);
}

Test(etcd, uri_errors_name_what_is_wrong)
{
	uri_bad("http://h:1/p", "does not start with etcd://");
	uri_bad("etcd://h:1", "no /PREFIX");
	uri_bad("etcd:///p", "no member is named");
	uri_bad("etcd://h:1/", "PREFIX after the members is empty");
	uri_bad("etcd://h/p", "member 'h' has no port");
	uri_bad("etcd://h:/p", "member 'h:' has no port");
	uri_bad("etcd://h:1,,g:2/p", "a member is empty");
	uri_bad("etcd://h:1,/p", "a member is empty");
	uri_bad("etcd://h:0/p", "member 'h:0': the port is not");
	uri_bad("etcd://h:65536/p", "the port is not a number");
	uri_bad("etcd://h:12a/p", "the port is not a number");
	uri_bad("etcd://h_x:1/p", "member 'h_x:1': the host is not");
	uri_bad("etcd://:1/p", "the host is not");
	uri_bad("etcd://[zz]:1/p", "the host is not");
	uri_bad("etcd://h:1/p\tq", "control character");
	uri_bad("etcd://h:1", "(the form is etcd://HOST:PORT[,HOST:PORT...]/"
			      "PREFIX)");
}

Test(etcd, prefix_end_increments_the_last_byte_below_0xff)
{
	char end[8];

	cr_assert_eq(etcd_prefix_end(end, "a/b", 3), 3);
	cr_assert_eq(memcmp(end, "a/c", 3), 0);
	cr_assert_eq(etcd_prefix_end(end, "a\xff\xff", 3), 1);
	cr_assert_eq(end[0], 'b');
	cr_assert_eq(etcd_prefix_end(end, "", 0), 1);
	cr_assert_eq(end[0], '\0');
}

/* ---- keys and values
 * ------------------------------------------------------------ */

Test(etcd, put_get_range_and_delete, .init = start1, .fini = stop)
{
	char bin[] = {'k', 0, (char)0xff, 'x'}, val[] = {0, 1, 2, (char)0xfe};
	struct etcd_range_result r;
	struct etcd_kv kv;
	int64_t r1, r2, rev, del;
	char end[16];
	int rc;

	r1 = put("p/a", "one");
	r2 = put("p/a", "two");
	cr_assert_gt(r2, r1);
	put("p/b", "bee");
	put("p/c/d", "deep");
	put("q", "outside");
	OK(etcd_get(e, "p/a", 3, &kv, &rev));
	cr_assert_str_eq(kv.value, "two");
	cr_assert_eq(kv.version, 2);
	cr_assert_eq(kv.create_revision, r1);
	cr_assert_eq(kv.mod_revision, r2);
	cr_assert_geq(rev, r2);
	etcd_kv_free(&kv);

	OK(etcd_put(e, bin, sizeof(bin), val, sizeof(val), 0, NULL));
	OK(etcd_get(e, bin, sizeof(bin), &kv, NULL));
	cr_assert_eq(kv.key_len, sizeof(bin));
	cr_assert_eq(memcmp(kv.key, bin, sizeof(bin)), 0);
	cr_assert_eq(kv.value_len, sizeof(val));
	cr_assert_eq(memcmp(kv.value, val, sizeof(val)), 0);
	etcd_kv_free(&kv);

	struct etcd_range q = {.key = "p/", .key_len = 2, .range_end = end};
	q.range_end_len = etcd_prefix_end(end, "p/", 2);
	OK(etcd_range(e, &q, &r));
	cr_assert_eq(r.n, 3);
	cr_assert_str_eq(r.kvs[0].key, "p/a");
	cr_assert_str_eq(r.kvs[1].key, "p/b");
	cr_assert_str_eq(r.kvs[2].key, "p/c/d");
	cr_assert_str_eq(r.kvs[2].value, "deep");
	etcd_range_result_free(&r);
	q.limit = 2;
	q.keys_only = 1;
	OK(etcd_range(e, &q, &r));
	cr_assert_eq(r.n, 2);
	cr_assert(r.more);
	cr_assert_eq(r.count, 3);
	cr_assert_eq(r.kvs[1].value_len, 0);
	etcd_range_result_free(&r);
	q.limit = 0;
	q.keys_only = 0;
	q.revision = r1; /* as it was then */
	OK(etcd_range(e, &q, &r));
	cr_assert_eq(r.n, 1);
	cr_assert_str_eq(r.kvs[0].value, "one");
	etcd_range_result_free(&r);

	OK(etcd_delete(e, "p/b", 3, NULL, 0, &del, NULL));
	cr_assert_eq(del, 1);
	OK(etcd_delete(e, "p/", 2, end, q.range_end_len, &del, NULL));
	cr_assert_eq(del, 2);
	rc = etcd_get(e, "p/a", 3, &kv, NULL);
	cr_assert_eq(rc, -ENOENT);
	cr_assert_not_null(strstr(rerr_what(rc), "etcd get p/a"), "%s",
			   rerr_what(rc));
	OK(etcd_get(e, "q", 1, &kv, NULL));
	etcd_kv_free(&kv);
}

Test(etcd, a_value_larger_than_etcd_takes_is_efbig, .init = start1,
     .fini = stop)
{
	size_t n = 2 << 20;
	char *big = malloc(n);
	int rc;

	cr_assert_not_null(big);
	memset(big, 'x', n);
	rc = etcd_put(e, "big/one", 7, big, n, 0, NULL);
	cr_assert_eq(rc, -EFBIG, "%d %s", rc, rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "etcd put big/one at "));
	cr_assert_not_null(strstr(rerr_what(rc), "larger than max"), "%s",
			   rerr_what(rc));
	rc = etcd_put(e, "big/two", 7, big, n * 7 / 8, 0, NULL);
	cr_assert_eq(rc, -EFBIG, "%d %s", rc, rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "request is too large"), "%s",
			   rerr_what(rc));
	OK(etcd_put(e, "big/one", 7, big, 1 << 20, 0, NULL)); /* 1 MiB fits */
	free(big);
}

/* ---- transactions
 * -------------------------------------------------------------------- */

struct cas_arg {
	const char *val;
	int64_t seen;
	pthread_barrier_t *go;
	int won;
};

static void *cas(void *p)
{
	struct cas_arg *a = p;
	struct etcd_cmp c = {.key = "ctr",
			     .key_len = 3,
			     .target = ETCD_MOD,
			     .result = ETCD_EQUAL,
			     .n = a->seen};
	struct etcd_op op = {.type = ETCD_OP_PUT,
			     .key = "ctr",
			     .key_len = 3,
			     .value = a->val,
			     .value_len = strlen(a->val)};
	struct etcd_op get = {
		.type = ETCD_OP_RANGE, .key = "ctr", .key_len = 3};
	struct etcd_txn t = {&c, 1, &op, 1, &get, 1};
	struct etcd_txn_result r;

	pthread_barrier_wait(a->go);
	a->won = -1;
	if (etcd_txn(e, &t, &r) == 0) {
		a->won = r.succeeded;
		/* the loser sees the winner's write */
		if (!r.succeeded &&
		    (r.n_ops != 1 || r.ops[0].range.n != 1 ||
		     r.ops[0].range.kvs[0].mod_revision <= a->seen))
			a->won = -2;
		etcd_txn_result_free(&r);
	}
	return NULL;
}

Test(etcd, exactly_one_of_two_conflicting_cas_wins, .init = start1,
     .fini = stop)
{
	pthread_barrier_t go;
	int wins[2] = {0, 0};

	pthread_barrier_init(&go, NULL, 2);
	put("ctr", "0");
	for (int round = 0; round < 40; round++) {
		struct etcd_kv kv;
		struct cas_arg a[2] = {{"A", 0, &go, 0}, {"B", 0, &go, 0}};
		pthread_t th[2];

		OK(etcd_get(e, "ctr", 3, &kv, NULL));
		a[0].seen = a[1].seen = kv.mod_revision;
		etcd_kv_free(&kv);
		for (int i = 0; i < 2; i++)
			pthread_create(&th[i], NULL, cas, &a[i]);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		cr_assert(a[0].won >= 0 && a[1].won >= 0, "round %d: %d %d",
			  round, a[0].won, a[1].won);
		cr_assert_eq(a[0].won + a[1].won, 1, "round %d", round);
		OK(etcd_get(e, "ctr", 3, &kv, NULL));
		cr_assert_str_eq(kv.value, a[0].won ? "A" : "B");
		etcd_kv_free(&kv);
		wins[a[1].won]++;
	}
	pthread_barrier_destroy(&go);
}

Test(etcd, txn_compares_version_create_and_value, .init = start1, .fini = stop)
{
	struct etcd_cmp absent = {.key = "new",
				  .key_len = 3,
				  .target = ETCD_CREATE,
				  .result = ETCD_EQUAL};
	struct etcd_op mk = {.type = ETCD_OP_PUT,
			     .key = "new",
			     .key_len = 3,
			     .value = "v1",
			     .value_len = 2};
	struct etcd_txn create = {&absent, 1, &mk, 1, NULL, 0};
	struct etcd_txn_result r;
	int rc;

	OK(etcd_txn(e, &create, &r));
	cr_assert(r.succeeded);
	cr_assert_gt(r.revision, 0);
	etcd_txn_result_free(&r);
	rc = etcd_txn(e, &create, NULL); /* create-only: once */
	cr_assert_eq(rc, -ECANCELED);
	cr_assert_not_null(strstr(rerr_what(rc), "etcd txn new"));

	struct etcd_cmp both[2] = {
		{.key = "new", .key_len = 3, .target = ETCD_VERSION, .n = 1},
		{.key = "new",
		 .key_len = 3,
		 .target = ETCD_VALUE,
		 .value = "v1",
		 .value_len = 2},
	};
	struct etcd_op ops[2] = {
		{.type = ETCD_OP_PUT,
		 .key = "new",
		 .key_len = 3,
		 .value = "v2",
		 .value_len = 2},
		{.type = ETCD_OP_DELETE, .key = "gone", .key_len = 4},
	};
	struct etcd_txn t = {both, 2, ops, 2, NULL, 0};
	put("gone", "x");
	OK(etcd_txn(e, &t, &r));
	cr_assert(r.succeeded);
	cr_assert_eq(r.n_ops, 2);
	cr_assert_eq(r.ops[1].type, ETCD_OP_DELETE);
	cr_assert_eq(r.ops[1].deleted, 1);
	etcd_txn_result_free(&r);
	OK(etcd_txn(e, &t, &r)); /* now version 2, value v2 */
	cr_assert_not(r.succeeded);
	cr_assert_eq(r.n_ops, 0);
	etcd_txn_result_free(&r);
	both[0].n = 2;
	both[0].result = ETCD_GREATER; /* version > 2: no */
	both[1].value = "v2";
	OK(etcd_txn(e, &t, &r));
	cr_assert_not(r.succeeded);
	etcd_txn_result_free(&r);
	both[0].result = ETCD_LESS;
	both[0].n = 3; /* version < 3 and value == v2 */
	OK(etcd_txn(e, &t, &r));
	cr_assert(r.succeeded);
	etcd_txn_result_free(&r);
}

/* ---- leases
 * ------------------------------------------------------------------------ */

Test(etcd, a_lease_expires_unless_kept_alive, .init = start1, .fini = stop)
{
	int64_t gone, kept, ttl, t2;
	struct etcd_kv kv;
	uint64_t deadline;
	int rc = 0;

	OK(etcd_lease_grant(e, 2, &gone, &ttl));
	cr_assert_geq(ttl, 2);
	OK(etcd_lease_grant(e, 2, &kept, NULL));
	OK(etcd_put(e, "l/gone", 6, "x", 1, gone, NULL));
	OK(etcd_put(e, "l/kept", 6, "y", 1, kept, NULL));
	OK(etcd_get(e, "l/gone", 6, &kv, NULL));
	cr_assert_eq(kv.lease, gone);
	etcd_kv_free(&kv);
	deadline = now_ms() + 15000;
	while (now_ms() < deadline) {
		OK(etcd_lease_keepalive(e, kept, &t2));
		cr_assert_gt(t2, 0);
		rc = etcd_get(e, "l/gone", 6, &kv, NULL);
		if (rc == -ENOENT)
			break;
		OK(rc);
		etcd_kv_free(&kv);
		struct timespec ts = {0, 200 * 1000000};
		nanosleep(&ts, NULL); /* polling, between keepalives */
	}
	cr_assert_eq(rc, -ENOENT, "the lease's key outlived it");
	rc = etcd_lease_keepalive(e, gone, NULL);
	cr_assert_eq(rc, -ENOENT, "%s", rerr_what(rc));
	OK(etcd_get(e, "l/kept", 6, &kv, NULL));
	etcd_kv_free(&kv);
	OK(etcd_lease_revoke(e, kept));
	cr_assert_eq(etcd_get(e, "l/kept", 6, &kv, NULL), -ENOENT);
	rc = etcd_lease_revoke(e, kept);
	cr_assert_eq(rc, -ENOENT, "%s", rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "lease not found"), "%s",
			   rerr_what(rc));
}

/* ---- watches
 * ---------------------------------------------------------------------- */

struct seen {
	int type;
	char key[32];
	char value[32];
	int64_t rev;
};

/* Collect at least `n` events of `w` into s[], at most `cap`, within
   20 s: outages (-ENOTCONN) and quiet spells (-ETIMEDOUT) are waited
   out. Returns how many. */
static size_t collect_max(struct etcd_watch *w, struct seen *s, size_t n,
			  size_t cap)
{
	uint64_t deadline = now_ms() + 20000;
	size_t got = 0;

	while (got < n) {
		struct etcd_events evs;
		int rc = etcd_watch_next(w, 500, &evs);

		cr_assert(rc == 0 || rc == -ETIMEDOUT || rc == -ENOTCONN,
			  "watch: %d %s", rc, rerr_what(rc));
		cr_assert_lt(now_ms(), deadline, "%zu of %zu events", got, n);
		for (size_t i = 0; rc == 0 && i < evs.n; i++) {
			cr_assert_lt(got, cap, "more events than written");
			s[got].type = evs.ev[i].type;
			snprintf(s[got].key, sizeof(s[got].key), "%s",
				 evs.ev[i].kv.key);
			snprintf(s[got].value, sizeof(s[got].value), "%s",
				 evs.ev[i].kv.value);
			s[got].rev = evs.ev[i].kv.mod_revision;
			got++;
		}
		etcd_events_free(&evs);
	}
	return got;
}

/* Collect exactly `n` events. */
static void collect(struct etcd_watch *w, struct seen *s, size_t n)
{
	collect_max(w, s, n, n);
}

static struct etcd_watch *watch_prefix(const char *prefix, int64_t from)
{
	static char end[32];
	struct etcd_watch_req q = {.key = prefix,
				   .key_len = strlen(prefix),
				   .range_end = end,
				   .start_revision = from};
	struct etcd_watch *w;

	q.range_end_len = etcd_prefix_end(end, prefix, strlen(prefix));
	OK(etcd_watch_open(e, &q, &w));
	return w;
}

Test(etcd, a_watch_from_a_revision_sees_every_event_in_order, .init = start1,
     .fini = stop)
{
	int64_t rev[10];
	struct seen s[9];
	char k[16], v[16];
	struct etcd_watch *w;
	struct etcd_events none;

	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "w/%d", i % 4);
		snprintf(v, sizeof(v), "v%d", i);
		rev[i] = put(k, v);
	}
	put("x/outside", "no");
	w = watch_prefix("w/", rev[3]);
	OK(etcd_delete(e, "w/1", 3, NULL, 0, NULL, NULL));
	collect(w, s, 8);
	for (int i = 3; i < 10; i++) {
		snprintf(k, sizeof(k), "w/%d", i % 4);
		snprintf(v, sizeof(v), "v%d", i);
		cr_assert_eq(s[i - 3].type, ETCD_EVENT_PUT);
		cr_assert_str_eq(s[i - 3].key, k);
		cr_assert_str_eq(s[i - 3].value, v);
		cr_assert_eq(s[i - 3].rev, rev[i]);
	}
	cr_assert_eq(s[7].type, ETCD_EVENT_DELETE);
	cr_assert_str_eq(s[7].key, "w/1");
	cr_assert_eq(etcd_watch_revision(w), s[7].rev + 1);
	cr_assert_eq(etcd_watch_next(w, 200, &none), -ETIMEDOUT);
	cr_assert_eq(none.n, 0);
	etcd_watch_close(w);
}

/* The events of one txn share its revision: a watch returns each of them
   (the history of a store on etcd reads a change from all its keys). */
Test(etcd, a_watch_returns_every_event_of_one_txn, .init = start1, .fini = stop)
{
	struct etcd_op ops[3] = {
		{.type = ETCD_OP_PUT,
		 .key = "t/a",
		 .key_len = 3,
		 .value = "1",
		 .value_len = 1},
		{.type = ETCD_OP_PUT,
		 .key = "t/b",
		 .key_len = 3,
		 .value = "2",
		 .value_len = 1},
		{.type = ETCD_OP_DELETE, .key = "t/c", .key_len = 3},
	};
	struct etcd_txn t = {.success = ops, .n_success = 3};
	struct etcd_txn_result r = {0};
	int64_t first = put("t/c", "0");
	struct etcd_watch *w;
	struct seen s[5];

	OK(etcd_txn(e, &t, &r));
	cr_assert(r.succeeded);
	put("t/d", "after");
	w = watch_prefix("t/", first);
	collect_max(w, s, 5, 5);
	cr_assert_str_eq(s[4].key, "t/d");
	cr_assert_eq(s[0].rev, first);
	cr_assert_str_eq(s[1].key, "t/a");
	cr_assert_str_eq(s[2].key, "t/b");
	cr_assert_str_eq(s[3].key, "t/c");
	cr_assert_eq(s[3].type, ETCD_EVENT_DELETE);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(s[i].rev, r.revision, "event %d at %lld", i,
			     (long long)s[i].rev);
	etcd_txn_result_free(&r);
	etcd_watch_close(w);
}

Test(etcd, a_watch_resumes_after_its_member_restarts, .init = start1,
     .fini = stop)
{
	struct seen s[6];
	struct etcd_watch *w;
	char msg[512], k[16];

	w = watch_prefix("r/", 0);
	for (int i = 0; i < 3; i++) {
		snprintf(k, sizeof(k), "r/%d", i);
		put(k, "before");
	}
	collect(w, s, 3);
	cr_assert_eq(etcd_member_stop(&cl, 0), 0);
	cr_assert_eq(etcd_member_start(&cl, 0, msg, sizeof(msg)), 0, "%s", msg);
	for (int i = 3; i < 6; i++) {
		snprintf(k, sizeof(k), "r/%d", i);
		put(k, "after");
	}
	collect(w, s, 3); /* the three after, none of the first again */
	for (int i = 0; i < 3; i++) {
		snprintf(k, sizeof(k), "r/%d", i + 3);
		cr_assert_str_eq(s[i].key, k);
		cr_assert_str_eq(s[i].value, "after");
		cr_assert(i == 0 || s[i].rev > s[i - 1].rev);
	}
	etcd_watch_close(w);
}

Test(etcd, a_watch_from_a_compacted_revision_is_cancelled_and_says_so,
     .init = start1, .fini = stop)
{
	struct etcd_range_result r;
	struct etcd_events evs;
	struct etcd_watch *w;
	int64_t first = put("c/a", "1"), last;
	int rc;

	put("c/a", "2");
	last = put("c/a", "3");
	OK(etcd_compact(e, last));
	struct etcd_range q = {.key = "c/a", .key_len = 3, .revision = first};
	rc = etcd_range(e, &q, &r);
	cr_assert_eq(rc, -ERANGE, "%s", rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "compacted"), "%s",
			   rerr_what(rc));
	w = watch_prefix("c/", first);
	rc = etcd_watch_next(w, 5000, &evs);
	cr_assert_eq(rc, -ECANCELED, "%d %s", rc, rerr_what(rc));
	cr_assert_eq(etcd_watch_compact_revision(w), last);
	cr_assert_not_null(strstr(rerr_what(rc), "compacted"), "%s",
			   rerr_what(rc));
	cr_assert_eq(etcd_watch_next(w, 100, &evs), -ECANCELED);
	etcd_watch_close(w);
	w = watch_prefix("c/", last); /* from what is kept: fine */
	OK(etcd_watch_next(w, 5000, &evs));
	cr_assert_eq(evs.n, 1);
	cr_assert_str_eq(evs.ev[0].kv.value, "3");
	etcd_events_free(&evs);
	etcd_watch_close(w);
}

/* ---- members: failover, quorum, unreachable
 * ------------------------------------------ */

Test(etcd, requests_and_watches_fail_over_when_a_member_stops, .init = start3,
     .fini = stop)
{
	struct etcd_watch *w;
	struct etcd_kv kv;
	struct seen s[3];
	char msg[512];
	int rc;

	put("f/a", "1");
	cr_assert_str_eq(etcd_current_endpoint(e), cl.endpoints[0]);
	w = watch_prefix("f/", 0);
	cr_assert_eq(etcd_member_stop(&cl, 0), 0);
	put("f/b", "2"); /* member 0 is gone: another one answers */
	cr_assert_str_neq(etcd_current_endpoint(e), cl.endpoints[0]);
	OK(etcd_get(e, "f/a", 3, &kv, NULL));
	etcd_kv_free(&kv);
	collect(w, s, 1);
	cr_assert_str_eq(s[0].key, "f/b");

	/* two of three stopped: no quorum, writes fail and say so */
	cr_assert_eq(etcd_member_stop(&cl, 1), 0);
	rc = etcd_put(e, "f/c", 3, "3", 1, 0, NULL);
	cr_assert(rc == -ETIMEDOUT || rc == -EIO, "%d %s", rc, rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "etcd put f/c"), "%s",
			   rerr_what(rc));
	cr_assert_eq(etcd_member_start(&cl, 0, msg, sizeof(msg)), 0, "%s", msg);
	put("f/d", "4"); /* quorum again */
	/* the put of f/c timed out, its outcome unknown: etcd may have
	   committed it when the quorum came back; it comes before f/d */
	if (collect_max(w, s, 1, 2) == 1 && !strcmp(s[0].key, "f/c"))
		collect(w, s + 1, 1);
	else if (strcmp(s[0].key, "f/c"))
		s[1] = s[0];
	cr_assert_str_eq(s[1].key, "f/d");
	etcd_watch_close(w);
}

Test(etcd, no_member_reachable_is_enotconn_naming_each_member)
{
	char a[32], b[32];
	const char *eps[2] = {a, b};
	struct etcd_watch_req q = {.key = "k", .key_len = 1};
	struct etcd_watch *w;
	struct etcd_kv kv;
	int rc;

	snprintf(a, sizeof(a), "127.0.0.1:%d", etcd_free_port());
	snprintf(b, sizeof(b), "127.0.0.1:%d", etcd_free_port());
	OK(etcd_open(eps, 2, NULL, &e));
	rc = etcd_put(e, "k", 1, "v", 1, 0, NULL);
	cr_assert_eq(rc, -ENOTCONN, "%d %s", rc, rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "etcd put k: no member "
						 "reachable: "),
			   "%s", rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), a), "%s", rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), b), "%s", rerr_what(rc));
	cr_assert_eq(etcd_get(e, "k", 1, &kv, NULL), -ENOTCONN);
	rc = etcd_watch_open(e, &q, &w);
	cr_assert_eq(rc, -ENOTCONN, "%d %s", rc, rerr_what(rc));
	etcd_close(e);
	e = NULL;
}

Test(etcd, a_read_moves_on_from_a_member_that_hangs_a_write_says_unknown,
     .init = start3, .fini = stop)
{
	struct etcd_kv kv;
	uint64_t t0;
	int rc;

	put("h/a", "1");
	cr_assert_str_eq(etcd_current_endpoint(e), cl.endpoints[0]);
	cr_assert_eq(etcd_member_freeze(&cl, 0, 1), 0);
	t0 = now_ms();
	rc = etcd_put(e, "h/b", 3, "2", 1, 0, NULL); /* sent, no answer */
	cr_assert_eq(rc, -ETIMEDOUT, "%d %s", rc, rerr_what(rc));
	cr_assert_not_null(strstr(rerr_what(rc), "outcome is unknown"), "%s",
			   rerr_what(rc));
	cr_assert_geq(now_ms() - t0, 2900);   /* the request timeout */
	OK(etcd_get(e, "h/a", 3, &kv, NULL)); /* the next member answers */
	cr_assert_str_eq(kv.value, "1");
	etcd_kv_free(&kv);
	cr_assert_str_neq(etcd_current_endpoint(e), cl.endpoints[0]);
	put("h/c", "3"); /* and takes the writes from now on */
	cr_assert_eq(etcd_member_freeze(&cl, 0, 0), 0);
}

/* ---- many threads, many events
 * ---------------------------------------------------- */

#define THREADS 8
#define PUTS 50

static void *putter(void *arg)
{
	intptr_t id = (intptr_t)arg;
	char k[32], v[32];

	for (int i = 0; i < PUTS; i++) {
		snprintf(k, sizeof(k), "t/%ld/%d", (long)id, i % 5);
		snprintf(v, sizeof(v), "%d", i);
		if (etcd_put(e, k, strlen(k), v, strlen(v), 0, NULL))
			return (void *)1;
	}
	return NULL;
}

Test(etcd, one_client_serves_many_threads_and_a_watch_sees_all_in_order,
     .init = start1, .fini = stop)
{
	static struct seen s[THREADS * PUTS];
	struct etcd_range_result r;
	struct etcd_watch *w;
	pthread_t th[THREADS];
	char end[8];
	void *ret;

	w = watch_prefix("t/", 0);
	for (intptr_t i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, putter, (void *)i);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], &ret);
		cr_assert_null(ret, "thread %d: a put failed", i);
	}
	collect(w, s, THREADS * PUTS);
	for (int i = 1; i < THREADS * PUTS; i++)
		cr_assert_eq(s[i].rev, s[i - 1].rev + 1, "event %d", i);
	etcd_watch_close(w);
	struct etcd_range q = {.key = "t/", .key_len = 2, .range_end = end};
	q.range_end_len = etcd_prefix_end(end, "t/", 2);
	OK(etcd_range(e, &q, &r));
	cr_assert_eq(r.n, THREADS * 5);
	for (size_t i = 0; i < r.n; i++) {
		cr_assert_eq(r.kvs[i].version, PUTS / 5);
		cr_assert_geq(atoi(r.kvs[i].value), PUTS - 5, "%s = %s",
			      r.kvs[i].key, r.kvs[i].value);
	}
	etcd_range_result_free(&r);
}

Test(etcd, a_watch_reassembles_large_events_split_across_reads, .init = start1,
     .fini = stop)
{
	static char big[64 << 10];
	struct etcd_watch *w;
	size_t got = 0;

	w = watch_prefix("big/", 0);
	for (int i = 0; i < 20; i++) {
		memset(big, 'a' + i, sizeof(big));
		OK(etcd_put(e, "big/x", 5, big, sizeof(big), 0, NULL));
	}
	while (got < 20) {
		struct etcd_events evs;

		OK(etcd_watch_next(w, 10000, &evs));
		for (size_t i = 0; i < evs.n; i++, got++) {
			cr_assert_eq(evs.ev[i].kv.value_len, sizeof(big));
			cr_assert_eq(evs.ev[i].kv.value[0], 'a' + (int)got);
			cr_assert_eq(evs.ev[i].kv.value[sizeof(big) - 1],
				     'a' + (int)got);
			cr_assert_eq(evs.ev[i].kv.version, (int64_t)got + 1);
		}
		etcd_events_free(&evs);
	}
	etcd_watch_close(w);
}
