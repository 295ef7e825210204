/*
 * test_history_idx.c - the git history of a store (store/history.h, SPEC
 * section 5), checked from the outside: packs and history.idx (damaged,
 * caught up, rebuilt), stores without a history, verify, a fork after
 * open, read-only stores.
 * The fixture and helpers the test_history_*.c files share are in
 * history_helpers.h.
 */
#include "admin.h"
#include "helpers.h"
#include "hist_i.h"
#include "history_helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>
#include <git2.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(history, .init = history_setup, .fini = history_teardown,
	  .timeout = 300);

/* ---- history.idx and stores without history ------------------------------ */

static void damage_idx(off_t at, const char *bytes, size_t n)
{
	char p[PATH_MAX + 64];
	int fd;

	snprintf(p, sizeof(p), "%s/history.idx", spath);
	fd = open(p, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, bytes, n, at), (ssize_t)n);
	close(fd);
}

static void check_history(struct store *s, int n)
{
	char id[16], text[16];
	void *buf;
	size_t len;

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "r%d", i % 7);
		snprintf(text, sizeof(text), "t%d", i);
		cr_assert_eq(store_history_get(s, id, (uint64_t)(i / 7 + 1),
					       &buf, &len, NULL),
			     0, "%s@%d", id, i / 7 + 1);
		cr_assert(len == strlen(text) && !memcmp(buf, text, len));
		free(buf);
	}
}

/* `n` puts (from the `from`th) to seven records, one batch every
   `every`; check_history reads them back. */
static void put_batches(struct store *s, int from, int n, int every)
{
	char id[16], text[16];

	for (int k = from; k < from + n; k++) {
		snprintf(id, sizeof(id), "r%d", k % 7);
		snprintf(text, sizeof(text), "t%d", k);
		put(s, id, text);
		if (k % every == every - 1)
			drain(s);
	}
	drain(s);
}

/* No loose object, at most `max_packs` packs (0: any), git fsck clean. */
static void check_packs(int max_packs)
{
	char *out;

	free(run("git -C '%s' fsck --strict 2>&1", gitdir));
	out = run("cd '%s/objects' && find ?? -type f 2>/dev/null | wc -l; "
		  "ls pack | grep -c '[.]pack$'",
		  gitdir);
	cr_assert_eq(strncmp(out, "0\n", 2), 0, "loose objects: %s", out);
	if (max_packs)
		cr_assert_leq(atoi(out + 2), max_packs, "packs: %s", out + 2);
	free(out);
}

/*
 * Each batch's objects are one pack (no loose objects), and the packs are
 * merged so that there stay few of them; a fault at any step of a merge
 * (persistent: every merge fails) loses no object, git fsck stays clean,
 * and once the fault is gone the merges catch up.
 */
Test(history, batches_are_packed_and_merged_losing_nothing)
{
	static const char *const points[] = {
		NULL,
		"hist.pack.read",
		"hist.pack.sync",
		"hist.pack.unlink",
		"hist.pack.dirsync",
	};

	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		struct io *io = NULL;
		struct store *s;

		sandbox_rm(spath);
		cr_assert_eq(io_new(&io), 0);
		if (points[i])
			cr_assert_eq(io_arm(io, points[i], IO_FAIL, EIO, 1, 0),
				     0);
		s = open_slow(1, io);
		put_batches(s, 0, 240, 4); /* 60 batches, so 60 packs */
		check_history(s, 240);
		if (points[i])
			cr_assert_gt(io_hits(io, points[i]), 0, "%s",
				     points[i]);
		close_store(s);
		io_free(io);
		check_packs(points[i] ? 0 : 17);
		s = open_slow(1, NULL);
		check_history(s, 240);
		put_batches(s, 240, 80, 4);
		check_history(s, 320);
		close_store(s);
		check_packs(17);
	}
}

