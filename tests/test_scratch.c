/*
 * test_scratch.c - scratch files (store/scratch.c): plain files kept in
 * STORE/scratch that survive a close and reopen, become a record's next
 * version when renamed onto it (and only then, as one commit, the file
 * gone after), come back from a record renamed onto a scratch name, keep
 * namespaces from going while they hold some, refuse symlinks planted in
 * the store, and are never seen by store_list, verify or the history;
 * backups carry them. A commit failing or crashing at each of its steps
 * leaves the record at its old version with the scratch file, or at the
 * new one.
 *
 * Each test builds its store in a fresh sandbox directory (sandbox.h).
 */
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define BIG_LEN ((size_t)(1u << 20) + 777) /* committed by reference */

static char dpath[PATH_MAX + 32]; /* base/copy */

static void setup(void)
{
	sandbox_store("scratch", true);
	snprintf(dpath, sizeof(dpath), "%s/copy", base);
}

TestSuite(scratch, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- helpers ------------------------------------------------------------ */

static struct store *open_opts(const char *path, struct io *io, bool ro)
{
	struct store_opts o = {
		.path = path, .create = !ro, .read_only = ro, .io = io};
	return open_ok(&o);
}

static struct store *open_store(struct io *io)
{
	return open_opts(spath, io, false);
}

static uint64_t put_str(struct store *s, const char *id, const char *text)
{
	struct store_result r;
	int rc = store_put(s, id, text, strlen(text), NULL, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.version;
}

/* Make scratch file `path` holding `len` bytes of `buf`, mode `mode`. */
static void mk_scratch_buf(struct store *s, const char *path, const void *buf,
			   size_t len, mode_t mode)
{
	int fd = -1, rc;

	rc = store_scratch_open(s, path, O_RDWR | O_CREAT | O_TRUNC, mode, &fd);
	cr_assert_eq(rc, 0, "scratch open %s: %s", path, strerror(-rc));
	cr_assert_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

static void mk_scratch(struct store *s, const char *path, const char *text)
{
	mk_scratch_buf(s, path, text, strlen(text), 0600);
}

/* The content of scratch file `path` as a string (caller frees). */
static char *read_scratch(struct store *s, const char *path)
{
	struct stat st;
	char *buf;
	int fd = -1, rc = store_scratch_open(s, path, O_RDONLY, 0, &fd);

	cr_assert_eq(rc, 0, "scratch open %s: %s", path, strerror(-rc));
	cr_assert_eq(fstat(fd, &st), 0);
	buf = calloc(1, (size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	return buf;
}

static void expect_scratch(struct store *s, const char *path, const char *text)
{
	char *got = read_scratch(s, path);

	cr_assert_str_eq(got, text, "scratch %s", path);
	free(got);
}

static bool scratch_there(struct store *s, const char *path)
{
	struct stat st;

	return store_scratch_stat(s, path, &st) == 0;
}

static void expect_record(struct store *s, const char *id, const void *want,
			  size_t len, uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t n = 0;
	int rc = store_get(s, id, &buf, &n, &m);

	cr_assert_eq(rc, 0, "get %s: %s", id, strerror(-rc));
	cr_assert_eq(m.version, version, "%s: version %llu, want %llu", id,
		     (unsigned long long)m.version,
		     (unsigned long long)version);
	cr_assert_eq(n, len, "%s: %zu bytes, want %zu", id, n, len);
	cr_assert(memcmp(buf, want, len) == 0, "%s: content differs", id);
	free(buf);
}

static void set_xattr(struct store *s, const char *path, const char *name,
		      const char *value)
{
	int fd = -1;

	cr_assert_eq(store_scratch_open(s, path, O_RDWR, 0, &fd), 0);
	cr_assert_eq(fsetxattr(fd, name, value, strlen(value), 0), 0,
		     "fsetxattr %s: %s", name, strerror(errno));
	close(fd);
}

static void set_mtime(struct store *s, const char *path,
		      const struct timespec *t)
{
	struct timespec ts[2] = {*t, *t};
	int fd = -1;

	cr_assert_eq(store_scratch_open(s, path, O_RDWR, 0, &fd), 0);
	cr_assert_eq(futimens(fd, ts), 0);
	close(fd);
}

struct names {
	char buf[4096];
	size_t len;
	int n;
};

static int collect(void *arg, const char *name, bool is_ns)
{
	struct names *nm = arg;

	nm->len +=
		(size_t)snprintf(nm->buf + nm->len, sizeof(nm->buf) - nm->len,
				 "%s%s;", name, is_ns ? "/" : "");
	nm->n++;
	return 0;
}

/* ---- plain files that stay ---------------------------------------------- */

Test(scratch, survives_close_and_reopen_with_mode_and_xattrs)
{
	struct store *s = open_store(NULL);
	struct names nm = {0};
	char val[16] = "";
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch_buf(s, "ns/.f.abc123", "hello", 5, 0640);
	set_xattr(s, "ns/.f.abc123", "user.k", "v");
	cr_assert_eq(store_close(s), 0);

	s = open_store(NULL);
	cr_assert_eq(store_scratch_stat(s, "ns/.f.abc123", &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_size, 5);
	expect_scratch(s, "ns/.f.abc123", "hello");
	cr_assert_eq(store_scratch_open(s, "ns/.f.abc123", O_RDONLY, 0, &fd),
		     0);
	cr_assert_eq(fgetxattr(fd, "user.k", val, sizeof(val)), 1);
	close(fd);
	cr_assert_eq(store_scratch_list(s, "ns", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, ".f.abc123;");
	/* not a record: neither listed nor found as one */
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_list(s, "ns", collect, &nm), 0);
	cr_assert_eq(nm.n, 0, "store_list: %s", nm.buf);
	cr_assert_eq(store_get(s, "ns/.f.abc123", &(void *){NULL}, &(size_t){0},
			       NULL),
		     -ENOENT);
	store_close(s);
}

Test(scratch, fsync_syncs_the_file_and_its_directory)
{
	struct io *io = NULL;
	struct store *s;
	int fd = -1;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(
		store_scratch_open(s, ".x.swp", O_RDWR | O_CREAT, 0600, &fd),
		0);
	cr_assert_eq(pwrite(fd, "swap", 4, 0), 4);
	cr_assert_eq(store_scratch_fsync(s, ".x.swp", fd), 0);
	cr_assert_eq(io_hits(io, "scratch.fsync"), 1);
	cr_assert_eq(io_hits(io, "scratch.dirsync"), 1);
	/* its errors are the caller's */
	cr_assert_eq(io_arm(io, "scratch.fsync", IO_FAIL, EIO, 1, 1), 0);
	cr_assert_eq(store_scratch_fsync(s, ".x.swp", fd), -EIO);
	close(fd);
	store_close(s);
	s = open_store(NULL);
	expect_scratch(s, ".x.swp", "swap");
	store_close(s);
	io_free(io);
}

Test(scratch, open_honours_its_flags_and_the_namespace_rules)
{
	struct store *s = open_store(NULL);
	struct stat st;
	mode_t old = umask(022);
	int fd = -1;

	cr_assert_eq(
		store_scratch_open(s, "nope/.x.1", O_RDWR | O_CREAT, 0600, &fd),
		-ENOENT);
	cr_assert_eq(store_scratch_open(s, "absent~", O_RDONLY, 0, &fd),
		     -ENOENT);
	cr_assert_eq(store_scratch_open(s, "a@3", O_RDWR | O_CREAT, 0600, &fd),
		     -EINVAL);
	cr_assert_eq(store_scratch_open(s, "../x", O_RDWR | O_CREAT, 0600, &fd),
		     -EINVAL);
	cr_assert_eq(store_scratch_open(s, "x", O_RDONLY | O_DIRECTORY, 0, &fd),
		     -EINVAL);
	cr_assert_eq(fd, -1);
	/* the mode asked, exactly (no umask) */
	cr_assert_eq(store_scratch_open(s, "4913", O_WRONLY | O_CREAT | O_EXCL,
					0604, &fd),
		     0);
	close(fd);
	cr_assert_eq(store_scratch_stat(s, "4913", &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0604, "mode %o", st.st_mode & 07777);
	cr_assert_eq(store_scratch_open(s, "4913", O_WRONLY | O_CREAT | O_EXCL,
					0600, &fd),
		     -EEXIST);
	/* O_TRUNC of an existing one */
	mk_scratch(s, "f~", "abc");
	cr_assert_eq(store_scratch_open(s, "f~", O_WRONLY | O_TRUNC, 0, &fd),
		     0);
	close(fd);
	cr_assert_eq(store_scratch_stat(s, "f~", &st), 0);
	cr_assert_eq(st.st_size, 0);
	/* a namespace is not a scratch file, nor can one take its name */
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_scratch_open(s, "ns", O_RDWR | O_CREAT, 0600, &fd),
		     -EISDIR);
	cr_assert_eq(store_mkdir(s, "f~", 0755), -EEXIST);
	cr_assert_eq(store_scratch_rename(s, "f~", "ns"), -EISDIR);
	put_str(s, "r", "rec");
	cr_assert_eq(store_scratch_from_record(s, "r", "ns", NULL), -EISDIR);
	expect_record(s, "r", "rec", 3, 1);
	umask(old);
	store_close(s);
}

Test(scratch, list_names_only_the_files_of_that_namespace)
{
	struct store *s = open_store(NULL);
	struct names nm = {0};

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_mkdir(s, "ns/sub", 0755), 0);
	mk_scratch(s, "top~", "1");
	mk_scratch(s, "ns/.a.swp", "2");
	mk_scratch(s, "ns/sub/sedAbc123", "3");
	put_str(s, "ns/rec", "r");
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, "top~;"); /* not the directory ns/ */
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_scratch_list(s, "ns", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, ".a.swp;");
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_scratch_list(s, "ns/sub", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, "sedAbc123;");
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_list(s, "ns", collect, &nm), 0);
	cr_assert_eq(nm.n, 2, "store_list: %s", nm.buf); /* rec, sub/ */
	cr_assert_null(strstr(nm.buf, ".a.swp"));
	store_close(s);
}

Test(scratch, rename_replaces_the_target_and_moves_between_namespaces)
{
	struct io *io = NULL;
	struct store *s;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch(s, ".a.1", "one");
	mk_scratch(s, ".a.2", "two");
	cr_assert_eq(store_scratch_rename(s, ".a.1", ".a.2"), 0);
	cr_assert(!scratch_there(s, ".a.1"));
	expect_scratch(s, ".a.2", "one");
	cr_assert_eq(store_scratch_rename(s, ".a.2", "ns/.a.3"), 0);
	expect_scratch(s, "ns/.a.3", "one");
	cr_assert(!scratch_there(s, ".a.2"));
	cr_assert_geq(io_hits(io, "scratch.rename.dirsync"), 3);
	cr_assert_eq(store_scratch_rename(s, "ns/.a.3", "none/.a.3"), -ENOENT);
	cr_assert_eq(store_scratch_rename(s, ".nope", ".a.4"), -ENOENT);
	expect_scratch(s, "ns/.a.3", "one");
	store_close(s);
	io_free(io);
}

/* ---- scratch file -> record --------------------------------------------- */

static int no_scratch_version(void *arg, const char *id,
			      const struct store_version *v)
{
	int *n = arg;

	cr_assert_null(strstr(id, ".f.x"), "history holds scratch %s", id);
	(*n)++;
	return 0;
}

Test(scratch, rename_onto_record_commits_one_version_and_removes_the_file)
{
	struct store *s = open_store(NULL);
	struct timespec t = {1700000000, 123456789};
	struct store_result res;
	struct store_meta m;
	char val[16] = "";
	int nver = 0;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(put_str(s, "ns/f", "old"), 1);
	cr_assert_eq(store_xattr_set(s, "ns/f", "user.gone", "g", 1, 0), 0);
	mk_scratch_buf(s, "ns/.f.x1", "new", 3, 0604);
	set_xattr(s, "ns/.f.x1", "user.a", "1");
	set_xattr(s, "ns/.f.x1", "user.recfs.version", "99");
	set_mtime(s, "ns/.f.x1", &t);

	cr_assert_eq(store_scratch_commit(s, "ns/.f.x1", "ns/f", NULL, &res),
		     0);
	cr_assert_eq(res.version, 2);
	cr_assert(!res.noop);
	cr_assert(!scratch_there(s, "ns/.f.x1"));
	expect_record(s, "ns/f", "new", 3, 2);
	cr_assert_eq(store_stat(s, "ns/f", &m, false), 0);
	cr_assert_eq(m.mode, 0604, "mode %o", m.mode);
	cr_assert_eq(m.mtime.tv_sec, t.tv_sec);
	cr_assert_eq(m.mtime.tv_nsec, t.tv_nsec);
	/* the file's user xattrs over the record's own, which it keeps (sed
	   -i and editors do not copy them); computed ones are not kept */
	cr_assert_eq(store_xattr_get(s, "ns/f", "user.a", val, sizeof(val)), 1);
	cr_assert_eq(store_xattr_get(s, "ns/f", "user.gone", val, sizeof(val)),
		     1);
	cr_assert_eq(store_xattr_get(s, "ns/f", "user.recfs.version", val,
				     sizeof(val)),
		     -ENODATA);

	/* a new record too, with the args' mode */
	mk_scratch(s, "ns/.f.x2", "fresh");
	cr_assert_eq(
		store_scratch_commit(
			s, "ns/.f.x2", "ns/g",
			&(struct store_commit_args){
				.cond = {STORE_COND_CREATE, 0}, .mode = 0640},
			&res),
		0);
	expect_record(s, "ns/g", "fresh", 5, 1);
	cr_assert_eq(store_stat(s, "ns/g", &m, false), 0);
	cr_assert_eq(m.mode, 0640);

	/* the history has the versions, never the scratch files */
	cr_assert_eq(store_history_drain(s, 0), 0);
	cr_assert_eq(store_history_each(s, NULL, no_scratch_version, &nver), 0);
	cr_assert_eq(nver, 3, "%d versions in the history", nver);
	store_close(s);
	s = open_store(NULL);
	expect_record(s, "ns/f", "new", 3, 2);
	cr_assert(!scratch_there(s, "ns/.f.x1"));
	store_close(s);
}

Test(scratch, failing_condition_leaves_record_and_file_untouched)
{
	struct store *s = open_store(NULL);
	struct store_commit_args a = {.cond = {STORE_COND_IF_VERSION, 5},
				      .mode = -1};
	struct store_result res;

	put_str(s, "f", "old");
	mk_scratch(s, ".f.x", "new");
	cr_assert_eq(store_scratch_commit(s, ".f.x", "f", &a, &res), -ESTALE);
	cr_assert_eq(res.current, 1);
	a.cond.kind = STORE_COND_CREATE;
	cr_assert_eq(store_scratch_commit(s, ".f.x", "f", &a, &res), -ESTALE);
	expect_record(s, "f", "old", 3, 1);
	expect_scratch(s, ".f.x", "new");
	/* missing namespace, missing file */
	cr_assert_eq(store_scratch_commit(s, ".f.x", "nope/f", NULL, NULL),
		     -ENOENT);
	cr_assert_eq(store_scratch_commit(s, ".f.y", "f", NULL, NULL), -ENOENT);
	expect_scratch(s, ".f.x", "new");
	a.cond.kind = STORE_COND_IF_VERSION;
	a.cond.version = 1;
	cr_assert_eq(store_scratch_commit(s, ".f.x", "f", &a, &res), 0);
	expect_record(s, "f", "new", 3, 2);
	store_close(s);
}

Test(scratch, identical_content_is_a_noop_that_still_removes_the_file)
{
	struct store *s = open_store(NULL);
	struct store_result res;
	struct store_meta m;

	put_str(s, "f", "same");
	cr_assert_eq(store_stat(s, "f", &m, false), 0);
	mk_scratch(s, "sedAAAAAA", "same");
	set_mtime(s, "sedAAAAAA", &m.mtime);
	cr_assert_eq(store_scratch_commit(
			     s, "sedAAAAAA", "f",
			     &(struct store_commit_args){.mode = (int)m.mode},
			     &res),
		     0);
	cr_assert(res.noop);
	cr_assert_eq(res.version, 1);
	cr_assert(!scratch_there(s, "sedAAAAAA"));
	store_close(s);
}

/* One commit of scratch `path` onto `id` at v1 "old", with failpoint
   `point` failing once: both consistent after a reopen. */
static void commit_failing_at(const char *point, const void *content,
			      size_t len, int *outcome)
{
	struct io *io = NULL;
	struct store *s;
	unsigned hits;
	int rc;

	sandbox_rm(spath);
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	put_str(s, "f", "old");
	mk_scratch_buf(s, ".f.x", content, len, 0600);
	hits = io_hits(io, point);
	cr_assert_eq(io_arm(io, point, IO_FAIL, EIO, 1, 1), 0);
	rc = store_scratch_commit(s, ".f.x", "f", NULL, NULL);
	cr_assert_gt(io_hits(io, point), hits, "%s: never reached", point);
	io_disarm_all(io);
	store_close(s);
	io_free(io);

	s = open_store(NULL);
	if (rc) {
		/* failed: as if it had not been tried */
		expect_record(s, "f", "old", 3, 1);
		cr_assert(scratch_there(s, ".f.x"), "%s: scratch gone", point);
		cr_assert_eq(store_scratch_commit(s, ".f.x", "f", NULL, NULL),
			     0, "%s: no retry", point);
	}
	/* committed (now, or before the reopen) */
	expect_record(s, "f", content, len, 2);
	*outcome = rc;
	if (strcmp(point, "scratch.commit.unlink") == 0)
		cr_assert(scratch_there(s, ".f.x"), "left behind, logged");
	else
		cr_assert(!scratch_there(s, ".f.x"), "%s: scratch left", point);
	store_close(s);
}

Test(scratch, commit_failing_at_each_step_leaves_record_and_file_consistent)
{
	static const char *const small[] = {
		"scratch.open",	  "scratch.copy",
		"commit.journal", "jnl.write",
		"jnl.fsync",	  "commit.publish",
		"commit.rename",  "scratch.commit.unlink"};
	static const char *const big[] = {"stage.fsync", "stage.dirsync",
					  "jnl.fsync", "commit.rename"};
	char *buf = malloc(BIG_LEN);
	int rc;

	cr_assert_not_null(buf);
	memset(buf, 'b', BIG_LEN);
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		commit_failing_at(small[i], "new", 3, &rc);
		/* before the commit point it fails; after it, it is done */
		cr_assert_eq(rc != 0, i < 5, "%s: rc %d", small[i], rc);
	}
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		commit_failing_at(big[i], buf, BIG_LEN, &rc);
		cr_assert_eq(rc != 0, i < 3, "%s (big): rc %d", big[i], rc);
	}
	free(buf);
}

/* In a child: commit .f.x onto f, crashing at `point`. */
static int crash_child(const char *point)
{
	pid_t pid = fork();
	int status = 0;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct io *io = NULL;
		struct store *s = NULL;
		struct store_opts o = {.path = spath};

		if (io_new(&io) || io_arm(io, point, IO_CRASH, 0, 1, 1))
			_exit(2);
		o.io = io;
		if (store_open(&s, &o))
			_exit(3);
		store_scratch_commit(s, ".f.x", "f", NULL, NULL);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

Test(scratch, crash_at_each_step_keeps_the_commit_or_the_file)
{
	static const char *const points[] = {
		"scratch.open",		"scratch.copy",
		"commit.journal",	"jnl.fsync",
		"commit.publish",	"commit.rename",
		"scratch.commit.unlink"};
	struct store_verify_report rep;

	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		struct store *s;
		uint64_t v;
		int code;

		sandbox_rm(spath);
		s = open_store(NULL);
		put_str(s, "f", "old");
		mk_scratch(s, ".f.x", "new");
		store_close(s);
		code = crash_child(points[i]);
		cr_assert_eq(code, IO_CRASH_STATUS, "%s: exit %d", points[i],
			     code);
		s = open_store(NULL);
		cr_assert_eq(store_last_version(s, "f", &v), 0);
		/* before the commit point: not committed; at jnl.fsync the
		   record was written but not synced (either); after: kept */
		cr_assert(i == 3 || (v == 1) == (i < 3), "%s: version %llu",
			  points[i], (unsigned long long)v);
		if (v == 1) {
			expect_record(s, "f", "old", 3, 1);
			expect_scratch(s, ".f.x", "new");
		} else {
			/* the file may be left behind, never lost unseen */
			expect_record(s, "f", "new", 3, 2);
			if (scratch_there(s, ".f.x"))
				expect_scratch(s, ".f.x", "new");
		}
		cr_assert_eq(store_verify(s, &rep), 0, "%s: verify", points[i]);
		store_close(s);
	}
}

/* ---- record -> scratch file --------------------------------------------- */

Test(scratch, record_onto_scratch_name_moves_content_mode_mtime_xattrs)
{
	struct store *s = open_store(NULL);
	struct timespec t = {1600000000, 42};
	struct store_who who = {.uid = 7, .pid = 8, .comm = "vim"};
	char val[16] = "";
	struct stat st;
	uint64_t last;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_put(s, "ns/f", "content", 7,
			       &(struct store_commit_args){.mode = 0640,
							   .mtime = &t},
			       NULL),
		     0);
	cr_assert_eq(store_xattr_set(s, "ns/f", "user.b", "bb", 2, 0), 0);
	mk_scratch(s, "ns/f~", "older backup"); /* replaced, as rename(2) */

	cr_assert_eq(store_scratch_from_record(s, "ns/f", "ns/f~", &who), 0);
	cr_assert_eq(store_stat(s, "ns/f", &(struct store_meta){0}, false),
		     -ENOENT);
	cr_assert_eq(store_last_version(s, "ns/f", &last), 0);
	cr_assert_eq(last, 1);
	expect_scratch(s, "ns/f~", "content");
	cr_assert_eq(store_scratch_stat(s, "ns/f~", &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_mtim.tv_sec, t.tv_sec);
	cr_assert_eq(st.st_mtim.tv_nsec, t.tv_nsec);
	cr_assert_eq(store_scratch_open(s, "ns/f~", O_RDONLY, 0, &fd), 0);
	cr_assert_eq(fgetxattr(fd, "user.b", val, sizeof(val)), 2);
	close(fd);
	store_close(s);

	/* and back: the same content, mode and time again */
	s = open_store(NULL);
	expect_scratch(s, "ns/f~", "content");
	cr_assert_eq(store_scratch_commit(s, "ns/f~", "ns/f", NULL, NULL), 0);
	expect_record(s, "ns/f", "content", 7, 2);
	cr_assert_eq(store_xattr_get(s, "ns/f", "user.b", val, sizeof(val)), 2);
	store_close(s);
}

Test(scratch, record_onto_scratch_name_failing_changes_nothing)
{
	struct io *io = NULL;
	struct store *s;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	put_str(s, "f", "rec");
	mk_scratch(s, "f~", "keep");
	/* the delete fails: the old scratch file is put back */
	cr_assert_eq(io_arm(io, "commit.journal", IO_FAIL, EIO, 1, 1), 0);
	cr_assert_eq(store_scratch_from_record(s, "f", "f~", NULL), -EIO);
	expect_record(s, "f", "rec", 3, 1);
	expect_scratch(s, "f~", "keep");
	/* placing it fails */
	cr_assert_eq(io_arm(io, "scratch.place.dirsync", IO_FAIL, EIO, 1, 1),
		     0);
	cr_assert_eq(store_scratch_from_record(s, "f", "g~", NULL), -EIO);
	expect_record(s, "f", "rec", 3, 1);
	cr_assert(!scratch_there(s, "g~"));
	cr_assert_eq(store_scratch_from_record(s, "none", "g~", NULL), -ENOENT);
	cr_assert_eq(store_scratch_from_record(s, "f", "nope/g~", NULL),
		     -ENOENT);
	cr_assert(!scratch_there(s, "g~"));
	expect_record(s, "f", "rec", 3, 1);
	store_close(s);
	io_free(io);
}

/* ---- namespaces --------------------------------------------------------- */

Test(scratch, rmdir_refuses_a_namespace_holding_scratch_files)
{
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64];
	struct stat st;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch(s, "ns/.x.swp", "s");
	cr_assert_eq(store_rmdir(s, "ns"), -ENOTEMPTY);
	expect_scratch(s, "ns/.x.swp", "s");
	cr_assert_eq(store_scratch_unlink(s, "ns/.x.swp"), 0);
	cr_assert_eq(store_scratch_unlink(s, "ns/.x.swp"), -ENOENT);
	cr_assert_eq(store_rmdir(s, "ns"), 0);
	snprintf(p, sizeof(p), "%s/scratch/ns", spath);
	cr_assert_eq(lstat(p, &st), -1, "scratch/ns left behind");
	cr_assert_eq(store_scratch_open(s, "ns/.y", O_RDWR | O_CREAT, 0600,
					&(int){-1}),
		     -ENOENT);
	store_close(s);
}

