/*
 * test_history_write.c - the git history of a store (store/history.h, SPEC
 * section 5), checked from the outside: what each commit writes, with
 * stock git (git log, ls-tree, cat-file, clone) and libgit2's hashing:
 * trailer blocks, blobs, the head tree, deletes, renames, hot records,
 * each version's owner, mode and kind, and ".git" in IDs.
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
#include "txn.h"

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

/* ---- trailers, blobs, tree ------------------------------------------------
 */

Test(history, every_version_has_one_trailer_block_and_its_blob)
{
	static uint8_t big[BIG_LEN], big2[BIG_LEN];
	struct wrote w[16];
	struct store_result r;
	struct log l;
	size_t n = 0;
	struct store *s = open_store();

	fill(big, sizeof(big), 1);
	fill(big2, sizeof(big2), 2);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	r = put(s, "a", "a-1");
	w[n++] = (struct wrote){"a", r.version, r.revision, "a-1", 3};
	r = put(s, "a", "a-2");
	w[n++] = (struct wrote){"a", r.version, r.revision, "a-2", 3};
	r = put(s, "ns/b", "");
	w[n++] = (struct wrote){"ns/b", r.version, r.revision, "", 0};
	r = put_buf(s, "big", big, sizeof(big));
	w[n++] = (struct wrote){"big", r.version, r.revision, big, BIG_LEN};
	r = put_buf(s, "big", big2, sizeof(big2));
	w[n++] = (struct wrote){"big", r.version, r.revision, big2, BIG_LEN};
	r = put(s, "alice@example.com.json", "{}");
	w[n++] = (struct wrote){"alice@example.com.json", r.version, r.revision,
				"{}", 2};
	drain(s);
	read_log(&l);
	cr_assert_eq(l.last_upto, store_revision(s));
	for (size_t i = 0; i < n; i++)
		check_version(s, &l, &w[i]);
	cr_assert_eq(l.n, n, "%zu blocks for %zu versions", l.n, n);
	check_tree(s);
	log_free(&l);
	/* the blob links of the big versions are gone once in git */
	close_store(s);
	free(run("test -z \"$(ls -A '%s/journal/blobs')\"", spath));
}

Test(history, hot_record_versions_in_one_batch_each_get_a_block)
{
	char text[32], *out;
	struct wrote w[50];
	const struct block *b = NULL;
	struct log l;
	struct store *s = open_slow(60000, NULL);

	/* the first commit is immediate; the rest wait for the drain */
	wait_history(s, put(s, "warm", "up").revision);
	for (int i = 0; i < 50; i++) {
		struct store_result r;

		snprintf(text, sizeof(text), "hot-%d", i);
		r = put(s, "hot", text);
		w[i] = (struct wrote){"hot", r.version, r.revision, NULL,
				      strlen(text)};
	}
	drain(s);
	read_log(&l);
	cr_assert_eq(l.commits, 2, "%zu commits", l.commits);
	for (int i = 0; i < 50; i++) {
		snprintf(text, sizeof(text), "hot-%d", i);
		w[i].buf = text;
		check_version(s, &l, &w[i]);
		cr_assert_eq(find_blocks(&l, "hot", w[i].version, false, &b),
			     1);
		cr_assert_str_eq(b->commit, l.b[0].commit, "one commit");
	}
	/* the tree holds the last one */
	check_tree(s);
	/* and every other one is reachable (SPEC 5): in a clone, and kept
	   by git gc */
	out = run("git -C '%s' fsck --no-progress --dangling 2>&1 | "
		  "grep -c dangling || true",
		  gitdir);
	cr_assert_eq(atoi(out), 0, "dangling objects: %s", out);
	free(out);
	free(run("git -C '%s' gc -q --prune=now 2>&1", gitdir));
	out = run(
		"cd '%s/..' && rm -rf clone && git clone -q --bare '%s' clone "
		"&& for b in %s; do git -C clone cat-file -e $b || echo "
		"missing; done",
		spath, gitdir,
		"$(git -C clone log --format=%B | sed -n "
		"'s/^Recfs-Blob: //p')");
	cr_assert_eq(strstr(out, "missing"), NULL, "clone: %s", out);
	free(out);
	for (int i = 0; i < 50; i++) {
		snprintf(text, sizeof(text), "hot-%d", i);
		w[i].buf = text;
		check_version(s, &l, &w[i]);
	}
	log_free(&l);
	close_store(s);
}

