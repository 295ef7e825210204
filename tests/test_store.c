/*
 * test_store.c - the record store (store/): versions, CAS, namespaces,
 * xattrs and metadata, hostile IDs and planted symlinks, adoption, the
 * lock, corrupt format/journal/index files, concurrency and stalls.
 *
 * Behaviour that does not depend on the disk runs on both backends (the
 * memory one and the file one). Each test builds its store in a fresh
 * mkdtemp directory. The directory is on tmpfs (/dev/shm) when there is
 * one, so that the thousands of fsyncs of these tests cost nothing; set
 * RECFS_TEST_TMPDIR=/var/tmp to run them on a real disk (slower).
 */
#include "err.h"
#include "io.h"
#include "jnl.h"
#include "store.h"

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

#define BIG_LEN ((size_t)(1u << 20) + 4096) /* committed by reference */

static char base[PATH_MAX];	  /* the fresh temp dir of this test */
static char spath[PATH_MAX + 32]; /* base/store */

static const char *test_root(void)
{
	const char *e = getenv("RECFS_TEST_TMPDIR");

	if (e && *e)
		return e;
	if (access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	return "/tmp";
}

static void setup(void)
{
	snprintf(base, sizeof(base), "%s/recfs-store.XXXXXX", test_root());
	cr_assert_not_null(mkdtemp(base), "mkdtemp %s: %s", base,
			   strerror(errno));
	snprintf(spath, sizeof(spath), "%s/store", base);
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	if (flag == FTW_DP)
		chmod(path, 0700), rmdir(path);
	else
		unlink(path);
	return 0;
}

static void teardown(void)
{
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

static const enum store_backend backends[] = {STORE_BACKEND_FILE,
					      STORE_BACKEND_MEMORY};

static const char *bname(enum store_backend b)
{
	return b == STORE_BACKEND_FILE ? "file" : "memory";
}

static struct store *open_with(const struct store_opts *o)
{
	struct store *s = NULL;
	int rc = store_open(&s, o);

	cr_assert_eq(rc, 0, "store_open(%s): %s", bname(o->backend),
		     strerror(-rc));
	return s;
}

static struct store *open_io(enum store_backend b, struct io *io)
{
	struct store_opts o = {.backend = b, .create = true, .io = io};

	if (b == STORE_BACKEND_FILE)
		o.path = spath;
	return open_with(&o);
}

static struct store *open_store(enum store_backend b)
{
	return open_io(b, NULL);
}

static void close_store(struct store *s)
{
	int rc = store_close(s);

	cr_assert_eq(rc, 0, "store_close: %s", strerror(-rc));
}

static int put_buf(struct store *s, const char *id, const void *buf, size_t len,
		   enum store_cond_kind kind, uint64_t version,
		   struct store_result *res)
{
	struct store_commit_args a = {.cond = {kind, version}, .mode = -1};

	return store_put(s, id, buf, len, &a, res);
}

static int put(struct store *s, const char *id, const char *text,
	       struct store_result *res)
{
	return put_buf(s, id, text, strlen(text), STORE_COND_ANY, 0, res);
}

static int put_if(struct store *s, const char *id, const char *text,
		  enum store_cond_kind kind, uint64_t version,
		  struct store_result *res)
{
	return put_buf(s, id, text, strlen(text), kind, version, res);
}

/* Commit `text` unconditionally and insist that it works. */
static uint64_t must_put(struct store *s, const char *id, const char *text)
{
	struct store_result r;
	int rc = put(s, id, text, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.version;
}

/* The record `id` holds exactly `len` bytes `want` at `version` (0: any). */
static void expect_buf(struct store *s, const char *id, const void *want,
		       size_t len, uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t got = 0;
	int rc = store_get(s, id, &buf, &got, &m);

	cr_assert_eq(rc, 0, "get %s: %s", id, strerror(-rc));
	cr_assert_eq(got, len, "%s: %zu bytes, expected %zu", id, got, len);
	cr_assert(memcmp(buf, want, len) == 0, "%s: wrong content", id);
	if (version)
		cr_assert_eq(m.version, version,
			     "%s: version %llu, expected %llu", id,
			     (unsigned long long)m.version,
			     (unsigned long long)version);
	free(buf);
}

static void expect(struct store *s, const char *id, const char *text,
		   uint64_t version)
{
	expect_buf(s, id, text, strlen(text), version);
}

static void expect_absent(struct store *s, const char *id)
{
	struct store_meta m;
	void *buf = NULL;
	size_t len;
	int rc;

	rc = store_get(s, id, &buf, &len, &m);
	cr_assert_eq(rc, -ENOENT, "%s: get gave %d, expected -ENOENT", id, rc);
	rc = store_stat(s, id, &m, false);
	cr_assert_eq(rc, -ENOENT, "%s: stat gave %d, expected -ENOENT", id, rc);
}

static uint64_t version_of(struct store *s, const char *id)
{
	struct store_meta m;
	int rc = store_stat(s, id, &m, false);

	cr_assert_eq(rc, 0, "stat %s: %s", id, strerror(-rc));
	return m.version;
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static char *read_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	buf[st.st_size] = '\0';
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return buf;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7) >> 3);
}

/*
 * A listing of everything under `root`: path, type, mode, size, mtime and
 * a hash of the content of each file, one line each in nftw order (which
 * is readdir order: stable for an unchanged directory). Skips `skip` (a
 * name relative to root, or NULL).
 */
static FILE *tree_out;
static size_t tree_root_len;
static const char *tree_skip;
static bool tree_dir_times; /* also list the mtimes of directories */

static int tree_one(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	const char *rel = path + tree_root_len;
	uint64_t h = 0;

	if (tree_skip && strcmp(rel, tree_skip) == 0)
		return 0;
	if (S_ISREG(sb->st_mode)) {
		size_t len;
		char *buf = read_file(path, &len);

		h = XXH64(buf, len, 0);
		free(buf);
	}
	if (S_ISDIR(sb->st_mode) && !tree_dir_times)
		fprintf(tree_out, "%s %o\n", rel, (unsigned)sb->st_mode);
	else
		fprintf(tree_out, "%s %o %lld %lld.%09ld %016llx\n", rel,
			(unsigned)sb->st_mode, (long long)sb->st_size,
			(long long)sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec,
			(unsigned long long)h);
	return 0;
}

static char *tree(const char *root, const char *skip, bool dir_times)
{
	char *text = NULL;
	size_t len = 0;

	tree_out = open_memstream(&text, &len);
	cr_assert_not_null(tree_out);
	tree_root_len = strlen(root);
	tree_skip = skip;
	tree_dir_times = dir_times;
	cr_assert_eq(nftw(root, tree_one, 16, FTW_PHYS), 0, "walk %s", root);
	fclose(tree_out);
	return text;
}

/* Run `fn(arg)` in a child process; returns its wait status. */
static int run_child(void (*fn)(void *arg), void *arg)
{
	pid_t pid = fork();
	int status = 0;

	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static bool exited_with(int status, int code)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

/* Capture what the store logs to stderr while `fn` runs. */
struct captured {
	int saved;
	char path[PATH_MAX + 32];
};

static void capture_start(struct captured *c)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/stderr.txt", base);
	fflush(stderr);
	fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	c->saved = dup(2);
	dup2(fd, 2);
	close(fd);
}

static char *capture_end(struct captured *c)
{
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	return read_file(c->path, NULL);
}

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

/* ---- namespaces --------------------------------------------------------- */

static void ns_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct store_result r;
	struct stat st;

	cr_assert_eq(store_mkdir(s, "d", 0700), 0);
	cr_assert_eq(store_mkdir(s, "d/e", 0700), 0);
	cr_assert_eq(store_mkdir(s, "f", 0700), 0);
	must_put(s, "d/x", "x");

	cr_assert_eq(store_rename_ns(s, "d", "moved"), -EXDEV,
		     "%s: namespace with records", bname(b));
	expect(s, "d/x", "x", 1);
	cr_assert_eq(store_rename_ns(s, "f", "g"), 0);
	cr_assert_eq(store_ns_stat(s, "g", &st), 0);
	cr_assert_eq(store_ns_stat(s, "f", &st), -ENOENT);

	cr_assert_eq(store_rmdir(s, "d"), -ENOTEMPTY, "%s: rmdir", bname(b));
	cr_assert_eq(store_delete(s, "d/x", NULL, NULL, NULL), 0);
	cr_assert_eq(store_rmdir(s, "d"), -ENOTEMPTY, "%s: sub-namespace",
		     bname(b));
	cr_assert_eq(store_rmdir(s, "d/e"), 0);
	cr_assert_eq(store_rmdir(s, "d"), 0);

	cr_assert_eq(put(s, "nope/x", "x", &r), -ENOENT, "%s: missing ns",
		     bname(b));
	cr_assert_eq(put(s, "g", "x", &r), -EISDIR, "%s: onto a namespace",
		     bname(b));
	cr_assert_eq(store_ns_stat(s, "g", &st), 0, "namespace survived");
	cr_assert(S_ISDIR(st.st_mode));
	close_store(s);
}

