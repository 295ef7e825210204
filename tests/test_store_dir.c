/*
 * test_store_dir.c - the record store (store/): the store directory:
 * permissions, planted symlinks, adoption, the lock, corrupt format, journal
 * and index files. The fixture and helpers the test_store_*.c files share are
 * in store_helpers.h.
 */
#include "admin.h"
#include "err.h"
#include "helpers.h"
#include "io.h"
#include "jnl.h"
#include "store.h"
#include "store_helpers.h"
#include "store_history.h"

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

/* ---- the store directory ------------------------------------------------ */

static int perm_bad;

static int perm_one(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	mode_t want = S_ISDIR(sb->st_mode) ? 0700 : 0600;

	if ((sb->st_mode & 07777) != want) {
		cr_log_error("%s: mode %o, expected %o", path,
			     sb->st_mode & 07777, want);
		perm_bad++;
	}
	if (!S_ISDIR(sb->st_mode) && !S_ISREG(sb->st_mode)) {
		cr_log_error("%s: not a file or directory", path);
		perm_bad++;
	}
	return 0;
}

static void check_perms(void)
{
	perm_bad = 0;
	cr_assert_eq(nftw(spath, perm_one, 16, FTW_PHYS), 0);
	cr_assert_eq(perm_bad, 0, "%d entries with wrong modes", perm_bad);
}

Test(store, store_is_0700_and_its_files_0600_even_with_umask_0)
{
	struct store_commit_args wide = {.mode = 0666};
	static uint8_t big[BIG_LEN];
	struct store *s;

	umask(0);
	s = open_store(STORE_BACKEND_FILE);
	fill(big, sizeof(big), 1);
	cr_assert_eq(store_put(s, "big", big, sizeof(big), &wide, NULL), 0);
	cr_assert_eq(store_put(s, "small", "s", 1, &wide, NULL), 0);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	must_put(s, "ns/x", "x");
	cr_assert_eq(store_xattr_set(s, "ns/x", "user.a", "v", 1, 0), 0);
	cr_assert_eq(store_rename(s, "small", "ns/y", NULL, NULL, NULL), 0);
	cr_assert_eq(store_delete(s, "ns/x", NULL, NULL, NULL), 0);
	check_perms();
	cr_assert_eq(store_checkpoint(s), 0);
	check_perms();
	close_store(s);
	check_perms();
}

/* The store never reads or writes through a symlink planted in it. */
Test(store, planted_symlinks_are_refused_not_followed)
{
	char outside[PATH_MAX + 64], elsewhere[PATH_MAX + 64];
	char link[PATH_MAX + 64], *before, *after, *text;
	struct store_result r;
	struct store_meta m;
	void *buf;
	size_t len;
	int rc;
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, "k", "k");
	snprintf(outside, sizeof(outside), "%s/outside.txt", base);
	write_file(outside, "secret", 6);
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", base);
	cr_assert_eq(mkdir(elsewhere, 0700), 0);
	snprintf(link, sizeof(link), "%s/elsewhere/x", base);
	write_file(link, "outside x", 9);

	snprintf(link, sizeof(link), "%s/records/evil", spath);
	cr_assert_eq(symlink(outside, link), 0);
	snprintf(link, sizeof(link), "%s/records/ns", spath);
	cr_assert_eq(symlink(elsewhere, link), 0);
	cr_assert_eq(store_history_drain(s, 0), 0); /* no writes meanwhile */
	before = tree(base, NULL, false);

	/* as the record itself */
	rc = store_get(s, "evil", &buf, &len, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "get through a link: %d", rc);
	rc = store_stat(s, "evil", &m, true);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "stat: %d", rc);
	rc = put(s, "evil", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "put onto a link: %d", rc);
	rc = store_xattr_set(s, "evil", "user.a", "v", 1, 0);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "xattr: %d", rc);
	rc = store_delete(s, "evil", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "delete: %d", rc);
	rc = store_rename(s, "evil", "k2", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename from: %d", rc);
	rc = store_rename(s, "k", "evil", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename onto: %d", rc);

	/* as an intermediate component */
	rc = store_get(s, "ns/x", &buf, &len, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "get via a link: %d", rc);
	rc = put(s, "ns/x", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "put via a link: %d", rc);
	rc = put(s, "ns/new", "pwned", &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "create via a link: %d", rc);
	rc = store_rename(s, "k", "ns/y", NULL, NULL, &r);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "rename via a link: %d", rc);
	rc = store_mkdir(s, "ns/sub", 0700);
	cr_assert(rc == -ELOOP || rc == -ENOENT, "mkdir via a link: %d", rc);
	rc = store_list(s, "ns", listed, NULL);
	cr_assert(rc == -ELOOP || rc == -ENOENT || rc == -ENOTDIR,
		  "list via a link: %d", rc);
	rc = store_rmdir(s, "ns");
	cr_assert(rc != 0, "rmdir of a link");

	after = tree(base, NULL, false);
	cr_assert_str_eq(after, before, "something changed through a link");
	text = read_file(outside, NULL);
	cr_assert_str_eq(text, "secret");
	free(text);
	expect(s, "k", "k", 1);
	free(before);
	free(after);
	close_store(s);
}

