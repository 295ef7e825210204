/*
 * test_jnl_big.c - multi-frame records of the journal (jnl_big_*): one
 * seq for all frames, all or none for readers after a crash at any byte,
 * appends that wait for the holder, abort without a seq hole, failpoints,
 * corruption, and memory bounded by one frame.
 */
#include "io.h"
#include "jnl.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];
static int dfd = -1;
static struct io *io;
static struct jnl *j;

static void dir_clear(void)
{
	DIR *d;
	struct dirent *de;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	d = fdopendir(fd);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dfd, de->d_name, 0);
	closedir(d);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/recfs-jnlbig.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(io_new(&io), 0);
}

static void teardown(void)
{
	jnl_close(j);
	j = NULL;
	io_free(io);
	io = NULL;
	if (dfd >= 0) {
		dir_clear();
		close(dfd);
	}
	dfd = -1;
	rmdir(tmpdir);
}

TestSuite(jnl_big, .init = setup, .fini = teardown, .timeout = 300);

static void open_at(uint64_t next)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = next};

	jnl_close(j);
	j = NULL;
	cr_assert_eq(jnl_open(&j, &o), 0, "jnl_open(%" PRIu64 ")", next);
}

static off_t seg_size(uint64_t first)
{
	char name[32];
	struct stat st;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	cr_assert_eq(fstatat(dfd, name, &st, 0), 0, "stat %s", name);
	return st.st_size;
}

/* ---- payloads: frame k of record seq, recognisable byte by byte ------ */

static uint8_t pat(uint64_t seq, unsigned k, size_t i)
{
	return (uint8_t)(seq * 31 + k * 7 + i * 13 + (i >> 9));
}

static void fill(uint8_t *p, size_t len, uint64_t seq, unsigned k)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(seq, k, i);
}

static bool check_fill(const uint8_t *p, size_t len, uint64_t seq, unsigned k,
		       bool quick)
{
	size_t n = quick && len > 64 ? 64 : len;

	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(seq, k, i))
			return false;
	return true;
}

static uint8_t *scratch(size_t len)
{
	static uint8_t *buf;
	static size_t cap;

	if (len > cap) {
		free(buf);
		buf = malloc(len);
		cr_assert_not_null(buf);
		cap = len;
	}
	return buf;
}

/* An ordinary record of one frame: frame 0 of `want`. */
static void append_rec(uint64_t want, size_t len)
{
	uint8_t *p = scratch(len + 1);
	struct iovec v = {p, len};
	uint64_t seq = 0;

	fill(p, len, want, 0);
	cr_assert_eq(jnl_append(j, &v, 1, &seq), 0, "append %" PRIu64, want);
	cr_assert_eq(seq, want);
}

/* Write frames 0..n-1 of record `want` (lens[k] bytes each): n-1 with
   jnl_big_add, the last with jnl_big_commit. Returns commit's rc. */
static int big_rec(uint64_t want, unsigned n, const size_t *lens)
{
	struct jnl_big *b = NULL;
	uint64_t seq = 0;
	int rc;

	cr_assert_eq(jnl_big_begin(j, &b), 0);
	for (unsigned k = 0; k + 1 < n; k++) {
		uint8_t *p = scratch(lens[k] + 1);
		struct iovec v = {p, lens[k]};

		fill(p, lens[k], want, k);
		rc = jnl_big_add(b, &v, 1);
		if (rc < 0) {
			jnl_big_abort(b);
			return rc;
		}
	}
	{
		uint8_t *p = scratch(lens[n - 1] + 1);
		struct iovec v[2] = {
			{p, lens[n - 1] / 2},
			{p + lens[n - 1] / 2, lens[n - 1] - lens[n - 1] / 2}};

		fill(p, lens[n - 1], want, n - 1);
		rc = jnl_big_commit(b, v, 2, &seq);
	}
	if (rc == 0)
		cr_assert_eq(seq, want);
	return rc;
}

/* ---- what readers saw ------------------------------------------------ */

#define MAXF 512

struct frames {
	size_t n;
	uint64_t seq[MAXF];
	size_t len[MAXF];
	unsigned k[MAXF]; /* frame index within its seq */
	bool ok[MAXF];	  /* the pattern of (seq, k) */
	char head[MAXF][24];
	bool quick; /* check only the first bytes */
};

static void frames_add(struct frames *f, uint64_t seq, const void *p,
		       size_t len)
{
	size_t i = f->n;

	cr_assert_lt(i, MAXF);
	f->k[i] = i > 0 && f->seq[i - 1] == seq ? f->k[i - 1] + 1 : 0;
	f->seq[i] = seq;
	f->len[i] = len;
	f->ok[i] = check_fill(p, len, seq, f->k[i], f->quick);
	memset(f->head[i], 0, sizeof(f->head[i]));
	memcpy(f->head[i], p, len < 23 ? len : 23);
	f->n++;
}

