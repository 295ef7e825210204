/*
 * test_jnl_sync.c - the journal with several writers and readers: group
 * commit, concurrent failures, cursors, sync=batch (appends written but
 * not synced). The fixture is in jnl_helpers.h.
 */
#include "io.h"
#include "jnl.h"
#include "jnl_helpers.h"
#include "sandbox.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(jnl, .init = jnl_setup, .fini = jnl_teardown, .timeout = 120);

#define GC_THREADS 16
#define GC_PER_THREAD 200
#define GC_PAYLOAD 4096

struct gc_arg {
	int id;
	int err;
	uint64_t seqs[GC_PER_THREAD];
};

static void *gc_thread(void *arg)
{
	struct gc_arg *a = arg;
	char buf[GC_PAYLOAD];
	struct iovec v = {buf, sizeof(buf)};

	memset(buf, 'a' + a->id, sizeof(buf));
	for (int i = 0; i < GC_PER_THREAD; i++) {
		snprintf(buf, 32, "t%02d-i%04d", a->id, i);
		a->err = jnl_append(j, &v, 1, &a->seqs[i]);
		if (a->err)
			break;
	}
	return NULL;
}

struct gc_check {
	uint64_t next;
	int bad;
	unsigned char seen[GC_THREADS][GC_PER_THREAD];
};

static int gc_scan_cb(void *arg, uint64_t seq, const void *p, size_t len)
{
	struct gc_check *c = arg;
	int t, i;

	if (seq != c->next++ || len != GC_PAYLOAD ||
	    sscanf(p, "t%02d-i%04d", &t, &i) != 2 || t < 0 || t >= GC_THREADS ||
	    i < 0 || i >= GC_PER_THREAD ||
	    ((const char *)p)[GC_PAYLOAD - 1] != 'a' + t)
		c->bad++;
	else
		c->seen[t][i]++;
	return 0;
}

Test(jnl, group_commit_shares_fdatasyncs)
{
	static struct gc_arg args[GC_THREADS];
	static unsigned char used[GC_THREADS * GC_PER_THREAD + 1];
	static struct gc_check check = {.next = 1};
	struct jnl_scan_report r;
	pthread_t t[GC_THREADS];
	unsigned syncs;

	open_at(1);
	for (int i = 0; i < GC_THREADS; i++) {
		args[i].id = i;
		cr_assert_eq(pthread_create(&t[i], NULL, gc_thread, &args[i]),
			     0);
	}
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(t[i], NULL);
	syncs = io_hits(io, "jnl.fsync");
	fprintf(stderr, "group commit: %d appends, %u fdatasyncs, %u writes\n",
		GC_THREADS * GC_PER_THREAD, syncs, io_hits(io, "jnl.write"));

	for (int i = 0; i < GC_THREADS; i++) {
		cr_assert_eq(args[i].err, 0);
		for (int k = 0; k < GC_PER_THREAD; k++) {
			uint64_t s = args[i].seqs[k];

			cr_assert(s >= 1 && s <= GC_THREADS * GC_PER_THREAD);
			cr_assert_eq(used[s], 0, "seq %" PRIu64 " twice", s);
			used[s] = 1;
			if (k > 0)
				cr_assert_gt(s, args[i].seqs[k - 1]);
		}
	}
	cr_expect_eq(jnl_last_seq(j), GC_THREADS * GC_PER_THREAD);
	cr_expect_lt(syncs, GC_THREADS * GC_PER_THREAD);
	cr_expect_eq(syncs, io_hits(io, "jnl.write"));

	cr_assert_eq(jnl_scan(io, dfd, 0, gc_scan_cb, &check, &r), 0);
	cr_expect_eq(r.records, GC_THREADS * GC_PER_THREAD);
	cr_expect_eq(check.bad, 0);
	for (int i = 0; i < GC_THREADS; i++)
		for (int k = 0; k < GC_PER_THREAD; k++)
			cr_expect_eq(check.seen[i][k], 1);
}

struct fail_arg {
	int ok, failed, other;
};

static void *fail_thread(void *arg)
{
	struct fail_arg *a = arg;
	uint64_t seq;

	for (int i = 0; i < 200; i++) {
		int rc = append_str("payload", &seq);

		if (rc == 0)
			a->ok++;
		else if (rc == -EIO || rc == -ENOSPC)
			a->failed++;
		else
			a->other++;
	}
	return NULL;
}

Test(jnl, concurrent_failures_leave_no_holes)
{
	static struct fail_arg args[8];
	struct jnl_scan_report r;
	pthread_t t[8];
	int ok = 0, failed = 0;

	open_at(1);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, fail_thread, &args[i]),
			     0);
	/* Fail some batches while the writers run: ENOSPC or torn. */
	for (int i = 0; i < 40; i++) {
		cr_assert_eq(io_arm_spec(io, i % 2 ? "jnl.write=fail:ENOSPC"
						   : "jnl.write=short:EIO"),
			     0);
		usleep(500);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		ok += args[i].ok;
		failed += args[i].failed;
		cr_expect_eq(args[i].other, 0);
	}
	cr_expect_eq(ok + failed, 1600);
	cr_expect_gt(failed, 0);
	fprintf(stderr, "concurrent failures: %d ok, %d failed\n", ok, failed);
	cr_assert_eq(jnl_scan(io, dfd, 0, NULL, NULL, &r), 0);
	cr_expect_eq(r.records, (uint64_t)ok);
	cr_expect_eq(r.last_seq, (uint64_t)ok);
	cr_expect_eq(r.torn_bytes, 0);
	cr_expect_eq(jnl_last_seq(j), (uint64_t)ok);
}

