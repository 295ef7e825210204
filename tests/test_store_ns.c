/*
 * test_store_ns.c - the record store (store/): namespaces, hostile IDs, owner
 * and group, symlinks. The fixture and helpers the test_store_*.c files share
 * are in store_helpers.h.
 */
#include "helpers.h"
#include "io.h"
#include "jnl.h"
#include "store.h"
#include "store_helpers.h"
#include "store_history.h"
#include "txn.h"

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
