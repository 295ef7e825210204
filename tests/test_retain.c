/*
 * test_retain.c - retention policies and prunes (store/retain.c,
 * store/history_prune.c, store/history_epoch.c): what is pruned and what
 * is kept, trailers that stay, a smaller history.git that stock git
 * fsck's clean, the policy file, bad input, and a crash at every
 * failpoint of a prune (and of its roll-forward at the next open), which
 * must leave the old history or the new one.
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
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void setup(void)
{
	sandbox_store("retain", true);
}

TestSuite(retain, .init = setup, .fini = sandbox_store_rm, .timeout = 600);

/* ---- helpers --------------------------------------------------------------
 */

static struct store *open_io(struct io *io, int64_t now_ns)
{
	struct store_opts o = {.path = spath,
			       .create = true,
			       .io = io,
			       .retain_now_ns = now_ns};
	return open_ok(&o);
}

static struct store *open_store(void)
{
	return open_io(NULL, 0);
}

static void content(char *buf, size_t len, const char *id, uint64_t v)
{
	/* a few hundred bytes that do not compress into each other */
	size_t n =
		(size_t)snprintf(buf, len, "%s version %" PRIu64 "\n", id, v);
	uint64_t x = v * 0x9e3779b97f4a7c15ull + (uint64_t)strlen(id);

	while (n + 17 < len) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n += (size_t)snprintf(buf + n, len - n, "%016" PRIx64, x);
	}
}

#define BODY 400

/* Versions from..from+n-1 of `id` (what content() makes for them); the
   history drained every `every` puts. */
static void put_from(struct store *s, const char *id, unsigned from, unsigned n,
		     unsigned every)
{
	char buf[BODY], ns[256];

	/* its namespaces first */
	for (const char *sl = id; (sl = strchr(sl, '/')) != NULL; sl++) {
		int rc;

		snprintf(ns, sizeof(ns), "%.*s", (int)(sl - id), id);
		rc = store_mkdir(s, ns, 0755);
		cr_assert(rc == 0 || rc == -EEXIST, "mkdir %s: %s", ns,
			  strerror(-rc));
	}
	for (unsigned v = from; v < from + n; v++) {
		struct store_result r;
		int rc;

		content(buf, sizeof(buf), id, v);
		rc = store_put(s, id, buf, strlen(buf), NULL, &r);
		cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
		if (every && v % every == 0)
			cr_assert_eq(store_history_drain(s, 30000), 0);
	}
	cr_assert_eq(store_history_drain(s, 30000), 0);
}

static void put_versions(struct store *s, const char *id, unsigned n,
			 unsigned every)
{
	put_from(s, id, 1, n, every);
}

/* Is version v of id readable with its content (1), ENOENT (0)? */
static int readable(struct store *s, const char *id, uint64_t v)
{
	char want[BODY];
	void *buf = NULL;
	size_t len = 0;
	int rc = store_history_get(s, id, v, &buf, &len, NULL);

	if (rc == -ENOENT)
		return 0;
	cr_assert_eq(rc, 0, "%s@%" PRIu64 ": %s", id, v, strerror(-rc));
	content(want, sizeof(want), id, v);
	cr_assert(len == strlen(want) && memcmp(buf, want, len) == 0,
		  "%s@%" PRIu64 ": wrong content", id, v);
	free(buf);
	return 1;
}

/* Versions lo..hi of id are (want 1) readable or (0) ENOENT. */
static void check_range(struct store *s, const char *id, uint64_t lo,
			uint64_t hi, int want)
{
	for (uint64_t v = lo; v <= hi; v++)
		cr_assert_eq(readable(s, id, v), want, "%s@%" PRIu64 ": %s", id,
			     v, want ? "not readable" : "still readable");
}

static uint64_t sh_count(const char *cmd)
{
	char line[64] = "";
	FILE *f;

	f = popen(cmd, "r");
	cr_assert_not_null(f);
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	pclose(f);
	return strtoull(line, NULL, 10);
}