/* ---- cursors --------------------------------------------------------------
 */

/* The next record of `cur` up to `upto` must be `seq` with "<prefix><seq>". */
static void cursor_expect(struct jnl_cursor *cur, uint64_t upto, uint64_t seq,
			  const char *prefix)
{
	const void *p = NULL;
	uint64_t got = 0;
	size_t len = 0;
	char want[64];
	int rc = jnl_cursor_next(cur, upto, &got, &p, &len);

	cr_assert_eq(rc, 1, "cursor_next (want %" PRIu64 "): %d", seq, rc);
	snprintf(want, sizeof(want), "%s%" PRIu64, prefix, seq);
	cr_assert_eq(got, seq);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(p, want, len), 0, "payload of %" PRIu64, seq);
}

static void cursor_none(struct jnl_cursor *cur, uint64_t upto)
{
	const void *p;
	uint64_t seq;
	size_t len;

	cr_assert_eq(jnl_cursor_next(cur, upto, &seq, &p, &len), 0);
}

Test(jnl, cursor_follows_appends_and_new_segments)
{
	struct jnl_cursor *cur = NULL;

	open_at(1);
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &cur), 0);
	cursor_none(cur, 0);
	append_n(1, 3, "r");
	for (uint64_t i = 1; i <= 3; i++)
		cursor_expect(cur, 3, i, "r");
	cursor_none(cur, 3);
	append_n(4, 2, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(6, 2, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	cr_assert_eq(jnl_rotate(j), 0); /* no-op: empty */
	append_n(8, 1, "r");
	for (uint64_t i = 4; i <= 8; i++)
		cursor_expect(cur, 8, i, "r");
	cursor_none(cur, 8);
	cr_assert_eq(jnl_cursor_pos(cur), 9);
	/* and back */
	cr_assert_eq(jnl_cursor_seek(cur, 2), 0);
	for (uint64_t i = 2; i <= 8; i++)
		cursor_expect(cur, 8, i, "r");
	jnl_cursor_close(cur);
}

Test(jnl, cursor_never_reads_past_upto)
{
	struct jnl_cursor *cur = NULL;

	open_at(1);
	append_n(1, 5, "r");
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &cur), 0);
	cursor_expect(cur, 2, 1, "r");
	cursor_expect(cur, 2, 2, "r");
	cursor_none(cur, 2);
	cr_assert_eq(jnl_cursor_pos(cur), 3);
	for (uint64_t i = 3; i <= 5; i++)
		cursor_expect(cur, 5, i, "r");
	jnl_cursor_close(cur);
}

Test(jnl, cursor_starts_after_a_seq_or_at_the_oldest_segment)
{
	struct jnl_cursor *cur = NULL;

	open_at(1);
	append_n(1, 5, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(6, 3, "r");
	cr_assert_eq(jnl_cursor_open(io, dfd, 3, &cur), 0);
	cr_assert_eq(jnl_cursor_pos(cur), 4);
	cursor_expect(cur, 8, 4, "r");
	jnl_cursor_close(cur);
	cr_assert_eq(jnl_drop_upto(j, 5), 0);
	/* records 1..5 are gone: it starts at 6 and says so */
	cr_assert_eq(jnl_cursor_open(io, dfd, 2, &cur), 0);
	cr_assert_eq(jnl_cursor_pos(cur), 6);
	cursor_expect(cur, 8, 6, "r");
	jnl_cursor_close(cur);
	cr_assert_eq(jnl_cursor_open(io, dfd, 6, &cur), 0);
	cursor_expect(cur, 8, 7, "r");
	jnl_cursor_close(cur);
}

/*
 * Bytes past `upto` may still change: a batch written but not synced is
 * cut off again when its fdatasync fails, and its seqs are used again. A
 * cursor that read such bytes ahead must read them again.
 */
Test(jnl, cursor_rereads_bytes_that_were_not_durable)
{
	struct jnl_cursor *cur = NULL;
	struct iovec v = {.iov_base = (void *)"stale3", .iov_len = 6};
	uint8_t hdr[JNL_FRAME_HDR];
	off_t end;
	int fd;

	open_at(1);
	append_n(1, 2, "r");
	/* a frame for seq 3 that is in the file but not (yet) durable */
	end = seg_size(1);
	jnl_frame_encode(hdr, 3, &v, 1);
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, hdr, sizeof(hdr), end), (ssize_t)sizeof(hdr));
	cr_assert_eq(pwrite(fd, "stale3", 6, end + JNL_FRAME_HDR), 6);
	close(fd);
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &cur), 0);
	cursor_expect(cur, 2, 1, "r");
	cursor_expect(cur, 2, 2, "r"); /* its buffer holds "stale3" */
	/* the journal writes the real record 3 over it */
	append_ok("real3", 3);
	{
		const void *p;
		uint64_t seq;
		size_t len;

		cr_assert_eq(jnl_cursor_next(cur, 3, &seq, &p, &len), 1);
		cr_assert_eq(seq, 3);
		cr_assert_eq(len, 5);
		cr_assert_eq(memcmp(p, "real3", 5), 0, "read the stale bytes");
	}
	jnl_cursor_close(cur);
}

