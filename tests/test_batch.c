/*
 * test_batch.c - sync=batch (store/batch.c, jnl_append_nosync): what a
 * crash leaves of the commits acknowledged before it.
 *
 * A child process commits with sync=batch, stalls the journal's
 * fdatasync ("jnl.fsync") so that the durable revision D stops moving,
 * commits more (acknowledged, not durable), and dies (_exit, like kill
 * -9). A process crash keeps the page cache, so the test then does what a
 * power cut may do to what was never fdatasync'ed: the journal after
 * record D is cut off, or only record D+1 is lost and the later ones stay
 * (pages reach the disk in any order). Then:
 *  - records/ holds no version after D even before recovery (a version's
 *    content is put in place only once its journal record is durable);
 *  - the reopened store is at revision D, and every record is at the
 *    last version acknowledged at or before D: a prefix of the
 *    acknowledged commits in revision order, nothing torn, verify clean.
 * And: store_sync (what fsync waits for) makes a batch commit durable;
 * the batch thread does within the window without it.
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store.h"

#include <criterion/criterion.h>

#include <dirent.h>
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

#define NIDS 7
#define FRAME_HDR 24 /* jnl.h's JNL_FRAME_HDR */
#define FILE_HDR 16  /* JNL_FILE_HDR */

static char logpath[PATH_MAX + 16];

static void setup(void)
{
	sandbox_store("batch", true);
	snprintf(logpath, sizeof(logpath), "%s/acked", base);
}

TestSuite(batch, .init = setup, .fini = sandbox_store_rm, .timeout = 120);

static struct store *open_store(struct io *io, unsigned ms)
{
	struct store_opts o = {.path = spath,
			       .create = true,
			       .io = io,
			       .checkpoint_bytes = 1ull << 40,
			       .sync_batch_ms = ms};
	return open_ok(&o);
}

static uint64_t durable(struct store *s)
{
	struct store_status st;

	store_status_get(s, &st);
	return st.durable;
}

/* ---- the child: commits, and what it was told ---------------------------- */

/*
 * One acknowledged commit: "REV ID CONTENT" in the log. Before the stall
 * NIDS records get new versions in turn; after it each commit is to a
 * record of its own (a second change to a record waits until the first
 * is durable, which, stalled, it never is).
 */
static void commit_logged(struct store *s, FILE *log, unsigned i, bool fresh)
{
	struct store_result res;
	char id[16], text[64];

	if (fresh)
		snprintf(id, sizeof(id), "q%u", i);
	else
		snprintf(id, sizeof(id), "r%u", i % NIDS);
	snprintf(text, sizeof(text), "version %u of %s, %s", i, id,
		 i % 3 ? "short" : "a little longer than the others");
	if (store_put(s, id, text, strlen(text), NULL, &res) != 0)
		_exit(3);
	fprintf(log, "%" PRIu64 " %s %s\n", res.revision, id, text);
	fflush(log);
}

static void wait_stalled(struct io *io)
{
	for (int t = 0; t < 5000 && io_stalled(io, "jnl.fsync") == 0; t++)
		usleep(1000);
	if (io_stalled(io, "jnl.fsync") == 0)
		_exit(4);
}

static void batch_child(void *arg)
{
	struct io *io = NULL;
	struct store *s;
	FILE *log = fopen(logpath, "w");
	unsigned i;

	if (!log || io_new(&io) != 0)
		_exit(2);
	s = open_store(io, 2);
	srand((unsigned)getpid());
	for (i = 1; i <= 60; i++) {
		commit_logged(s, log, i, false);
		if (rand() % 4 == 0)
			usleep((useconds_t)(rand() % 3000));
	}
	/* from here on nothing becomes durable: D stops */
	if (io_arm(io, "jnl.fsync", IO_STALL, 0, 1, 0) != 0)
		_exit(2);
	commit_logged(s, log, i++, true);
	wait_stalled(io);
	fprintf(log, "durable %" PRIu64 "\n", durable(s));
	fflush(log);
	for (; i <= 90; i++)
		commit_logged(s, log, i, true);
	fclose(log);
	_exit(0); /* a crash: no close, nothing synced */
}

/* ---- what was acknowledged ----------------------------------------------- */

struct acked {
	uint64_t durable;
	size_t n;
	uint64_t rev[256];
	char id[256][16];
	char text[256][64];
};