Test(scratch, rename_ns_holding_scratch_files_is_exdev)
{
	struct store *s = open_store(NULL);

	cr_assert_eq(store_mkdir(s, "a", 0755), 0);
	mk_scratch(s, "a/.x.1", "s");
	cr_assert_eq(store_rename_ns(s, "a", "b"), -EXDEV);
	expect_scratch(s, "a/.x.1", "s");
	cr_assert_eq(store_scratch_unlink(s, "a/.x.1"), 0);
	cr_assert_eq(store_rename_ns(s, "a", "b"), 0);
	mk_scratch(s, "b/.x.2", "t");
	expect_scratch(s, "b/.x.2", "t");
	cr_assert(!scratch_there(s, "a/.x.1"));
	store_close(s);
}

/* ---- the store directory ------------------------------------------------ */

Test(scratch, symlinks_planted_in_the_scratch_tree_are_refused)
{
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64], out[PATH_MAX + 64];
	struct names nm = {0};
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	snprintf(out, sizeof(out), "%s/outside", base);
	cr_assert_eq(mkdir(out, 0700), 0);
	snprintf(p, sizeof(p), "%s/outside/secret", base);
	cr_assert_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	/* a file and a namespace directory replaced by symlinks */
	snprintf(p, sizeof(p), "%s/scratch/link~", spath);
	cr_assert_eq(symlink(out, p), 0);
	snprintf(p, sizeof(p), "%s/scratch/ns", spath);
	cr_assert_eq(symlink(out, p), 0);

	cr_assert_eq(store_scratch_open(s, "link~", O_RDONLY, 0, &fd), -ELOOP);
	cr_assert_eq(store_scratch_stat(s, "link~", &st), -ELOOP);
	cr_assert_eq(store_scratch_unlink(s, "link~"), -ELOOP);
	cr_assert_eq(store_scratch_open(s, "ns/secret", O_RDWR, 0, &fd),
		     -ELOOP);
	cr_assert_eq(
		store_scratch_open(s, "ns/new~", O_RDWR | O_CREAT, 0600, &fd),
		-ELOOP);
	cr_assert_eq(store_scratch_commit(s, "ns/secret", "f", NULL, NULL),
		     -ELOOP);
	cr_assert_eq(fd, -1);
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), 0);
	cr_assert_eq(nm.n, 0, "listed: %s", nm.buf);
	cr_assert_neq(store_scratch_list(s, "ns", collect, &nm), 0);
	snprintf(p, sizeof(p), "%s/outside/new~", base);
	cr_assert_eq(lstat(p, &st), -1, "created outside the store");
	snprintf(p, sizeof(p), "%s/scratch/link~", spath);
	cr_assert_eq(lstat(p, &st), 0, "the link was removed");
	store_close(s);
}