Test(history, deletes_are_recorded_and_old_versions_stay_readable)
{
	const struct block *b = NULL;
	struct store_result r, d;
	void *buf = NULL;
	size_t len = 0;
	struct log l;
	struct store *s = open_store();

	put(s, "gone", "v1");
	r = put(s, "gone", "v2");
	cr_assert_eq(store_delete(s, "gone", NULL, NULL, &d), 0);
	drain(s);
	read_log(&l);
	cr_assert_eq(find_blocks(&l, "gone", 2, true, &b), 1);
	cr_assert_eq(b->revision, d.revision);
	cr_assert_str_eq(b->blob, "", "a delete has no blob");
	cr_assert_eq(store_history_get(s, "gone", 2, &buf, &len, NULL), 0);
	cr_assert_eq(len, 2);
	cr_assert_eq(memcmp(buf, "v2", 2), 0);
	free(buf);
	check_tree(s);
	/* re-created: version 3, and 1..3 all readable */
	r = put(s, "gone", "v3");
	cr_assert_eq(r.version, 3);
	for (uint64_t v = 1; v <= 3; v++) {
		char want[8];

		snprintf(want, sizeof(want), "v%" PRIu64, v);
		cr_assert_eq(store_history_get(s, "gone", v, &buf, &len, NULL),
			     0);
		cr_assert(len == 2 && memcmp(buf, want, 2) == 0);
		free(buf);
	}
	log_free(&l);
	close_store(s);
}

Test(history, rename_gives_the_target_the_source_blob_and_deletes_it)
{
	const struct block *b = NULL, *f = NULL;
	struct store_result r;
	struct log l;
	char want[41];
	struct store *s = open_store();

	put(s, "src", "moving");
	put(s, "dst", "old");
	cr_assert_eq(store_rename(s, "src", "dst", NULL, NULL, &r), 0);
	drain(s);
	read_log(&l);
	cr_assert_eq(find_blocks(&l, "dst", r.version, false, &b), 1);
	blob_hex("moving", 6, want);
	cr_assert_str_eq(b->blob, want);
	cr_assert_str_eq(b->from, "src");
	cr_assert_eq(find_blocks(&l, "src", 1, true, &f), 1);
	cr_assert_str_eq(f->to, "dst");
	cr_assert_eq(f->revision, r.revision);
	check_tree(s);
	log_free(&l);
	close_store(s);
}

/* What store_history_each says of one (id, version, deleted). */
struct who_find {
	const char *id;
	uint64_t version;
	bool deleted;
	struct store_version v;
	unsigned n;
};

static int who_cb(void *arg, const char *id, const struct store_version *v)
{
	struct who_find *f = arg;

	if (!strcmp(id, f->id) && v->version == f->version &&
	    v->deleted == f->deleted) {
		f->v = *v;
		f->n++;
	}
	return 0;
}

static void check_who(struct store *s, const char *id, uint64_t version,
		      bool deleted, const struct store_who *who)
{
	struct who_find f = {.id = id, .version = version, .deleted = deleted};
	char *out;

	cr_assert_eq(store_history_each(s, id, who_cb, &f), 0);
	cr_assert_eq(f.n, 1, "%s v%" PRIu64 "%s: %u entries", id, version,
		     deleted ? " (delete)" : "", f.n);
	cr_assert_eq(f.v.uid, who->uid, "%s: uid %" PRIu32, id, f.v.uid);
	cr_assert_eq(f.v.pid, who->pid, "%s: pid %" PRIu32, id, f.v.pid);
	cr_assert_str_eq(f.v.comm, who->comm, "%s: comm \"%s\"", id, f.v.comm);
	/* and in the trailers of the commit, as stock git shows them */
	out = run("git -C '%s' show -s --format=%%B %s | grep -c "
		  "'^Recfs-Comm: %s$'",
		  gitdir, f.v.commit, who->comm);
	cr_assert_geq(strtoul(out, NULL, 10), 1, "%s: no Recfs-Comm: %s", id,
		      who->comm);
	free(out);
}

/* mv a b: both trailer blocks of the rename (b's new version, a's
   delete) name who did it, as for any other change. */
