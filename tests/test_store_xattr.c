/*
 * test_store_xattr.c - the record store (store/): xattrs and metadata
 * (set_meta), readers, the memory backend without CAS, the record size limit.
 * The fixture and helpers the test_store_*.c files share are in
 * store_helpers.h.
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

/* ---- xattrs and metadata ------------------------------------------------ */

static void xattr_body(enum store_backend b)
{
	struct store *s = open_store(b);
	char name[300], val[80], list[64];
	static char huge[STORE_XATTR_VALUE_MAX + 1];
	uint64_t rev;
	ssize_t n;
	int rc = 0;

	must_put(s, "x", "content");
	cr_assert_eq(store_xattr_get(s, "x", "user.a", val, sizeof(val)),
		     -ENODATA);
	cr_assert_eq(store_xattr_list(s, "x", NULL, 0), 0);
	cr_assert_eq(store_xattr_set(s, "x", "user.a", "hello", 5, 0), 0);
	cr_assert_eq(store_xattr_get(s, "x", "user.a", NULL, 0), 5,
		     "%s: size probe", bname(b));
	cr_assert_eq(store_xattr_get(s, "x", "user.a", val, 3), -ERANGE);
	n = store_xattr_get(s, "x", "user.a", val, sizeof(val));
	cr_assert_eq(n, 5);
	cr_assert(memcmp(val, "hello", 5) == 0);

	cr_assert_eq(store_xattr_set(s, "x", "user.a", "v", 1, XATTR_CREATE),
		     -EEXIST);
	cr_assert_eq(store_xattr_set(s, "x", "user.b", "v", 1, XATTR_REPLACE),
		     -ENODATA);
	cr_assert_eq(store_xattr_set(s, "x", "user.a", "bye", 3, XATTR_REPLACE),
		     0);
	cr_assert_eq(store_xattr_set(s, "x", "user.b", "", 0, XATTR_CREATE), 0);
	cr_assert_eq(store_xattr_get(s, "x", "user.b", NULL, 0), 0,
		     "empty value is a value, not -ENODATA");
	n = store_xattr_get(s, "x", "user.a", val, sizeof(val));
	cr_assert_eq(n, 3);
	cr_assert(memcmp(val, "bye", 3) == 0);

	cr_assert_eq(store_xattr_list(s, "x", NULL, 0), 14);
	cr_assert_eq(store_xattr_list(s, "x", list, 5), -ERANGE);
	cr_assert_eq(store_xattr_list(s, "x", list, sizeof(list)), 14);
	cr_assert(memcmp(list, "user.a\0user.b\0", 14) == 0 ||
		  memcmp(list, "user.b\0user.a\0", 14) == 0);

	/* attributes are metadata: no new version; they follow new
	   versions */
	cr_assert_eq(version_of(s, "x"), 1);
	must_put(s, "x", "content 2");
	cr_assert_eq(store_xattr_get(s, "x", "user.a", NULL, 0), 3,
		     "%s: xattr lost by a new version", bname(b));

	cr_assert_eq(store_xattr_remove(s, "x", "user.a"), 0);
	cr_assert_eq(store_xattr_get(s, "x", "user.a", val, sizeof(val)),
		     -ENODATA);
	cr_assert_eq(store_xattr_remove(s, "x", "user.a"), -ENODATA);

	/* limits */
	rev = store_revision(s);
	rc = store_xattr_set(s, "x", "user.huge", huge, sizeof(huge), 0);
	cr_assert(rc == -E2BIG || rc == -ENOSPC, "%s: huge value gave %d",
		  bname(b), rc);
	memset(name, 'n', sizeof(name));
	memcpy(name, "user.", 5);
	name[STORE_XATTR_NAME_MAX + 1] = '\0';
	cr_assert_eq(store_xattr_set(s, "x", name, "v", 1, 0), -ERANGE);
	cr_assert_eq(store_xattr_set(s, "x", "user.h1", huge, 40000, 0), 0);
	rc = store_xattr_set(s, "x", "user.h2", huge, 40000, 0);
	cr_assert(rc == -ENOSPC || rc == -E2BIG, "total over the limit: %d",
		  rc);
	cr_assert_eq(store_xattr_remove(s, "x", "user.h1"), 0);
	for (int i = 0; rc != -ENOSPC && i < STORE_XATTR_COUNT_MAX + 2; i++) {
		snprintf(val, sizeof(val), "user.n%d", i);
		rc = store_xattr_set(s, "x", val, "v", 1, 0);
		cr_assert(rc == 0 || i >= STORE_XATTR_COUNT_MAX - 1,
			  "xattr %d: %d", i, rc);
	}
	cr_assert_eq(rc, -ENOSPC, "%s: no limit on the xattr count", bname(b));
	cr_assert_gt(store_revision(s), rev);
	cr_assert_eq(store_xattr_get(s, "nope", "user.a", NULL, 0), -ENOENT);
	cr_assert_eq(store_xattr_set(s, "nope", "user.a", "v", 1, 0), -ENOENT);
	cr_assert_eq(version_of(s, "x"), 2);
	close_store(s);
}

