/*
 * test_jnl_big_crash.c - multi-frame records of the journal after a
 * crash at any byte of them (truncated copies, and failpoints in a child
 * that crashes): all or none, and jnl_open cuts the incomplete tail; an
 * incomplete record followed by more, or in an earlier segment, is
 * corruption; failpoints on the way leave the journal usable.
 */
#include "jnlbig_fixture.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(jnl_big_crash, .init = setup, .fini = teardown, .timeout = 300);

/* ---- crashes ---------------------------------------------------------- */

static const size_t crash_lens[] = {1000, 300000, 17, 0, 5000};
#define CRASH_FRAMES 5

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

Test(jnl_big_crash, a_cut_at_any_byte_of_the_record_gives_all_or_none)
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

Test(jnl_big_crash, a_crash_on_the_way_gives_all_or_none)
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

Test(jnl_big_crash, an_incomplete_record_followed_by_a_frame_is_ebadmsg)
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

Test(jnl_big_crash, an_incomplete_record_in_an_earlier_segment_is_ebadmsg)
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

Test(jnl_big_crash,
     a_durable_record_without_its_last_frame_is_ebadmsg_for_a_cursor)
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

Test(jnl_big_crash, failpoints_on_the_way_leave_the_journal_usable)
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

Test(jnl_big_crash, a_failed_undo_breaks_the_journal_until_reopened)
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
