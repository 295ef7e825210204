/*
 * test_crash.c - the durability protocol of the store (store_i.h, commit.c,
 * recover.c) under crashes and I/O errors at every failpoint on the commit
 * path:
 *
 *  - crash: a child process makes one change and is killed (IO_CRASH is
 *    _exit, like kill -9) at the point; reopening must find the record at
 *    exactly its old or its new version (the new one if the point is
 *    after the commit point), everything committed before intact (some of
 *    it only in the journal), no stray file, a clean verify, and a store
 *    that takes new commits;
 *  - error: the point fails with EIO, ENOSPC or a short write; before the
 *    commit point the change returns that error and leaves the old version,
 *    after it the change succeeds and the store refuses changes until it is
 *    reopened, which finishes the change;
 *  - crashes during recovery, twice in a row; errors during recovery
 *    (the open fails or gets past them; the next open loses nothing);
 *  - random kills of a child doing random changes.
 *
 * Stores live in fresh mkdtemp directories, on tmpfs when there is one
 * (RECFS_TEST_TMPDIR overrides): a process crash does not lose the page
 * cache, so the disk adds nothing here but time. What the store logs is
 * dropped unless RECFS_TEST_VERBOSE is set.
 */
#include "io.h"
#include "store.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
#define NO_CHECKPOINT (1ull << 40)	    /* checkpoint_bytes */

static char base[PATH_MAX];
static char spath[PATH_MAX + 32]; /* the store of the current case */
static int ncase;

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
	snprintf(base, sizeof(base), "%s/recfs-crash.XXXXXX", test_root());
	cr_assert_not_null(mkdtemp(base), "mkdtemp %s: %s", base,
			   strerror(errno));
	if (!getenv("RECFS_TEST_VERBOSE")) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void teardown(void)
{
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(crash, .init = setup, .fini = teardown, .timeout = 300);

/* A fresh store directory for the next case (the last one is removed). */
static void next_case(void)
{
	if (spath[0])
		nftw(spath, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	snprintf(spath, sizeof(spath), "%s/case%d", base, ++ncase);
}

/* ---- the failpoints and the changes ------------------------------------ */

enum when {
	BEFORE, /* before the commit point: a crash keeps the old version, an
		   error is returned and keeps it */
	AT,	/* jnl.fsync: the record is written, not yet synced; a crash
		   may keep either (a process crash keeps the page cache, so
		   in fact the new one); an error is returned */
	AFTER,	/* after the commit point: the new version survives a crash;
		   an error is not returned, the store refuses changes until
		   reopened, and reopening finishes the change */
	CKPT,	/* inside a checkpoint: no record changes either way */
	TIDY,	/* after the commit point, removing the old content: a crash
		   keeps the new version; an error is only logged (the file is
		   removed at the next open) and the store goes on */
};

enum op {
	OP_PUT,	    /* small: content inline in the journal */
	OP_PUT_BIG, /* > 1 MiB: the journal names the synced stage */
	OP_APPEND,  /* rebased on the current content */
	OP_DELETE,
	OP_RENAME,     /* onto a live record */
	OP_SET_META,   /* mtime and mode, no new version */
	OP_CHECKPOINT, /* with changes in the journal to retire */
	OP_N
};

static const char *const op_names[OP_N] = {
	"put",	  "put-big",  "append",	    "delete",
	"rename", "set-meta", "checkpoint",
};

#define B(op) (1u << (op))
#define CHANGES (B(OP_PUT) | B(OP_PUT_BIG) | B(OP_APPEND))
#define JOURNALED (CHANGES | B(OP_DELETE) | B(OP_RENAME) | B(OP_SET_META))

/*
 * Every failpoint in store/ and journal/ that a change or a
 * checkpoint passes, with the changes that reach it. The test checks that
 * each is reached exactly by those (so this table cannot silently go
 * stale) and that every point is reached by at least one. Points only
 * passed when the store is opened are in recovery_points below; reads
 * (read.pread), namespaces (ns.*) and recover.mkdir (a journaled record's
 * namespace is never missing: namespaces are not journaled, and rmdir
 * needs them empty) are not on these paths.
 */
struct point {
	const char *name;
	enum when when;
	unsigned ops;	    /* B(op) of the changes that reach it */
	bool write;	    /* a write: IO_SHORT applies */
	unsigned err_times; /* how many hits fail in the error test; 0: all */
};

static const struct point points[] = {
	{"stage.create", BEFORE, CHANGES, false, 0},
	{"stage.write", BEFORE, CHANGES, true, 0},
	{"stage.copy", BEFORE, B(OP_APPEND), false, 0},
	{"read.open", BEFORE, B(OP_APPEND), false, 0},
	{"stage.read", BEFORE, B(OP_PUT) | B(OP_APPEND), false, 0},
	{"hash.read", BEFORE, CHANGES, false, 0},
	{"stage.fsync", BEFORE, B(OP_PUT_BIG), false, 0},
	{"stage.dirsync", BEFORE, B(OP_PUT_BIG), false, 0},
	{"commit.blob.link", BEFORE, B(OP_PUT_BIG), false, 0},
	{"commit.blob.dirsync", BEFORE, B(OP_PUT_BIG), false, 0},
	{"commit.journal", BEFORE, JOURNALED, false, 0},
	{"jnl.write", BEFORE, JOURNALED, true, 0},
	/* once: a second failure would fail the undo and break the journal */
	{"jnl.fsync", AT, JOURNALED, false, 1},
	{"commit.publish", AFTER, CHANGES, false, 0},
	{"commit.rename", AFTER, CHANGES, false, 0},
	{"commit.drop", TIDY, CHANGES, false, 0},
	{"commit.move", AFTER, B(OP_RENAME), false, 0},
	{"commit.move.dirsync", AFTER, B(OP_RENAME), false, 0},
	{"commit.unlink", AFTER, B(OP_DELETE), false, 0},
	{"ckpt.syncfs", CKPT, B(OP_CHECKPOINT), false, 0},
	{"snapshot.open", CKPT, B(OP_CHECKPOINT), false, 0},
	{"snapshot.write", CKPT, B(OP_CHECKPOINT), true, 0},
	{"snapshot.fsync", CKPT, B(OP_CHECKPOINT), false, 0},
	{"snapshot.rename", CKPT, B(OP_CHECKPOINT), false, 0},
	{"snapshot.dirsync", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.cut", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.cut.fsync", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.open", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.hdr.write", CKPT, B(OP_CHECKPOINT), true, 0},
	{"jnl.hdr.fsync", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.dir.fsync", CKPT, B(OP_CHECKPOINT), false, 0},
	{"jnl.drop.unlink", CKPT, B(OP_CHECKPOINT), false, 0},
};

#define NPOINTS (sizeof(points) / sizeof(points[0]))

/* ---- the fixture --------------------------------------------------------- */

static uint8_t big_new[BIG_LEN];

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7) >> 3);
}

