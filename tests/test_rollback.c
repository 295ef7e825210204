/*
 * test_rollback.c - whole-store operations made of one txn
 * (store/rollback.c): store_rollback_to (every record as of a revision,
 * history only growing, dry runs, revision 0 and the current one, a
 * concurrent change), store_revision_at, and store_import (nested files,
 * skipped names, symlinks and FIFOs, modes, progress, no-op re-imports).
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
#include "store_history.h"
#include "txn.h"

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

static void setup(void)
{
	sandbox_store("rollback", true);
}

TestSuite(rollback, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

static struct store *open_io(struct io *io)
{
	struct store_opts o = {.path = spath, .create = true, .io = io};
	return open_ok(&o);
}

static struct store *open_store(void)
{
	return open_io(NULL);
}

/* ---- rollback and import (store/rollback.c) ------------------------------ */

static int count_versions(void *arg, const char *id,
			  const struct store_version *v)
{
	(*(size_t *)arg)++;
	return 0;
}

static size_t history_size(struct store *s)
{
	size_t n = 0;

	cr_assert_eq(store_history_drain(s, 60000), 0);
	cr_assert_eq(store_history_each(s, NULL, count_versions, &n), 0);
	return n;
}

Test(rollback, rollback_to_a_revision_restores_every_record_as_one_change)
{
	struct store *s = open_store();
	struct store_bulk_result res;
	uint64_t r3, now;
	size_t hist0;

	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put_text(s, "ns/c", "c-1");
	put_text(s, "same", "s-1");
	r3 = store_revision(s);
	put_text(s, "a", "a-2");
	put_text(s, "a", "a-3");
	cr_assert_eq(store_delete(s, "b", NULL, NULL, NULL), 0);
	put_text(s, "d", "d-1");
	cr_assert_eq(store_rename(s, "ns/c", "e", NULL, NULL, NULL), 0);
	cr_assert_eq(store_rmdir(s, "ns"), 0);
	put_text(s, "same", "s-2");
	put_text(s, "same", "s-1"); /* back to the content it had at r3 */
	now = store_revision(s);
	hist0 = history_size(s);

	cr_assert_eq(store_rollback_to(s, now + 1, NULL, &res), -EINVAL);
	cr_assert_eq(store_revision(s), now);

	/* a dry run changes nothing */
	cr_assert_eq(store_rollback_to(
			     s, r3, &(struct store_bulk_args){.dry_run = true},
			     &res),
		     0);
	cr_assert_eq(res.revision, 0);
	cr_assert_eq(res.puts, 3);    /* a, b, ns/c */
	cr_assert_eq(res.deletes, 2); /* d, e */
	cr_assert_eq(store_revision(s), now);

	cr_assert_eq(store_rollback_to(s, r3, NULL, &res), 0);
	cr_assert_eq(res.revision, now + 1, "one store change");
	cr_assert_eq(store_revision(s), now + 1);
	cr_assert_eq(res.puts, 3);
	cr_assert_eq(res.deletes, 2);
	cr_assert(holds_text(s, "a", "a-1", 4), "a: a new version");
	cr_assert(holds_text(s, "b", "b-1", 2), "b: re-created");
	cr_assert(holds_text(s, "ns/c", "c-1", 2), "ns/c: re-created");
	cr_assert(gone(s, "d", 1));
	cr_assert(gone(s, "e", 1));
	cr_assert(holds_text(s, "same", "s-1", 3), "same: untouched");
	/* history only grew: 5 more versions */
	cr_assert_eq(history_size(s), hist0 + 5);
	check_verify(s, "after the rollback", NULL);

	/* rolling back to the current revision changes nothing */
	cr_assert_eq(store_rollback_to(s, store_revision(s), NULL, &res), 0);
	cr_assert_eq(res.revision, 0);
	cr_assert_eq(res.puts + res.deletes, 0);
	cr_assert_eq(store_revision(s), now + 1);
	/* nor does rolling back to r3 again */
	cr_assert_eq(store_rollback_to(s, r3, NULL, &res), 0);
	cr_assert_eq(res.revision, 0);

	/* revision 0: the empty store */
	cr_assert_eq(store_rollback_to(s, 0, NULL, &res), 0);
	cr_assert_eq(res.deletes, 4);
	cr_assert(gone(s, "a", 4) && gone(s, "b", 2) && gone(s, "same", 3));
	cr_assert_eq(store_close(s), 0);
	s = open_store();
	cr_assert(gone(s, "ns/c", 2));
	check_verify(s, "after reopening", NULL);
	cr_assert_eq(store_close(s), 0);
}

struct rev_time {
	uint64_t rev;
	struct timespec t;
};