Test(store, xattrs_set_get_list_remove_with_limits)
{
	for (size_t i = 0; i < 2; i++)
		xattr_body(backends[i]);
}

Test(store, xattrs_survive_reopen_from_journal_and_snapshot)
{
	struct store *s = open_store(STORE_BACKEND_FILE);
	char val[16];
	pid_t pid;
	int status;

	must_put(s, "x", "content");
	cr_assert_eq(store_xattr_set(s, "x", "user.a", "kept", 4, 0), 0);
	must_put(s, "from", "f");
	cr_assert_eq(store_xattr_set(s, "from", "user.m", "moved", 5, 0), 0);
	cr_assert_eq(store_rename(s, "from", "to", NULL, NULL, NULL), 0);
	close_store(s);
	/* from the snapshot */
	s = open_store(STORE_BACKEND_FILE);
	cr_assert_eq(store_xattr_get(s, "x", "user.a", val, sizeof(val)), 4);
	cr_assert_eq(store_xattr_get(s, "to", "user.m", val, sizeof(val)), 5,
		     "rename must carry xattrs");
	close_store(s);
	/* from the journal: a child changes them and dies without closing */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store_opts o = {.path = spath,
				       .checkpoint_bytes = 1ull << 40};
		struct store *c = NULL;

		if (store_open(&c, &o) ||
		    store_xattr_set(c, "x", "user.a", "new!", 4, 0) ||
		    store_xattr_set(c, "x", "user.b", "b", 1, 0))
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(exited_with(status, 0));
	s = open_store(STORE_BACKEND_FILE);
	cr_assert_eq(store_xattr_get(s, "x", "user.a", val, sizeof(val)), 4);
	cr_assert(memcmp(val, "new!", 4) == 0);
	cr_assert_eq(store_xattr_get(s, "x", "user.b", val, sizeof(val)), 1);
	cr_assert_eq(version_of(s, "x"), 1);
	close_store(s);
}

static void set_meta_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct timespec t = {1234567890, 123456789};
	struct store_meta m;
	uint64_t rev;

	must_put(s, "m", "content");
	rev = store_revision(s);
	cr_assert_eq(store_set_meta(s, "m", &t, 0640), 0);
	cr_assert_eq(store_stat(s, "m", &m, false), 0);
	cr_assert_eq(m.version, 1, "%s: set_meta made a version", bname(b));
	cr_assert_eq(m.mode, 0640);
	cr_assert_eq(m.mtime.tv_sec, t.tv_sec);
	cr_assert_eq(m.mtime.tv_nsec, t.tv_nsec);
	cr_assert_eq(store_revision(s), rev + 1);
	expect(s, "m", "content", 1);
	/* the same values again change nothing */
	cr_assert_eq(store_set_meta(s, "m", &t, 0640), 0);
	cr_assert_eq(store_revision(s), rev + 1);
	cr_assert_eq(store_set_meta(s, "m", NULL, 0600), 0);
	cr_assert_eq(store_stat(s, "m", &m, false), 0);
	cr_assert_eq(m.mode, 0600);
	cr_assert_eq(m.mtime.tv_sec, t.tv_sec, "mtime kept when NULL");
	cr_assert_eq(store_set_meta(s, "nope", &t, 0600), -ENOENT);
	close_store(s);
	if (b != STORE_BACKEND_FILE)
		return;
	s = open_store(b);
	cr_assert_eq(store_stat(s, "m", &m, false), 0);
	cr_assert_eq(m.version, 1);
	cr_assert_eq(m.mode, 0600);
	cr_assert_eq(m.mtime.tv_sec, t.tv_sec);
	cr_assert_eq(m.mtime.tv_nsec, t.tv_nsec);
	close_store(s);
}