static const struct timespec t_old = {1000000000, 5};
static const struct timespec t_new = {1700000000, 7};

/* Live records every case starts with (after pre_ops) and must keep. */
struct frec {
	const char *id;
	const char *text;
	uint64_t version;
	enum op owner; /* the change that touches it, or OP_N */
};

static const struct frec fixture[] = {
	{"p", "p-2", 2, OP_PUT},
	{"big", "big-1", 1, OP_PUT_BIG},
	{"ap", "ap-1;", 1, OP_APPEND},
	{"del", "del-2", 2, OP_DELETE},
	{"ra", "ra-1", 1, OP_RENAME},
	{"rb", "rb-2", 2, OP_RENAME},
	{"m", "m-1", 1, OP_SET_META},
	{"ns/k1", "k1", 1, OP_N},
	{"ns/k2", "k2", 1, OP_N},
	/* changed or made by pre_ops: only in the journal */
	{"k4", "k4-2", 2, OP_N},
	{"j1", "j-1", 1, OP_N},
	{"ns/j2", "j-2", 1, OP_N},
};

#define NFIXTURE (sizeof(fixture) / sizeof(fixture[0]))

static struct store *open_store(struct io *io, uint64_t ckpt)
{
	struct store_opts o = {.path = spath,
			       .create = true,
			       .io = io,
			       .checkpoint_bytes = ckpt};
	struct store *s = NULL;
	int rc = store_open(&s, &o);

	cr_assert_eq(rc, 0, "%s: store_open: %s", spath, strerror(-rc));
	return s;
}

static int put(struct store *s, const char *id, const void *buf, size_t len)
{
	return store_put(s, id, buf, len, NULL, NULL);
}

static int puts_(struct store *s, const char *id, const char *text)
{
	return put(s, id, text, strlen(text));
}

/* The part of the fixture that is checkpointed: made in-process. */
static void make_fixture(void)
{
	struct store *s;
	int rc = 0;

	next_case();
	s = open_store(NULL, NO_CHECKPOINT);
	rc |= puts_(s, "p", "p-1") | puts_(s, "p", "p-2");
	rc |= puts_(s, "big", "big-1") | puts_(s, "ap", "ap-1;");
	rc |= puts_(s, "del", "del-1") | puts_(s, "del", "del-2");
	rc |= puts_(s, "ra", "ra-1");
	rc |= puts_(s, "rb", "rb-1") | puts_(s, "rb", "rb-2");
	rc |= puts_(s, "m", "m-1") | store_set_meta(s, "m", &t_old, 0640);
	rc |= store_mkdir(s, "ns", 0700);
	rc |= puts_(s, "ns/k1", "k1") | puts_(s, "ns/k2", "k2");
	rc |= puts_(s, "ns/k3", "k3") | puts_(s, "k4", "k4-1");
	cr_assert_eq(rc, 0, "building the fixture");
	cr_assert_eq(store_close(s), 0);
}

/* Changes made in the session of the change under test, before it: they
   are only in the journal when it crashes. */
static int pre_ops(struct store *s)
{
	int rc = 0;

	rc |= puts_(s, "j1", "j-1") | puts_(s, "ns/j2", "j-2");
	rc |= puts_(s, "k4", "k4-2");
	rc |= store_delete(s, "ns/k3", NULL, NULL, NULL);
	rc |= store_xattr_set(s, "ns/k1", "user.x", "1", 1, 0);
	return rc;
}

static int do_op(struct store *s, enum op op)
{
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};

	switch (op) {
	case OP_PUT:
		return puts_(s, "p", "p-3");
	case OP_PUT_BIG:
		return put(s, "big", big_new, sizeof(big_new));
	case OP_APPEND:
		return store_put(s, "ap", "more;", 5, &app, NULL);
	case OP_DELETE:
		return store_delete(s, "del", NULL, NULL, NULL);
	case OP_RENAME:
		return store_rename(s, "ra", "rb", NULL, NULL, NULL);
	case OP_SET_META:
		return store_set_meta(s, "m", &t_new, 0600);
	case OP_CHECKPOINT:
		/* segments are dropped once the history has them too */
		return store_history_drain(s, 0) ? -EIO : store_checkpoint(s);
	case OP_N:
		break;
	}
	return -EINVAL;
}

/* ---- checking ------------------------------------------------------------ */

/* Is `id` live with exactly this content and version? */
static bool holds(struct store *s, const char *id, const void *want, size_t len,
		  uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t got = 0;
	bool ok;

	if (store_get(s, id, &buf, &got, &m) != 0)
		return false;
	ok = got == len && memcmp(buf, want, len) == 0 && m.version == version;
	free(buf);
	return ok;
}

static bool holds_text(struct store *s, const char *id, const char *text,
		       uint64_t version)
{
	return holds(s, id, text, strlen(text), version);
}

/* Is `id` deleted, its last version `last`? */
static bool gone(struct store *s, const char *id, uint64_t last)
{
	struct store_meta m;
	uint64_t v = 0;

	return store_stat(s, id, &m, false) == -ENOENT &&
	       store_last_version(s, id, &v) == 0 && v == last;
}

static bool meta_is(struct store *s, const char *id, uint32_t mode,
		    const struct timespec *t)
{
	struct store_meta m;

	return store_stat(s, id, &m, false) == 0 && m.mode == mode &&
	       m.mtime.tv_sec == t->tv_sec && m.mtime.tv_nsec == t->tv_nsec;
}

enum outcome { OLD, NEW, TORN };

static const char *const outcome_names[] = {"old", "new", "torn"};

/* Where the records of `op` are: exactly old, exactly new, or neither. */
static enum outcome outcome_of(struct store *s, enum op op)
{
	bool old = false, new = false;

	switch (op) {
	case OP_PUT:
		old = holds_text(s, "p", "p-2", 2);
		new = holds_text(s, "p", "p-3", 3);
		break;
	case OP_PUT_BIG:
		old = holds_text(s, "big", "big-1", 1);
		new = holds(s, "big", big_new, sizeof(big_new), 2);
		break;
	case OP_APPEND:
		old = holds_text(s, "ap", "ap-1;", 1);
		new = holds_text(s, "ap", "ap-1;more;", 2);
		break;
	case OP_DELETE:
		old = holds_text(s, "del", "del-2", 2);
		new = gone(s, "del", 2);
		break;
	case OP_RENAME:
		old = holds_text(s, "ra", "ra-1", 1) &&
		      holds_text(s, "rb", "rb-2", 2);
		new = gone(s, "ra", 1) && holds_text(s, "rb", "ra-1", 3);
		break;
	case OP_SET_META:
		if (!holds_text(s, "m", "m-1", 1))
			return TORN;
		old = meta_is(s, "m", 0640, &t_old);
		new = meta_is(s, "m", 0600, &t_new);
		break;
	case OP_CHECKPOINT:
	case OP_N:
		return NEW;
	}
	return old ? OLD : new ? NEW : TORN;
}