static void check_fsck(void)
{
	char cmd[PATH_MAX * 2];

	snprintf(cmd, sizeof(cmd),
		 "git -C '%s' fsck --strict --no-dangling >&2", gitdir);
	cr_assert_eq(system(cmd), 0, "git fsck --strict is not clean");
	snprintf(cmd, sizeof(cmd),
		 "git -C '%s' log --oneline refs/heads/main >/dev/null",
		 gitdir);
	cr_assert_eq(system(cmd), 0, "git log fails");
}

static uint64_t git_pruned_trailers(void)
{
	char cmd[PATH_MAX * 2];

	snprintf(cmd, sizeof(cmd),
		 "git -C '%s' log --format=%%B refs/heads/main | "
		 "grep -c '^Recfs-Pruned: '",
		 gitdir);
	return sh_count(cmd);
}

struct count {
	uint64_t all, pruned;
};

static int count_one(void *arg, const char *id, const struct store_version *v)
{
	struct count *c = arg;

	c->all++;
	c->pruned += v->pruned;
	cr_assert(!v->pruned || v->blob[0], "a pruned version names its blob");
	return 0;
}

static struct count log_of(struct store *s, const char *id)
{
	struct count c = {0};

	cr_assert_eq(store_history_each(s, id, count_one, &c), 0);
	return c;
}

static void verify_clean(struct store *s)
{
	struct store_verify_report rep;
	int rc = store_verify(s, &rep);

	cr_assert_eq(rc, 0, "verify: %s", strerror(-rc));
	cr_assert_eq(rep.bad + rep.hist_bad, 0, "verify finds problems");
}

static struct store_retain_report set(struct store *s, const char *prefix,
				      enum store_retain_kind kind, uint64_t n)
{
	struct store_retain_policy p = {prefix, kind, n};
	struct store_retain_report rep;
	int rc = store_retain_set(s, &p, &rep);

	cr_assert_eq(rc, 0, "retain %s: %s", prefix, strerror(-rc));
	return rep;
}

/* ---- keep N ---------------------------------------------------------------
 */

Test(retain, keep_3_of_1000_versions_prunes_997_and_shrinks_the_history)
{
	struct store *s = open_store();
	struct store_retain_report rep;
	struct count c;

	put_versions(s, "big", 1000, 100);
	put_versions(s, "other/x", 10, 1);
	rep = set(s, "big", STORE_RETAIN_KEEP, 3);
	printf("retain --keep 3 of 1000 versions: history.git %" PRIu64
	       " -> %" PRIu64 " bytes\n",
	       rep.history_before, rep.history_after);
	cr_assert_eq(rep.versions, 997);
	cr_assert_eq(rep.records, 1);
	/* 997 versions of ~400 hex digits, ~200 bytes each compressed */
	cr_assert_lt(rep.history_after, rep.history_before);
	cr_assert_gt(rep.history_before - rep.history_after, 997 * 150,
		     "history.git %" PRIu64 " -> %" PRIu64 " bytes",
		     rep.history_before, rep.history_after);
	check_range(s, "big", 998, 1000, 1);
	check_range(s, "big", 1, 997, 0);
	check_range(s, "other/x", 1, 10, 1);
	c = log_of(s, "big");
	cr_assert_eq(c.all, 1000, "every trailer stays in the log");
	cr_assert_eq(c.pruned, 997);
	cr_assert_eq(git_pruned_trailers(), 997);
	check_fsck();
	verify_clean(s);
	cr_assert_eq(store_close(s), 0);

	/* the same after a reopen, and writes go on */
	s = open_store();
	check_range(s, "big", 1, 997, 0);
	check_range(s, "big", 998, 1000, 1);
	put_from(s, "other/x", 11, 2, 1);
	cr_assert_eq(log_of(s, NULL).pruned, 997);
	verify_clean(s);
	cr_assert_eq(store_close(s), 0);
	check_fsck();
}

