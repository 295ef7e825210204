/*
 * crash_helpers.c - see crash_helpers.h.
 */
#include "crash_helpers.h"

#include "admin.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int ncase;

void crash_setup(void)
{
	sandbox_store("crash", true);
}

void next_case(void)
{
	if (spath[0])
		sandbox_rm(spath);
	snprintf(spath, sizeof(spath), "%s/case%d", base, ++ncase);
}

const char *const op_names[OP_N] = {
	"put",	  "put-big",  "append",	    "delete",
	"rename", "set-meta", "checkpoint",
};

const struct point points[] = {
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

const size_t npoints = sizeof(points) / sizeof(points[0]);

uint8_t big_new[BIG_LEN];

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

struct store *open_store(struct io *io, uint64_t ckpt)
{
	struct store_opts o = {.path = spath,
			       .create = true,
			       .io = io,
			       .checkpoint_bytes = ckpt};
	return open_ok(&o);
}

int put(struct store *s, const char *id, const void *buf, size_t len)
{
	return store_put(s, id, buf, len, NULL, NULL);
}

int puts_(struct store *s, const char *id, const char *text)
{
	return put(s, id, text, strlen(text));
}

/* The part of the fixture that is checkpointed: made in-process. */
void make_fixture(void)
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
int pre_ops(struct store *s)
{
	int rc = 0;

	rc |= puts_(s, "j1", "j-1") | puts_(s, "ns/j2", "j-2");
	rc |= puts_(s, "k4", "k4-2");
	rc |= store_delete(s, "ns/k3", NULL, NULL, NULL);
	rc |= store_xattr_set(s, "ns/k1", "user.x", "1", 1, 0);
	return rc;
}

int do_op(struct store *s, enum op op)
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

static bool meta_is(struct store *s, const char *id, uint32_t mode,
		    const struct timespec *t)
{
	struct store_meta m;

	return store_stat(s, id, &m, false) == 0 && m.mode == mode &&
	       m.mtime.tv_sec == t->tv_sec && m.mtime.tv_nsec == t->tv_nsec;
}

static const char *const outcome_names[] = {"old", "new", "torn"};

/* Where the records of `op` are: exactly old, exactly new, or neither. */
enum outcome outcome_of(struct store *s, enum op op)
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
void check_others(struct store *s, enum op op, const char *what)
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
void check_no_strays(const char *what, bool tmp_may_hold)
{
	static const char *const known[] = {
		"format.json", "lock",	  "index",	 "records",
		"journal",     "tmp",	  "history.git", "history.idx",
		"history.vdx", "scratch", "reserve"};
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

void check_verify_all(struct store *s, const char *what)
{
	struct store_verify_report rep;

	check_verify(s, what, &rep);
	cr_assert_eq(rep.unindexed, 0, "%s: unindexed files", what);
}

/*
 * Reopen the store and check it after a crash or an error during `op`:
 * `want` is OLD, NEW, or TORN meaning "old or new". `extra` (may be NULL)
 * checks more on the first open.
 */
void check_reopened_x(enum op op, enum outcome want, const char *what,
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
	check_verify_all(s, what);
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

void check_reopened(enum op op, enum outcome want, const char *what)
{
	check_reopened_x(op, want, what, NULL);
}

const struct fault faults[] = {
	{IO_FAIL, EIO, "EIO"},
	{IO_FAIL, ENOSPC, "ENOSPC"},
	{IO_SHORT, ENOSPC, "short write + ENOSPC"},
};

const size_t nfaults = sizeof(faults) / sizeof(faults[0]);

struct store_opts child_opts(const char *point, enum io_action act, int err,
			     unsigned times)
{
	struct store_opts o = {.path = spath,
			       .checkpoint_bytes = NO_CHECKPOINT};
	struct io *io = NULL;

	if (io_new(&io))
		_exit(2);
	if (point && io_arm(io, point, act, err, 1, times))
		_exit(2);
	o.io = io;
	return o;
}

int in_child(child_fn fn, const void *arg, bool arm_before_open,
	     const char *point)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store_opts o = child_opts(arm_before_open ? point : NULL,
						 IO_CRASH, 0, 1);
		struct store *s = NULL;

		if (store_open(&s, &o))
			_exit(3);
		if (!arm_before_open && point &&
		    io_arm(o.io, point, IO_CRASH, 0, 1, 1))
			_exit(2);
		_exit(fn && fn(s, o.io, arg) ? 5 : 0);
	}
	return child_status(pid);
}
