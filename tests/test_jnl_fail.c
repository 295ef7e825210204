/*
 * test_jnl_fail.c - the journal under failures: I/O errors without seq
 * holes, crashes, segment creation, rotation and dropping, oversize
 * payloads, frame encoding. The fixture is in jnl_helpers.h.
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

Test(jnl, fsync_failure_fails_append_without_using_a_seq)
{
	struct jnl_scan_report r;
	struct seen *s;
	uint64_t seq = 0, bytes;

	open_at(1);
	append_n(1, 2, "r");
	bytes = jnl_segment_bytes(j);
	cr_assert_eq(io_arm(io, "jnl.fsync", IO_FAIL, EIO, 1, 1), 0);
	cr_expect_eq(append_str("lost", &seq), -EIO);
	cr_expect_eq(jnl_last_seq(j), 2);
	cr_expect_eq(jnl_segment_bytes(j), bytes);
	cr_expect_eq(seg_size(1), (off_t)bytes, "failed batch cut off");
	append_ok("r3", 3);
	s = scan(0, 0, &r);
	expect_records(s, 1, 3, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);
}

Test(jnl, enospc_at_write_is_reported_as_enospc)
{
	struct seen *s;
	uint64_t seq = 0;

	open_at(1);
	append_n(1, 1, "r");
	cr_assert_eq(io_arm_spec(io, "jnl.write=fail:ENOSPC"), 0);
	cr_expect_eq(append_str("lost", &seq), -ENOSPC);
	cr_assert_eq(io_arm_spec(io, "jnl.write=fail:EDQUOT"), 0);
	cr_expect_eq(append_str("lost", &seq), -EDQUOT);
	append_ok("r2", 2);
	s = scan(0, 0, NULL);
	expect_records(s, 1, 2, "r");
	seen_free(s);
}

Test(jnl, short_write_is_cut_off_and_scan_is_clean)
{
	struct jnl_scan_report r;
	struct seen *s;
	char big[8192];
	struct iovec v = {big, sizeof(big)};
	uint64_t seq = 0, bytes;

	open_at(1);
	append_n(1, 2, "r");
	bytes = jnl_segment_bytes(j);
	memset(big, 'b', sizeof(big));
	cr_assert_eq(io_arm(io, "jnl.write", IO_SHORT, EIO, 1, 1), 0);
	cr_expect_eq(jnl_append(j, &v, 1, &seq), -EIO);
	cr_expect_eq(io_hits(io, "jnl.truncate"), 1);
	cr_expect_eq(seg_size(1), (off_t)bytes);
	s = scan(0, 0, &r);
	expect_records(s, 1, 2, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);
	append_ok("r3", 3);
}

Test(jnl, failed_undo_breaks_the_journal)
{
	uint64_t seq = 0;

	open_at(1);
	append_n(1, 1, "r");
	cr_assert_eq(io_arm_spec(io, "jnl.fsync=fail,jnl.truncate=fail"), 0);
	cr_expect_eq(append_str("x", &seq), -EIO);
	cr_expect_eq(append_str("y", &seq), -EIO);
	cr_expect_eq(io_hits(io, "jnl.write"), 2, "no write once broken");
	cr_expect_eq(jnl_rotate(j), -EIO);
	cr_expect_eq(jnl_last_seq(j), 1);
}

Test(jnl, failed_undo_sync_breaks_the_journal)
{
	uint64_t seq = 0;

	open_at(1);
	cr_assert_eq(io_arm(io, "jnl.fsync", IO_FAIL, EIO, 1, 2), 0);
	cr_expect_eq(append_str("x", &seq), -EIO);
	cr_expect_eq(append_str("y", &seq), -EIO);
}

static void crash_child(const char *spec, int ok_before)
{
	uint64_t seq;
	int i;
	char p[32];

	open_at(1);
	for (i = 1; i <= ok_before; i++) {
		snprintf(p, sizeof(p), "r%d", i);
		if (append_str(p, &seq) < 0 || seq != (uint64_t)i)
			_exit(1);
	}
	if (io_arm_spec(io, spec) < 0)
		_exit(2);
	snprintf(p, sizeof(p), "r%d", i);
	append_str(p, &seq);
	_exit(3); /* the crash did not happen */
}

static struct seen *crash_and_scan(const char *spec, int ok_before,
				   struct jnl_scan_report *r)
{
	int status = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		crash_child(spec, ok_before);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), IO_CRASH_STATUS);
	return scan(0, 0, r);
}

