/*
 * test_be_etcd.c - a store on etcd (store/be_etcd*.c) through the store
 * API, against a real one-member etcd started per test on loopback
 * (etcd_helpers.c, always stopped): versions, CAS, create-only, delete
 * and re-create, rename, xattrs and metadata, EFBIG, namespaces, ID@N
 * without history, a reopen that sees everything, another writer
 * (ESTALE), and etcd gone (EIO, no hang).
 */
#include "err.h"
#include "etcd.h"
#include "etcd_helpers.h"
#include "store.h"
#include "store_history.h"
#include "txn.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct etcd_cluster cl;
static char uri[512];
static struct store *s;

#define OK(call)                                                               \
	do {                                                                   \
		int rc_ = (call);                                              \
		cr_assert_eq(rc_, 0, "%s: %s", #call, rerr_what(rc_));         \
	} while (0)

static struct store *open_uri(bool create, int *rc)
{
	struct store_opts o = {.path = uri, .create = create};
	struct store *t = NULL;

	*rc = store_open(&t, &o);
	return t;
}

static void reopen(void)
{
	int rc;

	OK(store_close(s));
	s = open_uri(false, &rc);
	cr_assert_eq(rc, 0, "reopen: %s", rerr_what(rc));
}

static void start(void)
{
	char msg[512];
	int rc;

	cr_assert_eq(etcd_cluster_start(&cl, 1, NULL, msg, sizeof(msg)), 0,
		     "etcd: %s", msg);
	snprintf(uri, sizeof(uri), "etcd://%s/recfs/t", cl.uri_members);
	s = open_uri(true, &rc);
	cr_assert_eq(rc, 0, "open: %s", rerr_what(rc));
}

static void stop(void)
{
	store_close(s);
	s = NULL;
	etcd_cluster_stop(&cl);
}

TestSuite(be_etcd, .init = start, .fini = stop, .timeout = 120);

static uint64_t put(const char *id, const char *text, enum store_cond_kind k,
		    uint64_t v, int want)
{
	struct store_commit_args a = {.cond = {k, v}, .mode = -1};
	struct store_result res = {0};
	int rc = store_put(s, id, text, strlen(text), &a, &res);

	cr_assert_eq(rc, want, "put %s: %d (%s), want %d", id, rc,
		     rc ? rerr_what(rc) : "ok", want);
	return rc ? res.current : res.version;
}

static void expect(const char *id, const char *text, uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t len = 0;

	OK(store_get(s, id, &buf, &len, &m));
	cr_assert_eq(len, strlen(text), "%s: %zu bytes", id, len);
	cr_assert(memcmp(buf, text, len) == 0, "%s: %.*s", id, (int)len,
		  (char *)buf);
	cr_assert_eq(m.version, version, "%s: version %llu, want %llu", id,
		     (unsigned long long)m.version,
		     (unsigned long long)version);
	free(buf);
}

static void expect_absent(const char *id)
{
	struct store_meta m;

	cr_assert_eq(store_stat(s, id, &m, false), -ENOENT, "%s is there", id);
}

Test(be_etcd, versions_and_revisions)
{
	uint64_t r0 = store_revision(s), r1;
	struct store_meta m;

	cr_assert_eq(put("a", "one", STORE_COND_ANY, 0, 0), 1);
	r1 = store_revision(s);
	cr_assert_gt(r1, r0);
	cr_assert_eq(put("a", "two", STORE_COND_ANY, 0, 0), 2);
	cr_assert_gt(store_revision(s), r1);
	expect("a", "two", 2);
	OK(store_stat(s, "a", &m, true));
	cr_assert_eq(m.revision, store_revision(s));
	cr_assert_eq(m.size, 3);
}

Test(be_etcd, cas_and_create_only)
{
	struct store_meta m;

	cr_assert_eq(put("c", "v1", STORE_COND_CREATE, 0, 0), 1);
	cr_assert_eq(put("c", "x", STORE_COND_CREATE, 0, -ESTALE), 1);
	cr_assert_eq(put("c", "v2", STORE_COND_IF_VERSION, 1, 0), 2);
	/* the second writer of version 1 loses, and learns the current */
	cr_assert_eq(put("c", "late", STORE_COND_IF_VERSION, 1, -ESTALE), 2);
	expect("c", "v2", 2);
	/* a no-op commit makes no version */
	cr_assert_eq(put("c", "v2", STORE_COND_ANY, 0, 0), 2);
	OK(store_stat(s, "c", &m, false));
	cr_assert_eq(m.version, 2);
}

Test(be_etcd, delete_recreate_continues_versions)
{
	struct store_result res;

	put("d", "1", STORE_COND_ANY, 0, 0);
	put("d", "2", STORE_COND_ANY, 0, 0);
	OK(store_delete(s, "d", NULL, NULL, &res));
	expect_absent("d");
	cr_assert_eq(store_delete(s, "d", NULL, NULL, &res), -ENOENT);
	cr_assert_eq(put("d", "3", STORE_COND_CREATE, 0, 0), 3);
	reopen();
	expect("d", "3", 3);
	OK(store_delete(s, "d", NULL, NULL, &res));
	reopen();
	expect_absent("d");
	cr_assert_eq(put("d", "4", STORE_COND_ANY, 0, 0), 4);
}

Test(be_etcd, rename_keeps_content_and_xattrs)
{
	struct store_result res;
	char v[16] = {0};

	put("from", "content", STORE_COND_ANY, 0, 0);
	OK(store_xattr_set(s, "from", "user.k", "val", 3, 0));
	put("to", "old", STORE_COND_ANY, 0, 0);
	OK(store_rename(s, "from", "to", NULL, NULL, &res));
	cr_assert_eq(res.version, 2);
	expect("to", "content", 2);
	expect_absent("from");
	cr_assert_eq(store_xattr_get(s, "to", "user.k", v, sizeof(v)), 3);
	cr_assert_str_eq(v, "val");
	reopen();
	expect("to", "content", 2);
	expect_absent("from");
	/* the source's versions go on after its delete by the rename */
	cr_assert_eq(put("from", "again", STORE_COND_ANY, 0, 0), 2);
}

Test(be_etcd, xattrs_and_metadata)
{
	struct timespec t = {.tv_sec = 1000000, .tv_nsec = 5};
	struct store_meta m;
	char list[64], v[16] = {0};

	put("x", "data", STORE_COND_ANY, 0, 0);
	OK(store_xattr_set(s, "x", "user.a", "1", 1, 0));
	OK(store_xattr_set(s, "x", "user.b", "22", 2, 0));
	OK(store_xattr_remove(s, "x", "user.a"));
	OK(store_set_meta(s, "x", &t, 0600));
	OK(store_set_owner(s, "x", 1234, 5678));
	reopen();
	cr_assert_eq(store_xattr_get(s, "x", "user.a", v, sizeof(v)), -ENODATA);
	cr_assert_eq(store_xattr_get(s, "x", "user.b", v, sizeof(v)), 2);
	cr_assert_eq(store_xattr_list(s, "x", list, sizeof(list)), 7);
	OK(store_stat(s, "x", &m, false));
	cr_assert_eq(m.version, 1);
	cr_assert_eq(m.mode, 0600);
	cr_assert_eq(m.uid, 1234);
	cr_assert_eq(m.gid, 5678);
	cr_assert_eq(m.mtime.tv_sec, t.tv_sec);
	cr_assert_eq(m.mtime.tv_nsec, t.tv_nsec);
	/* the version's revision is the put's, not the later changes' */
	cr_assert_lt(m.revision, store_revision(s));
	/* a new version keeps them */
	cr_assert_eq(put("x", "more", STORE_COND_ANY, 0, 0), 2);
	cr_assert_eq(store_xattr_get(s, "x", "user.b", v, sizeof(v)), 2);
}

Test(be_etcd, efbig_over_one_mib)
{
	size_t n = 1u << 20;
	char *big = malloc(n + 2);
	struct store_result res;
	void *buf = NULL;
	size_t len = 0;

	cr_assert(big);
	memset(big, 'z', n + 1);
	cr_assert_eq(store_put(s, "big", big, n + 1, NULL, &res), -EFBIG);
	OK(store_put(s, "big", big, n, NULL, &res));
	reopen();
	OK(store_get(s, "big", &buf, &len, NULL));
	cr_assert_eq(len, n);
	cr_assert(memcmp(buf, big, n) == 0);
	free(buf);
	free(big);
}

Test(be_etcd, append_rebases)
{
	struct store_commit_args a = {.cond = {STORE_COND_APPEND, 0},
				      .mode = -1};
	struct store_result res;

	put("log", "ab", STORE_COND_ANY, 0, 0);
	OK(store_put(s, "log", "cd", 2, &a, &res));
	cr_assert_eq(res.version, 2);
	expect("log", "abcd", 2);
}

static int count_cb(void *arg, const char *name, bool is_ns)
{
	char *out = arg;

	strcat(out, name);
	strcat(out, is_ns ? "/ " : " ");
	return 0;
}

Test(be_etcd, namespaces)
{
	struct store_result res;
	char names[256] = "";
	struct stat st;

	cr_assert_eq(put("ns/x", "1", STORE_COND_ANY, 0, -ENOENT), 0);
	OK(store_mkdir(s, "ns", 0750));
	cr_assert_eq(store_mkdir(s, "ns", 0750), -EEXIST);
	put("ns/x", "1", STORE_COND_ANY, 0, 0);
	OK(store_mkdir(s, "ns/sub", 0700));
	put("top", "t", STORE_COND_ANY, 0, 0);
	OK(store_list(s, "", count_cb, names));
	cr_assert_str_eq(names, "ns/ top ");
	names[0] = '\0';
	OK(store_list(s, "ns", count_cb, names));
	cr_assert_str_eq(names, "sub/ x ");
	cr_assert_eq(store_rmdir(s, "ns"), -ENOTEMPTY);
	OK(store_rmdir(s, "ns/sub"));
	OK(store_delete(s, "ns/x", NULL, NULL, &res));
	reopen();
	OK(store_ns_stat(s, "ns", &st));
	cr_assert_eq(st.st_mode & 07777, 0750);
	names[0] = '\0';
	OK(store_list(s, "ns", count_cb, names));
	cr_assert_str_eq(names, "");
	OK(store_rename_ns(s, "ns", "nt"));
	cr_assert_eq(store_ns_stat(s, "ns", &st), -ENOENT);
	OK(store_rmdir(s, "nt"));
	cr_assert_eq(store_ns_stat(s, "nt", &st), -ENOENT);
}

Test(be_etcd, old_versions_read_without_history)
{
	struct store_version v;
	void *buf = NULL;
	size_t len = 0;

	put("h", "first", STORE_COND_ANY, 0, 0);
	put("h", "second", STORE_COND_ANY, 0, 0);
	OK(store_history_get(s, "h", 1, &buf, &len, &v));
	cr_assert_eq(len, 5);
	cr_assert(memcmp(buf, "first", 5) == 0);
	cr_assert_eq(v.version, 1);
	cr_assert_gt(v.revision, 0);
	free(buf);
	cr_assert_eq(store_history_get(s, "h", 3, &buf, &len, NULL), -ENOENT);
}

/* Two stores on one prefix (what two hosts will be): neither overwrites
   the other blindly; the loser gets ESTALE, reads the record again, and
   its next try goes on from the winner's version. */
Test(be_etcd, another_writer_is_estale_then_read_again)
{
	struct store *mine = s, *other;
	struct store_result res;
	int rc;

	put("w", "mine", STORE_COND_ANY, 0, 0);
	other = open_uri(false, &rc);
	cr_assert_eq(rc, 0, "%s", rerr_what(rc));
	OK(store_put(other, "w", "theirs", 6, NULL, &res));
	cr_assert_eq(res.version, 2);
	OK(store_xattr_set(other, "w", "user.k", "v", 1, 0));
	cr_assert_eq(put("w", "lost?", STORE_COND_ANY, 0, -ESTALE), 0);
	expect("w", "theirs", 2);
	cr_assert_eq(store_xattr_get(s, "w", "user.k", NULL, 0), 1);
	cr_assert_eq(put("w", "mine again", STORE_COND_ANY, 0, 0), 3);
	/* the other one learns the same way; deletes too */
	s = other;
	cr_assert_eq(store_delete(s, "w", NULL, NULL, &res), -ESTALE);
	expect("w", "mine again", 3);
	OK(store_delete(s, "w", NULL, NULL, &res));
	s = mine;
	cr_assert_eq(put("w", "x", STORE_COND_IF_VERSION, 3, -ESTALE), 0);
	expect_absent("w");
	cr_assert_eq(put("w", "back", STORE_COND_CREATE, 0, 0), 4);
	store_close(other);
}

Test(be_etcd, open_needs_a_store)
{
	struct etcd *e = NULL;
	int rc;

	snprintf(uri, sizeof(uri), "etcd://%s/none", cl.uri_members);
	cr_assert_null(open_uri(false, &rc));
	cr_assert_eq(rc, -ENOENT);
	OK(etcd_open(cl.endpoints, 1, NULL, &e));
	OK(etcd_put(e, "other/k", 7, "v", 1, 0, NULL));
	etcd_close(e);
	snprintf(uri, sizeof(uri), "etcd://%s/other", cl.uri_members);
	cr_assert_null(open_uri(true, &rc));
	cr_assert_eq(rc, -ENOTEMPTY, "%d %s", rc, rerr_what(rc));
}

/* etcd stops: commits fail with EIO at once (no hang); what this store
   wrote or read stays readable from its cache; what it never read fails
   with EIO; all works again once etcd is back. */
Test(be_etcd, etcd_gone_is_eio_not_a_hang)
{
	struct timespec t0, t1;
	struct store *fresh;
	void *buf = NULL;
	size_t len;
	int rc;

	put("g", "kept", STORE_COND_ANY, 0, 0);
	fresh = open_uri(false, &rc); /* its cache is empty */
	cr_assert_eq(rc, 0, "%s", rerr_what(rc));
	cr_assert_eq(etcd_member_stop(&cl, 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	put("g", "lost", STORE_COND_ANY, 0, -EIO);
	put("new", "lost", STORE_COND_ANY, 0, -EIO);
	expect("g", "kept", 1);
	cr_assert_eq(store_get(fresh, "g", &buf, &len, NULL), -EIO);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 30);
	cr_assert_eq(etcd_member_start(&cl, 0, NULL, 0), 0);
	OK(store_get(fresh, "g", &buf, &len, NULL));
	cr_assert_eq(len, 4);
	free(buf);
	store_close(fresh);
	expect("g", "kept", 1);
	expect_absent("new");
	cr_assert_eq(put("g", "back", STORE_COND_ANY, 0, 0), 2);
}

Test(be_etcd, txn_is_one_etcd_txn)
{
	struct store_txn *t = NULL;
	struct store_txn_result tr;
	struct store_cond stale = {STORE_COND_IF_VERSION, 1};
	uint64_t rev;
	char id[16];

	put("t1", "old", STORE_COND_ANY, 0, 0);
	put("t2", "gone", STORE_COND_ANY, 0, 0);
	OK(store_txn_new(s, &t));
	OK(store_txn_put(t, "t1", "new", 3, NULL));
	OK(store_txn_put(t, "t3", "three", 5, NULL));
	OK(store_txn_delete(t, "t2", NULL));
	OK(store_txn_commit(t, NULL, &tr));
	store_txn_free(t);
	rev = store_revision(s);
	reopen();
	expect("t1", "new", 2);
	expect("t3", "three", 1);
	expect_absent("t2");
	cr_assert_eq(store_revision(s), rev);
	/* a stale part fails the whole txn: nothing of it is written */
	OK(store_txn_new(s, &t));
	OK(store_txn_put(t, "t3", "x", 1, NULL));
	OK(store_txn_delete(t, "t1", &stale));
	cr_assert_eq(store_txn_commit(t, NULL, &tr), -ESTALE);
	store_txn_free(t);
	expect("t3", "three", 1);
	/* more parts than one etcd txn takes: refused, naming the limit */
	OK(store_txn_new(s, &t));
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof(id), "m%d", i);
		OK(store_txn_put(t, id, "m", 1, NULL));
	}
	cr_assert_eq(store_txn_commit(t, NULL, &tr), -E2BIG);
	cr_assert(strstr(rerr_what(-E2BIG), "128"), "%s", rerr_what(-E2BIG));
	store_txn_free(t);
	expect_absent("m0");
}