Test(retain, one_version_per_commit_and_a_deleted_record)
{
	struct store *s = open_store();
	struct store_retain_report rep;

	put_versions(s, "a/one", 12, 1);
	put_versions(s, "a/gone", 5, 1);
	cr_assert_eq(store_delete(s, "a/gone", NULL, NULL, NULL), 0);
	cr_assert_eq(store_history_drain(s, 30000), 0);
	rep = set(s, "a", STORE_RETAIN_KEEP, 2);
	cr_assert_eq(rep.versions, 10 + 3);
	check_range(s, "a/one", 1, 10, 0);
	check_range(s, "a/one", 11, 12, 1);
	check_range(s, "a/gone", 1, 3, 0);
	check_range(s, "a/gone", 4, 5, 1);
	check_fsck();
	/* a second prune finds nothing more, and changes nothing */
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	cr_assert_eq(rep.versions, 0);
	/* new versions fall past the policy at the next prune */
	put_from(s, "a/one", 13, 3, 1);
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	cr_assert_eq(rep.versions, 3);
	check_range(s, "a/one", 1, 13, 0);
	check_range(s, "a/one", 14, 15, 1);
	cr_assert_eq(git_pruned_trailers(), 16);
	check_fsck();
	verify_clean(s);
	cr_assert_eq(store_close(s), 0);
}

Test(retain, keep_1_keeps_the_current_version)
{
	struct store *s = open_store();

	put_versions(s, "k", 5, 1);
	cr_assert_eq(set(s, "/", STORE_RETAIN_KEEP, 1).versions, 4);
	check_range(s, "k", 5, 5, 1);
	check_range(s, "k", 1, 4, 0);
	cr_assert_eq(store_close(s), 0);
	check_fsck();
}

/* ---- days -----------------------------------------------------------------
 */

Test(retain, days_prunes_versions_replaced_more_than_d_days_ago)
{
	int64_t now = (int64_t)time(NULL) * 1000000000;
	struct store *s = open_store();
	struct store_retain_report rep;

	put_versions(s, "d", 6, 2);
	/* all replaced just now: within 1 day */
	cr_assert_eq(set(s, "d", STORE_RETAIN_DAYS, 1).versions, 0);
	check_range(s, "d", 1, 6, 1);
	cr_assert_eq(store_close(s), 0);

	/* ten days later, a policy of 20 days keeps them, of 5 does not */
	s = open_io(NULL, now + 10 * 86400LL * 1000000000);
	cr_assert_eq(set(s, "d", STORE_RETAIN_DAYS, 20).versions, 0);
	check_range(s, "d", 1, 6, 1);
	rep = set(s, "d", STORE_RETAIN_DAYS, 5);
	cr_assert_eq(rep.versions, 5);
	check_range(s, "d", 1, 5, 0);
	check_range(s, "d", 6, 6, 1); /* the current one, whatever its age */
	cr_assert_eq(store_close(s), 0);
	check_fsck();
}

/* ---- prefixes, off, the file -------------------------------------------- */

Test(retain, longest_prefix_wins_and_prefixes_are_namespaces)
{
	struct store *s = open_store();

	put_versions(s, "logs/a", 4, 1);
	put_versions(s, "logs/b/c", 4, 1);
	put_versions(s, "logsx", 4, 1);
	put_versions(s, "other", 4, 1);
	set(s, "logs/b/", STORE_RETAIN_KEEP, 3);
	set(s, "logs", STORE_RETAIN_KEEP, 1);
	check_range(s, "logs/a", 1, 3, 0);
	check_range(s, "logs/a", 4, 4, 1);
	check_range(s, "logs/b/c", 1, 1, 0);
	check_range(s, "logs/b/c", 2, 4, 1);
	check_range(s, "logsx", 1, 4, 1);
	check_range(s, "other", 1, 4, 1);
	cr_assert_eq(store_close(s), 0);
	check_fsck();
}