static void read_log(struct acked *a)
{
	FILE *f = fopen(logpath, "r");
	char line[128];

	cr_assert_not_null(f);
	memset(a, 0, sizeof(*a));
	while (fgets(line, sizeof(line), f)) {
		int off = 0;

		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "durable %" SCNu64, &a->durable) == 1)
			continue;
		cr_assert_lt(a->n, 256);
		cr_assert_eq(sscanf(line, "%" SCNu64 " %15s %n", &a->rev[a->n],
				    a->id[a->n], &off),
			     2, "log line %s", line);
		snprintf(a->text[a->n], sizeof(a->text[0]), "%s", line + off);
		cr_assert(a->n == 0 || a->rev[a->n] > a->rev[a->n - 1],
			  "acknowledged revisions increase");
		a->n++;
	}
	fclose(f);
}

/* The last acknowledged content of `id` at or before `upto` (NULL: none)
   and how many versions that makes. */
static const char *expected(const struct acked *a, const char *id,
			    uint64_t upto, uint64_t *versions)
{
	const char *text = NULL;

	*versions = 0;
	for (size_t i = 0; i < a->n && a->rev[i] <= upto; i++)
		if (strcmp(a->id[i], id) == 0) {
			text = a->text[i];
			(*versions)++;
		}
	return text;
}

/* ---- what a power cut does to the journal -------------------------------- */