Test(store, adopt_makes_files_version_one_without_rewriting_them)
{
	char p[PATH_MAX + 64];
	struct stat before_a, before_c, st;
	struct store_meta m;
	uint8_t h[16];
	struct store *s;

	cr_assert_eq(mkdir(spath, 0700), 0);
	snprintf(p, sizeof(p), "%s/a.txt", spath);
	write_file(p, "alpha", 5);
	cr_assert_eq(stat(p, &before_a), 0);
	snprintf(p, sizeof(p), "%s/sub", spath);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/sub/c", spath);
	write_file(p, "charlie", 7);
	cr_assert_eq(stat(p, &before_c), 0);

	cr_assert_eq(store_init(spath, true), 0);
	s = open_store(STORE_BACKEND_FILE);
	cr_assert_eq(store_stat(s, "a.txt", &m, false), 0);
	cr_assert_eq(m.version, 1);
	cr_assert_eq(m.size, 5);
	cr_assert_not(m.hash_valid, "hash is computed lazily");
	expect(s, "a.txt", "alpha", 1);
	expect(s, "sub/c", "charlie", 1);
	cr_assert_eq(store_stat(s, "a.txt", &m, true), 0);
	cr_assert(m.hash_valid);
	hash_of("alpha", 5, h);
	cr_assert(memcmp(m.hash, h, 16) == 0, "wrong hash of adopted file");

	snprintf(p, sizeof(p), "%s/records/a.txt", spath);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_ino, before_a.st_ino, "adopted file rewritten");
	cr_assert_eq(st.st_mtim.tv_sec, before_a.st_mtim.tv_sec);
	cr_assert_eq(st.st_mtim.tv_nsec, before_a.st_mtim.tv_nsec);
	snprintf(p, sizeof(p), "%s/records/sub/c", spath);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_ino, before_c.st_ino);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);

	/* versions continue from the adopted one */
	cr_assert_eq(must_put(s, "sub/c", "charlie 2"), 2);
	close_store(s);
	s = open_store(STORE_BACKEND_FILE);
	expect(s, "a.txt", "alpha", 1);
	expect(s, "sub/c", "charlie 2", 2);
	close_store(s);
}

Test(store, second_open_while_open_returns_ebusy)
{
	struct store_opts o = {.path = spath};
	struct store *s = open_store(STORE_BACKEND_FILE), *s2 = NULL;

	must_put(s, "a", "a");
	cr_assert_eq(store_open(&s2, &o), -EBUSY);
	cr_assert_null(s2);
	expect(s, "a", "a", 1);
	close_store(s);
	s = open_with(&o);
	close_store(s);
}

static void make_store_with(const char *id, const char *text)
{
	struct store *s = open_store(STORE_BACKEND_FILE);

	must_put(s, id, text);
	close_store(s);
}

/* store_open of spath fails with `want` and leaves the files as they
   were; the error it reports (err.h) names `file` -- or, from a module
   that still logs its errors (recovery), what it logs. */
