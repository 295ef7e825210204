/*
 * test_store_cas.c - the record store (store/): versions and CAS: create,
 * append, delete, rename and their conditions, on both backends. The fixture
 * and helpers the test_store_*.c files share are in store_helpers.h.
 */
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

/* ---- versions and CAS --------------------------------------------------- */

static void versions_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;
	uint64_t rev = store_revision(s);

	for (uint64_t v = 1; v <= 3; v++) {
		char text[32];

		snprintf(text, sizeof(text), "content %llu",
			 (unsigned long long)v);
		cr_assert_eq(put(s, "a", text, &r), 0);
		cr_assert_eq(r.version, v, "%s: version %llu, expected %llu",
			     bname(b), (unsigned long long)r.version,
			     (unsigned long long)v);
		cr_assert_not(r.noop);
		cr_assert_eq(r.revision, rev + v, "%s: revision", bname(b));
		expect(s, "a", text, v);
	}
	cr_assert_eq(store_revision(s), rev + 3);
	cr_assert_eq(version_of(s, "a"), 3);
	close_store(s);
}

Test(store, versions_start_at_one_and_go_up_by_one)
{
	for (size_t i = 0; i < 2; i++)
		versions_body(backends[i]);
}

static void noop_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r1, r2;
	uint64_t rev;

	cr_assert_eq(put(s, "a", "same", &r1), 0);
	rev = store_revision(s);
	cr_assert_eq(put(s, "a", "same", &r2), 0);
	cr_assert(r2.noop, "%s: identical content made a version", bname(b));
	cr_assert_eq(r2.version, r1.version);
	cr_assert_eq(r2.revision, r1.revision);
	cr_assert_eq(store_revision(s), rev, "%s: revision moved", bname(b));
	expect(s, "a", "same", 1);
	/* different content is not a no-op */
	cr_assert_eq(put(s, "a", "other", &r2), 0);
	cr_assert_not(r2.noop);
	cr_assert_eq(r2.version, 2);
	close_store(s);
}

Test(store, identical_content_is_a_noop)
{
	for (size_t i = 0; i < 2; i++)
		noop_body(backends[i]);
}

static void if_version_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;

	must_put(s, "a", "one");
	must_put(s, "a", "two");
	cr_assert_eq(put_if(s, "a", "three", STORE_COND_IF_VERSION, 2, &r), 0);
	cr_assert_eq(r.version, 3);
	expect(s, "a", "three", 3);

	cr_assert_eq(put_if(s, "a", "stale", STORE_COND_IF_VERSION, 2, &r),
		     -ESTALE, "%s: stale CAS went through", bname(b));
	cr_assert_eq(r.current, 3, "%s: res.current", bname(b));
	expect(s, "a", "three", 3);

	/* a record that does not exist is at "version 0" */
	cr_assert_eq(put_if(s, "nope", "x", STORE_COND_IF_VERSION, 1, &r),
		     -ESTALE);
	cr_assert_eq(r.current, 0);
	expect_absent(s, "nope");
	close_store(s);
}

Test(store, if_version_commits_at_current_and_refuses_stale)
{
	for (size_t i = 0; i < 2; i++)
		if_version_body(backends[i]);
}

static void create_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;

	cr_assert_eq(put_if(s, "c", "first", STORE_COND_CREATE, 0, &r), 0);
	cr_assert_eq(r.version, 1);
	cr_assert_eq(put_if(s, "c", "second", STORE_COND_CREATE, 0, &r),
		     -ESTALE, "%s: second create", bname(b));
	cr_assert_eq(r.current, 1);
	expect(s, "c", "first", 1);
	/* after a delete, create-only works again and continues the count */
	cr_assert_eq(store_delete(s, "c", NULL, NULL, NULL), 0);
	cr_assert_eq(put_if(s, "c", "again", STORE_COND_CREATE, 0, &r), 0);
	cr_assert_eq(r.version, 2);
	close_store(s);
}

Test(store, create_only_succeeds_once_then_returns_estale)
{
	for (size_t i = 0; i < 2; i++)
		create_body(backends[i]);
}

static void append_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};
	struct store_stage *st = NULL;
	struct store_result r;

	cr_assert_eq(store_put(s, "log", "a;", 2, &app, &r), 0);
	cr_assert_eq(r.version, 1, "%s: append to nothing", bname(b));
	expect(s, "log", "a;", 1);
	cr_assert_eq(store_put(s, "log", "b;", 2, &app, &r), 0);
	expect(s, "log", "a;b;", 2);

	/* the stage is added to what is current at commit time, not at
	   the time it was written */
	cr_assert_eq(store_stage_new(s, &st), 0);
	cr_assert_eq(pwrite(store_stage_fd(st), "c;", 2, 0), 2);
	must_put(s, "log", "replaced;");
	cr_assert_eq(store_commit(s, "log", st, &app, &r), 0);
	store_stage_free(st);
	cr_assert_eq(r.version, 4);
	expect(s, "log", "replaced;c;", 4);
	close_store(s);
}