static int collect(void *arg, uint64_t seq, const void *p, size_t len)
{
	frames_add(arg, seq, p, len);
	return 0;
}

/* A record expected: `n` frames of lens[]. */
struct want {
	uint64_t seq;
	unsigned n;
	const size_t *lens;
};

static void expect_frames(const struct frames *f, const struct want *w,
			  size_t nw)
{
	size_t i = 0;

	for (size_t r = 0; r < nw; r++)
		for (unsigned k = 0; k < w[r].n; k++, i++) {
			cr_assert_lt(i, f->n, "frame %u of %" PRIu64 " missing",
				     k, w[r].seq);
			cr_expect_eq(f->seq[i], w[r].seq, "frame %zu seq", i);
			cr_expect_eq(f->k[i], k, "frame %zu index", i);
			cr_expect_eq(f->len[i], w[r].lens[k], "frame %zu len",
				     i);
			cr_expect(f->ok[i], "frame %zu payload", i);
		}
	cr_assert_eq(f->n, i, "frames");
}

static struct frames *scan_after(uint64_t after, int want_rc,
				 struct jnl_scan_report *rep)
{
	struct frames *f = calloc(1, sizeof(*f));
	struct jnl_scan_report r;

	cr_assert_not_null(f);
	cr_assert_eq(jnl_scan(io, dfd, after, collect, f, &r), want_rc,
		     "jnl_scan rc");
	if (rep)
		*rep = r;
	return f;
}

/* The same scan without a callback must agree (no look-ahead there). */
static void scan_nocb_agrees(uint64_t after, int want_rc,
			     const struct jnl_scan_report *r)
{
	struct jnl_scan_report r2;

	cr_assert_eq(jnl_scan(io, dfd, after, NULL, NULL, &r2), want_rc);
	if (want_rc == 0) {
		cr_expect_eq(r2.records, r->records);
		cr_expect_eq(r2.last_seq, r->last_seq);
		cr_expect_eq(r2.torn_bytes, r->torn_bytes);
		cr_expect_eq(r2.zero_bytes, r->zero_bytes);
	}
}

/* Every frame a cursor from `after` returns up to `upto`. */
static struct frames *cursor_all(uint64_t after, uint64_t upto, int want_rc)
{
	struct frames *f = calloc(1, sizeof(*f));
	struct jnl_cursor *c = NULL;
	const void *p;
	uint64_t seq;
	size_t len;
	int rc;

	cr_assert_not_null(f);
	cr_assert_eq(jnl_cursor_open(io, dfd, after, &c), 0);
	while ((rc = jnl_cursor_next(c, upto, &seq, &p, &len)) == 1)
		frames_add(f, seq, p, len);
	cr_assert_eq(rc, want_rc, "cursor rc %d", rc);
	jnl_cursor_close(c);
	return f;
}

static const size_t lens4[] = {5, 300000, 0, 70000};
static const size_t len10[] = {10};
static const size_t len20[] = {20};

Test(jnl_big, frames_share_one_seq_by_scan_and_by_cursor)
{
	const struct want w[] = {{1, 1, len10}, {2, 4, lens4}, {3, 1, len20}};
	struct jnl_scan_report r;
	struct frames *f;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(big_rec(2, 4, lens4), 0);
	cr_assert_eq(jnl_last_seq(j), 2);
	cr_assert_eq(jnl_written_seq(j), 2);
	append_rec(3, 20);

	f = scan_after(0, 0, &r);
	expect_frames(f, w, 3);
	cr_expect_eq(r.records, 3);
	cr_expect_eq(r.last_seq, 3);
	cr_expect_eq(r.torn_bytes, 0);
	scan_nocb_agrees(0, 0, &r);
	free(f);
	f = scan_after(1, 0, &r);
	expect_frames(f, w + 1, 2);
	cr_expect_eq(r.records, 2);
	free(f);
	f = scan_after(2, 0, &r);
	expect_frames(f, w + 2, 1);
	cr_expect_eq(r.records, 1);
	free(f);

	f = cursor_all(0, 3, 0);
	expect_frames(f, w, 3);
	free(f);
	f = cursor_all(1, 3, 0);
	expect_frames(f, w + 1, 2);
	free(f);
	f = cursor_all(0, 1, 0); /* upto 1: not a frame of 2 */
	expect_frames(f, w, 1);
	free(f);

	/* and the same after a reopen: a new segment follows */
	open_at(4);
	append_rec(4, 10);
	f = scan_after(0, 0, &r);
	cr_expect_eq(f->n, 7);
	cr_expect_eq(r.records, 4);
	free(f);
}