Test(store, namespaces_refuse_exdev_enotempty_enoent_and_eisdir)
{
	for (size_t i = 0; i < 2; i++)
		ns_body(backends[i]);
}

/* ---- hostile IDs -------------------------------------------------------- */

static int listed(void *arg, const char *name, bool is_ns)
{
	return 0;
}

Test(store, hostile_ids_are_refused_and_create_nothing)
{
	char long_comp[300];
	char *before, *after;
	struct store_result r;
	struct store_meta m;
	struct timespec ts = {1, 0};
	struct store_reader *rd = NULL;
	struct store_stage *st = NULL;
	uint64_t v;
	void *buf;
	size_t len;
	const char *ids[] = {
		"..",	   "../x",
		".",	   "a/./b/..",
		"./x",	   "a//b",
		"/a",	   "a/",
		"a/..",	   "a/./b",
		"",	   "x@3",
		".recfs",  "a/../../etc/passwd",
		long_comp,
	};
	struct store *s = open_store(STORE_BACKEND_FILE);

	memset(long_comp, 'x', 256);
	long_comp[256] = '\0';
	cr_assert_eq(store_mkdir(s, "a", 0700), 0);
	must_put(s, "a/ok", "ok");
	cr_assert_eq(store_history_drain(s, 0), 0); /* no writes meanwhile */
	before = tree(spath, "/lock", true);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		const char *id = ids[i];
		/* SPEC 2: too long is ENAMETOOLONG, the rest EINVAL */
		const int bad = strlen(id) > 255 ? -ENAMETOOLONG : -EINVAL;

		cr_assert_eq(put(s, id, "evil", &r), bad, "put \"%s\"", id);
		cr_assert_eq(store_get(s, id, &buf, &len, NULL), bad,
			     "get \"%s\"", id);
		cr_assert_eq(store_stat(s, id, &m, true), bad, "stat %s", id);
		cr_assert_eq(store_reader_open(s, id, &rd), bad);
		cr_assert_eq(store_stage_copy(s, id, &v, &st), bad);
		cr_assert_eq(store_delete(s, id, NULL, NULL, &r), bad,
			     "delete \"%s\"", id);
		cr_assert_eq(store_rename(s, "a/ok", id, NULL, NULL, &r), bad,
			     "rename to \"%s\"", id);
		cr_assert_eq(store_rename(s, id, "a/y", NULL, NULL, &r), bad,
			     "rename from \"%s\"", id);
		cr_assert_eq(store_mkdir(s, id, 0700), bad, "mkdir %s", id);
		cr_assert_eq(store_rmdir(s, id), bad);
		cr_assert_eq(store_set_meta(s, id, &ts, 0600), bad);
		cr_assert_eq(store_xattr_set(s, id, "user.a", "v", 1, 0), bad);
		if (id[0] != '\0') {
			cr_assert_eq(store_list(s, id, listed, NULL), bad,
				     "list \"%s\"", id);
			cr_assert_eq(store_rename_ns(s, id, "z"), bad);
		}
	}
	after = tree(spath, "/lock", true);
	cr_assert_str_eq(after, before, "the store directory changed");
	expect(s, "a/ok", "ok", 1);
	free(before);
	free(after);
	close_store(s);
}