Test(scratch, verify_is_clean_with_scratch_files)
{
	struct store *s = open_store(NULL);
	struct store_verify_report rep;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put_str(s, "a", "1");
	put_str(s, "ns/b", "2");
	mk_scratch(s, ".a.XXXXXX", "3");
	mk_scratch(s, "ns/b~", "4");
	mk_scratch(s, "ns/4913", "");
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, 2);
	cr_assert_eq(rep.strays, 0);
	cr_assert_eq(rep.unindexed, 0);
	cr_assert_eq(rep.bad, 0);
	cr_assert_eq(rep.hist_bad, 0);
	store_close(s);
	s = open_store(NULL);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, 2);
	expect_scratch(s, "ns/b~", "4");
	store_close(s);
}

Test(scratch, backup_carries_scratch_files)
{
	struct store *s = open_store(NULL);
	struct timespec t = {1650000000, 5};
	char val[8] = "";
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put_str(s, "ns/f", "rec");
	mk_scratch_buf(s, "ns/.f.swp", "swap", 4, 0640);
	set_xattr(s, "ns/.f.swp", "user.s", "x");
	set_mtime(s, "ns/.f.swp", &t);
	cr_assert_eq(store_backup(s, dpath, NULL), 0);
	store_close(s);

	s = open_opts(dpath, NULL, false);
	expect_record(s, "ns/f", "rec", 3, 1);
	expect_scratch(s, "ns/.f.swp", "swap");
	cr_assert_eq(store_scratch_stat(s, "ns/.f.swp", &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(st.st_mtim.tv_sec, t.tv_sec);
	cr_assert_eq(store_scratch_open(s, "ns/.f.swp", O_RDONLY, 0, &fd), 0);
	cr_assert_eq(fgetxattr(fd, "user.s", val, sizeof(val)), 1);
	close(fd);
	store_close(s);
}

Test(scratch, read_only_store_reads_but_refuses_changes)
{
	struct store *s = open_store(NULL);
	int fd = -1;

	put_str(s, "f", "rec");
	mk_scratch(s, "f~", "bak");
	store_close(s);
	s = open_opts(spath, NULL, true);
	expect_scratch(s, "f~", "bak");
	cr_assert_eq(store_scratch_open(s, "f~", O_RDWR, 0, &fd), -EROFS);
	cr_assert_eq(store_scratch_open(s, "g~", O_RDONLY | O_CREAT, 0600, &fd),
		     -EROFS);
	cr_assert_eq(store_scratch_unlink(s, "f~"), -EROFS);
	cr_assert_eq(store_scratch_rename(s, "f~", "g~"), -EROFS);
	cr_assert_eq(store_scratch_commit(s, "f~", "f", NULL, NULL), -EROFS);
	cr_assert_eq(store_scratch_from_record(s, "f", "g~", NULL), -EROFS);
	store_close(s);
}

Test(scratch, memory_backend_has_no_scratch_files)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store *s = NULL;
	struct names nm = {0};
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_open(&s, &o), 0);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_scratch_open(s, "x~", O_RDWR | O_CREAT, 0600, &fd),
		     -ENOTSUP);
	cr_assert_eq(store_scratch_stat(s, "x~", &st), -ENOTSUP);
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), -ENOTSUP);
	cr_assert_eq(store_scratch_unlink(s, "x~"), -ENOTSUP);
	cr_assert_eq(store_scratch_rename(s, "x~", "y~"), -ENOTSUP);
	cr_assert_eq(store_scratch_commit(s, "x~", "x", NULL, NULL), -ENOTSUP);
	cr_assert_eq(store_scratch_from_record(s, "x", "x~", NULL), -ENOTSUP);
	/* namespaces work as before */
	cr_assert_eq(store_rmdir(s, "ns"), 0);
	store_close(s);
}

Test(scratch, a_symlink_planted_as_the_scratch_tree_fails_the_open)
{
	struct store_opts o = {.path = spath};
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64], out[PATH_MAX + 64];

	store_close(s);
	snprintf(p, sizeof(p), "%s/scratch", spath);
	snprintf(out, sizeof(out), "%s/outside", base);
	cr_assert_eq(mkdir(out, 0700), 0);
	cr_assert_eq(rmdir(p), 0);
	cr_assert_eq(symlink(out, p), 0);
	cr_assert_neq(store_open(&s, &o), 0);
	cr_assert_null(s);
	cr_assert_eq(rmdir(out), 0, "something was made outside the store");
}