static void expect_refused(int want, const char *file)
{
	struct store_opts o = {.path = spath, .create = true};
	struct store *s = NULL;
	struct captured cap;
	char *before, *after, *log;
	int rc;

	before = tree(spath, "/lock", true);
	capture_start(&cap, base);
	rc = store_open(&s, &o);
	log = capture_end(&cap);
	cr_assert_eq(rc, want, "store_open gave %d (%s), expected %d", rc,
		     strerror(-rc), want);
	cr_assert_null(s);
	cr_assert(strstr(rerr_what(rc), file) || strstr(log, file),
		  "the error does not name %s: %s; logged: %s", file,
		  rerr_what(rc), log);
	after = tree(spath, "/lock", true);
	cr_assert_str_eq(after, before,
			 "a refused store was modified:\n%s\n"
			 "---\n%s",
			 before, after);
	free(before);
	free(after);
	free(log);
}

Test(store, corrupt_format_file_is_refused_and_left_untouched)
{
	char p[PATH_MAX + 64];

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/format.json", spath);
	write_file(p, "{\"format\":\"recfs\",\"vers", 23);
	expect_refused(-EBADMSG, "format.json");
	write_file(p, "", 0);
	expect_refused(-EBADMSG, "format.json");
}

Test(store, newer_format_version_is_refused_and_left_untouched)
{
	const char *doc = "{\"format\":\"recfs\",\"version\":99,"
			  "\"created\":\"2030-01-01T00:00:00Z\"}\n";
	char p[PATH_MAX + 64];

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/format.json", spath);
	write_file(p, doc, strlen(doc));
	expect_refused(-EPROTONOSUPPORT, "format.json");
}

/* Child: commit r1..r<n> and die without closing (journal only); with
   `crash_last`, die at the commit point of the last one instead. */
struct journal_child {
	int n;
	bool crash_last;
};

static void journal_child_fn(void *arg)
{
	const struct journal_child *jc = arg;
	struct store_opts o = {.path = spath, .checkpoint_bytes = 1ull << 40};
	struct store *s = NULL;
	struct io *io = NULL;
	char id[16], text[32];

	if (io_new(&io))
		_exit(1);
	o.io = io;
	if (store_open(&s, &o))
		_exit(1);
	for (int i = 1; i <= jc->n; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "record %d", i);
		if (i == jc->n && jc->crash_last)
			io_arm(io, "commit.publish", IO_CRASH, 0, 1, 1);
		if (put(s, id, text, NULL))
			_exit(2);
	}
	_exit(0);
}

static void open_and_crash_at_checkpoint(void *arg)
{
	struct store_opts o = {.path = spath};
	struct store *s = NULL;
	struct io *io = NULL;

	if (io_new(&io) || io_arm(io, "ckpt.syncfs", IO_CRASH, 0, 1, 1))
		_exit(1);
	o.io = io;
	store_open(&s, &o);
	_exit(0);
}

/* The newest segment of the journal; returns its path in p. */
static void last_segment(char *p, size_t size, int nth_from_last)
{
	char dir[PATH_MAX + 64], names[16][256];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/journal", spath);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)) && n < 16)
		if (strstr(de->d_name, ".log"))
			snprintf(names[n++], sizeof(names[0]), "%s",
				 de->d_name);
	closedir(d);
	cr_assert_gt(n, nth_from_last, "only %d journal segments", n);
	qsort(names, (size_t)n, sizeof(names[0]),
	      (int (*)(const void *, const void *))strcmp);
	snprintf(p, size, "%s/%s", dir, names[n - 1 - nth_from_last]);
}

/* Where the records of segment `seg` end: the journal writes zeros
   ahead of them, so that is not the file's size (journal/jnl.c). Frames
   are followed by their magic and length alone. */
static off_t segment_end(const char *seg)
{
	static const uint8_t magic[4] = {0x52, 0x4a, 0x46, 0x31}; /* RJF1 */
	uint8_t hdr[JNL_FRAME_HDR];
	off_t end = JNL_FILE_HDR;
	int fd = open(seg, O_RDONLY);

	cr_assert_geq(fd, 0);
	while (pread(fd, hdr, sizeof(hdr), end) == (ssize_t)sizeof(hdr) &&
	       memcmp(hdr, magic, 4) == 0)
		end += (off_t)(JNL_FRAME_HDR + (hdr[4] | hdr[5] << 8 |
						hdr[6] << 16 |
						(uint32_t)hdr[7] << 24));
	close(fd);
	return end;
}