/* ---- owner and group (SPEC 3) ------------------------------------------ */

static void owner_is(struct store *s, const char *id, uint32_t uid,
		     uint32_t gid)
{
	struct store_meta m;

	cr_assert_eq(store_stat(s, id, &m, false), 0, "stat %s", id);
	cr_assert(m.uid == uid && m.gid == gid, "%s: owner %u:%u, not %u:%u",
		  id, m.uid, m.gid, uid, gid);
}

static void owner_body(enum store_backend b)
{
	struct store_who who = {.uid = 1000, .pid = 1, .comm = "t"};
	struct store_owner own = {.uid = 1234, .gid = 5678};
	struct store_commit_args a = {.mode = -1, .who = &who};
	struct store_result r;
	struct store *s = open_store(b);
	uint64_t rev;

	/* a new record: its creator's uid, group 0; no who: 0:0 */
	cr_assert_eq(store_put(s, "mine", "x", 1, &a, &r), 0);
	owner_is(s, "mine", 1000, 0);
	must_put(s, "nobody", "x");
	owner_is(s, "nobody", 0, 0);
	/* given: taken */
	a.owner = &own;
	cr_assert_eq(store_put(s, "given", "x", 1, &a, &r), 0);
	owner_is(s, "given", 1234, 5678);
	/* a later commit without owner keeps it, whoever writes */
	a.owner = NULL;
	who.uid = 2000;
	cr_assert_eq(store_put(s, "given", "y", 1, &a, &r), 0);
	cr_assert_eq(r.version, 2);
	owner_is(s, "given", 1234, 5678);
	/* the same content with another owner is not a no-op */
	a.owner = &own;
	own.uid = 4321;
	cr_assert_eq(store_put(s, "given", "y", 1, &a, &r), 0);
	cr_assert_not(r.noop);
	cr_assert_eq(r.version, 3);
	owner_is(s, "given", 4321, 5678);
	cr_assert_eq(store_put(s, "given", "y", 1, &a, &r), 0);
	cr_assert(r.noop);

	/* chown: no new version, one revision, -1 keeps one */
	rev = store_revision(s);
	cr_assert_eq(store_set_owner(s, "given", 7, (uint32_t)-1), 0);
	owner_is(s, "given", 7, 5678);
	cr_assert_eq(store_revision(s), rev + 1);
	cr_assert_eq(store_set_owner(s, "given", (uint32_t)-1, 8), 0);
	owner_is(s, "given", 7, 8);
	cr_assert_eq(store_revision(s), rev + 2);
	expect(s, "given", "y", 3);
	/* nothing changes: no revision */
	cr_assert_eq(store_set_owner(s, "given", 7, 8), 0);
	cr_assert_eq(store_set_owner(s, "given", -1u, -1u), 0);
	cr_assert_eq(store_revision(s), rev + 2);
	cr_assert_eq(store_set_owner(s, "absent", 1, 1), -ENOENT);
	cr_assert_eq(store_set_owner(s, "../x", 1, 1), -EINVAL);

	/* chmod and xattrs leave the owner alone */
	cr_assert_eq(store_set_meta(s, "given", NULL, 0600), 0);
	cr_assert_eq(store_xattr_set(s, "given", "user.k", "v", 1, 0), 0);
	owner_is(s, "given", 7, 8);

	/* rename carries owner and mode, as content */
	cr_assert_eq(store_rename(s, "given", "moved", NULL, &who, &r), 0);
	owner_is(s, "moved", 7, 8);
	/* re-created after a delete: a new record's owner */
	cr_assert_eq(store_delete(s, "moved", NULL, NULL, &r), 0);
	a.owner = NULL;
	who.uid = 3000;
	cr_assert_eq(store_put(s, "moved", "z", 1, &a, &r), 0);
	cr_assert_eq(r.version, 2);
	owner_is(s, "moved", 3000, 0);
	close_store(s);
}

Test(store, owner_and_group_are_kept_and_changed_without_a_version)
{
	for (size_t i = 0; i < 2; i++)
		owner_body(backends[i]);
}

Test(store, owner_and_kind_survive_replay_and_snapshot)
{
	struct store_owner own = {.uid = 11, .gid = 22};
	struct store_commit_args a = {.mode = -1, .owner = &own};
	struct store_commit_args l = {.mode = -1, .symlink = true};
	struct store_result r;
	struct store_meta m;
	struct store *s = open_store(STORE_BACKEND_FILE);
	pid_t pid;
	int st;

	/* in a child that dies without closing: only the journal has them */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		if (store_put(s, "a", "x", 1, &a, &r) ||
		    store_put(s, "l", "target", 6, &l, &r) ||
		    store_set_owner(s, "l", 33, 44))
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	store_close(s);
	for (int round = 0; round < 2; round++) {
		/* round 0: replayed from the journal; 1: from the snapshot
		   that the close of round 0 wrote */
		s = open_store(STORE_BACKEND_FILE);
		owner_is(s, "a", 11, 22);
		owner_is(s, "l", 33, 44);
		cr_assert_eq(store_stat(s, "l", &m, false), 0);
		cr_assert(m.symlink, "round %d", round);
		cr_assert_eq(store_stat(s, "a", &m, false), 0);
		cr_assert_not(m.symlink);
		close_store(s);
	}
}

