/*
 * test_jnl.c - the journal: framing, scan and recovery of torn tails and
 * corrupt segments. Failures, crashes and rotation: test_jnl_fail.c;
 * group commit, cursors and sync=batch: test_jnl_sync.c. The fixture is
 * in jnl_helpers.h.
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

Test(jnl, append_then_scan_round_trip)
{
	struct jnl_scan_report r;
	struct seen *s;
	char big[5000];
	uint64_t seq, bytes = JNL_FILE_HDR;

	open_at(1);
	cr_expect_eq(jnl_last_seq(j), 0);
	cr_expect_eq(jnl_segment_bytes(j), JNL_FILE_HDR);
	for (int i = 0; i < 100; i++) {
		char p[32];

		snprintf(p, sizeof(p), "record %d", i + 1);
		append_ok(p, (uint64_t)i + 1);
		bytes += JNL_FRAME_HDR + strlen(p);
	}
	cr_expect_eq(jnl_last_seq(j), 100);
	cr_expect_eq(jnl_segment_bytes(j), bytes);
	/* zeros written ahead of the records, and only zeros */
	cr_expect_gt(seg_size(1), (off_t)bytes);
	cr_expect(seg_zeros_from(1, bytes), "non-zero bytes after the records");

	/* Empty and multi-iovec records. */
	memset(big, 'z', sizeof(big));
	cr_assert_eq(jnl_append(j, NULL, 0, &seq), 0);
	cr_expect_eq(seq, 101);
	{
		struct iovec v[] = {
			{(void *)"ab", 2}, {big, 0}, {big, sizeof(big) - 1}};

		big[sizeof(big) - 1] = '\0';
		cr_assert_eq(jnl_append(j, v, 3, &seq), 0);
		cr_expect_eq(seq, 102);
	}

	s = scan(0, 0, &r);
	cr_expect_eq(r.records, 102);
	cr_expect_eq(r.last_seq, 102);
	cr_expect_eq(r.torn_bytes, 0);
	cr_expect_eq(r.segments, 1);
	for (size_t i = 0; i < 100; i++) {
		char want[32];

		snprintf(want, sizeof(want), "record %zu", i + 1);
		cr_expect_str_eq(s->payload[i], want);
		cr_expect_eq(s->seq[i], i + 1);
	}
	cr_expect_str_eq(s->payload[100], "");
	cr_expect_eq(strncmp(s->payload[101], "ab", 2), 0);
	cr_expect_eq(strlen(s->payload[101]), 2 + sizeof(big) - 1);
	cr_expect_eq(r.zero_bytes,
		     (uint64_t)seg_size(1) - jnl_segment_bytes(j));
	seen_free(s);

	/* a clean close leaves the segment ending at its last record */
	bytes = jnl_segment_bytes(j);
	jnl_close(j);
	j = NULL;
	cr_expect_eq(seg_size(1), (off_t)bytes);
}

Test(jnl, seqs_are_consecutive_from_next_seq)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(42);
	cr_expect_eq(jnl_last_seq(j), 41);
	append_n(42, 5, "r");
	cr_expect_eq(jnl_last_seq(j), 46);
	s = scan(0, 0, &r);
	expect_records(s, 42, 5, "r");
	cr_expect_eq(r.last_seq, 46);
	seen_free(s);
}

Test(jnl, scan_after_skips_older_records_but_reports_last_seq)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	append_n(1, 10, "r");
	s = scan(7, 0, &r);
	expect_records(s, 8, 3, "r");
	cr_expect_eq(r.last_seq, 10);
	seen_free(s);
	s = scan(10, 0, &r);
	cr_expect_eq(s->n, 0);
	cr_expect_eq(r.last_seq, 10);
	seen_free(s);
}

Test(jnl, callback_return_value_stops_the_scan)
{
	struct seen *s = calloc(1, sizeof(*s));
	struct jnl_scan_report r;

	cr_assert_not_null(s);
	open_at(1);
	append_n(1, 5, "r");
	s->stop_at = 2;
	cr_expect_eq(jnl_scan(io, dfd, 0, collect, s, &r), 7);
	cr_expect_eq(s->n, 2);
	seen_free(s);
}