Test(jnl_big, cursor_pos_is_the_record_until_its_last_frame_and_seek)
{
	struct jnl_cursor *c = NULL;
	const void *p;
	uint64_t seq;
	size_t len;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(big_rec(2, 4, lens4), 0);
	append_rec(3, 20);
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &c), 0);
	cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
	cr_assert_eq(seq, 1);
	for (unsigned k = 0; k < 4; k++) {
		cr_assert_eq(jnl_cursor_pos(c), 2, "before frame %u", k);
		cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
		cr_assert_eq(seq, 2);
		cr_assert_eq(len, lens4[k]);
		cr_assert(check_fill(p, len, 2, k, false));
		if (k == 1) {
			/* back to the first frame of 2 */
			cr_assert_eq(jnl_cursor_seek(c, 2), 0);
			cr_assert_eq(jnl_cursor_pos(c), 2);
			cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
			cr_assert_eq(seq, 2);
			cr_assert_eq(len, lens4[0]);
			cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
			cr_assert_eq(len, lens4[1]);
		}
	}
	cr_assert_eq(jnl_cursor_pos(c), 3);
	cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
	cr_assert_eq(seq, 3);
	cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 0);
	/* seek to the middle of the journal lands on the first frame */
	cr_assert_eq(jnl_cursor_seek(c, 2), 0);
	cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
	cr_assert_eq(seq, 2);
	cr_assert_eq(len, lens4[0]);
	jnl_cursor_close(c);
}

Test(jnl_big, cursor_returns_nothing_of_a_record_before_its_commit)
{
	const size_t l2[] = {100, 200};
	struct jnl_big *b = NULL;
	struct jnl_cursor *c = NULL;
	const void *p;
	uint64_t seq;
	size_t len;
	uint8_t buf[200];
	struct iovec v = {buf, 100};

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &c), 0);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	fill(buf, 100, 2, 0);
	cr_assert_eq(jnl_big_add(b, &v, 1), 0);
	/* the frame is in the file, and in the cursor's read-ahead */
	cr_assert_eq(jnl_cursor_next(c, jnl_last_seq(j), &seq, &p, &len), 1);
	cr_assert_eq(seq, 1);
	cr_assert_eq(jnl_cursor_next(c, jnl_last_seq(j), &seq, &p, &len), 0);
	jnl_big_abort(b);
	/* 2 is an ordinary record now, where the dropped frame was */
	append_rec(2, 150);
	cr_assert_eq(jnl_cursor_next(c, 2, &seq, &p, &len), 1);
	cr_assert_eq(seq, 2);
	cr_assert_eq(len, 150);
	cr_assert(check_fill(p, len, 2, 0, false));
	cr_assert_eq(jnl_cursor_next(c, 2, &seq, &p, &len), 0);

	/* and one that is committed later is returned whole */
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	fill(buf, 100, 3, 0);
	cr_assert_eq(jnl_big_add(b, &v, 1), 0);
	cr_assert_eq(jnl_cursor_next(c, jnl_last_seq(j), &seq, &p, &len), 0);
	fill(buf, 200, 3, 1);
	v.iov_len = 200;
	cr_assert_eq(jnl_big_commit(b, &v, 1, &seq), 0);
	cr_assert_eq(seq, 3);
	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(jnl_cursor_next(c, 3, &seq, &p, &len), 1);
		cr_assert_eq(seq, 3);
		cr_assert_eq(len, l2[k]);
		cr_assert(check_fill(p, len, 3, k, false));
	}
	jnl_cursor_close(c);
}

Test(jnl_big, abort_leaves_nothing_and_no_seq_hole)
{
	const struct want w[] = {{1, 1, len10}, {2, 1, len20}};
	const size_t big[] = {400000, 400000, 400000};
	struct jnl_big *b = NULL;
	struct jnl_scan_report r;
	struct frames *f;
	uint8_t *p = malloc(400000);
	struct iovec v = {p, 400000};

	cr_assert_not_null(p);
	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	for (int k = 0; k < 3; k++) {
		fill(p, 400000, 2, (unsigned)k);
		cr_assert_eq(jnl_big_add(b, &v, 1), 0);
	}
	cr_assert_gt(seg_size(1), 16 + 24 + 10 + 3 * 400000);
	jnl_big_abort(b);
	cr_expect_eq(seg_size(1), 16 + 24 + 10, "cut off again");
	cr_expect_eq(jnl_written_seq(j), 1);
	cr_expect_eq(jnl_segment_bytes(j), 16 + 24 + 10);
	jnl_big_abort(NULL);
	/* one that wrote nothing needs no I/O */
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	jnl_big_abort(b);
	cr_expect_eq(io_hits(io, "jnl.big.truncate"), 1);
	append_rec(2, 20);
	f = scan_after(0, 0, &r);
	expect_frames(f, w, 2);
	cr_expect_eq(r.torn_bytes, 0);
	free(f);
	/* a commit without adds is a frame like any other */
	cr_assert_eq(big_rec(3, 1, big), 0);
	jnl_close(j);
	j = NULL;
	f = scan_after(2, 0, &r);
	cr_expect_eq(f->n, 1);
	cr_expect_eq(r.records, 1);
	cr_expect_eq(r.zero_bytes + r.torn_bytes, 0);
	free(f);
	free(p);
}