Test(store, namespace_owner_is_changed_without_following_links)
{
	char p[PATH_MAX + 64], target[PATH_MAX + 64];
	struct stat st, before;
	struct store *s = open_store(STORE_BACKEND_FILE);
	struct store *m = open_store(STORE_BACKEND_MEMORY);

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_ns_set_owner(s, "ns", 1234, 5678), 0);
	cr_assert_eq(store_ns_stat(s, "ns", &st), 0);
	cr_assert(st.st_uid == 1234 && st.st_gid == 5678);
	cr_assert_eq(store_ns_set_owner(s, "ns", -1u, 42), 0);
	cr_assert_eq(store_ns_stat(s, "ns", &st), 0);
	cr_assert(st.st_uid == 1234 && st.st_gid == 42);
	cr_assert_eq(store_ns_set_owner(s, "nope", 1, 1), -ENOENT);
	cr_assert_eq(store_ns_set_owner(s, "a/../ns", 1, 1), -EINVAL);
	/* a symlink planted in the store is refused, its target untouched */
	snprintf(target, sizeof(target), "%s/outside", base);
	cr_assert_eq(mkdir(target, 0755), 0);
	cr_assert_eq(stat(target, &before), 0);
	snprintf(p, sizeof(p), "%s/records/planted", spath);
	cr_assert_eq(symlink(target, p), 0);
	cr_assert_neq(store_ns_set_owner(s, "planted", 999, 999), 0);
	cr_assert_eq(stat(target, &st), 0);
	cr_assert(st.st_uid == before.st_uid && st.st_gid == before.st_gid);
	close_store(s);

	cr_assert_eq(store_mkdir(m, "ns", 0755), 0);
	cr_assert_eq(store_ns_set_owner(m, "ns", 1234, 5678), 0);
	cr_assert_eq(store_ns_stat(m, "ns", &st), 0);
	cr_assert(st.st_uid == 1234 && st.st_gid == 5678);
	close_store(m);
}

/* ---- symlinks (SPEC 2) -------------------------------------------------- */

static void symlink_body(enum store_backend b)
{
	static char longest[STORE_SYMLINK_MAX + 1];
	struct store_commit_args l = {.mode = -1, .symlink = true};
	struct store_result r;
	struct store_meta m;
	struct store *s = open_store(b);

	cr_assert_eq(store_put(s, "ln", "../target", 9, &l, &r), 0);
	cr_assert_eq(r.version, 1);
	cr_assert_eq(store_stat(s, "ln", &m, false), 0);
	cr_assert(m.symlink);
	cr_assert_eq(m.size, 9);
	expect(s, "ln", "../target", 1);
	/* the same target again: a no-op; as a file: a new version */
	cr_assert_eq(store_put(s, "ln", "../target", 9, &l, &r), 0);
	cr_assert(r.noop);
	cr_assert_eq(put(s, "ln", "../target", &r), 0);
	cr_assert_not(r.noop);
	cr_assert_eq(r.version, 2);
	cr_assert_eq(store_stat(s, "ln", &m, false), 0);
	cr_assert_not(m.symlink, "last writer wins: a file again");
	/* and back; rename keeps the kind */
	cr_assert_eq(store_put(s, "ln", "t2", 2, &l, &r), 0);
	cr_assert_eq(store_rename(s, "ln", "moved", NULL, NULL, &r), 0);
	cr_assert_eq(store_stat(s, "moved", &m, false), 0);
	cr_assert(m.symlink);
	expect(s, "moved", "t2", 1);
	/* 4095 bytes is the longest target */
	memset(longest, 'x', sizeof(longest));
	cr_assert_eq(store_put(s, "long", longest, STORE_SYMLINK_MAX, &l, &r),
		     0);
	cr_assert_eq(
		store_put(s, "long", longest, STORE_SYMLINK_MAX + 1, &l, &r),
		-ENAMETOOLONG);
	expect_buf(s, "long", longest, STORE_SYMLINK_MAX, 1);
	/* append to a link makes no sense */
	l.cond.kind = STORE_COND_APPEND;
	cr_assert_eq(store_put(s, "long", "y", 1, &l, &r), -EINVAL);
	close_store(s);
}

Test(store, symlinks_are_records_whose_content_is_the_target)
{
	for (size_t i = 0; i < 2; i++)
		symlink_body(backends[i]);
}

Test(store, a_symlink_record_is_a_plain_file_in_the_store)
{
	struct store_commit_args l = {.mode = -1, .symlink = true};
	char p[PATH_MAX + 64], buf[64];
	struct store_result r;
	struct store_txn *t = NULL;
	struct store_meta m;
	struct stat st;
	struct store *s = open_store(STORE_BACKEND_FILE);
	int fd;
	ssize_t n;

	cr_assert_eq(store_put(s, "ln", "/etc/passwd", 11, &l, &r), 0);
	snprintf(p, sizeof(p), "%s/records/ln", spath);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert(S_ISREG(st.st_mode), "the store made a real symlink");
	fd = open(p, O_RDONLY | O_NOFOLLOW);
	cr_assert_geq(fd, 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	cr_assert(n == 11 && memcmp(buf, "/etc/passwd", 11) == 0);
	/* a txn makes symlinks too */
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "t1", "x", 1, &l), 0);
	cr_assert_eq(store_txn_commit(t, NULL, NULL), 0);
	store_txn_free(t);
	cr_assert_eq(store_stat(s, "t1", &m, false), 0);
	cr_assert(m.symlink);
	close_store(s);
}

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

/* ---- the store directory ------------------------------------------------ */

static int perm_bad;

static int perm_one(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	mode_t want = S_ISDIR(sb->st_mode) ? 0700 : 0600;

	if ((sb->st_mode & 07777) != want) {
		cr_log_error("%s: mode %o, expected %o", path,
			     sb->st_mode & 07777, want);
		perm_bad++;
	}
	if (!S_ISDIR(sb->st_mode) && !S_ISREG(sb->st_mode)) {
		cr_log_error("%s: not a file or directory", path);
		perm_bad++;
	}
	return 0;
}

static void check_perms(void)
{
	perm_bad = 0;
	cr_assert_eq(nftw(spath, perm_one, 16, FTW_PHYS), 0);
	cr_assert_eq(perm_bad, 0, "%d entries with wrong modes", perm_bad);
}

Test(store, store_is_0700_and_its_files_0600_even_with_umask_0)
{
	struct store_commit_args wide = {.mode = 0666};
	static uint8_t big[BIG_LEN];
	struct store *s;

	umask(0);
	s = open_store(STORE_BACKEND_FILE);
	fill(big, sizeof(big), 1);
	cr_assert_eq(store_put(s, "big", big, sizeof(big), &wide, NULL), 0);
	cr_assert_eq(store_put(s, "small", "s", 1, &wide, NULL), 0);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	must_put(s, "ns/x", "x");
	cr_assert_eq(store_xattr_set(s, "ns/x", "user.a", "v", 1, 0), 0);
	cr_assert_eq(store_rename(s, "small", "ns/y", NULL, NULL, NULL), 0);
	cr_assert_eq(store_delete(s, "ns/x", NULL, NULL, NULL), 0);
	check_perms();
	cr_assert_eq(store_checkpoint(s), 0);
	check_perms();
	close_store(s);
	check_perms();
}