/* Every fixture record but those of `op` is as it was; so is ns/k3's
   tombstone and ns/k1's xattr. */
static void check_others(struct store *s, enum op op, const char *what)
{
	char val[8];

	for (size_t i = 0; i < NFIXTURE; i++) {
		const struct frec *f = &fixture[i];

		if (f->owner == op)
			continue;
		cr_assert(holds_text(s, f->id, f->text, f->version),
			  "%s: %s is not \"%s\" at version %llu", what, f->id,
			  f->text, (unsigned long long)f->version);
	}
	cr_assert(gone(s, "ns/k3", 1), "%s: ns/k3 came back", what);
	cr_assert_eq(store_xattr_get(s, "ns/k1", "user.x", val, sizeof(val)), 1,
		     "%s: xattr of ns/k1 lost", what);
}

/* Nothing but the store's own files in STORE, STORE/tmp, STORE/journal
   (whose blobs/ holds the content the history has not written yet). */
static void check_no_strays(const char *what, bool tmp_may_hold)
{
	static const char *const known[] = {
		"format.json", "lock",	 "index",	"records",
		"journal",     "tmp",	 "history.git", "history.idx",
		"scratch",     "reserve"};
	char p[PATH_MAX + 64];
	struct dirent *de;
	DIR *d;

	d = opendir(spath);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		bool ok = de->d_name[0] == '.';

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok = ok || strcmp(de->d_name, known[i]) == 0;
		cr_assert(ok, "%s: stray file %s in the store", what,
			  de->d_name);
	}
	closedir(d);
	snprintf(p, sizeof(p), "%s/tmp", spath);
	d = opendir(p);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		cr_assert(de->d_name[0] == '.' || tmp_may_hold,
			  "%s: stray file tmp/%s", what, de->d_name);
	closedir(d);
	snprintf(p, sizeof(p), "%s/journal", spath);
	d = opendir(p);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		cr_assert(de->d_name[0] == '.' || strstr(de->d_name, ".log") ||
				  strcmp(de->d_name, "blobs") == 0,
			  "%s: stray file journal/%s", what, de->d_name);
	closedir(d);
}

/* After a clean close the history has everything: no blob link left. */
static void check_no_blob_links(const char *what)
{
	char p[PATH_MAX + 64];
	struct dirent *de;
	DIR *d;

	snprintf(p, sizeof(p), "%s/journal/blobs", spath);
	d = opendir(p);
	cr_assert_not_null(d, "%s: %s", what, p);
	while ((de = readdir(d)))
		cr_assert(de->d_name[0] == '.',
			  "%s: journal/blobs/%s left after close", what,
			  de->d_name);
	closedir(d);
}

static void check_verify(struct store *s, const char *what)
{
	struct store_verify_report rep;
	int rc = store_verify(s, &rep);

	cr_assert_eq(rc, 0,
		     "%s: verify: %s (%llu bad, %llu strays, %llu unindexed)",
		     what, strerror(-rc), (unsigned long long)rep.bad,
		     (unsigned long long)rep.strays,
		     (unsigned long long)rep.unindexed);
	cr_assert_eq(rep.unindexed, 0, "%s: unindexed files", what);
}

/* A check of what a case adds to the fixture. */
typedef void (*extra_fn)(struct store *s, const char *what);

/*
 * Reopen the store and check it after a crash or an error during `op`:
 * `want` is OLD, NEW, or TORN meaning "old or new". `extra` (may be NULL)
 * checks more on the first open.
 */
static void check_reopened_x(enum op op, enum outcome want, const char *what,
			     extra_fn extra)
{
	struct store *s = open_store(NULL, 0);
	enum outcome got = outcome_of(s, op);
	struct store_meta m;

	cr_assert_neq(got, TORN, "%s: the record is neither old nor new", what);
	if (want != TORN)
		cr_assert_eq(got, want, "%s: the record is %s, expected %s",
			     what, outcome_names[got], outcome_names[want]);
	check_others(s, op, what);
	if (extra)
		extra(s, what);
	check_no_strays(what, false);
	check_verify(s, what);
	/* the store takes new changes, and versions go on */
	cr_assert_eq(puts_(s, "after", "after"), 0, "%s: new commit", what);
	cr_assert_eq(puts_(s, "p", "p-next"), 0, "%s: commit to p", what);
	cr_assert_eq(store_stat(s, "p", &m, false), 0);
	cr_assert_eq(m.version, op == OP_PUT && got == NEW ? 4 : 3, "%s", what);
	cr_assert_eq(store_close(s), 0, "%s: close", what);
	check_no_blob_links(what);
	s = open_store(NULL, 0);
	cr_assert(holds_text(s, "after", "after", 1), "%s", what);
	cr_assert_eq(store_close(s), 0);
}

static void check_reopened(enum op op, enum outcome want, const char *what)
{
	check_reopened_x(op, want, what, NULL);
}

/* ---- (a) crashes -----------------------------------------------------------
 */

/* Child: open, pre_ops, arm a crash at `point`, make the change. Exits
   IO_CRASH_STATUS if the point was reached, 0 if not. */
static void crash_child(enum op op, const char *point, unsigned nth)
{
	struct store_opts o = {.path = spath,
			       .checkpoint_bytes = NO_CHECKPOINT};
	struct store *s = NULL;
	struct io *io = NULL;

	if (io_new(&io))
		_exit(2);
	o.io = io;
	if (store_open(&s, &o) || pre_ops(s))
		_exit(3);
	if (io_arm(io, point, IO_CRASH, 0, nth, 1))
		_exit(4);
	if (do_op(s, op))
		_exit(5);
	_exit(0); /* no close: like kill -9 right after the change */
}

static int fork_and_wait(enum op op, const char *point, unsigned nth)
{
	int status = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		crash_child(op, point, nth);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child killed by signal %d",
		  WTERMSIG(status));
	return WEXITSTATUS(status);
}

static void crash_op(enum op op)
{
	char what[128];

	unsigned crashes = 0;

	fill(big_new, sizeof(big_new), 1);
	for (size_t i = 0; i < NPOINTS; i++) {
		const struct point *pt = &points[i];
		bool expected = pt->ops & B(op);
		enum outcome want;
		int code;

		snprintf(what, sizeof(what), "%s, crash at %s", op_names[op],
			 pt->name);
		make_fixture();
		code = fork_and_wait(op, pt->name, 1);
		cr_assert(code == IO_CRASH_STATUS || code == 0,
			  "%s: child failed (%d)", what, code);
		cr_assert_eq(code == IO_CRASH_STATUS, expected,
			     "%s: point %s (update the table)", what,
			     expected ? "not reached" : "reached");
		if (!expected)
			want = NEW; /* the change completed */
		else if (pt->when == BEFORE)
			want = OLD;
		else if (pt->when == AFTER || pt->when == TIDY)
			want = NEW;
		else
			want = TORN; /* old or new */
		check_reopened(op, want, what);
		crashes += code == IO_CRASH_STATUS;
	}
	cr_log_info("%s: %u crashes injected, at %u of the %zu failpoints",
		    op_names[op], crashes, crashes, NPOINTS);
}