Test(jnl_big, oversize_frame_is_efbig_and_the_record_goes_on)
{
	const size_t l2[] = {JNL_MAX_RECORD, 7};
	struct jnl_big *b = NULL;
	uint8_t *p = malloc(JNL_MAX_RECORD + 1);
	struct iovec v = {p, JNL_MAX_RECORD + 1};
	struct frames *f;
	uint64_t seq = 0;

	cr_assert_not_null(p);
	open_at(1);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	cr_assert_eq(jnl_big_add(b, &v, 1), -EFBIG);
	cr_assert_eq(io_hits(io, "jnl.big.write"), 0);
	fill(p, JNL_MAX_RECORD, 1, 0);
	v.iov_len = JNL_MAX_RECORD;
	cr_assert_eq(jnl_big_add(b, &v, 1), 0);
	fill(p, 7, 1, 1);
	v.iov_len = 7;
	cr_assert_eq(jnl_big_commit(b, &v, 1, &seq), 0);
	cr_assert_eq(seq, 1);
	f = scan_after(0, 0, NULL);
	expect_frames(f, &(struct want){1, 2, l2}, 1);
	free(f);
	free(p);
}

/* ---- holding the journal ---------------------------------------------- */

#define NTHREADS 4
#define PER_THREAD 5

struct appender {
	pthread_t t;
	atomic_bool *go;
	atomic_int *started;
	uint64_t seq[PER_THREAD];
	int rc;
};

static void *append_thread(void *arg)
{
	struct appender *a = arg;
	char buf[32];
	struct iovec v = {buf, 0};

	atomic_fetch_add(a->started, 1);
	for (int i = 0; i < PER_THREAD && a->rc == 0; i++) {
		v.iov_len = (size_t)snprintf(buf, sizeof(buf), "t%d", i);
		a->rc = jnl_append(j, &v, 1, &a->seq[i]);
	}
	return NULL;
}

struct syncer {
	pthread_t t;
	atomic_bool done;
	int rc;
	int what; /* 0 jnl_sync, 1 jnl_rotate, 2 another big record */
	uint64_t seq;
};

static void *sync_thread(void *arg)
{
	struct syncer *s = arg;

	if (s->what == 0) {
		s->rc = jnl_sync(j);
	} else if (s->what == 1) {
		s->rc = jnl_rotate(j);
	} else {
		struct jnl_big *b = NULL;
		char x[] = "second";
		struct iovec v = {x, 6};

		s->rc = jnl_big_begin(j, &b);
		if (s->rc == 0)
			s->rc = jnl_big_commit(b, &v, 1, &s->seq);
	}
	atomic_store(&s->done, true);
	return NULL;
}

Test(jnl_big, others_wait_for_the_holder_and_take_the_following_seqs)
{
	struct appender a[NTHREADS] = {0};
	struct syncer s[2] = {{.what = 0}, {.what = 2}};
	atomic_int started = 0;
	struct jnl_big *b = NULL;
	uint8_t *p = malloc(65536);
	struct iovec v = {p, 65536};
	bool seen[2 + NTHREADS * PER_THREAD + 2] = {0};
	struct jnl_scan_report r;
	struct frames *f;
	uint64_t seq = 0, hits;

	cr_assert_not_null(p);
	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	hits = io_hits(io, "jnl.write");
	for (int i = 0; i < NTHREADS; i++) {
		a[i].started = &started;
		cr_assert_eq(
			pthread_create(&a[i].t, NULL, append_thread, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&s[i].t, NULL, sync_thread, &s[i]),
			     0);
	while (atomic_load(&started) < NTHREADS)
		sched_yield();
	/* while the frames go out, nobody else writes or syncs */
	for (unsigned k = 0; k < 16; k++) {
		fill(p, 65536, 2, k);
		cr_assert_eq(jnl_big_add(b, &v, 1), 0);
		cr_assert_eq(io_hits(io, "jnl.write"), hits);
		cr_assert_eq(jnl_written_seq(j), 1);
		for (int i = 0; i < 2; i++)
			cr_assert(!atomic_load(&s[i].done), "thread %d", i);
	}
	fill(p, 100, 2, 16);
	v.iov_len = 100;
	cr_assert_eq(jnl_big_commit(b, &v, 1, &seq), 0);
	cr_assert_eq(seq, 2);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(a[i].t, NULL);
		cr_assert_eq(a[i].rc, 0);
		for (int k = 0; k < PER_THREAD; k++) {
			cr_assert_gt(a[i].seq[k], 2);
			cr_assert_lt(a[i].seq[k], sizeof(seen));
			cr_assert(!seen[a[i].seq[k]], "seq twice");
			seen[a[i].seq[k]] = true;
		}
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(s[i].t, NULL);
		cr_assert_eq(s[i].rc, 0, "thread %d", i);
	}
	cr_assert_gt(s[1].seq, 2);
	cr_assert(!seen[s[1].seq]);
	cr_assert_eq(jnl_written_seq(j), 2 + NTHREADS * PER_THREAD + 1);
	f = scan_after(0, 0, &r);
	cr_assert_eq(r.records, 2 + NTHREADS * PER_THREAD + 1);
	cr_assert_eq(f->n, 1 + 17 + NTHREADS * PER_THREAD + 1);
	for (unsigned k = 0; k < 17; k++) {
		cr_assert_eq(f->seq[1 + k], 2);
		cr_assert(f->ok[1 + k], "frame %u", k);
	}
	free(f);
	free(p);
}

