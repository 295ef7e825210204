/*
 * test_scratch_commit.c - scratch files (store/scratch.c) renamed onto a
 * record become its next version (and only then, as one commit, the file
 * gone after); a record renamed onto a scratch name comes back as a
 * scratch file. A commit failing or crashing at each of its steps leaves
 * the record at its old version with the scratch file, or at the new one.
 * The fixture is in scratch_helpers.h.
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "scratch.h"
#include "scratch_helpers.h"
#include "store.h"
#include "store_history.h"

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

TestSuite(scratch, .init = scratch_setup, .fini = sandbox_store_rm,
	  .timeout = 300);

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
			/* committed: the record names the file, and the
			   replay removed it if the crash left it (a rename
			   never leaves its source name behind) */
			expect_record(s, "f", "new", 3, 2);
			cr_assert(!scratch_there(s, ".f.x"),
				  "%s: scratch file left", points[i]);
		}
		cr_assert_eq(store_verify(s, &rep), 0, "%s: verify", points[i]);
		store_close(s);
	}
}

/* A crash after the commit's journal record, before its unlink; then a
   new scratch file under the same name, before the store is opened
   again: the replay removes only the file the record committed. */
Test(scratch, replay_keeps_a_new_file_under_the_committed_name)
{
	char p[PATH_MAX];
	struct store *s;
	int fd;

	sandbox_rm(spath);
	s = open_store(NULL);
	put_str(s, "f", "old");
	mk_scratch(s, ".f.x", "new");
	store_close(s);
	cr_assert_eq(crash_child("scratch.commit.unlink"), IO_CRASH_STATUS);
	cr_assert_lt(snprintf(p, sizeof(p), "%s/scratch/.f.x", spath),
		     (int)sizeof(p));
	cr_assert_eq(unlink(p), 0, "%s: %s", p, strerror(errno));
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(write(fd, "later", 5), 5);
	close(fd);
	s = open_store(NULL);
	expect_record(s, "f", "new", 3, 2);
	expect_scratch(s, ".f.x", "later");
	store_close(s);
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