Test(history, rename_records_who_made_it)
{
	const struct store_who who = {.uid = 4321, .pid = 999, .comm = "mv"};
	struct store_result r;
	struct store *s = open_store();

	put(s, "src", "moving");
	put(s, "dst", "old");
	cr_assert_eq(store_rename(s, "src", "dst", NULL, &who, &r), 0);
	drain(s);
	check_who(s, "dst", r.version, false, &who);
	check_who(s, "src", 1, true, &who);
	close_store(s);
}

Test(history, file_and_namespace_swap_in_one_batch)
{
	struct store *s = open_slow(60000, NULL);
	char *out;

	wait_history(s, put(s, "warm", "up").revision);
	/* "a/b" goes, then "a" is a record: in one commit */
	cr_assert_eq(store_mkdir(s, "a", 0700), 0);
	put(s, "a/b", "b");
	cr_assert_eq(store_delete(s, "a/b", NULL, NULL, NULL), 0);
	cr_assert_eq(store_rmdir(s, "a"), 0);
	put(s, "a", "file");
	put(s, "c", "c");
	drain(s);
	check_tree(s);
	/* and the other way round */
	cr_assert_eq(store_delete(s, "c", NULL, NULL, NULL), 0);
	cr_assert_eq(store_mkdir(s, "c", 0700), 0);
	put(s, "c/d", "d");
	drain(s);
	check_tree(s);
	out = run("git -C '%s' cat-file -p refs/heads/main:c/d", gitdir);
	cr_assert_str_eq(out, "d");
	free(out);
	close_store(s);
}

/* ---- stock git --------------------------------------------------------------
 */

Test(history, git_clone_and_git_log_of_an_id_work)
{
	char cmd_out[PATH_MAX + 64], *out, *want;
	struct store *s = open_store();

	put(s, "x", "x1");
	drain(s);
	put(s, "y", "y1");
	drain(s);
	put(s, "x", "x2");
	drain(s);
	cr_assert_eq(store_delete(s, "x", NULL, NULL, NULL), 0);
	drain(s);
	snprintf(cmd_out, sizeof(cmd_out), "%s/clone", base);
	free(run("git clone -q '%s' '%s' 2>&1", gitdir, cmd_out));
	out = run("cat '%s/y'", cmd_out);
	cr_assert_str_eq(out, "y1");
	free(out);
	out = run("git -C '%s' log --format=%%H -- x | wc -l", cmd_out);
	cr_assert_eq(strtoull(out, NULL, 10), 3, "commits changing x: %s", out);
	free(out);
	/* the commits that changed x are those whose blocks name it */
	out = run("git -C '%s' log --format=%%H -- x", gitdir);
	want = run("git -C '%s' log --format=%%H --grep='^Recfs-Id: x$' "
		   "refs/heads/main",
		   gitdir);
	cr_assert_str_eq(out, want);
	free(out);
	free(want);
	out = run("git -C '%s' log -p --format=%%s -- x | grep -c '^[-+]x[12]'",
		  gitdir);
	cr_assert_eq(strtoull(out, NULL, 10), 4, "diffs of x: %s", out);
	free(out);
	free(run("git -C '%s' fsck --no-dangling 2>&1", gitdir));
	close_store(s);
}

Test(history, ids_git_would_refuse_are_valid_paths_and_trailers)
{
	static const char *const ids[] = {
		"GIT~1",     ".git.",	 "back\\slash", " lead space", "trail ",
		"new\nline", "quote\"d", "ütf-8 ☃",	"tab\there",
	};
	const size_t n = sizeof(ids) / sizeof(ids[0]);
	char p[PATH_MAX + 64];
	void *buf = NULL;
	size_t len = 0;
	struct store *s = open_store();

	for (size_t i = 0; i < n; i++)
		put(s, ids[i], ids[i]);
	drain(s);
	close_store(s);
	/* read back from the commit messages alone */
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	cr_assert_eq(unlink(p), 0);
	s = open_store();
	for (size_t i = 0; i < n; i++) {
		int rc = store_history_get(s, ids[i], 1, &buf, &len, NULL);

		cr_assert_eq(rc, 0, "\"%s\": %s", ids[i], strerror(-rc));
		cr_assert(len == strlen(ids[i]) &&
			  memcmp(buf, ids[i], len) == 0);
		free(buf);
	}
	free(run("git -C '%s' rev-parse 'refs/heads/main:GIT~1'", gitdir));
	close_store(s);
}

/* ---- owner, mode and kind of each version ---------------------------------
 */