static void *stalled_append(void *arg)
{
	char x[] = "stalled";
	struct iovec v = {x, 7};

	*(int *)arg = jnl_append(j, &v, 1, NULL);
	return NULL;
}

Test(jnl_big, rotate_waits_so_a_record_never_straddles_segments)
{
	struct syncer s = {.what = 1};
	struct jnl_big *b = NULL;
	uint8_t buf[1000];
	struct iovec v = {buf, sizeof(buf)};
	struct frames *f;
	uint64_t seq;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	cr_assert_eq(pthread_create(&s.t, NULL, sync_thread, &s), 0);
	for (unsigned k = 0; k < 8; k++) {
		fill(buf, sizeof(buf), 2, k);
		cr_assert_eq(jnl_big_add(b, &v, 1), 0);
		for (int i = 0; i < 100; i++)
			sched_yield();
		cr_assert(!atomic_load(&s.done), "rotate did not wait");
	}
	fill(buf, sizeof(buf), 2, 8);
	cr_assert_eq(jnl_big_commit(b, &v, 1, &seq), 0);
	pthread_join(s.t, NULL);
	cr_assert_eq(s.rc, 0);
	append_rec(3, 10);
	cr_assert_eq(seg_size(1), 16 + 24 + 10 + 9 * (24 + 1000));
	cr_assert_eq(jnl_segment_bytes(j), 16 + 24 + 10); /* in segment 3 */
	f = scan_after(0, 0, NULL);
	cr_assert_eq(f->n, 11);
	for (size_t i = 0; i < f->n; i++)
		cr_assert(f->ok[i]);
	free(f);
}

Test(jnl_big, begin_waits_for_a_batch_in_flight)
{
	struct syncer s = {.what = 2};
	pthread_t t;
	struct frames *f;
	int arc = -1;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(io_arm(io, "jnl.fsync", IO_STALL, 0, 1, 1), 0);
	cr_assert_eq(pthread_create(&t, NULL, stalled_append, &arc), 0);
	while (io_stalled(io, "jnl.fsync") == 0)
		sched_yield();
	cr_assert_eq(pthread_create(&s.t, NULL, sync_thread, &s), 0);
	for (int i = 0; i < 1000 && !atomic_load(&s.done); i++)
		sched_yield();
	cr_assert(!atomic_load(&s.done), "begin did not wait for the batch");
	io_release(io);
	pthread_join(t, NULL);
	pthread_join(s.t, NULL);
	cr_assert_eq(arc, 0);
	cr_assert_eq(s.rc, 0);
	cr_assert_eq(s.seq, 3);
	f = scan_after(0, 0, NULL);
	cr_assert_eq(f->n, 3);
	cr_assert_str_eq(f->head[1], "stalled");
	cr_assert_str_eq(f->head[2], "second");
	free(f);
}

/* ---- crashes ---------------------------------------------------------- */

static const size_t crash_lens[] = {1000, 300000, 17, 0, 5000};
#define CRASH_FRAMES 5

static uint8_t *read_seg(uint64_t first, size_t *size)
{
	char name[32];
	struct stat st;
	uint8_t *buf;
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*size = (size_t)st.st_size;
	return buf;
}

static void write_seg(uint64_t first, const uint8_t *buf, size_t size)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, buf, size), (ssize_t)size);
	close(fd);
}

/*
 * The journal as a crash left it: record 1 (10 bytes), then the record 2
 * of crash_lens whole (`whole`) or not at all, `torn` bytes of it or of
 * other garbage after. Recovery: jnl_open cuts the tail, later appends
 * and multi-frame records work and read back cleanly.
 */
static void expect_recovery(bool whole, uint64_t torn)
{
	const struct want w[] = {{1, 1, len10}, {2, CRASH_FRAMES, crash_lens}};
	const size_t l3[] = {3000, 4};
	struct jnl_scan_report r;
	struct frames *f;
	uint64_t next = whole ? 3 : 2;

	f = scan_after(0, 0, &r);
	expect_frames(f, w, whole ? 2 : 1);
	cr_assert_eq(r.records, whole ? 2 : 1);
	cr_assert_eq(r.last_seq, next - 1);
	cr_assert_eq(r.torn_bytes + r.zero_bytes, torn);
	scan_nocb_agrees(0, 0, &r);
	free(f);
	f = cursor_all(0, next - 1, 0);
	expect_frames(f, w, whole ? 2 : 1);
	free(f);

	open_at(next);
	append_rec(next, 20);
	cr_assert_eq(big_rec(next + 1, 2, l3), 0);
	jnl_close(j);
	j = NULL;
	f = scan_after(next - 1, 0, &r);
	cr_assert_eq(r.records, 2);
	cr_assert_eq(r.torn_bytes + r.zero_bytes, 0);
	cr_assert_eq(f->n, 3);
	for (size_t i = 0; i < f->n; i++)
		cr_assert(f->ok[i]);
	free(f);
}

