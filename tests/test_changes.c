/*
 * test_changes.c - following committed changes (store_changes_*,
 * store/changes.c): revision order across the history and the journal,
 * starting in the middle, the parts of a txn and of a rename sharing a
 * revision, deletes, metadata-only revisions, segments dropped under the
 * reader, a torn journal tail (not delivered until it is complete), the
 * caller's `durable` bound, "from now on" and the wake-up descriptor.
 *
 * Stores live in fresh temp directories (sandbox.h); what the store logs
 * is dropped unless RECFS_TEST_VERBOSE is set.
 */
#include "admin.h"
#include "changes.h"
#include "helpers.h"
#include "jnl.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"
#include "store_history.h"
#include "txn.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void setup(void)
{
	sandbox_store("changes", true);
}

TestSuite(changes, .init = setup, .fini = sandbox_store_rm, .timeout = 120);

/* A store whose history writes a batch only when drained (after the
   first): what is not drained stays in the journal only. */
static struct store *open_store(void)
{
	struct store_opts o = {
		.path = spath, .create = true, .history_delay_ms = 600000};
	return open_ok(&o);
}

static uint64_t put(struct store *s, const char *id, const char *text)
{
	struct store_result r;
	int rc = store_put(s, id, text, strlen(text), NULL, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.revision;
}

static uint64_t del(struct store *s, const char *id)
{
	struct store_result r;
	int rc = store_delete(s, id, NULL, NULL, &r);

	cr_assert_eq(rc, 0, "delete %s: %s", id, strerror(-rc));
	return r.revision;
}

static void drain(struct store *s)
{
	int rc = store_history_drain(s, 60000);

	cr_assert_eq(rc, 0, "drain: %s", strerror(-rc));
}

/* One change as the tests compare them. */
struct seen {
	uint64_t rev;
	char op; /* 'p' or 'd' */
	char id[64];
	uint64_t version;
	char other[64];
	uint64_t size;
};

/* Every change available now after `after` (up to `durable`), into
   out[]; returns how many, and what the last call returned in *last. */
static size_t collect(struct store_changes *c, uint64_t durable,
		      struct seen *out, size_t max, int *last)
{
	struct store_change ch;
	size_t n = 0;
	int rc;

	while ((rc = store_changes_next(c, durable, &ch)) == 1) {
		cr_assert_lt(n, max, "more changes than expected");
		out[n].rev = ch.revision;
		out[n].op = ch.op == STORE_CHANGE_PUT ? 'p' : 'd';
		snprintf(out[n].id, sizeof(out[n].id), "%s", ch.id);
		snprintf(out[n].other, sizeof(out[n].other), "%s",
			 ch.other ? ch.other : "");
		out[n].version = ch.version;
		out[n].size = ch.size;
		n++;
	}
	if (last)
		*last = rc;
	else
		cr_assert_eq(rc, 0, "store_changes_next: %d", rc);
	return n;
}

static void expect(const struct seen *got, size_t n, const struct seen *want,
		   size_t wn)
{
	cr_assert_eq(n, wn, "got %zu changes, expected %zu", n, wn);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(got[i].rev, want[i].rev,
			     "#%zu: revision %lu, "
			     "expected %lu",
			     i, (unsigned long)got[i].rev,
			     (unsigned long)want[i].rev);
		cr_expect_eq(got[i].op, want[i].op, "#%zu: op", i);
		cr_expect_str_eq(got[i].id, want[i].id, "#%zu: id", i);
		cr_expect_eq(got[i].version, want[i].version, "#%zu: version",
			     i);
		cr_expect_str_eq(got[i].other, want[i].other, "#%zu: other", i);
	}
}

/* The history of every test below that uses it. */
static const struct seen script[] = {
	{1, 'p', "a", 1, "", 0},  {2, 'p', "b", 1, "", 0},
	{3, 'p', "a", 2, "", 0},  {4, 'd', "b", 1, "", 0},
	{5, 'p', "c", 1, "a", 0}, {5, 'd', "a", 2, "c", 0},
	{6, 'p', "x", 1, "", 0},  {6, 'p', "ns/y", 1, "", 0},
	{6, 'd', "c", 1, "", 0}, /* 7: a mode change, no version */
	{8, 'p', "d", 1, "", 0},
};
#define NSCRIPT (sizeof(script) / sizeof(script[0]))

/* Make `script`: revisions 1..3 drained into git, 4..8 in the journal
   only. */
static struct store *run_script(void)
{
	struct store *s = open_store();
	struct store_txn *t = NULL;
	struct store_txn_result tr;
	struct store_result r;