/* Commit what `steps` make of a stage (written with store_stage_write and
   store_stage_truncate) as `id`; the record's hash must be the content's,
   `want` (whether the running hash was used or given up). */
struct stage_step {
	const char *data; /* NULL: truncate to `off` */
	uint64_t off;
};

static void stage_case(struct store *s, const char *id,
		       const struct stage_step *steps, size_t n,
		       const char *want, size_t want_len, bool noop)
{
	struct store_stage *st = NULL;
	struct store_result r;
	struct store_meta m;
	uint8_t hash[16];

	cr_assert_eq(store_stage_new(s, &st), 0);
	for (size_t i = 0; i < n; i++) {
		if (!steps[i].data) {
			cr_assert_eq(store_stage_truncate(st, steps[i].off), 0);
			continue;
		}
		cr_assert_eq(store_stage_write(st, steps[i].data,
					       strlen(steps[i].data),
					       steps[i].off),
			     (ssize_t)strlen(steps[i].data));
	}
	cr_assert_eq(store_commit(s, id, st, NULL, &r), 0, "%s", id);
	store_stage_free(st);
	cr_expect_eq(r.noop, noop, "%s: noop %d", id, r.noop);
	expect_buf(s, id, want, want_len, 0);
	cr_assert_eq(store_stat(s, id, &m, false), 0);
	XXH128_canonicalFromHash((XXH128_canonical_t *)hash,
				 XXH3_128bits(want, want_len));
	cr_expect(memcmp(m.hash, hash, 16) == 0, "%s: wrong hash", id);
}

static void stage_hash_body(enum store_backend b)
{
	struct store *s = open_store(b);
	const struct stage_step in_order[] = {{"abc", 0}, {"def", 3}};
	const struct stage_step overwrite[] = {{"abcdef", 0}, {"X", 2}};
	const struct stage_step gap[] = {{"def", 3}, {"abc", 0}};
	const struct stage_step shrink[] = {{"abcdef", 0}, {NULL, 4}};
	const struct stage_step grow[] = {{"ab", 0}, {NULL, 4}};
	const struct stage_step restart[] = {
		{"old content", 0}, {NULL, 0}, {"abc", 0}, {"def", 3}};
	const struct stage_step same_size[] = {{"abcdef", 0}, {NULL, 6}};
	/* as many bytes written as the size, but not in order */
	const struct stage_step rewrite_grow[] = {
		{"abcd", 0}, {"XY", 2}, {NULL, 6}};
	const struct stage_step empty[] = {{NULL, 0}};

	stage_case(s, "in-order", in_order, 2, "abcdef", sizeof("abcdef") - 1,
		   false);
	stage_case(s, "overwrite", overwrite, 2, "abXdef", sizeof("abXdef") - 1,
		   false);
	stage_case(s, "gap", gap, 2, "abcdef", sizeof("abcdef") - 1, false);
	stage_case(s, "shrink", shrink, 2, "abcd", sizeof("abcd") - 1, false);
	stage_case(s, "grow", grow, 2, "ab\0\0", sizeof("ab\0\0") - 1, false);
	stage_case(s, "restart", restart, 4, "abcdef", sizeof("abcdef") - 1,
		   false);
	stage_case(s, "same-size", same_size, 2, "abcdef", sizeof("abcdef") - 1,
		   false);
	stage_case(s, "rewrite-grow", rewrite_grow, 3, "abXY\0\0",
		   sizeof("abXY\0\0") - 1, false);
	stage_case(s, "empty", empty, 1, "", sizeof("") - 1, false);
	stage_case(s, "none", NULL, 0, "", sizeof("") - 1, false);
	/* the same content again, hashed as it came: no new version */
	stage_case(s, "in-order", in_order, 2, "abcdef", sizeof("abcdef") - 1,
		   true);
	stage_case(s, "in-order", restart, 4, "abcdef", sizeof("abcdef") - 1,
		   true);
	stage_case(s, "empty", NULL, 0, "", sizeof("") - 1, true);
	close_store(s);
}

Test(store, stage_written_in_order_is_hashed_as_it_comes)
{
	for (size_t i = 0; i < 2; i++)
		stage_hash_body(backends[i]);
}

Test(store, append_adds_to_whatever_is_current)
{
	for (size_t i = 0; i < 2; i++)
		append_body(backends[i]);
}

static void delete_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;
	uint64_t last;

	must_put(s, "d", "1");
	must_put(s, "d", "2");
	must_put(s, "d", "3");
	cr_assert_eq(store_delete(s, "d", NULL, NULL, &r), 0);
	expect_absent(s, "d");
	cr_assert_eq(store_last_version(s, "d", &last), 0);
	cr_assert_eq(last, 3);
	cr_assert_eq(store_delete(s, "d", NULL, NULL, &r), -ENOENT);
	cr_assert_eq(put(s, "d", "again", &r), 0);
	cr_assert_eq(r.version, 4, "%s: re-create gave %llu", bname(b),
		     (unsigned long long)r.version);
	expect(s, "d", "again", 4);
	close_store(s);
}