Test(history, damaged_history_idx_is_caught_up_or_rebuilt)
{
	static const struct {
		off_t at;
		const char *bytes;
	} damage[] = {
		{0, "NOTANIDX"},	   /* the header */
		{300, "\xff\xff\xff\xff"}, /* a frame in the middle */
		{-3, "\x01\x02\x03"},	   /* the tail */
	};
	struct store *s = open_store();
	char p[PATH_MAX + 64];
	struct stat st;

	put_batches(s, 0, 60, 10);
	close_store(s);
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(stat(p, &st), 0);
		damage_idx(damage[i].at < 0 ? st.st_size + damage[i].at
					    : damage[i].at,
			   damage[i].bytes, strlen(damage[i].bytes));
		s = open_store();
		check_history(s, 60);
		close_store(s);
	}
	/* truncated: caught up from the commits */
	cr_assert_eq(truncate(p, 100), 0);
	s = open_store();
	check_history(s, 60);
	close_store(s);
	/* gone */
	cr_assert_eq(unlink(p), 0);
	s = open_store();
	check_history(s, 60);
	put_batches(s, 0, 5, 10);
	close_store(s);
	/* a directory in its place: a clear error, no crash */
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkdir(p, 0700), 0);
	{
		struct store_opts o = {.path = spath};
		struct store *bad = NULL;

		cr_assert_neq(store_open(&bad, &o), 0);
		cr_assert_null(bad);
	}
}

Test(history, a_store_without_history_gets_one)
{
	struct store_verify_report rep;
	void *buf;
	size_t len;
	char p[PATH_MAX + 64];
	struct store *s = open_store();

	put(s, "old", "before history");
	close_store(s);
	/* as made by a recfs without history */
	sandbox_rm(gitdir);
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	unlink(p);
	s = open_store();
	free(run("test -d '%s/refs/heads'", gitdir));
	cr_assert_eq(store_history_get(s, "old", 1, &buf, &len, NULL), -ENOENT);
	put(s, "old", "after");
	put(s, "new", "new");
	drain(s);
	cr_assert_eq(store_history_get(s, "old", 2, &buf, &len, NULL), 0);
	cr_assert(len == 5 && !memcmp(buf, "after", 5));
	free(buf);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.hist_absent, 0);
	cr_assert_eq(rep.hist_versions, 2);
	close_store(s);
}

Test(history, renaming_a_version_from_before_the_history_takes_the_file)
{
	void *buf;
	size_t len;
	struct store *s = open_store();

	put(s, "pre", "pre-history content");
	close_store(s);
	sandbox_rm(gitdir);
	s = open_store();
	cr_assert_eq(store_rename(s, "pre", "post", NULL, NULL, NULL), 0);
	drain(s);
	cr_assert_eq(store_history_get(s, "post", 1, &buf, &len, NULL), 0);
	cr_assert(len == 19 && !memcmp(buf, "pre-history content", len));
	free(buf);
	check_tree(s);
	close_store(s);
}

/*
 * verify compares every live record with the tree of refs/heads/main,
 * read once (a namespace of many records is a tree object too big for
 * libgit2's cache): a record the tree lacks, one it holds with another
 * blob, and one it holds that is not live are each reported.
 */
Test(history, verify_compares_the_records_with_the_last_tree)
{
	struct store_verify_report rep;
	char *out;
	struct store *s = open_store();

	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	for (int i = 0; i < 300; i++) {
		char id[32], text[32];

		snprintf(id, sizeof(id), "ns/r%03d", i);
		snprintf(text, sizeof(text), "record %d", i);
		put(s, id, text);
	}
	put(s, "other", "one");
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.hist_bad, 0);
	close_store(s);
	/* main's tree, rewritten by git (the same message, so the same
	   Recfs-Upto): ns/r007 gone, other with another blob, and a
	   stranger that is no record */
	out = run("cd '%s' && git read-tree main && "
		  "git rm -q --cached ns/r007 && "
		  "b=$(printf two | git hash-object -w --stdin) && "
		  "git update-index --cacheinfo 100644,$b,other && "
		  "git update-index --add --cacheinfo 100644,$b,stranger && "
		  "t=$(git write-tree) && "
		  "m=$(git log -1 --format=%%B main) && "
		  "c=$(git commit-tree $t -p main -m \"$m\") && "
		  "git update-ref refs/heads/main $c && rm -f index",
		  gitdir);
	free(out);
	s = open_store();
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_eq(rep.hist_bad, 3, "%llu problems",
		     (unsigned long long)rep.hist_bad);
	close_store(s);
}

/*
 * Removes of many records in one batch, across namespaces (ops come
 * sorted by path, the previous tree is asked one directory at a time):
 * the tree loses exactly the deleted records, and a record created and
 * deleted within the batch, never in the history, is no remove at all.
 */