Test(jnl_big, a_cut_at_any_byte_of_the_record_gives_all_or_none)
{
	uint64_t bound[CRASH_FRAMES + 1], cuts[128];
	size_t size, ncut = 0;
	unsigned seed = 14;
	uint8_t *full;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(big_rec(2, CRASH_FRAMES, crash_lens), 0);
	jnl_close(j);
	j = NULL;
	full = read_seg(1, &size);
	bound[0] = 16 + 24 + 10;
	for (int k = 0; k < CRASH_FRAMES; k++)
		bound[k + 1] = bound[k] + 24 + crash_lens[k];
	cr_assert_eq(size, bound[CRASH_FRAMES]);
	for (int k = 0; k <= CRASH_FRAMES; k++) {
		cuts[ncut++] = bound[k];
		cuts[ncut++] = bound[k] + 1;
		cuts[ncut++] = bound[k] + 23;
		if (k > 0)
			cuts[ncut++] = bound[k] - 1;
	}
	while (ncut < 60)
		cuts[ncut++] =
			bound[0] + (uint64_t)rand_r(&seed) % (size - bound[0]);
	for (size_t i = 0; i < ncut; i++) {
		uint64_t t = cuts[i] > size ? size : cuts[i];
		bool whole = t == size;

		dir_clear();
		write_seg(1, full, (size_t)t);
		expect_recovery(whole, whole ? 0 : t - bound[0]);
		if (!whole)
			cr_assert_eq(seg_size(1), (off_t)bound[0],
				     "cut %" PRIu64 " trimmed", t);
	}
	/* zeros after an incomplete record are still a torn record */
	dir_clear();
	{
		uint8_t *z = calloc(1, bound[3] + 4096);

		cr_assert_not_null(z);
		memcpy(z, full, bound[3]);
		write_seg(1, z, bound[3] + 4096);
		expect_recovery(false, bound[3] + 4096 - bound[0]);
		free(z);
	}
	free(full);
}

/* In a child: record 1, then record 2 of crash_lens with `spec` armed. */
static void crash_child(const char *spec)
{
	open_at(1);
	append_rec(1, 10);
	if (io_arm_spec(io, spec) < 0)
		_exit(2);
	big_rec(2, CRASH_FRAMES, crash_lens);
	_exit(3); /* the crash did not happen */
}

static void crash_at(const char *spec, bool whole)
{
	struct jnl_scan_report r;
	int status = 0;
	pid_t pid;

	dir_clear();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		crash_child(spec);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), IO_CRASH_STATUS, "%s", spec);
	cr_assert_eq(jnl_scan(io, dfd, 0, NULL, NULL, &r), 0);
	cr_assert_eq(r.records, whole ? 2 : 1, "%s", spec);
	expect_recovery(whole, r.torn_bytes + r.zero_bytes);
}

Test(jnl_big, a_crash_on_the_way_gives_all_or_none)
{
	char spec[64];

	for (int k = 1; k <= CRASH_FRAMES; k++) {
		snprintf(spec, sizeof(spec), "jnl.big.write=crash@%d", k);
		crash_at(spec, false);
	}
	/* written but not synced: the page cache outlives the process */
	crash_at("jnl.big.fsync=crash", true);
	/* a failed write, then a crash in its undo */
	crash_at("jnl.big.write=short@3,jnl.big.truncate=crash", false);
	crash_at("jnl.big.fsync=fail,jnl.big.truncate=crash", true);
}

/* ---- corruption --------------------------------------------------------- */

/* Append a frame of `seq` (payload "f<seq>.<k>") to buf at *len. */
static void put_frame(uint8_t *buf, size_t *len, uint64_t seq, unsigned k,
		      bool more)
{
	char p[32];
	struct iovec v = {
		p, (size_t)snprintf(p, sizeof(p), "f%" PRIu64 ".%u", seq, k)};

	jnl_frame_encode_part(buf + *len, seq, more, &v, 1);
	memcpy(buf + *len + JNL_FRAME_HDR, p, v.iov_len);
	*len += JNL_FRAME_HDR + v.iov_len;
}