Test(jnl, reopen_continues_in_a_new_segment)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	append_n(1, 3, "r");
	jnl_close(j);
	j = NULL;
	s = scan(0, 0, &r);
	cr_expect_eq(r.last_seq, 3);
	seen_free(s);

	open_at(r.last_seq + 1);
	append_n(4, 2, "r");
	s = scan(0, 0, &r);
	expect_records(s, 1, 5, "r");
	cr_expect_eq(r.segments, 2);
	cr_expect(seg_exists(1));
	cr_expect(seg_exists(4));
	seen_free(s);
}

Test(jnl, reopen_at_same_seq_reuses_the_empty_segment)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	open_at(1);
	append_ok("one", 1);
	s = scan(0, 0, &r);
	cr_expect_eq(r.segments, 1);
	cr_expect_eq(s->n, 1);
	seen_free(s);
}

Test(jnl, open_refuses_to_leave_a_gap_or_overlap)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd};
	struct jnl *k = NULL;

	open_at(1);
	append_n(1, 3, "r");
	jnl_close(j);
	j = NULL;
	o.next_seq = 10;
	cr_expect_eq(jnl_open(&k, &o), -EINVAL);
	o.next_seq = 3;
	cr_expect_eq(jnl_open(&k, &o), -EEXIST);
	o.next_seq = 0;
	cr_expect_eq(jnl_open(&k, &o), -EINVAL);
	cr_expect_null(k);
	cr_expect_not(seg_exists(10));
	cr_expect_not(seg_exists(3));
}

Test(jnl, torn_tail_inside_last_frame_is_ignored_and_counted)
{
	struct jnl_scan_report r;
	struct seen *s;
	off_t size;
	int fd;

	open_at(1);
	append_n(1, 10, "record-");
	jnl_close(j);
	j = NULL;
	size = seg_size(1);
	fd = seg_fd(1);
	cr_assert_eq(ftruncate(fd, size - 7), 0);
	close(fd);

	s = scan(0, 0, &r);
	expect_records(s, 1, 9, "record-");
	cr_expect_eq(r.torn_bytes, JNL_FRAME_HDR + strlen("record-10") - 7);
	cr_expect_eq(r.last_seq, 9);
	seen_free(s);
}

Test(jnl, torn_header_of_last_frame_is_ignored)
{
	struct jnl_scan_report r;
	struct seen *s;
	off_t size;
	int fd;

	open_at(1);
	append_n(1, 3, "r");
	jnl_close(j);
	j = NULL;
	size = seg_size(1);
	fd = seg_fd(1);
	cr_assert_eq(ftruncate(fd, size - (off_t)strlen("r3") - 10), 0);
	close(fd);
	s = scan(0, 0, &r);
	expect_records(s, 1, 2, "r");
	cr_expect_eq(r.torn_bytes, JNL_FRAME_HDR - 10);
	seen_free(s);
}

Test(jnl, zeros_after_last_record_are_ignored_and_counted)
{
	struct jnl_scan_report r;
	struct seen *s;
	char junk[100];
	int fd;

	open_at(1);
	append_n(1, 5, "r");
	jnl_close(j);
	j = NULL;
	memset(junk, 0, sizeof(junk));
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), seg_size(1)), 100);
	close(fd);
	s = scan(0, 0, &r);
	expect_records(s, 1, 5, "r");
	cr_expect_eq(r.torn_bytes, 0);
	cr_expect_eq(r.zero_bytes, 100);
	seen_free(s);
}