Test(crash, crash_during_small_put_keeps_old_or_new)
{
	crash_op(OP_PUT);
}

Test(crash, crash_during_big_put_keeps_old_or_new)
{
	crash_op(OP_PUT_BIG);
}

Test(crash, crash_during_append_keeps_old_or_new)
{
	crash_op(OP_APPEND);
}

Test(crash, crash_during_delete_keeps_old_or_new)
{
	crash_op(OP_DELETE);
}

Test(crash, crash_during_rename_keeps_both_old_or_both_new)
{
	crash_op(OP_RENAME);
}

Test(crash, crash_during_set_meta_keeps_old_or_new)
{
	crash_op(OP_SET_META);
}

Test(crash, crash_during_checkpoint_loses_nothing)
{
	crash_op(OP_CHECKPOINT);
}

Test(crash, every_failpoint_is_reached_by_some_change)
{
	for (size_t i = 0; i < NPOINTS; i++)
		cr_assert_neq(points[i].ops, 0, "%s is reached by nothing",
			      points[i].name);
}

/* ---- (b) errors ------------------------------------------------------------
 */

struct fault {
	enum io_action act;
	int err;
	const char *name;
};

static const struct fault faults[] = {
	{IO_FAIL, EIO, "EIO"},
	{IO_FAIL, ENOSPC, "ENOSPC"},
	{IO_SHORT, ENOSPC, "short write + ENOSPC"},
};