static int list_one(void *arg, const struct store_retain_policy *p)
{
	char *out = arg;

	sprintf(out + strlen(out), "%s:%c%" PRIu64 " ", p->prefix,
		p->kind == STORE_RETAIN_KEEP ? 'k' : 'd', p->n);
	return 0;
}

Test(retain, off_removes_the_policy_and_the_file_is_0600_json)
{
	struct store *s = open_store();
	struct store_retain_policy off = {"logs", STORE_RETAIN_OFF, 0};
	struct store_retain_report rep;
	char list[256] = "", path[PATH_MAX + 64];
	struct stat st;

	put_versions(s, "logs/a", 3, 1);
	set(s, "logs/", STORE_RETAIN_KEEP, 5);
	set(s, "/", STORE_RETAIN_DAYS, 30);
	cr_assert_eq(store_retain_each(s, list_one, list), 0);
	cr_assert_str_eq(list, "logs:k5 /:d30 ");
	snprintf(path, sizeof(path), "%s/retain.json", spath);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(store_retain_set(s, &off, &rep), 0);
	list[0] = '\0';
	cr_assert_eq(store_retain_each(s, list_one, list), 0);
	cr_assert_str_eq(list, "/:d30 ");
	cr_assert_eq(store_retain_set(s, &off, &rep), -ENOENT);
	put_from(s, "logs/a", 4, 3, 1);
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	cr_assert_eq(rep.versions, 0);
	check_range(s, "logs/a", 1, 6, 1);
	cr_assert_eq(store_close(s), 0);
}

Test(retain, bad_prefixes_and_counts_are_refused)
{
	static const char *const bad[] = {"",	  "*.log", "logs/*", "a?",
					  "/abs", "../x",  "a/../b", "a//b",
					  "./a",  "[ab]"};
	struct store *s = open_store();
	struct store_retain_report rep;
	char msg[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct store_retain_policy p = {bad[i], STORE_RETAIN_KEEP, 3};

		cr_assert_eq(
			store_retain_prefix_check(bad[i], msg, sizeof(msg)),
			-EINVAL, "prefix \"%s\" accepted", bad[i]);
		cr_assert_eq(store_retain_set(s, &p, &rep), -EINVAL);
	}
	cr_assert_eq(store_retain_prefix_check("/", msg, sizeof(msg)), 0);
	cr_assert_eq(store_retain_prefix_check("a/b/", msg, sizeof(msg)), 0);
	{
		struct store_retain_policy p = {"a", STORE_RETAIN_KEEP, 0};

		cr_assert_eq(store_retain_set(s, &p, &rep), -EINVAL);
	}
	cr_assert_eq(store_close(s), 0);
}

Test(retain, a_corrupt_policy_file_prunes_nothing)
{
	struct store *s = open_store();
	struct store_retain_report rep;
	char path[PATH_MAX + 64];
	FILE *f;

	put_versions(s, "c", 4, 1);
	snprintf(path, sizeof(path), "%s/retain.json", spath);
	f = fopen(path, "w");
	fputs("{\"retain\":1,\"policies\":[{\"prefix\":\"c\",\"keep\":-1}]}",
	      f);
	fclose(f);
	cr_assert_eq(store_retain_prune(s, &rep), -EBADMSG);
	check_range(s, "c", 1, 4, 1);
	cr_assert_eq(store_retain_plan(s, &rep), -EBADMSG);
	cr_assert_eq(store_close(s), 0);
}