static int find_rev_time(void *arg, const char *id,
			 const struct store_version *v)
{
	struct rev_time *rt = arg;

	if (v->revision == rt->rev)
		rt->t = v->time;
	return 0;
}

Test(rollback, revision_at_a_time_is_the_last_one_made_by_then)
{
	struct store *s = open_store();
	struct rev_time rt = {.rev = 2};
	struct timespec t;
	uint64_t rev = 99;

	put_text(s, "a", "a-1");
	put_text(s, "a", "a-2");
	put_text(s, "b", "b-1");
	cr_assert_eq(store_history_drain(s, 60000), 0);
	cr_assert_eq(store_history_each(s, NULL, find_rev_time, &rt), 0);
	cr_assert_neq(rt.t.tv_sec, 0);
	cr_assert_eq(store_revision_at(s, &rt.t, &rev), 0);
	cr_assert_eq(rev, 2);
	t = rt.t;
	if (t.tv_nsec)
		t.tv_nsec--;
	else
		t.tv_sec--, t.tv_nsec = 999999999;
	cr_assert_eq(store_revision_at(s, &t, &rev), 0);
	cr_assert_eq(rev, 1);
	t = (struct timespec){0};
	cr_assert_eq(store_revision_at(s, &t, &rev), 0);
	cr_assert_eq(rev, 0);
	t.tv_sec = rt.t.tv_sec + 3600;
	cr_assert_eq(store_revision_at(s, &t, &rev), 0);
	cr_assert_eq(rev, 3);
	cr_assert_eq(store_close(s), 0);
}

/* A file as a user makes it: 0666 less the umask. */
static void write_plain(const char *path, const char *text)
{
	write_file_mode(path, text, strlen(text), 0666);
}

struct prog {
	size_t calls, last, total;
};

static void on_progress(void *arg, size_t done, size_t total)
{
	struct prog *p = arg;

	p->calls++;
	p->last = done;
	p->total = total;
}