static void get_version(struct store *s, const char *id, uint64_t version,
			const char *want, struct store_version *v)
{
	void *buf = NULL;
	size_t len = 0;
	int rc = store_history_get(s, id, version, &buf, &len, v);

	cr_assert_eq(rc, 0, "%s@%" PRIu64 ": %s", id, version, strerror(-rc));
	cr_assert(len == strlen(want) && memcmp(buf, want, len) == 0,
		  "%s@%" PRIu64 " reads \"%.*s\"", id, version, (int)len,
		  (char *)buf);
	free(buf);
}

Test(history, symlink_versions_are_git_symlinks)
{
	struct store_commit_args l = {.mode = -1, .symlink = true};
	char clone[PATH_MAX + 64], *out;
	struct store_version v;
	struct store_result r;
	struct store *s = open_store();

	cr_assert_eq(store_put(s, "ln", "../x/y", 6, &l, &r), 0);
	drain(s);
	put(s, "ln", "now a file");
	drain(s);
	cr_assert_eq(store_put(s, "ln", "target", 6, &l, &r), 0);
	drain(s);
	get_version(s, "ln", 1, "../x/y", &v);
	cr_assert(v.symlink);
	out = run("git -C '%s' ls-tree %s ln", gitdir, v.commit);
	cr_assert(strncmp(out, "120000 blob ", 12) == 0, "%s", out);
	free(out);
	get_version(s, "ln", 2, "now a file", &v);
	cr_assert_not(v.symlink);
	out = run("git -C '%s' ls-tree %s ln", gitdir, v.commit);
	cr_assert(strncmp(out, "100644 blob ", 12) == 0, "%s", out);
	free(out);
	out = run("git -C '%s' log -1 --format=%%B %s", gitdir, v.commit);
	cr_assert_null(strstr(out, "Recfs-Symlink"), "%s", out);
	free(out);
	get_version(s, "ln", 3, "target", &v);
	cr_assert(v.symlink);
	out = run("git -C '%s' log -1 --format=%%B %s", gitdir, v.commit);
	cr_assert_not_null(strstr(out, "\nRecfs-Symlink: true\n"), "%s", out);
	free(out);
	/* stock git checks it out as a real symlink */
	snprintf(clone, sizeof(clone), "%s/clone", base);
	free(run("git clone -q '%s' '%s' 2>&1", gitdir, clone));
	out = run("test -L '%s/ln' && readlink '%s/ln'", clone, clone);
	cr_assert_str_eq(out, "target\n");
	free(out);
	free(run("git -C '%s' fsck --strict --no-dangling 2>&1", gitdir));
	close_store(s);
}

static void meta_is(const struct store_version *v, uint32_t mode, uint32_t uid,
		    uint32_t gid)
{
	cr_assert(v->meta_known);
	cr_assert(v->mode == mode && v->owner_uid == uid && v->owner_gid == gid,
		  "version %" PRIu64 ": %04o %u:%u, not %04o %u:%u", v->version,
		  v->mode, v->owner_uid, v->owner_gid, mode, uid, gid);
}

Test(history, each_version_records_its_own_mode_and_owner)
{
	struct store_owner own = {.uid = 5, .gid = 6};
	struct store_who who = {.uid = 1000, .pid = 7, .comm = "w"};
	struct store_commit_args a = {.mode = 0600, .owner = &own, .who = &who};
	struct store_version v;
	struct store_result r;
	char p[PATH_MAX + 64], *out;
	struct store *s = open_store();

	cr_assert_eq(store_put(s, "r", "one", 3, &a, &r), 0);
	cr_assert_eq(store_set_owner(s, "r", 7, 8), 0);
	cr_assert_eq(store_set_meta(s, "r", NULL, 04750), 0);
	put(s, "r", "two");
	drain(s);
	for (int round = 0; round < 2; round++) {
		/* round 1: the index rebuilt from the commit messages */
		get_version(s, "r", 1, "one", &v);
		meta_is(&v, 0600, 5, 6);
		cr_assert_eq(v.uid, 1000, "the writer stays Recfs-Uid");
		get_version(s, "r", 2, "two", &v);
		meta_is(&v, 04750, 7, 8);
		close_store(s);
		snprintf(p, sizeof(p), "%s/history.idx", spath);
		cr_assert_eq(unlink(p), 0);
		s = open_store();
	}
	out = run("git -C '%s' log --format=%%B refs/heads/main", gitdir);
	cr_assert_not_null(
		strstr(out, "\nRecfs-Owner: 5:6\nRecfs-Mode: 0600\n"), "%s",
		out);
	cr_assert_not_null(
		strstr(out, "\nRecfs-Owner: 7:8\nRecfs-Mode: 04750\n"), "%s",
		out);
	free(out);
	close_store(s);
}