/* The store never reads or writes through a symlink planted in it. */
Test(store, planted_symlinks_are_refused_not_followed)
{
	char outside[PATH_MAX + 64], elsewhere[PATH_MAX + 64];
	char link[PATH_MAX + 64], *before, *after, *text;
	struct store_result r;
	struct store_meta m;
	void *buf;
	size_t len;
	int rc;
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, "k", "k");
	snprintf(outside, sizeof(outside), "%s/outside.txt", base);
	write_file(outside, "secret", 6);
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", base);
	cr_assert_eq(mkdir(elsewhere, 0700), 0);
	snprintf(link, sizeof(link), "%s/elsewhere/x", base);
	write_file(link, "outside x", 9);

	snprintf(link, sizeof(link), "%s/records/evil", spath);
	cr_assert_eq(symlink(outside, link), 0);
	snprintf(link, sizeof(link), "%s/records/ns", spath);
	cr_assert_eq(symlink(elsewhere, link), 0);
	cr_assert_eq(store_history_drain(s, 0), 0); /* no writes meanwhile */
	before = tree(base, NULL, false);

	/* as the record itself */
	rc = store_get(s, "evil", &buf, &len, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "get through a link: %d", rc);
	rc = store_stat(s, "evil", &m, true);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "stat: %d", rc);
	rc = put(s, "evil", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "put onto a link: %d", rc);
	rc = store_xattr_set(s, "evil", "user.a", "v", 1, 0);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "xattr: %d", rc);
	rc = store_delete(s, "evil", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "delete: %d", rc);
	rc = store_rename(s, "evil", "k2", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename from: %d", rc);
	rc = store_rename(s, "k", "evil", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename onto: %d", rc);

	/* as an intermediate component */
	rc = store_get(s, "ns/x", &buf, &len, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "get via a link: %d", rc);
	rc = put(s, "ns/x", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "put via a link: %d", rc);
	rc = put(s, "ns/new", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "create via a link: %d", rc);
	rc = store_rename(s, "k", "ns/y", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename via a link: %d", rc);
	rc = store_mkdir(s, "ns/sub", 0700);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "mkdir via a link: %d", rc);
	rc = store_list(s, "ns", listed, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT || rc == -ENOTDIR,
		  "list via a link: %d", rc);
	rc = store_rmdir(s, "ns");
	cr_assert(rc != 0, "rmdir of a link");

	after = tree(base, NULL, false);
	cr_assert_str_eq(after, before, "something changed through a link");
	text = read_file(outside, NULL);
	cr_assert_str_eq(text, "secret");
	free(text);
	expect(s, "k", "k", 1);
	free(before);
	free(after);
	close_store(s);
}

static void hash_of(const void *buf, size_t len, uint8_t out[16])
{
	XXH128_canonicalFromHash((XXH128_canonical_t *)out,
				 XXH3_128bits(buf, len));
}

Test(store, adopt_makes_files_version_one_without_rewriting_them)
{
	char p[PATH_MAX + 64];
	struct stat before_a, before_c, st;
	struct store_meta m;
	uint8_t h[16];
	struct store *s;

	cr_assert_eq(mkdir(spath, 0700), 0);
	snprintf(p, sizeof(p), "%s/a.txt", spath);
	write_file(p, "alpha", 5);
	cr_assert_eq(stat(p, &before_a), 0);
	snprintf(p, sizeof(p), "%s/sub", spath);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/sub/c", spath);
	write_file(p, "charlie", 7);
	cr_assert_eq(stat(p, &before_c), 0);

	cr_assert_eq(store_init(spath, true), 0);
	s = open_store(STORE_BACKEND_FILE);
	cr_assert_eq(store_stat(s, "a.txt", &m, false), 0);
	cr_assert_eq(m.version, 1);
	cr_assert_eq(m.size, 5);
	cr_assert_not(m.hash_valid, "hash is computed lazily");
	expect(s, "a.txt", "alpha", 1);
	expect(s, "sub/c", "charlie", 1);
	cr_assert_eq(store_stat(s, "a.txt", &m, true), 0);
	cr_assert(m.hash_valid);
	hash_of("alpha", 5, h);
	cr_assert(memcmp(m.hash, h, 16) == 0, "wrong hash of adopted file");

	snprintf(p, sizeof(p), "%s/records/a.txt", spath);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_ino, before_a.st_ino, "adopted file rewritten");
	cr_assert_eq(st.st_mtim.tv_sec, before_a.st_mtim.tv_sec);
	cr_assert_eq(st.st_mtim.tv_nsec, before_a.st_mtim.tv_nsec);
	snprintf(p, sizeof(p), "%s/records/sub/c", spath);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_ino, before_c.st_ino);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);

	/* versions continue from the adopted one */
	cr_assert_eq(must_put(s, "sub/c", "charlie 2"), 2);
	close_store(s);
	s = open_store(STORE_BACKEND_FILE);
	expect(s, "a.txt", "alpha", 1);
	expect(s, "sub/c", "charlie 2", 2);
	close_store(s);
}

Test(store, second_open_while_open_returns_ebusy)
{
	struct store_opts o = {.path = spath};
	struct store *s = open_store(STORE_BACKEND_FILE), *s2 = NULL;

	must_put(s, "a", "a");
	cr_assert_eq(store_open(&s2, &o), -EBUSY);
	cr_assert_null(s2);
	expect(s, "a", "a", 1);
	close_store(s);
	s = open_with(&o);
	close_store(s);
}

static void make_store_with(const char *id, const char *text)
{
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, id, text);
	close_store(s);
}

/* store_open of spath fails with `want` and leaves the files as they
   were; the error it reports (err.h) names `file` -- or, from a module
   that still logs its errors (recovery), what it logs. */