Test(history, a_batch_of_deletes_across_namespaces_leaves_the_right_tree)
{
	static const char *const dirs[] = {"", "a/", "a/b/", "c/"};
	char id[64], text[64];
	struct store_verify_report rep;
	char *out;
	struct store *s = open_store();

	cr_assert_eq(store_mkdir(s, "a", 0700), 0);
	cr_assert_eq(store_mkdir(s, "a/b", 0700), 0);
	cr_assert_eq(store_mkdir(s, "c", 0700), 0);
	for (size_t d = 0; d < 4; d++) {
		for (int i = 0; i < 40; i++) {
			/* leaf names differ between directories */
			snprintf(id, sizeof(id), "%sr%c%02d", dirs[d],
				 (char)('k' + d), i);
			snprintf(text, sizeof(text), "%s %d", dirs[d], i);
			put(s, id, text);
		}
	}
	drain(s);
	close_store(s);
	s = open_slow(60000, NULL); /* one batch, at the drain */
	for (size_t d = 0; d < 4; d++) {
		for (int i = 0; i < 40; i += 2) {
			snprintf(id, sizeof(id), "%sr%c%02d", dirs[d],
				 (char)('k' + d), i);
			cr_assert_eq(store_delete(s, id, NULL, NULL, NULL), 0,
				     "%s", id);
		}
	}
	put(s, "a/new", "never in the history");
	cr_assert_eq(store_delete(s, "a/new", NULL, NULL, NULL), 0);
	drain(s);
	check_tree(s);
	out = run("git -C '%s' ls-tree -r --name-only refs/heads/main | "
		  "grep -c '[13579]$'",
		  gitdir);
	cr_assert_eq(strtoul(out, NULL, 10), 4 * 20, "%s", out);
	free(out);
	cr_assert_eq(store_verify(s, &rep), 0);
	close_store(s);
}

Test(history, verify_finds_a_blob_missing_from_the_repository)
{
	struct store_verify_report rep;
	char want[41], p[PATH_MAX + 128];
	struct store *s = open_store();

	put(s, "v", "verify me");
	put(s, "w", "and me");
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.hist_versions, 2);
	blob_hex("verify me", 9, want);
	close_store(s);
	/* the writer packs its objects: make them loose to remove one */
	free(run(LOOSEN_SH, gitdir));
	snprintf(p, sizeof(p), "%s/objects/%.2s/%s", gitdir, want, want + 2);
	cr_assert_eq(unlink(p), 0, "%s", p);
	s = open_store();
	cr_assert_eq(store_verify(s, &rep), -EBADMSG);
	cr_assert_geq(rep.hist_bad, 1);
	close_store(s);
}

/* The mount opens the store, then daemonises (fork): the history writer
   must not have started before, or the daemon would have none. */
/* The parent's store after the fork: it goes away with the process. */
struct store *volatile history_forked_parent;

Test(history, the_writer_is_not_lost_by_a_fork_after_open)
{
	struct store *s;
	pid_t pid;

	s = open_store();
	put(s, "before", "fork");
	close_store(s);
	s = open_store();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		void *buf = NULL;
		size_t len;

		if (store_serve_start(s) ||
		    store_put(s, "after", "fork", 4, NULL, NULL) ||
		    store_history_drain(s, 10000) ||
		    store_history_get(s, "after", 1, &buf, &len, NULL))
			_exit(1);
		_exit(store_close(s) ? 2 : 0);
	}
	cr_assert_eq(child_status(pid), 0);
	/* the parent (like fuse_daemonize's) just goes: s is left as is */
	history_forked_parent = s;
	free(run("git -C '%s' log --format=%%B refs/heads/main | "
		 "grep -qx 'Recfs-Id: after'",
		 gitdir));
}

/* A read-only open reads the history without writing anything. */
Test(history, read_only_store_reads_history_and_writes_nothing)
{
	struct store_opts o = {.read_only = true};
	char p[PATH_MAX + 64], *before, *after;
	void *buf = NULL;
	size_t len;
	struct store *s = open_store();

	put(s, "ro", "one");
	put(s, "ro", "two");
	close_store(s);
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	cr_assert_eq(truncate(p, 40), 0); /* to be caught up in memory */
	before = run("cd '%s' && find . -newer format.json ! -name lock "
		     "-printf '%%p %%s %%T@\\n' | sort",
		     spath);
	s = open_opts(&o);
	cr_assert_eq(store_history_get(s, "ro", 1, &buf, &len, NULL), 0);
	cr_assert(len == 3 && !memcmp(buf, "one", 3));
	free(buf);
	len = (size_t)store_history_drain(s, 100); /* nothing to write */
	cr_assert((int)len == 0 || (int)len == -EAGAIN);
	close_store(s);
	after = run("cd '%s' && find . -newer format.json ! -name lock "
		    "-printf '%%p %%s %%T@\\n' | sort",
		    spath);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
}
