/*
 * test_jnl_big.c - multi-frame records of the journal (jnl_big_*): one
 * seq for all frames by scan and by cursor, abort without a seq hole,
 * appends, syncs and rotations that wait for the holder, and memory
 * bounded by one frame. Crashes, corruption and failpoints:
 * test_jnl_big_crash.c.
 */
#include "jnlbig_fixture.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(jnl_big, .init = setup, .fini = teardown, .timeout = 300);

static const size_t lens4[] = {5, 300000, 0, 70000};

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

Test(jnl_big, its_commit_makes_the_nosync_records_before_it_durable)
{
	const size_t l2[] = {100, 200};
	char x[] = "nosync";
	struct iovec v = {x, 6};
	uint64_t seq = 0;

	open_at(1);
	append_rec(1, 10);
	cr_assert_eq(jnl_append_nosync(j, &v, 1, &seq), 0);
	cr_assert_eq(seq, 2);
	cr_assert_eq(jnl_last_seq(j), 1);
	cr_assert_eq(jnl_written_seq(j), 2);
	cr_assert_eq(big_rec(3, 2, l2), 0);
	cr_assert_eq(jnl_last_seq(j), 3);
	cr_assert_eq(io_hits(io, "jnl.fsync"), 1, "only record 1's");
	cr_assert_eq(io_hits(io, "jnl.big.fsync"), 1);
	/* and an abort's undo, synced too */
	cr_assert_eq(jnl_append_nosync(j, &v, 1, &seq), 0);
	cr_assert_eq(seq, 4);
	{
		struct jnl_big *b = NULL;

		cr_assert_eq(jnl_big_begin(j, &b), 0);
		cr_assert_eq(jnl_big_add(b, &v, 1), 0);
		jnl_big_abort(b);
	}
	cr_assert_eq(jnl_last_seq(j), 4);
	cr_assert_eq(jnl_written_seq(j), 4);
}