static void expect_records(struct store *s, int from, int to)
{
	char id[16], text[32];

	for (int i = from; i <= to; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		snprintf(text, sizeof(text), "record %d", i);
		expect(s, id, text, 1);
	}
}

Test(store, corrupt_journal_segment_is_refused_and_nothing_modified)
{
	struct journal_child jc = {.n = 5};
	char seg[PATH_MAX + 128];
	struct stat st;
	int fd;
	uint8_t junk[8];

	make_store_with("a", "a");
	cr_assert(exited_with(run_child(journal_child_fn, &jc), 0));
	/* A second child crashes during the checkpoint of its recovery: the
	   journal now has the five records in one segment and a newer,
	   empty segment after it. */
	cr_assert(exited_with(run_child(open_and_crash_at_checkpoint, NULL),
			      IO_CRASH_STATUS));
	last_segment(seg, sizeof(seg), 1);
	cr_assert_eq(stat(seg, &st), 0);
	fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, junk, sizeof(junk), st.st_size / 2), 8);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] ^= 0x5a;
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), st.st_size / 2), 8);
	close(fd);
	expect_refused(-EBADMSG, "journal");
}

Test(store, torn_journal_tail_is_ignored_and_earlier_commits_kept)
{
	struct journal_child jc = {.n = 5, .crash_last = true};
	char seg[PATH_MAX + 128];
	struct store *s;
	struct stat st;

	make_store_with("a", "a");
	/* r5 is in the journal but not in place: cut its record in half,
	   as a crash in the middle of its write would */
	cr_assert(
		exited_with(run_child(journal_child_fn, &jc), IO_CRASH_STATUS));
	last_segment(seg, sizeof(seg), 0);
	cr_assert_eq(stat(seg, &st), 0);
	cr_assert_geq(st.st_size, segment_end(seg));
	cr_assert_eq(truncate(seg, segment_end(seg) - 7), 0);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 4);
	expect_absent(s, "r5");
	expect(s, "a", "a", 1);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);
	must_put(s, "r5", "again");
	close_store(s);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 4);
	expect(s, "r5", "again", 1);
	close_store(s);
}

Test(store, garbage_after_the_journal_tail_is_ignored)
{
	struct journal_child jc = {.n = 5};
	char seg[PATH_MAX + 128], junk[100];
	struct store *s;
	int fd;

	make_store_with("a", "a");
	cr_assert(exited_with(run_child(journal_child_fn, &jc), 0));
	last_segment(seg, sizeof(seg), 0);
	fd = open(seg, O_WRONLY);
	cr_assert_geq(fd, 0);
	memset(junk, 'g', sizeof(junk));
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), segment_end(seg)),
		     (ssize_t)sizeof(junk));
	close(fd);
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 5);
	must_put(s, "r6", "record 6");
	close_store(s);
	/* the trimmed tail did not turn into corruption once more
	   segments followed it */
	s = open_store(STORE_BACKEND_FILE);
	expect_records(s, 1, 5);
	expect(s, "r6", "record 6", 1);
	cr_assert_eq(store_verify(s, &(struct store_verify_report){0}), 0);
	close_store(s);
}

Test(store, corrupt_index_snapshot_is_a_clear_error)
{
	char p[PATH_MAX + 64];
	size_t len;
	char *buf;

	make_store_with("a", "a");
	snprintf(p, sizeof(p), "%s/index", spath);
	buf = read_file(p, &len);
	cr_assert_gt(len, 40);
	/* a flipped byte in a record */
	buf[len - 3] ^= 0x20;
	write_file(p, buf, len);
	expect_refused(-EBADMSG, "index");
	/* not a snapshot at all */
	memset(buf, 'z', len);
	write_file(p, buf, len);
	expect_refused(-EBADMSG, "index");
	/* cut short */
	write_file(p, "RECFSS01", 8);
	expect_refused(-EBADMSG, "index");
	free(buf);
}
