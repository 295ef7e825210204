/*
 * test_remote.c - the history's git remote (history/history_remote.c,
 * store/store_remote.c), with real git and a local bare repository as
 * the remote: every version reaches it, in the background and with
 * store_history_push; a remote that is missing for a while does not slow
 * commits, is reported, and catches up once it is there; a remote that
 * has diverged refuses, is reported and stays as it was; retention prunes
 * nothing the remote does not have, and each epoch a prune starts goes to
 * branches of its own (main-epoch-N), fast-forward only.
 */
#include "admin.h"
#include "err.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char rpath[PATH_MAX + 32]; /* the remote: base/remote.git */

static void setup(void)
{
	sandbox_store("remote", true);
	snprintf(rpath, sizeof(rpath), "%s/remote.git", base);
}

TestSuite(remote, .init = setup, .fini = sandbox_store_rm, .timeout = 300);

static void make_remote(void)
{
	free(run("git init -q --bare -b main '%s' 2>&1", rpath));
}

static struct store *open_remote(const char *url)
{
	struct store_opts o = {.path = spath,
			       .create = true,
			       .history_delay_ms = 10,
			       .history_remote = url};
	return open_ok(&o);
}

/* The first line a shell command prints ("" if none or it fails). */
static void sh_line(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sh_line(char *out, size_t len, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out[0] = '\0';
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	pclose(f);
	out[strcspn(out, "\n")] = '\0';
}

static void ref_of(char out[64], const char *gitdir_, const char *ref)
{
	sh_line(out, 64,
		"git --git-dir='%s' rev-parse -q --verify %s 2>/dev/null",
		gitdir_, ref);
}

/* Does the remote's main (and side branch) match the store's? */
static bool remote_caught_up(void *arg)
{
	char a[64], b[64], c[64], d[64];

	(void)arg;
	ref_of(a, gitdir, "refs/heads/main");
	ref_of(b, rpath, "refs/heads/main");
	ref_of(c, gitdir, "refs/heads/recfs-versions");
	ref_of(d, rpath, "refs/heads/recfs-versions");
	return a[0] && strcmp(a, b) == 0 && strcmp(c, d) == 0;
}

/* n versions of each of k records; some batches hold two versions of a
   record (the side branch). */
static unsigned put_some(struct store *s, unsigned k, unsigned n, unsigned seed)
{
	char id[32], body[64];

	for (unsigned v = 0; v < n; v++)
		for (unsigned i = 0; i < k; i++) {
			snprintf(id, sizeof(id), "rec%u", i);
			snprintf(body, sizeof(body), "%u: %s v%u\n", seed, id,
				 v);
			put_text(s, id, body);
		}
	return k * n;
}

/* Versions whose trailers a fresh clone of the remote holds. */
static unsigned clone_versions(void)
{
	char line[64];

	free(run("rm -rf '%s/clone' && git clone -q '%s' '%s/clone' 2>&1", base,
		 rpath, base));
	sh_line(line, sizeof(line),
		"git -C '%s/clone' log --format=%%B origin/main | grep -c "
		"'^Recfs-Version:'",
		base);
	return (unsigned)strtoul(line, NULL, 10);
}

Test(remote, every_version_reaches_the_remote)
{
	struct store_remote_state st;
	struct store *s;
	unsigned n;
	char line[64];
	int rc;

	make_remote();
	s = open_remote(rpath);
	n = put_some(s, 5, 8, 1);
	cr_assert_eq(store_history_drain(s, 30000), 0);
	/* in the background, without being asked */
	cr_assert(wait_for(remote_caught_up, NULL, 30000),
		  "the remote did not get the history");
	n += put_some(s, 3, 4, 2);
	rc = store_history_push(s, NULL);
	cr_assert_eq(rc, 0, "push: %s", rerr_what(rc));
	cr_assert(remote_caught_up(NULL));
	cr_assert_eq(store_remote_state(s, &st), 0);
	cr_assert_str_eq(st.url, rpath);
	cr_assert_eq(st.error, 0);
	ref_of(line, gitdir, "refs/heads/main");
	cr_assert_str_eq(st.pushed, line);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(clone_versions(), n, "the clone has not every version");
	free(run("git --git-dir='%s' fsck --strict 2>&1", rpath));
	/* kept in history.git: a later open without the option pushes */
	sh_line(line, sizeof(line),
		"git --git-dir='%s' config remote.origin.url", gitdir);
	cr_assert_str_eq(line, rpath);
	s = open_remote(NULL);
	n += put_some(s, 2, 2, 3);
	/* no push asked: the close writes the history and pushes it */
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(clone_versions(), n);
}

Test(remote, missing_remote_does_not_block_commits_and_catches_up)
{
	struct store_remote_state st;
	struct store *s;
	uint64_t t0, slowest = 0;
	unsigned n = 0;
	int rc;

	s = open_remote(rpath); /* not there yet */
	for (unsigned round = 0; round < 20; round++) {
		t0 = now_ms();
		n += put_some(s, 2, 1, round);
		if (now_ms() - t0 > slowest)
			slowest = now_ms() - t0;
		cr_assert_eq(store_history_drain(s, 30000), 0);
	}
	cr_assert_lt(slowest, 1000, "a commit took %" PRIu64 " ms", slowest);
	rc = store_history_push(s, NULL);
	cr_assert_neq(rc, 0, "a push to a missing remote succeeded");
	cr_assert(strstr(rerr_what(rc), rpath), "no remote in: %s",
		  rerr_what(rc));
	cr_assert_eq(store_remote_state(s, &st), 0);
	cr_assert_neq(st.error, 0);
	cr_assert(st.message[0] && st.error_time > 0);
	cr_assert_geq(st.failures, 1);
	/* a directory that is no repository (yet) */
	cr_assert_eq(mkdir(rpath, 0700), 0);
	rc = store_history_push(s, NULL);
	cr_assert_eq(rc, -EIO, "push into a non-repository: %s", rerr_what(rc));
	cr_assert(strstr(rerr_what(rc), rpath), "%s", rerr_what(rc));
	n += put_some(s, 2, 1, 99);
	/* the remote appears: the pusher's retry (backoff 1 s doubling)
	   gives it the history without a new commit */
	make_remote();
	cr_assert(wait_for(remote_caught_up, NULL, 90000),
		  "the remote did not catch up");
	cr_assert_eq(store_remote_state(s, &st), 0);
	cr_assert_eq(st.error, 0, "still an error: %s", st.message);
	cr_assert_eq(store_close(s), 0);
	cr_assert_eq(clone_versions(), n);
}

Test(remote, diverged_remote_refuses_and_is_not_forced)
{
	struct store_remote_state st;
	struct store *s;
	char before[64], after[64];
	int rc;

	make_remote();
	s = open_remote(rpath);
	put_some(s, 3, 3, 1);
	cr_assert_eq(store_history_push(s, NULL), 0);
	/* someone else pushes a commit of their own */
	free(run("cd '%s' && rm -rf other && git clone -q '%s' other && "
		 "cd other && echo x > foreign && git add foreign && "
		 "git -c user.name=o -c user.email=o@o commit -qm foreign && "
		 "git push -q origin main 2>&1",
		 base, rpath));
	ref_of(before, rpath, "refs/heads/main");
	put_some(s, 3, 2, 2);
	rc = store_history_push(s, NULL);
	cr_assert_eq(rc, -ESTALE, "push: %d %s", rc, rerr_what(rc));
	cr_assert(strstr(rerr_what(rc), rpath), "%s", rerr_what(rc));
	ref_of(after, rpath, "refs/heads/main");
	cr_assert_str_eq(before, after, "the remote was changed");
	cr_assert_eq(store_remote_state(s, &st), 0);
	cr_assert_eq(st.error, -ESTALE);
	/* the background pusher too: refused, still unchanged */
	put_some(s, 1, 1, 3);
	cr_assert_eq(store_history_drain(s, 30000), 0);
	ref_of(after, rpath, "refs/heads/main");
	cr_assert_str_eq(before, after, "the remote was changed");
	cr_assert_eq(store_close(s), 0);
}

/* Is version v of rec0 readable? */
static bool readable(struct store *s, uint64_t v)
{
	void *buf = NULL;
	size_t len = 0;
	int rc = store_history_get(s, "rec0", v, &buf, &len, NULL);

	free(buf);
	cr_assert(rc == 0 || rc == -ENOENT, "rec0@%" PRIu64 ": %s", v,
		  strerror(-rc));
	return rc == 0;
}

/* The remote has object `oid` (git cat-file -e prints nothing). */
static void expect_remote_has(const char *oid)
{
	char *out =
		run("git --git-dir='%s' cat-file -e %s 2>&1 || echo missing",
		    rpath, oid);

	cr_assert_str_empty(out, "the remote lacks %s: %s", oid, out);
	free(out);
}

/* After a push: the remote's branches of epoch `epoch` are the store's
   main and side branch, its main is still `main_was`, and it still has
   the pruned blob `blob`. */
static void expect_epoch_pushed(struct store *s, unsigned epoch,
				const char *main_was, const char *blob)
{
	char ref[64], mine[64], theirs[64];
	int rc;

	cr_assert_eq(store_history_drain(s, 30000), 0);
	rc = store_history_push(s, NULL);
	cr_assert_eq(rc, 0, "push of epoch %u: %s", epoch, rerr_what(rc));
	snprintf(ref, sizeof(ref), "refs/heads/main-epoch-%u", epoch);
	ref_of(mine, gitdir, "refs/heads/main");
	ref_of(theirs, rpath, ref);
	cr_assert_str_eq(mine, theirs, "%s", ref);
	snprintf(ref, sizeof(ref), "refs/heads/recfs-versions-epoch-%u", epoch);
	ref_of(mine, gitdir, "refs/heads/recfs-versions");
	ref_of(theirs, rpath, ref);
	cr_assert_str_eq(mine, theirs, "%s", ref);
	ref_of(theirs, rpath, "refs/heads/main");
	cr_assert_str_eq(main_was, theirs, "the remote's main moved");
	expect_remote_has(blob);
}

Test(remote, retention_prunes_nothing_the_remote_lacks)
{
	struct store_retain_policy p = {"rec0", STORE_RETAIN_KEEP, 1};
	struct store_retain_report rep;
	struct store *s;
	char blob[64], before[64], after[64];
	int rc;

	s = open_remote(rpath); /* missing */
	put_some(s, 1, 5, 1);
	cr_assert_eq(store_history_drain(s, 30000), 0);
	rc = store_retain_set(s, &p, &rep);
	cr_assert_neq(rc, 0, "pruned while the remote lacks the history");
	cr_assert(strstr(rerr_what(rc), "nothing pruned"), "%s", rerr_what(rc));
	for (uint64_t v = 1; v <= 5; v++)
		cr_assert(readable(s, v), "rec0@%" PRIu64 " was pruned", v);
	/* the remote is there: pushed first, then pruned */
	sh_line(blob, sizeof(blob),
		"git --git-dir='%s' log --format=%%B main | "
		"sed -n 's/^Recfs-Blob: //p' | tail -1",
		gitdir);
	cr_assert(blob[0]);
	make_remote();
	rc = store_retain_prune(s, &rep);
	cr_assert_eq(rc, 0, "prune: %s", rerr_what(rc));
	cr_assert_eq(rep.versions, 4);
	cr_assert(!readable(s, 1) && readable(s, 5));
	/* the remote keeps the first version's content */
	expect_remote_has(blob);
	/* the prune's new epoch is no fast-forward of the remote's main: it
	   goes to branches of its own, fast-forward only; the remote keeps
	   the old epoch on main */
	ref_of(before, rpath, "refs/heads/main");
	put_some(s, 1, 1, 2);
	expect_epoch_pushed(s, 2, before, blob);
	/* the next commits: a fast-forward of the same branch */
	put_some(s, 1, 2, 3);
	expect_epoch_pushed(s, 2, before, blob);
	/* a second prune: epoch 3, on branches of its own again */
	rc = store_retain_prune(s, &rep);
	cr_assert_eq(rc, 0, "prune: %s", rerr_what(rc));
	cr_assert_gt(rep.versions, 0);
	put_some(s, 1, 1, 4);
	ref_of(after, rpath, "refs/heads/main-epoch-2");
	expect_epoch_pushed(s, 3, before, blob);
	ref_of(blob, rpath, "refs/heads/main-epoch-2");
	cr_assert_str_eq(after, blob, "epoch 2's branch moved");
	cr_assert_eq(store_close(s), 0);
}

struct writer {
	struct store *s;
	atomic_bool stop;
	unsigned n;
};

static void *write_on(void *arg)
{
	struct writer *w = arg;
	char body[64];

	while (!atomic_load(&w->stop) && w->n < 2000) {
		snprintf(body, sizeof(body), "rec0 v%u\n", ++w->n);
		put_text(w->s, "rec0", body);
	}
	return NULL;
}

/* Versions a prune removes while commits go on are all on the remote:
   the remote's push covers them, or they are left alone. */
Test(remote, prune_during_commits_removes_only_what_the_remote_has)
{
	struct store_retain_policy p = {"rec0", STORE_RETAIN_KEEP, 1};
	struct store_retain_report rep;
	struct writer w = {0};
	pthread_t t;
	char *blobs, *line, *save = NULL;
	unsigned checked = 0;
	int rc;

	make_remote();
	w.s = open_remote(rpath);
	put_some(w.s, 1, 20, 1);
	cr_assert_eq(pthread_create(&t, NULL, write_on, &w), 0);
	while (w.n < 50)
		sched_yield();
	rc = store_retain_set(w.s, &p, &rep);
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	cr_assert_eq(rc, 0, "prune: %s", rerr_what(rc));
	cr_assert_gt(rep.versions, 0);
	cr_assert_eq(store_close(w.s), 0);
	/* every block marked pruned: its blob is on the remote */
	blobs = run("git --git-dir='%s' log --format=%%B main | awk -v RS= "
		    "'/Recfs-Pruned:/ { for (i = 1; i <= NF; i++) if ($i == "
		    "\"Recfs-Blob:\") print $(i + 1) }'",
		    gitdir);
	for (line = strtok_r(blobs, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), checked++)
		free(run("git --git-dir='%s' cat-file -e %s 2>&1", rpath,
			 line));
	cr_assert_eq(checked, rep.versions,
		     "%u pruned blocks, %" PRIu64 " pruned", checked,
		     rep.versions);
	free(blobs);
}