Test(store, delete_then_recreate_gives_last_plus_one)
{
	for (size_t i = 0; i < 2; i++)
		delete_body(backends[i]);
}

Test(store, delete_then_recreate_across_reopen_gives_last_plus_one)
{
	struct store *s = open_store(STORE_BACKEND_FILE);
	struct store_result r;
	uint64_t last;

	must_put(s, "d", "1");
	must_put(s, "d", "2");
	cr_assert_eq(store_delete(s, "d", NULL, NULL, &r), 0);
	close_store(s);

	s = open_store(STORE_BACKEND_FILE);
	expect_absent(s, "d");
	cr_assert_eq(store_last_version(s, "d", &last), 0);
	cr_assert_eq(last, 2);
	cr_assert_eq(put(s, "d", "again", &r), 0);
	cr_assert_eq(r.version, 3);
	close_store(s);

	s = open_store(STORE_BACKEND_FILE);
	expect(s, "d", "again", 3);
	close_store(s);
}

/* A read-only open (recfsctl stats, show) reports the store revision,
   whether it comes from the snapshot or from replaying the journal. */
Test(store, read_only_open_reports_the_store_revision)
{
	struct store_opts ro = {.path = spath, .read_only = true};
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, "a", "1");
	must_put(s, "b", "1");
	must_put(s, "a", "2");
	close_store(s); /* a checkpoint: the snapshot is at revision 3 */
	s = open_with(&ro);
	cr_assert_eq(store_revision(s), 3);
	close_store(s);
	/* a child commits revision 4 and dies without closing: it is only
	   in the journal */
	pid_t pid = fork();
	int st = 0;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		s = open_store(STORE_BACKEND_FILE);
		_exit(put(s, "c", "1", NULL) ? 1 : 0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	s = open_with(&ro);
	cr_assert_eq(store_revision(s), 4);
	close_store(s);
}

static void rename_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;
	uint64_t last;

	/* `to` had versions 1, 2 and was deleted: its count continues */
	must_put(s, "to", "t1");
	must_put(s, "to", "t2");
	cr_assert_eq(store_delete(s, "to", NULL, NULL, NULL), 0);
	must_put(s, "from", "f1");
	must_put(s, "from", "payload");
	cr_assert_eq(store_rename(s, "from", "to", NULL, NULL, &r), 0);
	cr_assert_eq(r.version, 3, "%s: rename gave version %llu", bname(b),
		     (unsigned long long)r.version);
	expect(s, "to", "payload", 3);
	expect_absent(s, "from");
	cr_assert_eq(store_last_version(s, "from", &last), 0);
	cr_assert_eq(last, 2);
	/* re-creating `from` continues its own count */
	cr_assert_eq(put(s, "from", "back", &r), 0);
	cr_assert_eq(r.version, 3);
	/* onto a live record: a new version of it */
	cr_assert_eq(store_rename(s, "from", "to", NULL, NULL, &r), 0);
	cr_assert_eq(r.version, 4);
	expect(s, "to", "back", 4);
	cr_assert_eq(store_rename(s, "gone", "to", NULL, NULL, &r), -ENOENT);
	expect(s, "to", "back", 4);
	close_store(s);
}

Test(store, rename_gives_target_a_new_version_and_removes_source)
{
	for (size_t i = 0; i < 2; i++)
		rename_body(backends[i]);
}

static void rename_cond_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_cond at1 = {STORE_COND_IF_VERSION, 1};
	struct store_cond at2 = {STORE_COND_IF_VERSION, 2};
	struct store_cond create = {STORE_COND_CREATE, 0};
	struct store_result r;

	must_put(s, "to", "t1");
	must_put(s, "to", "t2");
	must_put(s, "from", "f1");
	cr_assert_eq(store_rename(s, "from", "to", &at1, NULL, &r), -ESTALE,
		     "%s: stale rename", bname(b));
	cr_assert_eq(r.current, 2);
	expect(s, "from", "f1", 1);
	expect(s, "to", "t2", 2);
	cr_assert_eq(store_rename(s, "from", "to", &create, NULL, &r), -ESTALE);
	expect(s, "from", "f1", 1);
	cr_assert_eq(store_rename(s, "from", "to", &at2, NULL, &r), 0);
	cr_assert_eq(r.version, 3);
	expect(s, "to", "f1", 3);
	expect_absent(s, "from");
	cr_assert_eq(store_rename(s, "to", "new", &create, NULL, &r), 0);
	cr_assert_eq(r.version, 1);
	expect(s, "new", "f1", 1);
	close_store(s);
}

Test(store, rename_with_a_condition_on_the_target)
{
	for (size_t i = 0; i < 2; i++)
		rename_cond_body(backends[i]);
}