Test(jnl, cursor_reports_a_durable_record_that_is_missing)
{
	struct jnl_cursor *cur = NULL;
	const void *p;
	uint64_t seq;
	size_t len;

	open_at(1);
	append_n(1, 2, "r");
	cr_assert_eq(jnl_cursor_open(io, dfd, 0, &cur), 0);
	cursor_expect(cur, 2, 1, "r");
	cursor_expect(cur, 2, 2, "r");
	cr_assert_eq(jnl_cursor_next(cur, 5, &seq, &p, &len), -EBADMSG);
	jnl_cursor_close(cur);
}

/* ---- sync=batch: appends that are written, not synced ------------------- */

static void append_nosync_ok(const char *s, uint64_t want)
{
	struct iovec v = {.iov_base = (void *)s, .iov_len = strlen(s)};
	uint64_t seq = 0;

	cr_assert_eq(jnl_append_nosync(j, &v, 1, &seq), 0, "append \"%s\"", s);
	cr_assert_eq(seq, want);
}

Test(jnl, append_nosync_is_written_but_not_durable_until_jnl_sync)
{
	open_at(1);
	append_ok("r1", 1);
	append_nosync_ok("r2", 2);
	append_nosync_ok("r3", 3);
	cr_expect_eq(jnl_last_seq(j), 1, "nosync records are not durable");
	cr_expect_eq(jnl_written_seq(j), 3);
	cr_expect_eq(io_hits(io, "jnl.fsync"), 1, "no fdatasync for them");
	cr_assert_eq(jnl_sync(j), 0);
	cr_expect_eq(jnl_last_seq(j), 3);
	cr_expect_eq(io_hits(io, "jnl.fsync"), 2);
	cr_assert_eq(jnl_sync(j), 0, "nothing to do");
	cr_expect_eq(io_hits(io, "jnl.fsync"), 2, "no fdatasync for nothing");
}

Test(jnl, a_durable_append_makes_the_nosync_ones_before_it_durable)
{
	open_at(1);
	append_nosync_ok("r1", 1);
	append_nosync_ok("r2", 2);
	cr_expect_eq(jnl_last_seq(j), 0);
	append_ok("r3", 3);
	cr_expect_eq(jnl_last_seq(j), 3);
}

Test(jnl, failed_sync_breaks_the_journal)
{
	uint64_t seq;

	open_at(1);
	append_nosync_ok("r1", 1);
	cr_assert_eq(io_arm(io, "jnl.fsync", IO_FAIL, EIO, 1, 1), 0);
	cr_expect_eq(jnl_sync(j), -EIO);
	cr_expect_eq(jnl_last_seq(j), 0);
	cr_expect_eq(append_str("r2", &seq), -EIO,
		     "acknowledged records may "
		     "be lost: no more appends");
}

Test(jnl, rotate_makes_nosync_records_durable_before_the_next_segment)
{
	struct seen *s;

	open_at(1);
	append_nosync_ok("p1", 1);
	append_nosync_ok("p2", 2);
	cr_assert_eq(jnl_rotate(j), 0);
	cr_expect_eq(jnl_last_seq(j), 2);
	append_nosync_ok("p3", 3);
	jnl_close(j); /* syncs p3 */
	j = NULL;
	s = scan(0, 0, NULL);
	expect_records(s, 1, 3, "p");
	seen_free(s);
}

/*
 * What a power cut can leave of records written without fdatasync: any
 * of their pages, in any order. A lost record in the middle (zeros where
 * it was, as the preallocated space reads) with later ones on disk: the
 * scan and the next open keep the records before it only, a prefix.
 */
Test(jnl, a_hole_left_by_a_lost_record_keeps_only_the_records_before_it)
{
	struct jnl_scan_report rep;
	uint8_t zeros[64] = {0};
	struct seen *s;
	off_t at;
	int fd;

	open_at(1);
	append_n(1, 3, "d");
	at = (off_t)jnl_segment_bytes(j);
	append_nosync_ok("lost4", 4);
	append_nosync_ok("kept5", 5);
	append_nosync_ok("kept6", 6);
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, zeros, JNL_FRAME_HDR + 5, at),
		     JNL_FRAME_HDR + 5);
	close(fd);
	jnl_close(j); /* as the crash would not: but it writes no record */
	j = NULL;
	s = scan(0, 0, &rep);
	expect_records(s, 1, 3, "d");
	cr_expect_gt(rep.torn_bytes, 0, "records 5 and 6 are not taken");
	seen_free(s);
	open_at(4); /* the next open continues after the prefix */
	append_ok("d4", 4);
}