	cr_assert_eq(put(s, "a", "one"), 1);
	cr_assert_eq(put(s, "b", "two"), 2);
	cr_assert_eq(put(s, "a", "three"), 3);
	drain(s);
	cr_assert_eq(del(s, "b"), 4);
	cr_assert_eq(store_rename(s, "a", "c", NULL, NULL, &r), 0);
	cr_assert_eq(r.revision, 5);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_txn_new(s, &t), 0);
	cr_assert_eq(store_txn_put(t, "x", "x", 1, NULL), 0);
	cr_assert_eq(store_txn_put(t, "ns/y", "yy", 2, NULL), 0);
	cr_assert_eq(store_txn_delete(t, "c", NULL), 0);
	cr_assert_eq(store_txn_commit(t, NULL, &tr), 0);
	cr_assert_eq(tr.revision, 6);
	store_txn_free(t);
	cr_assert_eq(store_set_meta(s, "x", NULL, 0600), 0);
	cr_assert_eq(store_revision(s), 7);
	cr_assert_eq(put(s, "d", "four"), 8);
	return s;
}

Test(changes, every_change_in_revision_order_each_once)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	size_t n;

	cr_assert_eq(store_changes_open(&c, spath, 0), 0);
	n = collect(c, UINT64_MAX, got, 32, NULL);
	expect(got, n, script, NSCRIPT);
	cr_expect_eq(got[0].size, 3);
	cr_expect_eq(got[2].size, 5);
	cr_expect_eq(got[4].size, 5, "a rename's put has its content");
	cr_expect_eq(store_changes_pos(c), 8);
	/* nothing twice */
	cr_assert_eq(collect(c, UINT64_MAX, got, 32, NULL), 0);
	store_changes_free(c);
	store_close(s);
}

Test(changes, from_a_revision_in_the_middle)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	size_t n;

	/* inside the part in git */
	cr_assert_eq(store_changes_open(&c, spath, 2), 0);
	n = collect(c, UINT64_MAX, got, 32, NULL);
	expect(got, n, script + 2, NSCRIPT - 2);
	store_changes_free(c);
	/* inside the journal, at a rename */
	cr_assert_eq(store_changes_open(&c, spath, 4), 0);
	n = collect(c, UINT64_MAX, got, 32, NULL);
	expect(got, n, script + 4, NSCRIPT - 4);
	store_changes_free(c);
	/* after the last one: nothing yet */
	cr_assert_eq(store_changes_open(&c, spath, 8), 0);
	cr_assert_eq(collect(c, UINT64_MAX, got, 32, NULL), 0);
	store_changes_free(c);
	store_close(s);
}

Test(changes, txn_parts_share_their_revision)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	size_t n;

	cr_assert_eq(store_changes_open(&c, spath, 5), 0);
	n = collect(c, UINT64_MAX, got, 32, NULL);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < 3; i++)
		cr_expect_eq(got[i].rev, 6);
	cr_expect_eq(got[2].op, 'd');
	cr_expect_eq(got[3].rev, 8, "the mode change (7) has no change");
	store_changes_free(c);
	store_close(s);
}

/* The number of journal segments of the store. */
static int segments(void)
{
	char path[PATH_MAX + 128];

	snprintf(path, sizeof(path), "%s/journal", spath);
	return (int)count_names(path, "", ".log");
}

static bool has_segment(uint64_t first)
{
	char path[PATH_MAX + 128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/journal/%020lu.log", spath,
		 (unsigned long)first);
	return stat(path, &st) == 0;
}

Test(changes, revisions_whose_segments_were_dropped_come_from_git)
{
	struct store *s = run_script();
	struct store_changes *c = NULL, *mid = NULL;
	struct seen got[64], want[64];
	size_t n, wn = NSCRIPT;
	int rc;

	/* one reader placed in the journal before the drop */
	cr_assert_eq(store_changes_open(&mid, spath, 0), 0);
	n = collect(mid, 5, got, 64, &rc);
	cr_assert_eq(n, 6, "up to revision 5 (durable)");
	cr_assert_eq(rc, -EAGAIN);
	drain(s);
	cr_assert_eq(store_checkpoint(s), 0);
	cr_assert(!has_segment(1), "segment 1 dropped (%d left)", segments());
	memcpy(want, script, sizeof(script));
	for (int i = 0; i < 3; i++) {
		char id[16];

		snprintf(id, sizeof(id), "z%d", i);
		want[wn++] = (struct seen){9 + (uint64_t)i, 'p', "", 1, "", 0};
		snprintf(want[wn - 1].id, sizeof(want[wn - 1].id), "%s", id);
		cr_assert_eq(put(s, id, "z"), 9 + (uint64_t)i);
	}
	/* a new reader: all of it from git, then the journal */
	cr_assert_eq(store_changes_open(&c, spath, 0), 0);
	n = collect(c, UINT64_MAX, got, 64, NULL);
	expect(got, n, want, wn);
	store_changes_free(c);
	/* the one placed before: goes on, each once */
	n = collect(mid, UINT64_MAX, got, 64, NULL);
	expect(got, n, want + 6, wn - 6);
	store_changes_free(mid);
	store_close(s);
}

