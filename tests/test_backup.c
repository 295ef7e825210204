/*
 * test_backup.c - store_backup and store_verify_repair (store/backup.c,
 * store/verify.c): a backup is a complete store at one revision, with
 * its history, made 0700/0600 without the lock, refused for a DEST that
 * is not new or empty, removed when it fails, consistent while commits
 * go on; repair puts a record's content back from the history without a
 * new version, and leaves (and reports) what it cannot repair.
 *
 * Each test builds its store in a fresh mkdtemp directory, on tmpfs
 * (/dev/shm) when there is one (RECFS_TEST_TMPDIR overrides).
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG_LEN ((size_t)(1u << 20) + 777) /* committed by reference */

static char dpath[PATH_MAX + 32]; /* base/copy */

static void setup(void)
{
	sandbox_store("backup", false);
	snprintf(dpath, sizeof(dpath), "%s/copy", base);
}

TestSuite(backup, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- helpers ------------------------------------------------------------ */

static struct store *open_at(const char *path, struct io *io)
{
	struct store_opts o = {.path = path, .create = true, .io = io};
	return open_ok(&o);
}

static uint64_t put(struct store *s, const char *id, const void *buf,
		    size_t len)
{
	struct store_result r;
	int rc = store_put(s, id, buf, len, NULL, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.version;
}

static uint64_t put_str(struct store *s, const char *id, const char *text)
{
	return put(s, id, text, strlen(text));
}

static int count_one(void *arg, const char *id, const struct store_version *v)
{
	(*(unsigned *)arg)++;
	return 0;
}

static unsigned history_count(struct store *s)
{
	unsigned n = 0;
	int rc = store_history_each(s, NULL, count_one, &n);

	cr_assert_eq(rc, 0, "history_each: %s", strerror(-rc));
	return n;
}

/* Every file under `root` 0600 and every directory 0700? */
static int bad_modes;
static int mode_one(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	unsigned want = S_ISDIR(sb->st_mode) ? 0700 : 0600;

	if ((sb->st_mode & 07777) != want) {
		cr_log_error("%s: mode %o", path, sb->st_mode & 07777);
		bad_modes++;
	}
	return 0;
}

/* ---- backup ------------------------------------------------------------- */

Test(backup, copy_is_a_complete_private_store_with_records_and_history)
{
	struct store_backup_report rep;
	struct store_verify_report vr;
	struct store *s = open_at(spath, NULL), *c;
	char *big = malloc(BIG_LEN), path[PATH_MAX + 64];
	unsigned hist;
	struct stat st;

	cr_assert_not_null(big);
	memset(big, 'x', BIG_LEN);
	put_str(s, "a", "a1");
	put_str(s, "a", "a2");
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	put_str(s, "ns/b", "b1");
	put(s, "big", big, BIG_LEN);
	put_str(s, "gone", "soon deleted");
	cr_assert_eq(store_delete(s, "gone", NULL, NULL, NULL), 0);
	cr_assert_eq(store_xattr_set(s, "a", "user.color", "blue", 4, 0), 0);
	cr_assert_eq(store_history_drain(s, 10000), 0);
	hist = history_count(s);

	cr_assert_eq(store_backup(s, dpath, &rep), 0);
	cr_assert_eq(rep.revision, store_revision(s));
	cr_assert_eq(rep.records, 3);
	cr_assert_gt(rep.files, 5);
	snprintf(path, sizeof(path), "%s/lock", dpath);
	cr_assert_neq(stat(path, &st), 0, "the copy has no lock");
	bad_modes = 0;
	nftw(dpath, mode_one, 16, FTW_PHYS);
	cr_assert_eq(bad_modes, 0, "the copy is 0700/0600");
	cr_assert_eq(store_close(s), 0);

	c = open_at(dpath, NULL);
	cr_assert_eq(store_revision(c), rep.revision);
	expect_buf(c, "a", "a2", 2, 2);
	expect_buf(c, "ns/b", "b1", 2, 1);
	expect_buf(c, "big", big, BIG_LEN, 1);
	cr_assert_eq(store_stat(c, "gone", &(struct store_meta){0}, false),
		     -ENOENT);
	cr_assert_eq(store_xattr_get(c, "a", "user.color", path, 16), 4);
	cr_assert_eq(history_count(c), hist, "the copy has the history");
	cr_assert_eq(store_verify(c, &vr), 0);
	cr_assert_eq(vr.hist_bad, 0);
	/* re-creating a deleted record goes on from its version */
	cr_assert_eq(put_str(c, "gone", "again"), 2);
	cr_assert_eq(store_close(c), 0);
	free(big);
}

Test(backup, dest_must_be_new_or_empty_and_outside_the_store)
{
	struct store *s = open_at(spath, NULL);
	char path[PATH_MAX + 64];
	struct stat st;

	put_str(s, "a", "a1");
	cr_assert_eq(mkdir(dpath, 0755), 0);
	snprintf(path, sizeof(path), "%s/keep", dpath);
	write_text(path, "mine");
	cr_assert_eq(store_backup(s, dpath, NULL), -ENOTEMPTY);
	cr_assert_eq(stat(path, &st), 0, "a non-empty DEST is left as it was");
	cr_assert_eq(st.st_size, 4);
	cr_assert_eq(store_backup(s, path, NULL), -EEXIST, "a file as DEST");
	snprintf(path, sizeof(path), "%s/records/inside", spath);
	cr_assert_eq(store_backup(s, path, NULL), -EINVAL);
	cr_assert_neq(stat(path, &st), 0);
	/* an empty directory is fine, and made 0700 */
	snprintf(path, sizeof(path), "%s/empty", base);
	cr_assert_eq(mkdir(path, 0755), 0);
	cr_assert_eq(store_backup(s, path, NULL), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_eq(store_close(s), 0);
}

Test(backup, a_failed_backup_removes_its_partial_copy)
{
	static const char *const points[] = {"backup.copy", "backup.fsync",
					     "backup.rename"};
	struct io *io = NULL;
	struct store *s;
	struct stat st;

	cr_assert_eq(io_new(&io), 0);
	s = open_at(spath, io);
	for (int i = 0; i < 30; i++) {
		char id[16];

		snprintf(id, sizeof(id), "r%d", i);
		put_str(s, id, id);
	}
	for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
		/* many copies; one syncfs of the copy, one rename */
		cr_assert_eq(io_arm(io, points[p], IO_FAIL, ENOSPC,
				    p == 0 ? 3 : 1, 1),
			     0);
		cr_assert_eq(store_backup(s, dpath, NULL), -ENOSPC,
			     "failing %s", points[p]);
		cr_assert_neq(stat(dpath, &st), 0,
			      "failing %s: DEST is removed", points[p]);
		io_disarm_all(io);
	}
	/* the store is not harmed, and a backup then works */
	put_str(s, "after", "x");
	cr_assert_eq(store_backup(s, dpath, NULL), 0);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

struct writer {
	struct store *s;
	int n;
	atomic_bool *stop;
	int err;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char id[16], text[64];

	for (int i = 0; !atomic_load(w->stop) && i < 100000; i++) {
		struct store_result r;

		snprintf(id, sizeof(id), "w%d-%d", w->n, i % 7);
		snprintf(text, sizeof(text), "writer %d write %d", w->n, i);
		if ((w->err = store_put(w->s, id, text, strlen(text), NULL,
					&r)) != 0)
			break;
		usleep(200); /* a few thousand commits a second in all */
	}
	return NULL;
}

struct last {
	char id[16];
	uint64_t version;
	bool deleted;
};

struct at_rev {
	uint64_t rev;
	struct last v[64];
	int n;
};

/* The version each record had at revision `rev`. */
static int last_at(void *arg, const char *id, const struct store_version *v)
{
	struct at_rev *a = arg;
	int i;

	if (v->revision > a->rev)
		return 0;
	for (i = 0; i < a->n && strcmp(a->v[i].id, id); i++)
		;
	if (i == a->n) {
		cr_assert_lt(a->n, 64);
		snprintf(a->v[a->n++].id, sizeof(a->v[0].id), "%s", id);
	}
	a->v[i].version = v->version;
	a->v[i].deleted = v->deleted;
	return 0;
}

struct rev_arg {
	struct store *s;
	uint64_t rev;
};

static bool revision_reached(void *arg)
{
	const struct rev_arg *r = arg;

	return store_revision(r->s) >= r->rev;
}

/* Wait (at most 10 s) until the writers have made the store's revision
   `rev`. */
static void wait_revision(struct store *s, uint64_t rev)
{
	struct rev_arg r = {s, rev};

	cr_assert(wait_for(revision_reached, &r, 10000),
		  "the writers did not reach revision %" PRIu64, rev);
}

Test(backup, copy_during_commits_holds_one_revision)
{
	struct store_backup_report rep;
	struct store *s = open_at(spath, NULL), *c;
	atomic_bool stop = false;
	struct writer w[3];
	pthread_t t[3];
	struct at_rev a = {0};

	for (int i = 0; i < 3; i++) {
		w[i] = (struct writer){.s = s, .n = i, .stop = &stop};
		cr_assert_eq(pthread_create(&t[i], NULL, writer_main, &w[i]),
			     0);
	}
	wait_revision(s, 100); /* the writers are going */
	cr_assert_eq(store_backup(s, dpath, &rep), 0);
	wait_revision(s, rep.revision + 100); /* and go on */
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].err, 0, "writer %d: %s", i,
			     strerror(-w[i].err));
	}
	cr_assert_gt(store_revision(s), rep.revision,
		     "commits went on after the backup's revision");
	cr_assert_eq(store_history_drain(s, 20000), 0);
	a.rev = rep.revision;
	cr_assert_eq(store_history_each(s, NULL, last_at, &a), 0);
	cr_assert_gt(a.n, 0);

	c = open_at(dpath, NULL);
	cr_assert_eq(store_revision(c), rep.revision);
	for (int i = 0; i < a.n; i++) {
		struct store_meta m;
		void *want = NULL;
		size_t len = 0;

		cr_assert_eq(store_history_get(s, a.v[i].id, a.v[i].version,
					       &want, &len, NULL),
			     0);
		expect_buf(c, a.v[i].id, want, len, a.v[i].version);
		cr_assert_eq(store_stat(c, a.v[i].id, &m, false), 0);
		cr_assert_leq(m.revision, rep.revision);
		free(want);
	}
	cr_assert_eq(store_verify(c, &(struct store_verify_report){0}), 0);
	cr_assert_eq(store_close(c), 0);
	cr_assert_eq(store_close(s), 0);
}