static void error_case(enum op op, const struct point *pt,
		       const struct fault *f)
{
	char what[160];
	struct store *s;
	struct io *io = NULL;
	unsigned hits;
	bool reached;
	int rc;

	snprintf(what, sizeof(what), "%s, %s at %s", op_names[op], f->name,
		 pt->name);
	make_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io, NO_CHECKPOINT);
	cr_assert_eq(pre_ops(s), 0, "%s: pre_ops", what);
	hits = io_hits(io, pt->name);
	cr_assert_eq(io_arm(io, pt->name, f->act, f->err, 1, pt->err_times), 0);
	rc = do_op(s, op);
	reached = io_hits(io, pt->name) > hits;
	io_disarm_all(io);
	cr_assert_eq(reached, (pt->ops & B(op)) != 0, "%s: point %s", what,
		     reached ? "reached" : "not reached");
	if (!reached) {
		cr_assert_eq(rc, 0, "%s: %s", what, strerror(-rc));
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		cr_assert_eq(store_close(s), 0);
		io_free(io);
		return;
	}
	if (pt->when == TIDY) {
		cr_assert_eq(rc, 0, "%s: %s", what, strerror(-rc));
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		check_others(s, op, what);
		check_no_strays(what, true);
		cr_assert_eq(puts_(s, "next", "next"), 0, "%s: next change",
			     what);
		cr_assert_eq(store_close(s), 0, "%s: close", what);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	if (pt->when == AFTER) {
		/* durable: success; but the records directory is behind the
		   journal, so nothing may change until a reopen */
		cr_assert_eq(rc, 0,
			     "%s: the change is journaled but "
			     "returned %s",
			     what, strerror(-rc));
		cr_assert_eq(puts_(s, "after", "x"), -EIO,
			     "%s: a broken store took a change", what);
		cr_assert_eq(store_checkpoint(s), -EIO,
			     "%s: a broken store checkpointed", what);
		store_close(s);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	if (rc == 0 && f->err == ENOSPC &&
	    (op == OP_DELETE || op == OP_RENAME)) {
		/* a delete or rename frees space: it was tried once more
		   with the space reserve released (store/reserve.c), which
		   is made again at once here, where there is room */
		struct store_status st;

		store_status_get(s, &st);
		cr_assert(st.reserve_held && st.reserve_released == 1,
			  "%s: succeeded, but not with the reserve", what);
		cr_assert_eq(outcome_of(s, op), NEW, "%s", what);
		check_others(s, op, what);
		cr_assert_eq(store_close(s), 0, "%s: close", what);
		io_free(io);
		check_reopened(op, NEW, what);
		return;
	}
	cr_assert_eq(rc, -f->err, "%s: returned %d (%s)", what, rc,
		     strerror(-rc));
	cr_assert_eq(outcome_of(s, op), op == OP_CHECKPOINT ? NEW : OLD,
		     "%s: the failed change is visible", what);
	check_others(s, op, what);
	check_no_strays(what, false);
	/* the next try works */
	rc = do_op(s, op);
	cr_assert_eq(rc, 0, "%s: retry: %s", what, strerror(-rc));
	cr_assert_eq(outcome_of(s, op), NEW, "%s: retry", what);
	cr_assert_eq(puts_(s, "next", "next"), 0, "%s: next change", what);
	cr_assert_eq(store_close(s), 0, "%s: close", what);
	io_free(io);
	check_reopened(op, NEW, what);
}

static void error_op(enum op op)
{
	unsigned errors = 0, at = 0;

	fill(big_new, sizeof(big_new), 2);
	for (size_t i = 0; i < NPOINTS; i++) {
		at += (points[i].ops & B(op)) != 0;
		for (size_t k = 0; k < sizeof(faults) / sizeof(faults[0]); k++)
			if (faults[k].act != IO_SHORT || points[i].write) {
				error_case(op, &points[i], &faults[k]);
				errors += (points[i].ops & B(op)) != 0;
			}
	}
	cr_log_info("%s: %u I/O errors injected, at %u of the %zu failpoints",
		    op_names[op], errors, at, NPOINTS);
}

Test(crash, errors_during_small_put)
{
	error_op(OP_PUT);
}

Test(crash, errors_during_big_put)
{
	error_op(OP_PUT_BIG);
}

Test(crash, errors_during_append)
{
	error_op(OP_APPEND);
}

Test(crash, errors_during_delete)
{
	error_op(OP_DELETE);
}

Test(crash, errors_during_rename)
{
	error_op(OP_RENAME);
}

Test(crash, errors_during_set_meta)
{
	error_op(OP_SET_META);
}

Test(crash, errors_during_checkpoint)
{
	error_op(OP_CHECKPOINT);
}

/* ---- regressions -----------------------------------------------------------
 */

/* Fork a child that opens the store with failpoints, runs `fn` and exits
   with its result (0 or 5), or crashes at an armed point. */
typedef int (*child_fn)(struct store *s, struct io *io, const void *arg);

static int in_child(child_fn fn, const void *arg, bool arm_before_open,
		    const char *point)
{
	int status = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store_opts o = {.path = spath,
				       .checkpoint_bytes = NO_CHECKPOINT};
		struct store *s = NULL;
		struct io *io = NULL;

		if (io_new(&io))
			_exit(2);
		o.io = io;
		if (arm_before_open && io_arm(io, point, IO_CRASH, 0, 1, 1))
			_exit(2);
		if (store_open(&s, &o))
			_exit(3);
		if (!arm_before_open && point &&
		    io_arm(io, point, IO_CRASH, 0, 1, 1))
			_exit(2);
		_exit(fn && fn(s, io, arg) ? 5 : 0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child killed by signal %d",
		  WTERMSIG(status));
	return WEXITSTATUS(status);
}

static int rename_ra_rb(struct store *s, struct io *io, const void *arg)
{
	return store_rename(s, "ra", "rb", NULL, NULL, NULL);
}

static void ra_moved(struct store *s, const char *what)
{
	char p[PATH_MAX + 64];

	cr_assert(gone(s, "ra", 1), "%s: ra still there", what);
	cr_assert(holds_text(s, "rb", "same", 2), "%s: rb", what);
	snprintf(p, sizeof(p), "%s/records/ra", spath);
	cr_assert_neq(access(p, F_OK), 0, "%s: the file of ra is left", what);
}

/*
 * Recovery of a rename whose target already holds the source's bytes: the
 * target looks done, but the source must still be removed.
 */
Test(crash, crash_in_rename_onto_identical_content_removes_the_source)
{
	static const char *const at[] = {"commit.move", "commit.move.dirsync"};

	for (size_t i = 0; i < 2; i++) {
		struct store *s;
		char what[96];

		next_case();
		s = open_store(NULL, NO_CHECKPOINT);
		cr_assert_eq(puts_(s, "ra", "same") | puts_(s, "rb", "same"),
			     0);
		cr_assert_eq(store_close(s), 0);
		cr_assert_eq(in_child(rename_ra_rb, NULL, false, at[i]),
			     IO_CRASH_STATUS);
		snprintf(what, sizeof(what), "rename crashed at %s", at[i]);
		s = open_store(NULL, 0);
		ra_moved(s, what);
		check_no_strays(what, false);
		check_verify(s, what);
		cr_assert_eq(store_close(s), 0);
	}
}

/*
 * After a failure past the commit point the records directory is behind
 * the journal. A checkpoint then (here the automatic one after the change
 * itself, with a tiny checkpoint_bytes) must not retire the journal, or
 * the change is lost.
 */
Test(crash, broken_store_keeps_its_journal_for_the_next_open)
{
	static const char *const at[] = {"commit.publish", "commit.rename"};

	fill(big_new, sizeof(big_new), 4);
	for (size_t i = 0; i < 2; i++)
		for (int big = 0; big < 2; big++) {
			struct io *io = NULL;
			struct store *s;

			next_case();
			cr_assert_eq(io_new(&io), 0);
			s = open_store(io, 1);
			cr_assert_eq(puts_(s, "x", "old"), 0);
			io_arm(io, at[i], IO_FAIL, EIO, 1, 0);
			cr_assert_eq(big ? put(s, "x", big_new, BIG_LEN)
					 : puts_(s, "x", "new"),
				     0);
			cr_assert_eq(store_checkpoint(s), -EIO);
			store_close(s);
			io_free(io);
			s = open_store(NULL, 0);
			cr_assert(big ? holds(s, "x", big_new, BIG_LEN, 2)
				      : holds_text(s, "x", "new", 2),
				  "%s, %s put: acknowledged change lost", at[i],
				  big ? "big" : "small");
			check_verify(s, at[i]);
			cr_assert_eq(store_close(s), 0);
		}
}

/* ---- (c) crashes during recovery ----------------------------------------- */

/* Points passed while a store with a journal to replay is opened. */
static const char *const recovery_points[] = {
	"snapshot.load",   "snapshot.read",    "jnl.scan.open",
	"jnl.scan.read",   "read.open",	       "hash.read",
	"recover.write",   "commit.rename",    "jnl.open",
	"jnl.truncate",	   "jnl.fsync",	       "jnl.hdr.write",
	"jnl.hdr.fsync",   "jnl.dir.fsync",    "ckpt.syncfs",
	"snapshot.open",   "snapshot.write",   "snapshot.fsync",
	"snapshot.rename", "snapshot.dirsync", "jnl.drop.unlink",
};

#define NRECOVERY (sizeof(recovery_points) / sizeof(recovery_points[0]))

/* What the journal holds when recovery starts. */
struct pending {
	const char *name;
	size_t len; /* of the change crashed after the commit point */
	const char *crash_at;
	bool garbage; /* and junk after it (a torn tail) */
};

static const struct pending pendings[] = {
	{"small put not in place", 100, "commit.publish", false},
	{"big put not in place", BIG_LEN, "commit.rename", false},
	{"small put, then a torn tail", 100, "commit.publish", true},
};

static uint8_t pend_buf[BIG_LEN];
static size_t pend_len;

static int pending_change(struct store *s, struct io *io, const void *arg)
{
	const struct pending *p = arg;

	if (pre_ops(s) || store_history_drain(s, 0))
		return 1;
	/* A segment that the snapshot and the history cover, for recovery
	   to drop: one more change, checkpointed while the history is held
	   back (so the segment is kept), then written to the history. */
	io_arm(io, "hist.commit", IO_STALL, 0, 1, 1);
	if (puts_(s, "pad", "pad"))
		return 1;
	for (int i = 0; i < 10000 && !io_stalled(io, "hist.commit"); i++)
		usleep(1000);
	if (!io_stalled(io, "hist.commit") || store_checkpoint(s))
		return 1;
	io_release(io);
	/* and a change in place after the snapshot, for recovery to check */
	if (store_history_drain(s, 0) || puts_(s, "pad", "pad-2"))
		return 1;
	io_arm(io, p->crash_at, IO_CRASH, 0, 1, 1);
	return put(s, "pend", pend_buf, p->len);
}

static void pend_there(struct store *s, const char *what)
{
	cr_assert(holds(s, "pend", pend_buf, pend_len, 1),
		  "%s: the change journaled before the crashes is lost", what);
}

static void append_garbage(void)
{
	char dir[PATH_MAX + 64], p[PATH_MAX + 128], last[256] = "";
	struct dirent *de;
	char junk[64];
	DIR *d;
	int fd;

	snprintf(dir, sizeof(dir), "%s/journal", spath);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".log") && strcmp(de->d_name, last) > 0)
			snprintf(last, sizeof(last), "%s", de->d_name);
	closedir(d);
	snprintf(p, sizeof(p), "%s/%s", dir, last);
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0, "%s", p);
	memset(junk, 'g', sizeof(junk));
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
}