/* The newest segment: its first seq, and the offset after its last
   complete frame. */
static void journal_end(uint64_t *first, uint64_t *end, uint64_t *last_seq,
			uint8_t **last_payload, size_t *last_len)
{
	char path[PATH_MAX + 128];
	struct dirent *de;
	uint8_t *buf;
	uint64_t f, off = JNL_FILE_HDR, seq;
	struct stat st;
	DIR *d;
	int fd;

	*first = 0;
	snprintf(path, sizeof(path), "%s/journal", spath);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		if (sscanf(de->d_name, "%lu.log", (unsigned long *)&f) == 1 &&
		    strstr(de->d_name, ".log") && f > *first)
			*first = f;
	closedir(d);
	snprintf(path, sizeof(path), "%s/journal/%020lu.log", spath,
		 (unsigned long)*first);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*last_len = 0;
	for (;;) {
		const uint8_t *p;
		size_t len;
		long fl = jnl_frame_decode(buf + off, (size_t)st.st_size - off,
					   &seq, &p, &len, NULL);

		if (fl <= 0)
			break;
		*last_seq = seq;
		free(*last_payload);
		*last_payload = malloc(len);
		memcpy(*last_payload, p, len);
		*last_len = len;
		off += (uint64_t)fl;
	}
	cr_assert_gt(*last_len, 0, "the newest segment holds a record");
	*end = off;
	free(buf);
}

Test(changes, a_torn_journal_tail_is_not_delivered_until_complete)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	uint8_t hdr[JNL_FRAME_HDR], *payload = NULL;
	uint64_t first, end, last;
	size_t len, n;
	char path[PATH_MAX + 128];
	struct iovec iov;
	int fd, rc;

	/* the store writes nothing more: what the test writes is final */
	journal_end(&first, &end, &last, &payload, &len);
	cr_assert_eq(last, 8);
	/* record 9: a copy of 8's payload, half of it written */
	iov = (struct iovec){payload, len};
	jnl_frame_encode(hdr, 9, &iov, 1);
	snprintf(path, sizeof(path), "%s/journal/%020lu.log", spath,
		 (unsigned long)first);
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, hdr, sizeof(hdr), (off_t)end), sizeof(hdr));
	cr_assert_eq(pwrite(fd, payload, len / 2, (off_t)end + sizeof(hdr)),
		     (ssize_t)(len / 2));

	cr_assert_eq(store_changes_open(&c, spath, 7), 0);
	n = collect(c, UINT64_MAX, got, 32, &rc);
	cr_assert_eq(rc, 0, "the torn record is not an error");
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].rev, 8);
	cr_assert_eq(collect(c, UINT64_MAX, got, 32, NULL), 0);
	/* the rest of it: now it is a record */
	cr_assert_eq(pwrite(fd, payload + len / 2, len - len / 2,
			    (off_t)(end + sizeof(hdr) + len / 2)),
		     (ssize_t)(len - len / 2));
	close(fd);
	n = collect(c, UINT64_MAX, got, 32, NULL);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].rev, 9);
	cr_assert_str_eq(got[0].id, "d");
	store_changes_free(c);
	free(payload);
	store_close(s);
}

Test(changes, nothing_after_durable_is_delivered)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	size_t n;
	int rc;

	cr_assert_eq(store_changes_open(&c, spath, 5), 0);
	n = collect(c, 6, got, 32, &rc);
	cr_assert_eq(n, 3, "revision 6 only");
	cr_assert_eq(rc, -EAGAIN, "a record is written after `durable`");
	n = collect(c, 8, got, 32, NULL);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].rev, 8);
	store_changes_free(c);
	store_close(s);
}

Test(changes, from_now_on_and_the_descriptor_wakes_up)
{
	struct store *s = run_script();
	struct store_changes *c = NULL;
	struct seen got[32];
	struct pollfd p;
	size_t n;

	cr_assert_eq(store_changes_open(&c, spath, STORE_CHANGES_NOW), 0);
	cr_assert_eq(store_changes_pos(c), 8);
	cr_assert_eq(collect(c, UINT64_MAX, got, 32, NULL), 0);
	p = (struct pollfd){.fd = store_changes_fd(c), .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 0), 0, "idle: not readable");
	cr_assert_eq(put(s, "e", "five"), 9);
	cr_assert_eq(poll(&p, 1, 5000), 1, "a commit makes it readable");
	n = collect(c, UINT64_MAX, got, 32, NULL);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].rev, 9);
	cr_assert_str_eq(got[0].id, "e");
	cr_assert_eq(poll(&p, 1, 0), 0, "emptied by store_changes_next");
	store_changes_free(c);
	store_close(s);
}

Test(changes, a_directory_that_is_not_a_store_is_refused)
{
	struct store_changes *c = NULL;

	cr_assert_lt(store_changes_open(&c, base, 0), 0);
	cr_assert_null(c);
}