Test(jnl, crash_at_fsync_keeps_earlier_records)
{
	struct jnl_scan_report r;
	struct seen *s = crash_and_scan("jnl.fsync=crash", 5, &r);

	/* The unsynced record may be in the page cache: 5 or 6. */
	cr_assert(s->n == 5 || s->n == 6, "%zu records", s->n);
	expect_records(s, 1, s->n, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);

	open_at(r.last_seq + 1);
	append_ok("next", r.last_seq + 1);
}

Test(jnl, crash_at_write_keeps_earlier_records)
{
	struct jnl_scan_report r;
	struct seen *s = crash_and_scan("jnl.write=crash", 5, &r);

	expect_records(s, 1, 5, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);
	open_at(6);
	append_ok("r6", 6);
}

Test(jnl, crash_while_creating_a_segment_recovers)
{
	struct jnl_scan_report r;
	struct seen *s;
	int fd;

	open_at(1);
	append_n(1, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	jnl_close(j);
	j = NULL;
	/* As if the header write of segment 4 was torn. */
	fd = seg_fd(4);
	cr_assert_eq(ftruncate(fd, 5), 0);
	close(fd);
	s = scan(0, 0, &r);
	expect_records(s, 1, 3, "r");
	cr_expect_eq(r.torn_bytes, 5);
	seen_free(s);

	open_at(4);
	append_n(4, 2, "r");
	s = scan(0, 0, &r);
	expect_records(s, 1, 5, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);
}

Test(jnl, reopen_trims_torn_tail_so_it_stays_readable)
{
	struct jnl_scan_report r;
	struct seen *s;
	int fd;

	open_at(1);
	append_n(1, 4, "r");
	jnl_close(j);
	j = NULL;
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, "RJF1garbage", 11, seg_size(1)), 11);
	close(fd);
	s = scan(0, 0, &r);
	cr_expect_eq(r.torn_bytes, 11);
	seen_free(s);

	/* Segment 1 is no longer last after this: its tail must go. */
	open_at(r.last_seq + 1);
	append_n(5, 2, "r");
	s = scan(0, 0, &r);
	expect_records(s, 1, 6, "r");
	cr_expect_eq(r.torn_bytes, 0);
	seen_free(s);
}

Test(jnl, failed_segment_creation_leaves_nothing_behind)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = 1};
	struct jnl *k = NULL;
	static const char *const specs[] = {
		"jnl.open=fail",
		"jnl.hdr.write=fail:ENOSPC",
		"jnl.hdr.fsync=fail",
		"jnl.dir.fsync=fail",
	};
	static const int want[] = {-EIO, -ENOSPC, -EIO, -EIO};

	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(io_arm_spec(io, specs[i]), 0);
		cr_expect_eq(jnl_open(&k, &o), want[i], "%s", specs[i]);
		cr_expect_null(k);
		cr_expect_not(seg_exists(1), "%s", specs[i]);
	}
	open_at(1);
	append_ok("r1", 1);
}

Test(jnl, failed_rotate_keeps_appending_to_the_old_segment)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	append_n(1, 2, "r");
	cr_assert_eq(io_arm_spec(io, "jnl.hdr.fsync=fail"), 0);
	cr_expect_eq(jnl_rotate(j), -EIO);
	cr_expect_not(seg_exists(3));
	append_n(3, 2, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	cr_expect(seg_exists(5));
	append_n(5, 1, "r");
	s = scan(0, 0, &r);
	expect_records(s, 1, 5, "r");
	cr_expect_eq(r.segments, 2);
	seen_free(s);
}