static void expect_refused(int want, const char *file)
{
	struct store_opts o = {.path = spath, .create = true};
	struct store *s = NULL;
	struct captured cap;
	char *before, *after, *log;
	int rc;

	before = tree(spath, "/lock", true);
	capture_start(&cap);
	rc = store_open(&s, &o);
	log = capture_end(&cap);
	cr_assert_eq(rc, want, "store_open gave %d (%s), expected %d", rc,
		     strerror(-rc), want);
	cr_assert_null(s);
	cr_assert(strstr(rerr_what(rc), file) || strstr(log, file),
		  "the error does not name %s: %s; logged: %s", file,
		  rerr_what(rc), log);
	after = tree(spath, "/lock", true);
	cr_assert_str_eq(after, before,
			 "a refused store was modified:\n%s\n"
			 "---\n%s",
			 before, after);
	free(before);
	free(after);
	free(log);
}

Test(store, corrupt_format_file_is_refused_and_left_untouched)
{
	char p[PATH_MAX + 64];

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/format.json", spath);
	write_file(p, "{\"format\":\"recfs\",\"vers", 23);
	expect_refused(-EBADMSG, "format.json");
	write_file(p, "", 0);
	expect_refused(-EBADMSG, "format.json");
}

Test(store, newer_format_version_is_refused_and_left_untouched)
{
	const char *doc = "{\"format\":\"recfs\",\"version\":99,"
			  "\"created\":\"2030-01-01T00:00:00Z\"}\n";
	char p[PATH_MAX + 64];

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/format.json", spath);
	write_file(p, doc, strlen(doc));
	expect_refused(-EPROTONOSUPPORT, "format.json");
}

/* Child: commit r1..r<n> and die without closing (journal only); with
   `crash_last`, die at the commit point of the last one instead. */
struct journal_child {
	int n;
	bool crash_last;
};

static void journal_child_fn(void *arg)
{
	const struct journal_child *jc = arg;
	struct store_opts o = {.path = spath, .checkpoint_bytes = 1ull << 40};
	struct store *s = NULL;
	struct io *io = NULL;
	char id[16], text[32];

	if (io_new(&io))
		_exit(1);
	o.io = io;
	if (store_open(&s, &o))
		_exit(1);
	for (int i = 1; i <= jc->n; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "record %d", i);
		if (i == jc->n && jc->crash_last)
			io_arm(io, "commit.publish", IO_CRASH, 0, 1, 1);
		if (put(s, id, text, NULL))
			_exit(2);
	}
	_exit(0);
}

static void open_and_crash_at_checkpoint(void *arg)
{
	struct store_opts o = {.path = spath};
	struct store *s = NULL;
	struct io *io = NULL;

	if (io_new(&io) || io_arm(io, "ckpt.syncfs", IO_CRASH, 0, 1, 1))
		_exit(1);
	o.io = io;
	store_open(&s, &o);
	_exit(0);
}

/* The newest segment of the journal; returns its path in p. */
static void last_segment(char *p, size_t size, int nth_from_last)
{
	char dir[PATH_MAX + 64], names[16][256];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/journal", spath);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)) && n < 16)
		if (strstr(de->d_name, ".log"))
			snprintf(names[n++], sizeof(names[0]), "%s",
				 de->d_name);
	closedir(d);
	cr_assert_gt(n, nth_from_last, "only %d journal segments", n);
	qsort(names, (size_t)n, sizeof(names[0]),
	      (int (*)(const void *, const void *))strcmp);
	snprintf(p, size, "%s/%s", dir, names[n - 1 - nth_from_last]);
}

/* Where the records of segment `seg` end: the journal writes zeros
   ahead of them, so that is not the file's size (journal/jnl.c). Frames
   are followed by their magic and length alone. */
static off_t segment_end(const char *seg)
{
	static const uint8_t magic[4] = {0x52, 0x4a, 0x46, 0x31}; /* RJF1 */
	uint8_t hdr[JNL_FRAME_HDR];
	off_t end = JNL_FILE_HDR;
	int fd = open(seg, O_RDONLY);

	cr_assert_geq(fd, 0);
	while (pread(fd, hdr, sizeof(hdr), end) == (ssize_t)sizeof(hdr) &&
	       memcmp(hdr, magic, 4) == 0)
		end += (off_t)(JNL_FRAME_HDR + (hdr[4] | hdr[5] << 8 |
						hdr[6] << 16 |
						(uint32_t)hdr[7] << 24));
	close(fd);
	return end;
}

static void expect_records(struct store *s, int from, int to)
{
	char id[16], text[32];

	for (int i = from; i <= to; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "record %d", i);
		expect(s, id, text, 1);
	}
}

Test(store, corrupt_journal_segment_is_refused_and_nothing_modified)
{
	struct journal_child jc = {.n = 5};
	char seg[PATH_MAX + 128];
	struct stat st;
	int fd;
	uint8_t junk[8];

	make_store_with("a", "a");
	cr_assert(exited_with(run_child(journal_child_fn, &jc), 0));
	/* A second child crashes during the checkpoint of its recovery: the
	   journal now has the five records in one segment and a newer,
	   empty segment after it. */
	cr_assert(exited_with(run_child(open_and_crash_at_checkpoint, NULL),
			      IO_CRASH_STATUS));
	last_segment(seg, sizeof(seg), 1);
	cr_assert_eq(stat(seg, &st), 0);
	fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, junk, sizeof(junk), st.st_size / 2), 8);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] ^= 0x5a;
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), st.st_size / 2), 8);
	close(fd);
	expect_refused(-EBADMSG, "journal");
}

Test(store, torn_journal_tail_is_ignored_and_earlier_commits_kept)
{
	struct journal_child jc = {.n = 5, .crash_last = true};
	char seg[PATH_MAX + 128];
	struct store *s;
	struct stat st;

	make_store_with("a", "a");
	/* r5 is in the journal but not in place: cut its record in half,
	   as a crash in the middle of its write would */
	cr_assert(
		exited_with(run_child(journal_child_fn, &jc), IO_CRASH_STATUS));
	last_segment(seg, sizeof(seg), 0);
	cr_assert_eq(stat(seg, &st), 0);
	cr_assert_geq(st.st_size, segment_end(seg));
	cr_assert_eq(truncate(seg, segment_end(seg) - 7), 0);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 4);
	expect_absent(s, "r5");
	expect(s, "a", "a", 1);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);
	must_put(s, "r5", "again");
	close_store(s);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 4);
	expect(s, "r5", "again", 1);
	close_store(s);
}