Test(crash, crash_during_recovery_twice_loses_nothing)
{
	unsigned reached[NRECOVERY] = {0};
	char what[160];

	for (size_t v = 0; v < sizeof(pendings) / sizeof(pendings[0]); v++) {
		const struct pending *pd = &pendings[v];

		pend_len = pd->len;
		fill(pend_buf, pend_len, 5 + (unsigned)v);
		for (size_t i = 0; i < NRECOVERY; i++) {
			const char *pt = recovery_points[i];
			int code;

			snprintf(what, sizeof(what),
				 "%s, recovery crashed at %s", pd->name, pt);
			make_fixture();
			code = in_child(pending_change, pd, false, NULL);
			cr_assert_eq(code, IO_CRASH_STATUS, "%s: setup (%d)",
				     what, code);
			if (pd->garbage)
				append_garbage();
			/* crash in recovery, then in the recovery of that */
			for (int k = 0; k < 2; k++) {
				code = in_child(NULL, NULL, true, pt);
				cr_assert(code == IO_CRASH_STATUS || code == 0,
					  "%s: open failed (%d)", what, code);
				if (code == 0)
					break;
				reached[i]++;
			}
			check_reopened_x(OP_CHECKPOINT, NEW, what, pend_there);
		}
	}
	for (size_t i = 0; i < NRECOVERY; i++)
		cr_assert_gt(reached[i], 0, "recovery never passed %s",
			     recovery_points[i]);
}

/*
 * Errors (not crashes) during recovery: the open may fail, with the
 * injected error, or get past a point that is only tidying; either way
 * nothing on disk is lost and the next clean open recovers all.
 */
static int open_with_fault(const char *point, const struct fault *f,
			   unsigned times)
{
	int status = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store_opts o = {.path = spath,
				       .checkpoint_bytes = NO_CHECKPOINT};
		struct store *s = NULL;
		struct io *io = NULL;
		int rc;

		if (io_new(&io) || io_arm(io, point, f->act, f->err, 1, times))
			_exit(2);
		o.io = io;
		rc = store_open(&s, &o);
		if (rc == 0)
			_exit(store_close(s) ? 6 : 0);
		_exit(rc == -f->err ? 3 : 4);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child killed by signal %d",
		  WTERMSIG(status));
	return WEXITSTATUS(status);
}

Test(crash, errors_during_recovery_lose_nothing)
{
	/* EIO every time it is tried; ENOSPC once */
	static const struct {
		size_t fault;
		unsigned times;
	} cases[] = {{0, 0}, {1, 1}};
	unsigned failed[NRECOVERY] = {0};
	char what[200];

	for (size_t v = 0; v < sizeof(pendings) / sizeof(pendings[0]); v++) {
		const struct pending *pd = &pendings[v];

		pend_len = pd->len;
		fill(pend_buf, pend_len, 9 + (unsigned)v);
		for (size_t i = 0; i < NRECOVERY; i++)
			for (size_t k = 0; k < 2; k++) {
				const struct fault *f = &faults[cases[k].fault];
				const char *pt = recovery_points[i];
				int code;

				snprintf(what, sizeof(what), "%s, %s %s at %s",
					 pd->name, f->name,
					 cases[k].times ? "once" : "every time",
					 pt);
				make_fixture();
				code = in_child(pending_change, pd, false,
						NULL);
				cr_assert_eq(code, IO_CRASH_STATUS,
					     "%s: setup (%d)", what, code);
				if (pd->garbage)
					append_garbage();
				code = open_with_fault(pt, f, cases[k].times);
				/* 3: failed with the injected error; 4: with
				   another one (logged) */
				cr_assert(code == 0 || code == 3 || code == 4,
					  "%s: open ended %d", what, code);
				failed[i] += code != 0;
				check_reopened_x(OP_CHECKPOINT, NEW, what,
						 pend_there);
			}
	}
	/* where an error must stop the open rather than be guessed past */
	for (size_t i = 0; i < NRECOVERY; i++)
		if (strstr(recovery_points[i], "read") ||
		    !strcmp(recovery_points[i], "recover.write"))
			cr_assert_gt(failed[i], 0,
				     "an error at %s never failed the open",
				     recovery_points[i]);
}

/* ---- (d) random kills
 * -------------------------------------------------------- */

#define KILL_ROUNDS 30
#define KILL_THREADS 4
#define KILL_PER_THREAD 3 /* records of each thread */
#define KILL_IDS (KILL_THREADS * KILL_PER_THREAD)
#define KILL_MAX_OPS 3000 /* per thread */

/* Thread t of the child changes only records t*3 .. t*3+2. */
static const char *const kill_ids[KILL_IDS] = {
	"r0", "r1", "ns/r0", "r2", "r3", "ns/r1",
	"r4", "r5", "ns/r2", "r6", "r7", "ns/r3",
};

/* What a record is: compared in full after each round. */
struct rstate {
	uint8_t exists;
	uint8_t bad; /* could not be read */
	uint32_t mode;
	uint64_t version; /* of a deleted record: its last; 0: never */
	uint8_t hash[16];
};

/* A message from a child thread: 'B' before a change (with the states it
   will leave), 'A' once it is acknowledged. Smaller than PIPE_BUF, so
   writes from several threads do not interleave. */
struct kmsg {
	uint32_t seq;
	char kind;
	uint8_t thread;
	uint8_t n;
	uint8_t idx[2];
	struct rstate st[2];
};

static void hash_of(const void *buf, size_t len, uint8_t out[16])
{
	XXH128_canonicalFromHash((XXH128_canonical_t *)out,
				 XXH3_128bits(buf, len));
}

static void read_state(struct store *s, const char *id, struct rstate *st,
		       void **content, size_t *clen)
{
	struct store_meta m;
	void *buf = NULL;
	size_t len = 0;
	uint64_t v = 0;
	int rc = store_get(s, id, &buf, &len, &m);

	memset(st, 0, sizeof(*st));
	if (rc == 0) {
		st->exists = 1;
		st->version = m.version;
		st->mode = m.mode;
		hash_of(buf, len, st->hash);
	} else if (rc == -ENOENT) {
		store_last_version(s, id, &v);
		st->version = v;
	} else {
		st->bad = 1;
	}
	if (content) {
		*content = buf;
		*clen = len;
	} else {
		free(buf);
	}
}