struct parsed {
	unsigned n;
	struct hmsg_ver v[4];
	char id[4][16];
};

static int keep_parsed(void *arg, const struct hmsg_ver *v)
{
	struct parsed *p = arg;

	if (p->n < 4) {
		p->v[p->n] = *v;
		snprintf(p->id[p->n], sizeof(p->id[0]), "%.*s", (int)v->id_len,
			 v->id);
		p->n++;
	}
	return 0;
}

Test(history, trailers_of_older_commits_parse_without_owner_and_mode)
{
	static const char msg[] =
		"recfs: 2 changes\n\n"
		"Recfs-Id: old\nRecfs-Version: 1\nRecfs-Revision: 3\n"
		"Recfs-Blob: 5716ca5987cbf97d6bb54920bea6adde242d87e6\n"
		"Recfs-Size: 3\nRecfs-Uid: 0\nRecfs-Pid: 1\nRecfs-Comm: sh\n"
		"Recfs-Time: 2026-01-01T00:00:00.000000000Z\n\n"
		"Recfs-Id: new\nRecfs-Version: 2\nRecfs-Revision: 3\n"
		"Recfs-Blob: 5716ca5987cbf97d6bb54920bea6adde242d87e6\n"
		"Recfs-Size: 3\nRecfs-Symlink: true\nRecfs-Owner: 1:2\n"
		"Recfs-Mode: 0755\nRecfs-Uid: 0\nRecfs-Pid: 1\n"
		"Recfs-Comm: sh\nRecfs-Time: 2026-01-01T00:00:00.000000000Z\n\n"
		"Recfs-Id: bad\nRecfs-Version: 2\nRecfs-Revision: 3\n"
		"Recfs-Blob: 5716ca5987cbf97d6bb54920bea6adde242d87e6\n"
		"Recfs-Mode: 0999\nRecfs-Uid: 0\n\n"
		"Recfs-Upto: 3\n";
	struct parsed p = {0};
	unsigned bad = 0;
	uint64_t upto = 0;

	cr_assert_eq(hmsg_parse(msg, strlen(msg), keep_parsed, &p, &upto, &bad),
		     0);
	cr_assert_eq(upto, 3);
	cr_assert_eq(p.n, 2);
	cr_assert_eq(bad, 1, "a mode that is not octal spoils its block");
	cr_assert_str_eq(p.id[0], "old");
	cr_assert_eq(p.v[0].e.flags & (HENT_META | HENT_SYMLINK), 0);
	cr_assert_str_eq(p.id[1], "new");
	cr_assert_eq(p.v[1].e.flags & (HENT_META | HENT_SYMLINK),
		     HENT_META | HENT_SYMLINK);
	cr_assert(p.v[1].e.mode == 0755 && p.v[1].e.ouid == 1 &&
		  p.v[1].e.ogid == 2);
}

/* ---- ".git" in IDs (SPEC 2, recfs(5)) ---------------------------------------
 */

Test(history, tree_paths_escape_git_names_reversibly)
{
	static const char *const ids[][2] = {
		{".git", ".git~recfs"},
		{"a/.GIT/config", "a/.GIT~recfs/config"},
		{".gitmodules", ".gitmodules~recfs"},
		{"x~recfs", "x~recfs~recfs"},
		{".git~recfs/y", ".git~recfs~recfs/y"},
		{"~recfs", "~recfs~recfs"},
		{".git.", ".git."},
		{"GIT~1", "GIT~1"},
		{".gitignore", ".gitignore"},
		{"a.git/b", "a.git/b"},
		{"recfs~", "recfs~"},
	};
	static const char *const not_paths[] = {".git",	       "a/.Git/b",
						".gitmodules", "x~recfs",
						"a/~recfs",    "..~recfs"};
	char path[HIST_PATH_MAX + 1], id[ID_MAX_LEN + 1];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		int n = hist_path_from_id(path, ids[i][0], strlen(ids[i][0]));

		cr_assert_eq(n, (int)strlen(ids[i][1]), "%s", ids[i][0]);
		cr_assert_str_eq(path, ids[i][1]);
		n = hist_id_from_path(id, path, (size_t)n);
		cr_assert_eq(n, (int)strlen(ids[i][0]), "%s", path);
		cr_assert_str_eq(id, ids[i][0]);
	}
	for (size_t i = 0; i < sizeof(not_paths) / sizeof(not_paths[0]); i++)
		cr_assert_eq(hist_id_from_path(id, not_paths[i],
					       strlen(not_paths[i])),
			     -EINVAL, "%s", not_paths[i]);
}