/* Path of the newest segment. */
static void newest_segment(char *out, size_t len)
{
	char dir[PATH_MAX + 48], best[64] = "";
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/journal", spath);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strlen(de->d_name) == 24 &&
		    strcmp(de->d_name + 20, ".log") == 0 &&
		    strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(d);
	cr_assert(best[0], "no journal segment");
	snprintf(out, len, "%s/%s", dir, best);
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Lose what came after record `d` in the newest segment: cut it off
 * (`hole` false), or zero only the next record and keep the later ones.
 * Returns how many records came after `d`.
 */
static unsigned lose_after(uint64_t d, bool hole)
{
	char path[PATH_MAX + 128];
	uint8_t h[FRAME_HDR];
	off_t off = FILE_HDR, cut = -1;
	unsigned after = 0;
	int fd;

	newest_segment(path, sizeof(path));
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	while (pread(fd, h, sizeof(h), off) == (ssize_t)sizeof(h) &&
	       le(h, 4) == 0x31464a52u) {
		uint64_t seq = le(h + 8, 8), len = le(h + 4, 4);

		if (seq > d && cut < 0)
			cut = off;
		if (seq > d)
			after++;
		if (seq == d + 1 && hole) {
			uint8_t *z = calloc(1, FRAME_HDR + len);

			cr_assert_eq(pwrite(fd, z, FRAME_HDR + len, off),
				     (ssize_t)(FRAME_HDR + len));
			free(z);
		}
		off += (off_t)(FRAME_HDR + len);
	}
	if (!hole && cut >= 0)
		cr_assert_eq(ftruncate(fd, cut), 0);
	close(fd);
	return after;
}

/* ---- checks -------------------------------------------------------------- */

/* records/ID before recovery: never a version after d. */
static void check_records_dir(const struct acked *a, uint64_t d)
{
	char path[PATH_MAX + 64], buf[128];
	uint64_t n;

	for (size_t k = 0; k < a->n; k++) {
		const char *id = a->id[k];
		const char *want;
		ssize_t len;
		int fd;

		want = expected(a, id, d, &n);
		snprintf(path, sizeof(path), "%s/records/%s", spath, id);
		fd = open(path, O_RDONLY);
		if (!want) {
			cr_expect_lt(fd, 0,
				     "%s: no durable version, but a file", id);
			if (fd >= 0)
				close(fd);
			continue;
		}
		cr_assert_geq(fd, 0, "%s: no file", id);
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		cr_assert_geq(len, 0);
		buf[len] = '\0';
		cr_expect_str_eq(buf, want,
				 "records/%s holds a version that is not "
				 "durable (revision > %" PRIu64 ")",
				 id, d);
	}
}

/* The reopened store: at d, each record at its last version <= d. */
static void check_prefix(const struct acked *a, uint64_t d)
{
	struct store_verify_report rep;
	struct store *s = open_store(NULL, 0);
	struct store_meta m;
	uint64_t n;

	cr_expect_eq(store_revision(s), d, "the revision after recovery");
	for (size_t k = 0; k < a->n; k++) {
		const char *id = a->id[k];
		const char *want;
		void *buf = NULL;
		size_t len = 0;
		int rc;

		want = expected(a, id, d, &n);
		rc = store_get(s, id, &buf, &len, &m);
		if (!want) {
			cr_expect_eq(rc, -ENOENT,
				     "%s: not acknowledged by %" PRIu64, id, d);
		} else {
			cr_assert_eq(rc, 0, "%s: %s", id, strerror(-rc));
			cr_expect(len == strlen(want) &&
					  memcmp(buf, want, len) == 0,
				  "%s: not the last version <= %" PRIu64, id,
				  d);
			cr_expect_eq(m.version, n, "%s: versions", id);
			cr_expect_leq(m.revision, d);
		}
		free(buf);
	}
	memset(&rep, 0, sizeof(rep));
	cr_expect_eq(store_verify(s, &rep), 0, "verify");
	cr_expect_eq(rep.bad + rep.strays + rep.unindexed + rep.hist_bad, 0,
		     "verify found problems");
	store_close(s);
}

static void crash_and_lose(bool hole)
{
	struct acked a;
	unsigned lost;
	int status;

	status = run_child(batch_child, NULL);
	cr_assert(exited_with(status, 0), "child failed (status %d)", status);
	read_log(&a);
	cr_assert_gt(a.durable, 0, "something was durable");
	cr_assert_lt(a.durable, a.rev[a.n - 1], "something was not");
	check_records_dir(&a, a.durable);
	lost = lose_after(a.durable, hole);
	cr_assert_gt(lost, 1, "records after the durable one in the journal");
	check_prefix(&a, a.durable);
}

Test(batch, a_crash_that_loses_the_unsynced_tail_keeps_a_prefix)
{
	crash_and_lose(false);
}

Test(batch, a_lost_record_with_later_ones_on_disk_keeps_only_the_prefix)
{
	crash_and_lose(true);
}

/* ---- fsync, and the window ----------------------------------------------- */

static void fsync_child(void *arg)
{
	struct store_result r1, r2;
	struct store *s = open_store(NULL, 60000);
	FILE *log = fopen(logpath, "w");

	if (!log || store_put(s, "f", "synced", 6, NULL, &r1) != 0)
		_exit(2);
	if (durable(s) >= r1.revision)
		_exit(5); /* a 60 s window: not durable yet */
	if (store_sync(s) != 0 || durable(s) < r1.revision)
		_exit(6);
	if (store_put(s, "g", "not synced", 10, NULL, &r2) != 0)
		_exit(2);
	fprintf(log,
		"%" PRIu64 " f synced\n%" PRIu64 " g not synced\n"
		"durable %" PRIu64 "\n",
		r1.revision, r2.revision, durable(s));
	fclose(log);
	_exit(0);
}

Test(batch, store_sync_makes_a_batch_commit_durable)
{
	struct acked a;
	int status;

	status = run_child(fsync_child, NULL);
	cr_assert(exited_with(status, 0), "child failed (status %d)", status);
	read_log(&a);
	cr_assert_eq(a.durable, a.rev[0], "durable up to f, not g");
	check_records_dir(&a, a.durable);
	lose_after(a.durable, false);
	check_prefix(&a, a.durable);
}

Test(batch, a_batch_commit_is_durable_within_the_window)
{
	struct store_result r;
	struct store *s = open_store(NULL, 20);
	uint64_t t0;
	void *buf = NULL;
	size_t len;

	cr_assert_eq(store_put(s, "w", "x", 1, NULL, &r), 0);
	cr_assert_eq(store_get(s, "w", &buf, &len, NULL), 0,
		     "read back at once (waits until it is in place)");
	free(buf);
	/* with no other commit or fsync: the window's timer alone. 30 s,
	   not 20 ms, bound the wait: a busy machine may run the batch
	   thread late, which is no loss of durability */
	t0 = now_ms();
	while (durable(s) < r.revision) {
		cr_assert_lt(now_ms() - t0, 30000, "not durable after 30 s");
		usleep(1000);
	}
	cr_log_info("durable after %llu ms (window 20 ms)",
		    (unsigned long long)(now_ms() - t0));
	store_close(s);
}