Test(retain, plan_says_what_a_prune_would_free)
{
	struct store *s = open_store();
	struct store_retain_report plan, rep;

	put_versions(s, "p", 10, 1);
	cr_assert_eq(store_retain_plan(s, &plan), 0);
	cr_assert_eq(plan.versions, 0);
	cr_assert_gt(plan.history_before, 0);
	set(s, "q", STORE_RETAIN_KEEP, 2); /* no record there */
	{
		char path[PATH_MAX + 64];
		FILE *f;

		snprintf(path, sizeof(path), "%s/retain.json", spath);
		f = fopen(path, "w");
		fputs("{\"retain\":1,\"policies\":[{\"prefix\":\"p\","
		      "\"keep\":4}]}\n",
		      f);
		fclose(f);
	}
	cr_assert_eq(store_retain_plan(s, &plan), 0);
	cr_assert_eq(plan.versions, 6);
	cr_assert_gt(plan.bytes, 6 * 300); /* their sizes, summed */
	check_range(s, "p", 1, 10, 1);
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	cr_assert_eq(rep.versions, plan.versions);
	cr_assert_eq(rep.bytes, plan.bytes);
	cr_assert_eq(store_close(s), 0);
}

/* ---- crashes ------------------------------------------------------------- */

#define CRASH_N 30

/* A child: open with `spec` armed (RECFS_FAILPOINTS syntax) and prune
   (keep 3) if `prune`; its exit status. */
static int child(const char *spec, bool prune)
{
	pid_t pid = fork();
	int st;

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct io *io = NULL;
		struct store_opts o = {.path = spath, .io = NULL};
		struct store_retain_policy p = {"r", STORE_RETAIN_KEEP, 3};
		struct store_retain_report rep;
		struct store *s = NULL;

		if (io_new(&io) || io_arm_spec(io, spec))
			_exit(3);
		o.io = io;
		if (store_open(&s, &o))
			_exit(4);
		if (prune && store_retain_set(s, &p, &rep))
			_exit(5);
		store_close(s);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* After a crash: every version readable (old) or 28 pruned (new). */
static bool check_old_or_new(const char *what)
{
	struct store *s = open_store();
	int first = readable(s, "r", 1);

	check_range(s, "r", 1, CRASH_N - 3, first);
	check_range(s, "r", CRASH_N - 2, CRASH_N, 1);
	check_range(s, "q", 1, 3, 1);
	cr_assert_eq(log_of(s, "r").all, CRASH_N, "%s: trailers lost", what);
	cr_assert_eq(log_of(s, "r").pruned, first ? 0 : CRASH_N - 3, "%s",
		     what);
	verify_clean(s);
	cr_assert_eq(store_close(s), 0);
	check_fsck();
	return !first;
}

static const struct {
	const char *point;
	unsigned hits;
} crash_points[] = {
	{"retain.write", 2},
	{"retain.fsync", 1},
	{"retain.rename", 1},
	{"retain.dirsync", 1},
	{"hist.prune.pack", 2},
	{"hist.prune.sync", 1},
	{"hist.prune.intent", 2},
	{"hist.prune.intent.sync", 1},
	{"hist.prune.intent.rename", 1},
	{"hist.prune.intent.dirsync", 1},
	{"hist.prune.install", 3},
	{"hist.prune.ref", 4},
	{"hist.prune.ref.sync", 2},
	{"hist.prune.ref.rename", 2},
	{"hist.prune.ref.dirsync", 1},
	{"hist.prune.unlink", 8},
	{"hist.prune.done", 3},
};

static void crash_fixture(void)
{
	struct store *s;

	sandbox_rm(spath);
	s = open_store();
	put_versions(s, "r", CRASH_N, 4);
	put_versions(s, "q", 3, 1);
	cr_assert_eq(store_close(s), 0);
}

Test(retain, crash_at_every_failpoint_of_a_prune_leaves_old_or_new)
{
	unsigned olds = 0, news = 0;

	for (size_t i = 0; i < sizeof(crash_points) / sizeof(*crash_points);
	     i++) {
		for (unsigned nth = 1; nth <= crash_points[i].hits; nth++) {
			char spec[128], what[160];
			struct store_retain_report rep;
			struct store *s;
			int st;

			(void)rep;

			crash_fixture();
			snprintf(spec, sizeof(spec), "%s=crash@%u",
				 crash_points[i].point, nth);
			snprintf(what, sizeof(what), "crash at %s", spec);
			st = child(spec, true);
			if (st == 0 && nth > 1)
				break; /* hit fewer times here */
			cr_assert_eq(st, IO_CRASH_STATUS,
				     "%s: not reached (exit %d)", what, st);
			if (check_old_or_new(what))
				news++;
			else
				olds++;
			/* and a prune now ends in the new state */
			s = open_store();
			rep = set(s, "r", STORE_RETAIN_KEEP, 3);
			check_range(s, "r", 1, CRASH_N - 3, 0);
			cr_assert_eq(store_close(s), 0);
		}
	}
	cr_assert_gt(olds, 0);
	cr_assert_gt(news, 0);
}

Test(retain, crash_while_finishing_a_prune_at_open_then_open_again)
{
	static const char *const again[] = {
		"hist.prune.install=crash@1",	 "hist.prune.ref=crash@3",
		"hist.prune.ref.rename=crash@2", "hist.prune.unlink=crash@1",
		"hist.prune.unlink=crash@4",	 "hist.prune.done=crash@2"};

	for (size_t i = 0; i < sizeof(again) / sizeof(*again); i++) {
		crash_fixture();
		/* past the intent: the prune is the new state from here */
		cr_assert_eq(child("hist.prune.ref=crash@1", true),
			     IO_CRASH_STATUS);
		cr_assert_eq(child(again[i], false), IO_CRASH_STATUS, "%s",
			     again[i]);
		cr_assert(check_old_or_new(again[i]), "%s: not the new state",
			  again[i]);
	}
}

/* ---- errors ----------------------------------------------------------------
 */

static bool prune_dir_exists(void)
{
	char path[PATH_MAX + 96];
	struct stat st;

	snprintf(path, sizeof(path), "%s/recfs-prune", gitdir);
	return stat(path, &st) == 0;
}

Test(retain, an_error_before_the_intent_keeps_the_old_history)
{
	struct store_retain_policy p = {"r", STORE_RETAIN_KEEP, 3};
	struct store_retain_report rep;
	struct io *io = NULL;
	struct store *s;

	crash_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, 0);
	cr_assert_eq(io_arm(io, "hist.prune.sync", IO_FAIL, EIO, 1, 1), 0);
	cr_assert_eq(store_retain_set(s, &p, &rep), -EIO);
	check_range(s, "r", 1, CRASH_N, 1);
	cr_assert(!prune_dir_exists(), "recfs-prune/ left behind");
	check_fsck();
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	check_range(s, "r", 1, CRASH_N - 3, 0);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
	check_fsck();
}