Test(jnl, rotate_and_drop_upto_remove_old_segments)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	append_n(1, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	cr_expect_eq(jnl_segment_bytes(j), JNL_FILE_HDR);
	append_n(4, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(7, 2, "r");
	cr_expect(seg_exists(1) && seg_exists(4) && seg_exists(7));

	cr_assert_eq(jnl_drop_upto(j, 2), 0);
	cr_expect(seg_exists(1), "record 3 is still needed");
	cr_assert_eq(jnl_drop_upto(j, 5), 0);
	cr_expect_not(seg_exists(1));
	cr_expect(seg_exists(4), "record 6 is still needed");
	s = scan(0, 0, &r);
	expect_records(s, 4, 5, "r");
	cr_expect_eq(r.segments, 2);
	seen_free(s);

	cr_assert_eq(jnl_drop_upto(j, 100), 0);
	cr_expect_not(seg_exists(4));
	cr_expect(seg_exists(7), "the current segment stays");
	s = scan(0, 0, &r);
	expect_records(s, 7, 2, "r");
	cr_expect_eq(r.segments, 1);
	seen_free(s);
	append_n(9, 1, "r");
}

Test(jnl, drop_unlink_failure_is_reported)
{
	open_at(1);
	append_n(1, 1, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	cr_assert_eq(io_arm_spec(io, "jnl.drop.unlink=fail:EROFS"), 0);
	cr_expect_eq(jnl_drop_upto(j, 10), -EROFS);
	cr_expect(seg_exists(1));
}

Test(jnl, rotate_of_an_empty_segment_is_a_no_op)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	cr_assert_eq(jnl_rotate(j), 0);
	cr_assert_eq(jnl_rotate(j), 0);
	append_ok("r1", 1);
	s = scan(0, 0, &r);
	cr_expect_eq(r.segments, 1);
	seen_free(s);
}

Test(jnl, oversize_payload_is_efbig)
{
	char *big = calloc(1, JNL_MAX_RECORD + 1);
	struct iovec v[2] = {{big, JNL_MAX_RECORD + 1}};
	struct jnl_scan_report r;
	uint64_t seq = 0;

	cr_assert_not_null(big);
	open_at(1);
	cr_expect_eq(jnl_append(j, v, 1, &seq), -EFBIG);
	v[0].iov_len = JNL_MAX_RECORD;
	v[1].iov_base = big;
	v[1].iov_len = 1;
	cr_expect_eq(jnl_append(j, v, 2, &seq), -EFBIG);
	v[1].iov_len = SIZE_MAX;
	cr_expect_eq(jnl_append(j, v, 2, &seq), -EFBIG, "no overflow");
	cr_expect_eq(jnl_last_seq(j), 0);

	/* Exactly the limit is fine and scans back. */
	cr_assert_eq(jnl_append(j, v, 1, &seq), 0);
	cr_expect_eq(seq, 1);
	cr_assert_eq(jnl_scan(io, dfd, 0, NULL, NULL, &r), 0);
	cr_expect_eq(r.records, 1);
	cr_expect_eq(r.torn_bytes, 0);
	free(big);
}

Test(jnl, frame_encode_decode_round_trip_and_reject)
{
	uint8_t buf[JNL_FRAME_HDR + 11];
	struct iovec v[] = {{(void *)"hello", 5}, {(void *)" world", 6}};
	const uint8_t *p = NULL;
	uint64_t seq = 0;
	size_t len = 0, need = 0;

	jnl_frame_encode(buf, 12345, v, 2);
	memcpy(buf + JNL_FRAME_HDR, "hello world", 11);
	cr_assert_eq(memcmp(buf, "RJF1", 4), 0, "magic in LE bytes");
	cr_expect_eq(jnl_frame_decode(buf, sizeof(buf), &seq, &p, &len, &need),
		     (long)sizeof(buf));
	cr_expect_eq(seq, 12345);
	cr_expect_eq(len, 11);
	cr_expect_eq(memcmp(p, "hello world", 11), 0);

	cr_expect_eq(jnl_frame_decode(buf, 10, &seq, &p, &len, &need), 0);
	cr_expect_eq(need, JNL_FRAME_HDR);
	cr_expect_eq(jnl_frame_decode(buf, 30, &seq, &p, &len, &need), 0);
	cr_expect_eq(need, sizeof(buf));
	cr_expect_eq(jnl_frame_decode(buf, 0, NULL, NULL, NULL, &need), 0);

	/* Any flipped bit outside the length field is caught. */
	for (size_t i = 0; i < sizeof(buf); i++) {
		if (i >= 4 && i < 8)
			continue;
		buf[i] ^= 0x10;
		cr_expect_eq(jnl_frame_decode(buf, sizeof(buf), &seq, &p, &len,
					      &need),
			     -EBADMSG, "byte %zu", i);
		buf[i] ^= 0x10;
	}
	/* A shorter length fails the checksum, a longer one asks for more. */
	buf[4] = 10;
	cr_expect_eq(jnl_frame_decode(buf, sizeof(buf), &seq, &p, &len, &need),
		     -EBADMSG);
	buf[4] = 12;
	cr_expect_eq(jnl_frame_decode(buf, sizeof(buf), &seq, &p, &len, &need),
		     0);
	/* A length over the limit is rejected before reading the payload. */
	buf[4] = 1;
	buf[7] = 1;
	cr_expect_eq(jnl_frame_decode(buf, 8, &seq, &p, &len, &need), -EBADMSG);
	cr_expect_eq(jnl_frame_decode((const uint8_t *)"RJ", 2, &seq, &p, &len,
				      &need),
		     0);
	cr_expect_eq(jnl_frame_decode((const uint8_t *)"RX", 2, &seq, &p, &len,
				      &need),
		     -EBADMSG);
}