static bool same_state(const struct rstate *a, const struct rstate *b)
{
	return !a->bad && !b->bad && a->exists == b->exists &&
	       a->version == b->version &&
	       (!a->exists ||
		(a->mode == b->mode && memcmp(a->hash, b->hash, 16) == 0));
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

struct kill_worker {
	struct store *s;
	int wfd;
	unsigned t;
	unsigned round;
	uint64_t rnd;
};

static void send_msg(int fd, const struct kmsg *m)
{
	if (write(fd, m, sizeof(*m)) != (ssize_t)sizeof(*m))
		_exit(9);
}

/* One thread of the child: random changes to its own records until
   killed; says what it does and what was acknowledged, and checks each
   result itself (exit 10: a change failed, 11: a wrong result). */
static void *kill_worker(void *arg)
{
	struct kill_worker *w = arg;
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};
	uint8_t *big = malloc(BIG_LEN);
	struct store *s = w->s;
	char text[300];

	if (!big)
		_exit(7);
	for (uint32_t seq = 1; seq <= KILL_MAX_OPS; seq++) {
		struct kmsg m = {
			.seq = seq, .kind = 'B', .thread = (uint8_t)w->t};
		struct rstate cur[2], after;
		unsigned r = (unsigned)(xorshift(&w->rnd) % 100);
		unsigned a = (unsigned)(xorshift(&w->rnd) % KILL_PER_THREAD);
		unsigned b =
			(unsigned)(xorshift(&w->rnd) % (KILL_PER_THREAD - 1));
		void *old = NULL;
		size_t olen = 0, len;
		int rc = 0;

		b = b >= a ? b + 1 : b;
		a += w->t * KILL_PER_THREAD;
		b += w->t * KILL_PER_THREAD;
		read_state(s, kill_ids[a], &cur[0], &old, &olen);
		read_state(s, kill_ids[b], &cur[1], NULL, NULL);
		if (cur[0].bad || cur[1].bad)
			_exit(6);
		m.idx[0] = (uint8_t)a;
		m.idx[1] = (uint8_t)b;
		m.n = 1;
		m.st[0] = cur[0];
		if (r >= 55 && r < 80 && !cur[0].exists)
			r = 0; /* delete, rename, set_meta need a record */
		if (r < 47) {  /* put, sometimes a big one */
			const void *data = text;

			/* unique content: an equal one would be a no-op */
			len = (size_t)snprintf(text, sizeof(text),
					       "%s@%u.%u:", kill_ids[a],
					       w->round, seq);
			memset(text + len, 'x', 200);
			len += xorshift(&w->rnd) % 200;
			if (r >= 45) {
				fill(big, BIG_LEN, seq);
				memcpy(big, text, 32);
				data = big;
				len = BIG_LEN;
			}
			m.st[0].exists = 1;
			m.st[0].version = cur[0].version + 1;
			m.st[0].mode = cur[0].exists ? cur[0].mode : 0644;
			hash_of(data, len, m.st[0].hash);
			send_msg(w->wfd, &m);
			rc = put(s, kill_ids[a], data, len);
		} else if (r < 55) { /* append */
			uint8_t *nb;

			len = (size_t)snprintf(text, sizeof(text), "+%u;", seq);
			nb = malloc(olen + len);
			if (!nb)
				_exit(7);
			if (olen)
				memcpy(nb, old, olen);
			memcpy(nb + olen, text, len);
			m.st[0].exists = 1;
			m.st[0].version = cur[0].version + 1;
			m.st[0].mode = cur[0].exists ? cur[0].mode : 0644;
			hash_of(nb, olen + len, m.st[0].hash);
			free(nb);
			send_msg(w->wfd, &m);
			rc = store_put(s, kill_ids[a], text, len, &app, NULL);
		} else if (r < 63) { /* delete */
			m.st[0].exists = 0;
			send_msg(w->wfd, &m);
			rc = store_delete(s, kill_ids[a], NULL, NULL, NULL);
		} else if (r < 72) { /* rename a onto b */
			m.n = 2;
			m.st[0].exists = 0;
			m.st[1] = cur[0];
			m.st[1].version = cur[1].version + 1;
			send_msg(w->wfd, &m);
			rc = store_rename(s, kill_ids[a], kill_ids[b], NULL,
					  NULL, NULL);
		} else if (r < 80) { /* set_meta */
			m.st[0].mode = cur[0].mode == 0600 ? 0640 : 0600;
			send_msg(w->wfd, &m);
			rc = store_set_meta(s, kill_ids[a], NULL,
					    (int)m.st[0].mode);
		} else if (r < 83) {
			m.n = 0;
			send_msg(w->wfd, &m);
			rc = store_checkpoint(s);
		} else { /* only read */
			free(old);
			continue;
		}
		free(old);
		if (rc)
			_exit(10);
		for (unsigned i = 0; i < m.n; i++) {
			read_state(s, kill_ids[m.idx[i]], &after, NULL, NULL);
			if (!same_state(&after, &m.st[i])) {
				fprintf(stderr,
					"kill child: op %u on %s: is e%d v%llu "
					"m%o bad%d, expected e%d v%llu m%o\n",
					r, kill_ids[m.idx[i]], after.exists,
					(unsigned long long)after.version,
					after.mode, after.bad, m.st[i].exists,
					(unsigned long long)m.st[i].version,
					m.st[i].mode);
				_exit(11);
			}
		}
		m.kind = 'A';
		send_msg(w->wfd, &m);
	}
	free(big);
	return NULL;
}

static void kill_child(int wfd, unsigned round)
{
	struct store_opts o = {.path = spath, .checkpoint_bytes = 256 << 10};
	struct kill_worker w[KILL_THREADS];
	pthread_t t[KILL_THREADS];
	struct store *s = NULL;

	if (store_open(&s, &o))
		_exit(3);
	for (unsigned i = 0; i < KILL_THREADS; i++) {
		w[i] = (struct kill_worker){
			.s = s,
			.wfd = wfd,
			.t = i,
			.round = round,
			.rnd = (round * KILL_THREADS + i + 1) *
			       0x9e3779b97f4a7c15ull,
		};
		if (pthread_create(&t[i], NULL, kill_worker, &w[i]))
			_exit(8);
	}
	for (unsigned i = 0; i < KILL_THREADS; i++)
		pthread_join(t[i], NULL);
	_exit(0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read the child's messages into `buf` until `deadline` (0: until EOF). */
static size_t drain(int fd, uint8_t *buf, size_t len, size_t cap,
		    uint64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int wait = -1;
		ssize_t n;

		if (deadline) {
			uint64_t t = now_ms();

			if (t >= deadline)
				return len;
			wait = (int)(deadline - t);
		}
		if (poll(&p, 1, wait) <= 0)
			continue;
		cr_assert_lt(len, cap, "the child said too much");
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			return len;
		len += (size_t)n;
	}
}

static bool touches(const struct kmsg *m, unsigned id)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->idx[i] == id)
			return true;
	return false;
}

/*
 * Children of KILL_THREADS threads make random changes to their own
 * records and are killed at a random moment (in recovery, in the middle
 * of a group commit, a checkpoint, ...). After each kill every
 * acknowledged change must be there, and each change in flight must be
 * all there or not at all.
 */