static size_t put_seg_hdr(uint8_t *buf, uint64_t first)
{
	memcpy(buf, JNL_SEGMENT_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (uint8_t)(first >> (8 * i));
	return JNL_FILE_HDR;
}

static void expect_ebadmsg(void)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = 4};
	struct jnl *j2 = NULL;
	struct frames *f;

	f = scan_after(0, -EBADMSG, NULL);
	cr_expect_leq(f->n, 1, "nothing of the record passed");
	free(f);
	f = scan_after(5, -EBADMSG, NULL);
	free(f);
	cr_assert_eq(jnl_scan(io, dfd, 0, NULL, NULL, NULL), -EBADMSG);
	cr_assert_lt(jnl_open(&j2, &o), 0);
	cr_assert_null(j2);
}

Test(jnl_big, an_incomplete_record_followed_by_a_frame_is_ebadmsg)
{
	uint8_t buf[1024];
	size_t len = put_seg_hdr(buf, 1);
	struct jnl_scan_report r;
	struct frames *f;

	put_frame(buf, &len, 1, 0, false);
	put_frame(buf, &len, 2, 0, true);
	put_frame(buf, &len, 2, 1, true);
	put_frame(buf, &len, 3, 0, false); /* 2 never ended */
	write_seg(1, buf, len);
	expect_ebadmsg();

	/* the same without the frame of 3 is a torn tail */
	len -= JNL_FRAME_HDR + 4;
	write_seg(1, buf, len);
	f = scan_after(0, 0, &r);
	cr_assert_eq(f->n, 1);
	cr_assert_eq(r.records, 1);
	cr_assert_eq(r.torn_bytes, 2 * (JNL_FRAME_HDR + 4));
	free(f);

	/* and its last frame makes it whole */
	put_frame(buf, &len, 2, 2, false);
	write_seg(1, buf, len);
	f = scan_after(0, 0, &r);
	cr_assert_eq(f->n, 4);
	cr_assert_eq(r.records, 2);
	cr_assert_str_eq(f->head[3], "f2.2");
	free(f);
}

Test(jnl_big, an_incomplete_record_in_an_earlier_segment_is_ebadmsg)
{
	uint8_t buf[1024];
	size_t len = put_seg_hdr(buf, 1);

	put_frame(buf, &len, 1, 0, false);
	put_frame(buf, &len, 2, 0, true);
	write_seg(1, buf, len);
	len = put_seg_hdr(buf, 2);
	put_frame(buf, &len, 2, 1, false); /* no straddling */
	write_seg(2, buf, len);
	expect_ebadmsg();
}

Test(jnl_big, a_durable_record_without_its_last_frame_is_ebadmsg_for_a_cursor)
{
	uint8_t buf[1024];
	size_t len = put_seg_hdr(buf, 1);
	struct frames *f;

	put_frame(buf, &len, 1, 0, false);
	put_frame(buf, &len, 2, 0, true);
	put_frame(buf, &len, 2, 1, true);
	write_seg(1, buf, len);
	f = cursor_all(0, 2, -EBADMSG); /* told 2 is durable */
	cr_assert_eq(f->n, 1, "nothing of 2");
	free(f);
	f = cursor_all(0, 1, 0);
	cr_assert_eq(f->n, 1);
	free(f);
	/* skipped over, it is not looked at */
	put_frame(buf, &len, 2, 2, false);
	put_frame(buf, &len, 3, 0, true);
	put_frame(buf, &len, 3, 1, false);
	write_seg(1, buf, len);
	f = cursor_all(2, 3, 0);
	cr_assert_eq(f->n, 2);
	cr_assert_str_eq(f->head[1], "f3.1");
	free(f);
}

/* ---- failpoints -----------------------------------------------------------
 */

static void fail_and_go_on(const char *spec, int want_rc, uint64_t *next)
{
	struct jnl_scan_report r;
	struct frames *f;

	io_disarm_all(io);
	cr_assert_eq(io_arm_spec(io, spec), 0);
	cr_assert_eq(big_rec(*next, CRASH_FRAMES, crash_lens), want_rc, "%s",
		     spec);
	io_disarm_all(io);
	if (want_rc == 0)
		++*next;
	cr_assert_eq(jnl_written_seq(j), *next - 1, "%s", spec);
	append_rec(*next, 10);
	cr_assert_eq(big_rec(*next + 1, CRASH_FRAMES, crash_lens), 0);
	*next += 2;
	f = scan_after(0, 0, &r);
	cr_assert_eq(r.records, *next - 1, "%s", spec);
	cr_assert_eq(r.torn_bytes, 0);
	for (size_t i = 0; i < f->n; i++)
		cr_assert(f->ok[i], "%s: frame %zu", spec, i);
	free(f);
}

Test(jnl_big, failpoints_on_the_way_leave_the_journal_usable)
{
	uint64_t next = 1;

	open_at(1);
	fail_and_go_on("jnl.big.write=fail@1", -EIO, &next);
	fail_and_go_on("jnl.big.write=fail:ENOSPC@2", -ENOSPC, &next);
	fail_and_go_on("jnl.big.write=short@3", -EIO, &next);
	fail_and_go_on("jnl.big.write=fail@5", -EIO, &next); /* commit's */
	fail_and_go_on("jnl.big.fsync=fail", -EIO, &next);
	fail_and_go_on("jnl.fsync=fail,jnl.write=fail", 0,
		       &next); /* not ours */
}