static int count_one(void *arg, const char *name, bool is_ns)
{
	(*(size_t *)arg)++;
	return 0;
}

/* More entries than one range page (BE_ETCD_PAGE, 1000): listed and
   loaded page by page. */
Test(be_etcd, pages_of_a_big_namespace)
{
	struct store_txn *t = NULL;
	size_t n = 0;
	uint64_t live = 0, tomb = 0;
	char id[32];

	OK(store_mkdir(s, "big", 0755));
	for (int i = 0; i < 1100; i += 40) {
		OK(store_txn_new(s, &t));
		for (int j = i; j < i + 40 && j < 1100; j++) {
			snprintf(id, sizeof(id), "big/r%04d", j);
			OK(store_txn_put(t, id, id, strlen(id), NULL));
		}
		OK(store_txn_commit(t, NULL, NULL));
		store_txn_free(t);
	}
	OK(store_list(s, "big", count_one, &n));
	cr_assert_eq(n, 1100);
	reopen();
	store_counts(s, &live, &tomb);
	cr_assert_eq(live, 1100);
	n = 0;
	OK(store_list(s, "big", count_one, &n));
	cr_assert_eq(n, 1100);
	expect("big/r1099", "big/r1099", 1);
	cr_assert_eq(store_list(s, "nosuch", count_one, &n), -ENOENT);
}