/* ---- verify --repair ---------------------------------------------------- */

/* The history's objects as loose objects (the writer packs them), so
   that a test can remove one. */
static void loosen(void)
{
	char cmd[4 * PATH_MAX], git[2 * PATH_MAX];

	snprintf(git, sizeof(git), "%s/history.git", spath);
	snprintf(cmd, sizeof(cmd), LOOSEN_SH, git);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* The loose object of the blob of version `v` of `id`. */
static void blob_path(struct store *s, const char *id, uint64_t v,
		      char out[2 * PATH_MAX])
{
	struct store_version sv;
	void *buf = NULL;
	size_t len;

	cr_assert_eq(store_history_get(s, id, v, &buf, &len, &sv), 0);
	free(buf);
	cr_assert_lt((size_t)snprintf(out, 2 * PATH_MAX,
				      "%s/history.git/objects/%.2s/%.38s",
				      spath, sv.blob, sv.blob + 2),
		     (size_t)(2 * PATH_MAX));
}

Test(backup, repair_restores_a_record_from_history_without_a_new_version)
{
	struct store_verify_report rep;
	char path[PATH_MAX + 64];
	struct store *s = open_at(spath, NULL);
	unsigned hist;

	put_str(s, "a", "a1");
	put_str(s, "a", "a2");
	put_str(s, "b", "b1");
	cr_assert_eq(store_history_drain(s, 10000), 0);
	hist = history_count(s);
	cr_assert_eq(store_close(s), 0);
	snprintf(path, sizeof(path), "%s/records/a", spath);
	write_text(path, "garbage!");
	snprintf(path, sizeof(path), "%s/records/b", spath);
	cr_assert_eq(unlink(path), 0);

	s = open_at(spath, NULL);
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_eq(rep.bad, 2);
	cr_assert_eq(store_verify_repair(s, &rep), 0);
	cr_assert_eq(rep.repaired, 2);
	cr_assert_eq(rep.unrepairable, 0);
	cr_assert_eq(store_verify(s, &rep), 0);
	expect_buf(s, "a", "a2", 2, 2);
	expect_buf(s, "b", "b1", 2, 1);
	cr_assert_eq(history_count(s), hist, "no version was added");
	cr_assert_eq(store_revision(s), 3);
	cr_assert_eq(store_close(s), 0);
}

Test(backup, repair_writes_a_missing_blob_back_from_the_record)
{
	struct store_verify_report rep;
	char path[2 * PATH_MAX];
	struct store *s = open_at(spath, NULL);
	struct stat st;

	put_str(s, "c", "c1");
	cr_assert_eq(store_history_drain(s, 10000), 0);
	blob_path(s, "c", 1, path);
	cr_assert_eq(store_close(s), 0);
	loosen();
	cr_assert_eq(unlink(path), 0);

	s = open_at(spath, NULL);
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_eq(rep.hist_bad, 1);
	cr_assert_eq(store_verify_repair(s, &rep), 0);
	cr_assert_eq(rep.repaired, 1);
	cr_assert_eq(stat(path, &st), 0, "the object is back");
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(store_close(s), 0);
}

Test(backup, repair_leaves_and_reports_what_it_cannot_repair)
{
	struct store_verify_report rep;
	char path[2 * PATH_MAX], buf[32] = "";
	struct store *s = open_at(spath, NULL);
	int fd;

	put_str(s, "f", "f1");
	put_str(s, "e", "e1");
	cr_assert_eq(store_delete(s, "e", NULL, NULL, NULL), 0);
	cr_assert_eq(store_history_drain(s, 10000), 0);
	blob_path(s, "f", 1, path);
	cr_assert_eq(store_close(s), 0);
	loosen();
	cr_assert_eq(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/records/f", spath);
	write_text(path, "bad bytes");
	snprintf(path, sizeof(path), "%s/records/e", spath);
	write_text(path, "never committed");

	s = open_at(spath, NULL);
	cr_assert_eq(store_verify_repair(s, &rep), -EBADMSG);
	cr_assert_geq(rep.unrepairable, 2);
	cr_assert_eq(rep.repaired, 0);
	cr_assert_eq(store_close(s), 0);
	/* nothing was thrown away */
	fd = open(path, O_RDONLY);
	cr_assert(fd >= 0, "e's left-over file is still there");
	cr_assert_eq(read(fd, buf, sizeof(buf) - 1), 15);
	close(fd);
	snprintf(path, sizeof(path), "%s/records/f", spath);
	fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(read(fd, buf, sizeof(buf) - 1), 9);
	cr_assert_str_eq(buf, "bad bytes", "f's file is left as it was");
	close(fd);
}