Test(jnl_big, a_failed_undo_breaks_the_journal_until_reopened)
{
	struct jnl_big *b = NULL;
	struct jnl_scan_report r;
	uint64_t seq;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(io_arm_spec(io, "jnl.big.fsync=fail*2"), 0);
	cr_assert_eq(big_rec(2, CRASH_FRAMES, crash_lens), -EIO);
	io_disarm_all(io);
	cr_assert_eq(jnl_append(j, &(struct iovec){(void *)"x", 1}, 1, &seq),
		     -EIO);
	cr_assert_eq(jnl_big_begin(j, &b), -EIO);
	cr_assert_null(b);
	jnl_close(j);
	j = NULL;
	/* the record could not be cut off: it may come back, whole */
	cr_assert_eq(jnl_scan(io, dfd, 0, NULL, NULL, &r), 0);
	cr_assert(r.records == 1 || r.records == 2);
	open_at(r.last_seq + 1);
	append_rec(r.last_seq + 1, 10);
}

/* ---- memory ----------------------------------------------------------- */

#define MEM_FRAMES 200
#define MEM_FRAME (1u << 20)

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

struct peak {
	struct frames *f;
	size_t base, peak;
	uint64_t frames;
};

static void peak_sample(struct peak *pk)
{
	size_t now = heap_in_use();

	if (now > pk->peak)
		pk->peak = now;
}

static int peak_collect(void *arg, uint64_t seq, const void *p, size_t len)
{
	struct peak *pk = arg;

	peak_sample(pk);
	if (pk->frames++ < 3 || len < MEM_FRAME)
		frames_add(pk->f, seq, p, len);
	return 0;
}

Test(jnl_big, readers_hold_one_frame_of_a_record_of_200_mib)
{
	struct peak pk = {0};
	struct jnl_cursor *c = NULL;
	struct jnl_big *b = NULL;
	uint8_t *p = calloc(1, MEM_FRAME);
	struct iovec v = {p, MEM_FRAME};
	const void *pl;
	uint64_t seq;
	size_t len;
	int rc;

	cr_assert_not_null(p);
	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	for (unsigned k = 0; k + 1 < MEM_FRAMES; k++) {
		fill(p, 64, 2, k);
		cr_assert_eq(jnl_big_add(b, &v, 1), 0);
	}
	fill(p, 64, 2, MEM_FRAMES - 1);
	cr_assert_eq(jnl_big_commit(b, &v, 1, &seq), 0);
	cr_assert_eq(seq, 2);
	append_rec(3, 10);
	free(p);
	jnl_close(j);
	j = NULL;

	pk.f = calloc(1, sizeof(*pk.f));
	cr_assert_not_null(pk.f);
	pk.f->quick = true;
	pk.base = pk.peak = heap_in_use();
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &c), 0);
	while ((rc = jnl_cursor_next(c, 3, &seq, &pl, &len)) == 1)
		peak_collect(&pk, seq, pl, len);
	cr_assert_eq(rc, 0);
	peak_sample(&pk);
	jnl_cursor_close(c);
	cr_assert_eq(pk.frames, 1 + MEM_FRAMES + 1);
	cr_assert_eq(pk.f->n, 4);
	cr_assert_eq(pk.f->seq[3], 3);
	for (size_t i = 0; i < pk.f->n; i++)
		cr_assert(pk.f->ok[i], "frame %zu", i);
	cr_log_info("cursor over %u x %u bytes: heap grew by at most %zu",
		    MEM_FRAMES, MEM_FRAME, pk.peak - pk.base);
#ifndef __SANITIZE_ADDRESS__ /* ASan's heap is not malloc's */
	cr_assert_leq(pk.peak - pk.base, JNL_FRAME_HDR + JNL_MAX_RECORD,
		      "the cursor held %zu bytes", pk.peak - pk.base);
	cr_assert_geq(pk.peak - pk.base, MEM_FRAME, "the counter counts");
#endif

	memset(pk.f, 0, sizeof(*pk.f));
	pk.f->quick = true;
	pk.frames = 0;
	pk.base = pk.peak = heap_in_use();
	cr_assert_eq(jnl_scan(io, dfd, 0, peak_collect, &pk, NULL), 0);
	cr_assert_eq(pk.frames, 1 + MEM_FRAMES + 1);
	cr_log_info("scan over %u x %u bytes: heap grew by at most %zu",
		    MEM_FRAMES, MEM_FRAME, pk.peak - pk.base);
#ifndef __SANITIZE_ADDRESS__
	cr_assert_leq(pk.peak - pk.base, JNL_FRAME_HDR + JNL_MAX_RECORD,
		      "the scan held %zu bytes", pk.peak - pk.base);
#endif
	free(pk.f);
}