Test(retain, an_error_after_the_intent_is_finished_by_the_next_prune)
{
	struct store_retain_policy p = {"r", STORE_RETAIN_KEEP, 3};
	struct store_retain_report rep;
	struct io *io = NULL;
	struct store *s;

	crash_fixture();
	cr_assert_eq(io_new(&io), 0);
	s = open_io(io, 0);
	cr_assert_eq(io_arm(io, "hist.prune.unlink", IO_FAIL, EIO, 2, 1), 0);
	cr_assert_eq(store_retain_set(s, &p, &rep), -EIO);
	/* past the commit point: the new epoch, not finished */
	check_range(s, "r", 1, CRASH_N - 3, 0);
	check_range(s, "r", CRASH_N - 2, CRASH_N, 1);
	cr_assert(prune_dir_exists());
	/* commits go on; the history waits until the prune is finished */
	{
		char buf[BODY];
		struct store_result r;

		content(buf, sizeof(buf), "q", 4);
		cr_assert_eq(store_put(s, "q", buf, strlen(buf), NULL, &r), 0);
	}
	cr_assert_eq(store_history_drain(s, 200), -ETIMEDOUT);
	cr_assert_eq(store_retain_prune(s, &rep), 0);
	cr_assert(!prune_dir_exists(), "the prune was not finished");
	cr_assert_eq(store_history_drain(s, 30000), 0);
	check_range(s, "q", 1, 4, 1);
	verify_clean(s);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
	check_fsck();
}