Test(crash, random_kills_lose_nothing_acknowledged)
{
	static uint8_t
		msgs[2 * KILL_THREADS * KILL_MAX_OPS * sizeof(struct kmsg)];
	struct rstate model[KILL_IDS] = {0};
	uint64_t rnd = 88172645463325252ull;
	unsigned lost = 0, torn = 0, in_flight = 0, acked = 0;
	struct store *s;

	next_case();
	s = open_store(NULL, 0);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	cr_assert_eq(store_close(s), 0);
	for (int round = 0; round < KILL_ROUNDS; round++) {
		struct kmsg pend[KILL_THREADS] = {0}, m;
		bool has[KILL_THREADS] = {0};
		struct rstate now[KILL_IDS];
		int fds[2], status;
		size_t len;
		pid_t pid;

		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			kill_child(fds[1], (unsigned)round);
		}
		close(fds[1]);
		len = drain(fds[0], msgs, 0, sizeof(msgs),
			    now_ms() + 1 + xorshift(&rnd) % 40);
		kill(pid, SIGKILL);
		len = drain(fds[0], msgs, len, sizeof(msgs), 0);
		close(fds[0]);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status) || (WIFEXITED(status) &&
						  WEXITSTATUS(status) == 0),
			  "round %d: the child found a wrong result (exit %d)",
			  round, WEXITSTATUS(status));

		for (size_t off = 0; off + sizeof(m) <= len; off += sizeof(m)) {
			memcpy(&m, msgs + off, sizeof(m));
			cr_assert_lt(m.thread, KILL_THREADS);
			if (m.kind == 'B') {
				pend[m.thread] = m;
				has[m.thread] = true;
				continue;
			}
			cr_assert(has[m.thread] && pend[m.thread].seq == m.seq);
			for (unsigned i = 0; i < m.n; i++)
				model[m.idx[i]] = m.st[i];
			has[m.thread] = false;
			acked++;
		}

		s = open_store(NULL, 0);
		for (unsigned i = 0; i < KILL_IDS; i++)
			read_state(s, kill_ids[i], &now[i], NULL, NULL);
		for (unsigned t = 0; t < KILL_THREADS; t++) {
			bool is_old = true, is_new = true;

			if (!has[t])
				continue;
			in_flight++;
			for (unsigned i = 0; i < pend[t].n; i++) {
				unsigned k = pend[t].idx[i];

				is_old = is_old &&
					 same_state(&now[k], &model[k]);
				is_new = is_new &&
					 same_state(&now[k], &pend[t].st[i]);
			}
			if (!is_old && !is_new) {
				cr_log_error("round %d: a change of thread %u "
					     "is half done",
					     round, t);
				torn++;
			}
			for (unsigned i = 0; i < pend[t].n; i++)
				model[pend[t].idx[i]] = now[pend[t].idx[i]];
		}
		for (unsigned i = 0; i < KILL_IDS; i++) {
			unsigned t = i / KILL_PER_THREAD;

			if (has[t] && touches(&pend[t], i))
				continue; /* checked above */
			if (same_state(&now[i], &model[i]))
				continue;
			cr_log_error("round %d: %s is at version %llu%s, "
				     "expected %llu",
				     round, kill_ids[i],
				     (unsigned long long)now[i].version,
				     now[i].exists ? "" : " (deleted)",
				     (unsigned long long)model[i].version);
			if (now[i].version < model[i].version)
				lost++;
			else
				torn++;
			model[i] = now[i];
		}
		check_no_strays("random kills", false);
		check_verify(s, "random kills");
		cr_assert_eq(store_close(s), 0);
	}
	cr_log_info("random kills: %u acknowledged changes, %u in flight at "
		    "the kills",
		    acked, in_flight);
	cr_assert_eq(lost + torn, 0, "lost=%u torn=%u", lost, torn);
	cr_assert_gt(acked, KILL_ROUNDS, "too few changes to mean much");
}

static int put_x(struct store *s, struct io *io, const void *arg)
{
	io_arm(io, "commit.publish", IO_CRASH, 0, 1, 1);
	return puts_(s, "x", "new x");
}

/*
 * Publishing swaps the stage with the current file. If recovery finds a
 * directory where a journaled record goes (made there from outside),
 * it must not swap it out of the records tree: the open fails, naming
 * the record, and the directory stays where it was, with its content.
 */
Test(crash, recovery_never_swaps_a_directory_out_of_place)
{
	char p[PATH_MAX + 64];
	struct store_opts o = {.path = spath};
	struct store *s;

	next_case();
	s = open_store(NULL, NO_CHECKPOINT);
	cr_assert_eq(puts_(s, "x", "old x"), 0);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(in_child(put_x, NULL, false, NULL), IO_CRASH_STATUS);
	snprintf(p, sizeof(p), "%s/records/x", spath);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/records/x/inside", spath);
	cr_assert_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	s = NULL;
	cr_assert_eq(store_open(&s, &o), -EISDIR);
	cr_assert_eq(access(p, F_OK), 0, "the directory was moved");
}

struct bg_change {
	struct store *s;
	int rc;
	bool rename; /* rename a -> b, else put a */
};

static void *bg_change_fn(void *arg)
{
	struct bg_change *c = arg;

	c->rc = c->rename ? store_rename(c->s, "a", "b", NULL, NULL, NULL)
			  : puts_(c->s, "a", "a-2");
	return NULL;
}

/*
 * A change that was waiting for a record while the change before it broke
 * the store (journaled, not put in place) must be refused too: here a put
 * to `a` behind a rename a -> b whose move failed would overwrite the only
 * copy of b's content.
 */
Test(crash, change_waiting_behind_a_broken_one_is_refused)
{
	struct bg_change ren = {.rename = true}, put = {0};
	struct io *io = NULL;
	pthread_t t1, t2;
	struct store *s;

	next_case();
	cr_assert_eq(io_new(&io), 0);
	s = open_store(io, NO_CHECKPOINT);
	cr_assert_eq(puts_(s, "a", "a-1"), 0);
	ren.s = put.s = s;
	cr_assert_eq(io_arm(io, "commit.journal", IO_STALL, 0, 1, 1), 0);
	pthread_create(&t1, NULL, bg_change_fn, &ren);
	for (int i = 0; i < 10000 && io_stalled(io, "commit.journal") != 1; i++)
		usleep(1000);
	cr_assert_eq(io_stalled(io, "commit.journal"), 1);
	pthread_create(&t2, NULL, bg_change_fn, &put);
	usleep(50 * 1000); /* let the put reach the busy mark of a */
	cr_assert_eq(io_arm(io, "commit.move", IO_FAIL, EIO, 1, 1), 0);
	io_release(io);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	cr_assert_eq(ren.rc, 0, "the rename is journaled: %s",
		     strerror(-ren.rc));
	cr_assert_eq(put.rc, -EIO, "a broken store took a change (%s)",
		     strerror(-put.rc));
	store_close(s);
	io_free(io);
	s = open_store(NULL, 0);
	cr_assert(holds_text(s, "b", "a-1", 1), "the renamed record is lost");
	cr_assert(gone(s, "a", 1));
	check_verify(s, "rename then put");
	cr_assert_eq(store_close(s), 0);
}