Test(store, garbage_after_the_journal_tail_is_ignored)
{
	struct journal_child jc = {.n = 5};
	char seg[PATH_MAX + 128], junk[100];
	struct store *s;
	int fd;

	make_store_with("a", "a");
	cr_assert(exited_with(run_child(journal_child_fn, &jc), 0));
	last_segment(seg, sizeof(seg), 0);
	fd = open(seg, O_WRONLY);
	cr_assert_geq(fd, 0);
	memset(junk, 'g', sizeof(junk));
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), segment_end(seg)),
		     (ssize_t)sizeof(junk));
	close(fd);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 5);
	must_put(s, "r6", "record 6");
	close_store(s);
	/* the trimmed tail did not turn into corruption once more
	   segments followed it */
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 5);
	expect(s, "r6", "record 6", 1);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);
	close_store(s);
}

Test(store, corrupt_index_snapshot_is_a_clear_error)
{
	char p[PATH_MAX + 64];
	size_t len;
	char *buf;

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/index", spath);
	buf = read_file(p, &len);
	cr_assert_gt(len, 40);
	/* a flipped byte in a record */
	buf[len - 3] ^= 0x20;
	write_file(p, buf, len);
	expect_refused(-EBADMSG, "index");
	/* not a snapshot at all */
	memset(buf, 'z', len);
	write_file(p, buf, len);
	expect_refused(-EBADMSG, "index");
	/* cut short */
	write_file(p, "RECFSS01", 8);
	expect_refused(-EBADMSG, "index");
	free(buf);
}

/* ---- concurrency -------------------------------------------------------- */

#define CAS_THREADS 16
#define CAS_ROUNDS 200

struct cas_worker {
	struct store *s;
	pthread_barrier_t *go;
	int err; /* first unexpected error */
	unsigned retries;
};

static void *cas_increment(void *arg)
{
	struct cas_worker *w = arg;

	pthread_barrier_wait(w->go);
	for (int i = 0; i < CAS_ROUNDS && !w->err; i++) {
		for (;;) {
			struct store_meta m;
			char text[32];
			void *buf = NULL;
			size_t len;
			long n;
			int rc = store_get(w->s, "counter", &buf, &len, &m);

			if (rc) {
				w->err = rc;
				break;
			}
			snprintf(text, sizeof(text), "%.*s", (int)len,
				 (char *)buf);
			free(buf);
			n = strtol(text, NULL, 10);
			snprintf(text, sizeof(text), "%ld", n + 1);
			rc = put_if(w->s, "counter", text,
				    STORE_COND_IF_VERSION, m.version, NULL);
			if (rc == 0)
				break;
			if (rc != -ESTALE) {
				w->err = rc;
				break;
			}
			w->retries++;
		}
	}
	return NULL;
}

static void cas_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct cas_worker w[CAS_THREADS];
	pthread_t t[CAS_THREADS];
	pthread_barrier_t go;
	char want[16];

	must_put(s, "counter", "0");
	pthread_barrier_init(&go, NULL, CAS_THREADS);
	for (int i = 0; i < CAS_THREADS; i++) {
		w[i] = (struct cas_worker){.s = s, .go = &go};
		cr_assert_eq(pthread_create(&t[i], NULL, cas_increment, &w[i]),
			     0);
	}
	for (int i = 0; i < CAS_THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].err, 0, "%s: thread %d: %s", bname(b), i,
			     strerror(-w[i].err));
	}
	pthread_barrier_destroy(&go);
	snprintf(want, sizeof(want), "%d", CAS_THREADS * CAS_ROUNDS);
	expect(s, "counter", want, CAS_THREADS * CAS_ROUNDS + 1);
	close_store(s);
	if (b == STORE_BACKEND_FILE) {
		s = open_store(b);
		expect(s, "counter", want, CAS_THREADS * CAS_ROUNDS + 1);
		close_store(s);
	}
}

Test(store, concurrent_cas_increments_lose_nothing_file)
{
	cas_body(STORE_BACKEND_FILE);
}

Test(store, concurrent_cas_increments_lose_nothing_memory)
{
	cas_body(STORE_BACKEND_MEMORY);
}

/* Readers racing commits to the same record always get a whole version:
   content and version number that belong together, never an error. */
struct racer {
	struct store *s;
	atomic_bool stop;
	int err; /* first error of a reader */
	unsigned reads;
	unsigned mismatch; /* content of another version than reported */
};

static void *race_reader(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop) && !r->err) {
		struct store_meta m;
		void *buf = NULL;
		size_t len;
		unsigned long long v = 0;
		int rc = store_get(r->s, "hot", &buf, &len, &m);

		if (rc) {
			r->err = rc;
			break;
		}
		char head[24] = "";

		memcpy(head, buf,
		       len < sizeof(head) - 1 ? len : sizeof(head) - 1);
		if (sscanf(head, "v=%llu;", &v) != 1 || v != m.version)
			r->mismatch++;
		free(buf);
		r->reads++;
	}
	return NULL;
}

static void readers_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct racer r[4];
	pthread_t t[4];
	char text[600];

	for (int i = 0; i < 4; i++)
		r[i] = (struct racer){.s = s};
	must_put(s, "hot", "v=1;");
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, race_reader, &r[i]);
	for (unsigned v = 2; v <= 1000; v++) {
		int n = snprintf(text, sizeof(text), "v=%u;", v);

		memset(text + n, 'p', (v * 7) % 500);
		text[n + (v * 7) % 500] = '\0';
		cr_assert_eq(must_put(s, "hot", text), v);
	}
	for (int i = 0; i < 4; i++) {
		atomic_store(&r[i].stop, true);
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].err, 0, "%s: a reader got %s", bname(b),
			     strerror(-r[i].err));
		cr_assert_eq(r[i].mismatch, 0,
			     "%s: %u reads saw content of another version",
			     bname(b), r[i].mismatch);
		cr_assert_gt(r[i].reads, 0);
	}
	close_store(s);
}