Test(rollback, import_makes_every_file_a_version_in_one_change)
{
	char dir[PATH_MAX + 64], path[PATH_MAX + 128];
	struct store_bulk_result res;
	struct prog pr = {0};
	struct store_bulk_args a = {.progress = on_progress,
				    .progress_arg = &pr};
	struct store *s = open_store();
	struct store_meta m;
	size_t hist0;
	uint64_t rev0;

	snprintf(dir, sizeof(dir), "%s/import", base);
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/sub", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/sub/deep", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/top", dir);
	write_plain(path, "top-1");
	snprintf(path, sizeof(path), "%s/sub/b", dir);
	write_plain(path, "b-1");
	cr_assert_eq(chmod(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/sub/deep/c", dir);
	write_plain(path, "c-1");
	snprintf(path, sizeof(path), "%s/same", dir);
	write_plain(path, "same");
	/* skipped: a reserved name and a FIFO; symlinks (to a file and to
	   a dir) become symlink records, never followed; ".git" is an
	   ordinary name (SPEC 2) */
	snprintf(path, sizeof(path), "%s/x@3", dir);
	write_plain(path, "reserved");
	snprintf(path, sizeof(path), "%s/link", dir);
	cr_assert_eq(symlink("/etc/passwd", path), 0);
	snprintf(path, sizeof(path), "%s/dirlink", dir);
	cr_assert_eq(symlink("/etc", path), 0);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/.git", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/.git/config", dir);
	write_plain(path, "no");

	put_text(s, "same", "same");
	put_text(s, "top", "top-0");
	rev0 = store_revision(s);
	hist0 = history_size(s);
	cr_assert_eq(store_import(s, dir, &a, &res), 0);
	cr_assert_eq(res.revision, rev0 + 1);
	cr_assert_eq(store_revision(s), rev0 + 1);
	cr_assert_eq(res.puts, 6);
	cr_assert_eq(res.noops, 1);
	cr_assert_eq(res.skipped, 2);
	cr_assert(holds_text(s, "top", "top-1", 2));
	cr_assert(holds_text(s, "sub/b", "b-1", 1));
	cr_assert(holds_text(s, "sub/deep/c", "c-1", 1));
	cr_assert(holds_text(s, "same", "same", 1));
	cr_assert_eq(store_stat(s, "sub/b", &m, false), 0);
	cr_assert_eq(m.mode, 0600);
	cr_assert_eq(store_stat(s, "link", &m, false), 0);
	cr_assert(m.symlink);
	cr_assert(holds_text(s, "link", "/etc/passwd", 1));
	cr_assert(holds_text(s, "dirlink", "/etc", 1));
	cr_assert(holds_text(s, ".git/config", "no", 1));
	cr_assert_eq(store_stat(s, "sub/b", &m, false), 0);
	cr_assert_not(m.symlink);
	cr_assert_eq(store_stat(s, "fifo", &m, false), -ENOENT);
	cr_assert_gt(pr.calls, 0);
	cr_assert_eq(pr.last, 7);
	cr_assert_eq(pr.total, 7);
	cr_assert_eq(history_size(s), hist0 + 6);
	check_verify(s, "after the import", NULL);

	/* again: nothing changes */
	cr_assert_eq(store_import(s, dir, NULL, &res), 0);
	cr_assert_eq(res.revision, 0);
	cr_assert_eq(res.noops, 7);
	cr_assert_eq(store_revision(s), rev0 + 1);

	/* not a directory */
	cr_assert_eq(store_import(s, "/nonexistent/dir", NULL, &res), -ENOENT);
	cr_assert_eq(store_close(s), 0);
}

struct rb_thread {
	struct store *s;
	uint64_t revision;
	struct store_bulk_result res;
	int rc;
};

static void *rollback_thread(void *arg)
{
	struct rb_thread *r = arg;

	r->rc = store_rollback_to(r->s, r->revision, NULL, &r->res);
	return NULL;
}

Test(rollback, rollback_fails_with_estale_when_a_record_changes_meanwhile)
{
	struct rb_thread rb = {0};
	struct io *io = NULL;
	struct store *s;
	pthread_t th;
	uint64_t r2, now;

	cr_assert_eq(io_new(&io), 0);
	s = open_io(io);
	put_text(s, "a", "a-1");
	put_text(s, "b", "b-1");
	r2 = store_revision(s);
	put_text(s, "a", "a-2");
	put_text(s, "b", "b-2");
	/* the plan stages a's old content, and stalls there; meanwhile b
	   changes (its stage is the point's second hit: not stalled) */
	cr_assert_eq(io_arm(io, "stage.create", IO_STALL, 0, 1, 1), 0);
	rb.s = s;
	rb.revision = r2;
	cr_assert_eq(pthread_create(&th, NULL, rollback_thread, &rb), 0);
	for (int i = 0; i < 5000 && !io_stalled(io, "stage.create"); i++)
		usleep(1000);
	cr_assert_eq(io_stalled(io, "stage.create"), 1, "the plan stalled");
	put_text(s, "b", "b-3");
	now = store_revision(s);
	io_release(io);
	pthread_join(th, NULL);
	cr_assert_eq(rb.rc, -ESTALE, "rollback: %s", strerror(-rb.rc));
	cr_assert_eq(store_revision(s), now, "nothing was committed");
	cr_assert(holds_text(s, "a", "a-2", 2));
	cr_assert(holds_text(s, "b", "b-3", 3));
	/* tried again, it goes through */
	cr_assert_eq(store_rollback_to(s, r2, NULL, &rb.res), 0);
	cr_assert_eq(rb.res.revision, now + 1);
	cr_assert(holds_text(s, "a", "a-1", 3));
	cr_assert(holds_text(s, "b", "b-1", 4));
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

/* A rollback restores content and kind; mode and owner stay current. */
Test(rollback, rollback_restores_symlinks_and_keeps_mode_and_owner)
{
	struct store_commit_args l = {.mode = -1, .symlink = true};
	struct store_bulk_result res;
	struct store_meta m;
	struct store *s = open_store();
	uint64_t rev1;

	cr_assert_eq(store_put(s, "ln", "../t", 4, &l, NULL), 0);
	cr_assert_eq(store_put(s, "gone", "x", 1, &l, NULL), 0);
	rev1 = store_revision(s);
	put_text(s, "ln", "a file now");
	cr_assert_eq(store_set_owner(s, "ln", 12, 34), 0);
	cr_assert_eq(store_set_meta(s, "ln", NULL, 0600), 0);
	cr_assert_eq(store_delete(s, "gone", NULL, NULL, NULL), 0);
	cr_assert_eq(store_rollback_to(s, rev1, NULL, &res), 0);
	cr_assert_eq(res.puts, 2);
	cr_assert(holds_text(s, "ln", "../t", 3));
	cr_assert_eq(store_stat(s, "ln", &m, false), 0);
	cr_assert(m.symlink);
	cr_assert(m.uid == 12 && m.gid == 34 && m.mode == 0600);
	cr_assert(holds_text(s, "gone", "x", 2));
	cr_assert_eq(store_stat(s, "gone", &m, false), 0);
	cr_assert(m.symlink, "re-created as the symlink it was");
	/* the same target as a file is not "the same again" */
	put_text(s, "ln", "../t");
	cr_assert_eq(store_rollback_to(s, rev1, NULL, &res), 0);
	cr_assert_eq(res.puts, 1);
	cr_assert_eq(store_stat(s, "ln", &m, false), 0);
	cr_assert(m.symlink);
	check_verify(s, "after the rollbacks", NULL);
	cr_assert_eq(store_close(s), 0);
}