Test(store, set_meta_changes_mtime_and_mode_but_not_the_version)
{
	for (size_t i = 0; i < 2; i++)
		set_meta_body(backends[i]);
}

static void reader_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_reader *rd = NULL, *rd2 = NULL;
	char buf[32];

	must_put(s, "r", "old content");
	cr_assert_eq(store_reader_open(s, "r", &rd), 0);
	must_put(s, "r", "new content, longer");
	cr_assert_eq(store_reader_open(s, "r", &rd2), 0);
	cr_assert_eq(store_delete(s, "r", NULL, NULL, NULL), 0);
	cr_assert_eq(store_reader_meta(rd)->version, 1);
	cr_assert_eq(store_reader_pread(rd, buf, sizeof(buf), 0), 11,
		     "%s: reader saw another version", bname(b));
	cr_assert(memcmp(buf, "old content", 11) == 0);
	cr_assert_eq(store_reader_meta(rd2)->version, 2);
	cr_assert_eq(store_reader_pread(rd2, buf, sizeof(buf), 0), 19);
	cr_assert(memcmp(buf, "new content, longer", 19) == 0);
	store_reader_free(rd);
	store_reader_free(rd2);
	expect_absent(s, "r");
	close_store(s);
}

Test(store, reader_keeps_the_version_it_opened)
{
	for (size_t i = 0; i < 2; i++)
		reader_body(backends[i]);
}

Test(store, memory_store_without_cas_fails_closed)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY, .no_cas = true};
	struct store_cond at1 = {STORE_COND_IF_VERSION, 1};
	struct store *s = open_with(&o);
	struct store_result r;

	must_put(s, "a", "one");
	cr_assert_eq(put_if(s, "a", "two", STORE_COND_IF_VERSION, 1, &r),
		     -ENOTSUP);
	expect(s, "a", "one", 1);
	cr_assert_eq(put_if(s, "b", "new", STORE_COND_CREATE, 0, &r), -ENOTSUP);
	expect_absent(s, "b");
	cr_assert_eq(store_delete(s, "a", &at1, NULL, &r), -ENOTSUP);
	expect(s, "a", "one", 1);
	cr_assert_eq(store_rename(s, "a", "c", &at1, NULL, &r), -ENOTSUP);
	expect(s, "a", "one", 1);
	expect_absent(s, "c");
	/* unconditional changes still work */
	must_put(s, "a", "two");
	expect(s, "a", "two", 2);
	close_store(s);
}

static void efbig_body(enum store_backend b)
{
	struct store_opts o = {
		.backend = b, .create = true, .max_record_size = 16};
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};
	struct store_stage *st = NULL;
	struct store_result r;
	struct store *s;

	o.path = b == STORE_BACKEND_FILE ? spath : NULL;
	s = open_with(&o);
	must_put(s, "a", "0123456789abcdef");
	cr_assert_eq(put(s, "a", "0123456789abcdefg", &r), -EFBIG, "%s",
		     bname(b));
	expect(s, "a", "0123456789abcdef", 1);
	cr_assert_eq(store_put(s, "a", "x", 1, &app, &r), -EFBIG,
		     "%s: append over the limit", bname(b));
	expect(s, "a", "0123456789abcdef", 1);
	cr_assert_eq(store_stage_new(s, &st), 0);
	cr_assert_eq(pwrite(store_stage_fd(st), "0123456789abcdefgh", 18, 0),
		     18);
	cr_assert_eq(store_commit(s, "a", st, NULL, &r), -EFBIG);
	store_stage_free(st);
	expect(s, "a", "0123456789abcdef", 1);
	close_store(s);
}

Test(store, record_over_max_record_size_returns_efbig)
{
	for (size_t i = 0; i < 2; i++)
		efbig_body(backends[i]);
}