Test(store, readers_racing_commits_always_get_a_whole_version)
{
	for (size_t i = 0; i < 2; i++)
		readers_body(backends[i]);
}

struct creator {
	struct store *s;
	pthread_barrier_t *go;
	const char *id;
	char text[32];
	int rc;
	struct store_result res;
};

static void *create_one(void *arg)
{
	struct creator *c = arg;

	pthread_barrier_wait(c->go);
	c->rc = put_if(c->s, c->id, c->text, STORE_COND_CREATE, 0, &c->res);
	return NULL;
}

static void create_race_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct creator c[CAS_THREADS];
	pthread_t t[CAS_THREADS];
	pthread_barrier_t go;

	pthread_barrier_init(&go, NULL, CAS_THREADS);
	for (int round = 0; round < 10; round++) {
		char id[16];
		int winners = 0, winner = -1;

		snprintf(id, sizeof(id), "only%d", round);
		for (int i = 0; i < CAS_THREADS; i++) {
			c[i] = (struct creator){.s = s, .go = &go, .id = id};
			snprintf(c[i].text, sizeof(c[i].text), "thread %d", i);
			pthread_create(&t[i], NULL, create_one, &c[i]);
		}
		for (int i = 0; i < CAS_THREADS; i++) {
			pthread_join(t[i], NULL);
			if (c[i].rc == 0) {
				winners++;
				winner = i;
			} else {
				cr_assert_eq(c[i].rc, -ESTALE, "%s: %s",
					     bname(b), strerror(-c[i].rc));
				cr_assert_eq(c[i].res.current, 1);
			}
		}
		cr_assert_eq(winners, 1, "%s: %d threads created %s", bname(b),
			     winners, id);
		expect(s, id, c[winner].text, 1);
	}
	pthread_barrier_destroy(&go);
	close_store(s);
}

Test(store, create_only_race_has_exactly_one_winner)
{
	for (size_t i = 0; i < 2; i++)
		create_race_body(backends[i]);
}

/*
 * A commit stalled at a failpoint holds up only later changes to its own
 * record. (A stall inside the journal's own write or fdatasync, jnl.write
 * or jnl.fsync, necessarily blocks every commit: there is one log, as
 * with SQLite's WAL, and the group-commit leader writes for everyone. So
 * those points are not tested as non-blocking.)
 */
struct bg_put {
	struct store *s;
	const char *id;
	const void *buf;
	size_t len;
	int rc;
	atomic_bool done;
};

static void *bg_put_fn(void *arg)
{
	struct bg_put *p = arg;

	p->rc = put_buf(p->s, p->id, p->buf, p->len, STORE_COND_ANY, 0, NULL);
	atomic_store(&p->done, true);
	return NULL;
}

static void *bg_put_two(void *arg)
{
	struct bg_put *p = arg;

	p->rc = put(p->s, "y", "why", NULL);
	if (p->rc == 0)
		p->rc = put(p->s, "z", "zed", NULL);
	atomic_store(&p->done, true);
	return NULL;
}

static bool wait_until(atomic_bool *flag, struct io *io, const char *point,
		       int ms)
{
	for (int i = 0; i < ms; i++) {
		if (flag && atomic_load(flag))
			return true;
		if (point && io_stalled(io, point) == 1)
			return true;
		usleep(1000);
	}
	return false;
}

static void stall_case(const char *point, size_t xlen)
{
	struct bg_put a = {.id = "x"}, other = {0};
	pthread_t ta, tb;
	struct io *io = NULL;
	struct store *s;
	uint8_t *x = malloc(xlen);

	cr_assert_not_null(x);
	fill(x, xlen, 3);
	cr_assert_eq(io_new(&io), 0);
	s = open_io(STORE_BACKEND_FILE, io);
	must_put(s, "x", "old x");
	a.s = other.s = s;
	a.buf = x;
	a.len = xlen;
	cr_assert_eq(io_arm(io, point, IO_STALL, 0, 1, 1), 0);
	pthread_create(&ta, NULL, bg_put_fn, &a);
	cr_assert(wait_until(NULL, io, point, 10000), "%s: never stalled",
		  point);

	pthread_create(&tb, NULL, bg_put_two, &other);
	if (!wait_until(&other.done, NULL, NULL, 10000)) {
		io_release(io);
		cr_assert_fail("%s: commits to y and z waited for the stalled "
			       "commit to x",
			       point);
	}
	pthread_join(tb, NULL);
	cr_assert_eq(other.rc, 0, "%s: %s", point, strerror(-other.rc));
	expect(s, "y", "why", 1);
	expect(s, "z", "zed", 1);
	/* readers of x are not held up either: they see the old version */
	expect(s, "x", "old x", 1);
	cr_assert_not(atomic_load(&a.done), "%s: the stall did not hold",
		      point);
	cr_assert_eq(io_stalled(io, point), 1);

	io_release(io);
	pthread_join(ta, NULL);
	cr_assert_eq(a.rc, 0, "%s: stalled commit: %s", point, strerror(-a.rc));
	expect_buf(s, "x", x, xlen, 2);
	close_store(s);
	io_free(io);
	free(x);
}

Test(store, commit_stalled_at_publish_does_not_block_other_records)
{
	stall_case("commit.publish", 100);
}

Test(store, commit_stalled_before_journal_does_not_block_other_records)
{
	stall_case("commit.journal", 100);
}

Test(store, commit_stalled_at_stage_fsync_does_not_block_other_records)
{
	stall_case("stage.fsync", BIG_LEN);
}

/* ---- stages made ahead (file backend, after store_serve_start) ---------- */

#define AHEAD 8 /* STAGE_AHEAD in store/be_file.c */

/* How many stages ("st.*") are in the store's tmp/ right now. */
static int stages_in_tmp(void)
{
	char p[PATH_MAX + 64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(p, sizeof(p), "%s/tmp", spath);
	dir = opendir(p);
	cr_assert_not_null(dir, "opendir %s: %s", p, strerror(errno));
	while ((d = readdir(dir)))
		n += strncmp(d->d_name, "st.", 3) == 0;
	closedir(dir);
	return n;
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