Test(jnl, corrupt_record_in_last_segment_ends_it)
{
	struct jnl_scan_report r;
	struct seen *s;
	off_t off;
	char c;
	int fd;

	open_at(1);
	append_n(1, 2, "aaaa");
	off = (off_t)jnl_segment_bytes(j);
	append_n(3, 3, "aaaa");
	jnl_close(j);
	j = NULL;
	/* Flip a payload byte of record 3. */
	fd = seg_fd(1);
	cr_assert_eq(pread(fd, &c, 1, off + JNL_FRAME_HDR), 1);
	c ^= 1;
	cr_assert_eq(pwrite(fd, &c, 1, off + JNL_FRAME_HDR), 1);
	close(fd);
	s = scan(0, 0, &r);
	expect_records(s, 1, 2, "aaaa");
	cr_expect_eq(r.torn_bytes, (uint64_t)(seg_size(1) - off));
	seen_free(s);
}

Test(jnl, corrupt_byte_in_earlier_segment_is_ebadmsg)
{
	struct seen *s;
	off_t off;
	char c;
	int fd;

	open_at(1);
	append_n(1, 2, "aaaa");
	off = (off_t)jnl_segment_bytes(j);
	append_n(3, 3, "aaaa");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(6, 3, "aaaa");
	s = scan(0, 0, NULL);
	seen_free(s);

	fd = seg_fd(1);
	cr_assert_eq(pread(fd, &c, 1, off + JNL_FRAME_HDR + 1), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, off + JNL_FRAME_HDR + 1), 1);
	close(fd);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);
}

Test(jnl, truncated_earlier_segment_is_ebadmsg)
{
	struct seen *s;
	int fd;

	open_at(1);
	append_n(1, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(4, 1, "r");
	fd = seg_fd(1);
	cr_assert_eq(ftruncate(fd, seg_size(1) - 1), 0);
	close(fd);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);
}

Test(jnl, garbage_after_records_of_earlier_segment_is_ebadmsg)
{
	struct seen *s;
	int fd;

	open_at(1);
	append_n(1, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(4, 1, "r");
	/* Every record is there, but a torn tail is only fine at the end. */
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, "RJF1", 4, seg_size(1)), 4);
	close(fd);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);
}

Test(jnl, bad_segment_header_is_ebadmsg)
{
	struct seen *s;
	int fd;

	open_at(1);
	append_n(1, 3, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(4, 1, "r");
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, "X", 1, 0), 1);
	close(fd);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);

	/* A header naming another first seq than the file name. */
	fd = seg_fd(1);
	cr_assert_eq(pwrite(fd, "R\x02", 2, 0), 2);
	cr_assert_eq(pwrite(fd, "\x02", 1, 8), 1);
	close(fd);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);
}

Test(jnl, seq_gap_between_segments_is_ebadmsg)
{
	struct jnl_scan_report r;
	struct seen *s;

	open_at(1);
	append_n(1, 2, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(3, 2, "r");
	cr_assert_eq(jnl_rotate(j), 0);
	append_n(5, 2, "r");
	s = scan(0, 0, &r);
	cr_expect_eq(r.segments, 3);
	seen_free(s);

	cr_assert_eq(unlinkat(dfd, "00000000000000000003.log", 0), 0);
	s = scan(0, -EBADMSG, NULL);
	seen_free(s);
}

Test(jnl, empty_dir_and_foreign_files_scan_clean)
{
	struct jnl_scan_report r;
	struct seen *s;
	int fd;

	s = scan(0, 0, &r);
	cr_expect_eq(s->n, 0);
	cr_expect_eq(r.segments, 0);
	cr_expect_eq(r.last_seq, 0);
	seen_free(s);

	fd = openat(dfd, "notes.log", O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello", 5), 5);
	close(fd);
	fd = openat(dfd, "1.log", O_CREAT | O_WRONLY, 0600);
	close(fd);
	fd = openat(dfd, "00000000000000000001.log.tmp", O_CREAT | O_WRONLY,
		    0600);
	close(fd);
	open_at(1);
	append_n(1, 2, "r");
	s = scan(0, 0, &r);
	expect_records(s, 1, 2, "r");
	cr_expect_eq(r.segments, 1);
	seen_free(s);
}