Test(history, git_repositories_inside_the_store_go_through_history)
{
	static const char *const ids[] = {
		".git/HEAD", "a/.git/config", ".GIT/x", ".gitmodules",
		"x~recfs",   ".git~recfs",    "plain",
	};
	struct store_commit_args l = {.mode = -1, .symlink = true};
	struct store_bulk_result br;
	struct store_verify_report rep;
	struct store_version v;
	struct store_result r;
	char p[PATH_MAX + 64], *out;
	uint64_t rev1;
	struct store *s = open_store();

	cr_assert_eq(store_mkdir(s, ".git", 0755), 0);
	cr_assert_eq(store_mkdir(s, "a", 0755), 0);
	cr_assert_eq(store_mkdir(s, "a/.git", 0755), 0);
	cr_assert_eq(store_mkdir(s, ".GIT", 0755), 0);
	cr_assert_eq(store_mkdir(s, "sub", 0755), 0);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		put(s, ids[i], ids[i]);
	/* what git fsck would refuse as content or kind of .gitmodules */
	put(s, ".gitmodules", "[submodule \"../../evil\"]\n\turl = -x\n");
	cr_assert_eq(store_put(s, "sub/.gitmodules", "/etc/passwd", 11, &l, &r),
		     0);
	drain(s);
	rev1 = store_revision(s);
	put(s, "a/.git/config", "[core]\n\tbare = false\n");
	cr_assert_eq(store_delete(s, ".git/HEAD", NULL, NULL, &r), 0);
	drain(s);

	out = run("git -C '%s' ls-tree -r --name-only refs/heads/main", gitdir);
	cr_assert_str_eq(out, ".GIT~recfs/x\n"
			      ".gitmodules~recfs\n"
			      ".git~recfs~recfs\n"
			      "a/.git~recfs/config\n"
			      "plain\n"
			      "sub/.gitmodules~recfs\n"
			      "x~recfs~recfs\n");
	free(out);
	out = run("git -C '%s' fsck --strict --no-dangling 2>&1", gitdir);
	cr_assert_str_eq(out, "", "git fsck --strict: %s", out);
	free(out);

	get_version(s, "a/.git/config", 1, "a/.git/config", &v);
	get_version(s, ".git/HEAD", 1, ".git/HEAD", &v);
	get_version(s, ".gitmodules", 1, ".gitmodules", &v);
	cr_assert_eq(store_verify(s, &rep), 0, "verify: %" PRIu64 " bad",
		     rep.hist_bad);
	cr_assert_eq(rep.hist_bad, 0);

	/* roll back: .git/HEAD re-created, config as it was */
	cr_assert_eq(store_rollback_to(s, rev1, NULL, &br), 0);
	cr_assert_eq(br.puts, 2);
	get_version(s, "a/.git/config", 3, "a/.git/config", &v);
	get_version(s, ".git/HEAD", 2, ".git/HEAD", &v);
	drain(s);
	cr_assert_eq(store_verify(s, &rep), 0, "verify: %" PRIu64 " bad",
		     rep.hist_bad);
	out = run("git -C '%s' fsck --strict --no-dangling 2>&1", gitdir);
	cr_assert_str_eq(out, "", "git fsck --strict: %s", out);
	free(out);

	/* the index rebuilt from the commits knows them all */
	close_store(s);
	snprintf(p, sizeof(p), "%s/history.idx", spath);
	cr_assert_eq(unlink(p), 0);
	s = open_store();
	get_version(s, "a/.git/config", 2, "[core]\n\tbare = false\n", &v);
	get_version(s, "x~recfs", 1, "x~recfs", &v);
	cr_assert_eq(store_verify(s, &rep), 0);
	close_store(s);
}
