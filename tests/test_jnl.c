/*
 * test_jnl.c - the journal: framing, scan and recovery of torn tails,
 * failure handling without seq holes, crashes, group commit, rotation.
 */
#include "io.h"
#include "jnl.h"
#include "sandbox.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];
static int dfd = -1;
static struct io *io;
static struct jnl *j;

static void setup(void)
{
	sandbox_new_in(tmpdir, sizeof(tmpdir), "/tmp", "jnl", false);
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
	close(dfd);
	dfd = -1;
	sandbox_rm(tmpdir);
}

TestSuite(jnl, .init = setup, .fini = teardown, .timeout = 120);

static void open_at(uint64_t next)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = next};

	jnl_close(j);
	j = NULL;
	cr_assert_eq(jnl_open(&j, &o), 0, "jnl_open(%" PRIu64 ")", next);
}

static int append_str(const char *s, uint64_t *seq)
{
	struct iovec v = {.iov_base = (void *)s, .iov_len = strlen(s)};

	return jnl_append(j, &v, 1, seq);
}

static void append_ok(const char *s, uint64_t want)
{
	uint64_t seq = 0;

	cr_assert_eq(append_str(s, &seq), 0, "append \"%s\"", s);
	cr_assert_eq(seq, want);
}

static void seg_path(char *buf, size_t len, uint64_t first)
{
	snprintf(buf, len, "%020" PRIu64 ".log", first);
}

static off_t seg_size(uint64_t first)
{
	char name[32];
	struct stat st;

	seg_path(name, sizeof(name), first);
	cr_assert_eq(fstatat(dfd, name, &st, 0), 0, "stat %s", name);
	return st.st_size;
}

/* Does segment `first` hold only zeros from offset `from` on? */
static bool seg_zeros_from(uint64_t first, uint64_t from)
{
	char name[32], buf[4096];
	bool zeros = true;
	ssize_t n;
	int fd;

	seg_path(name, sizeof(name), first);
	fd = openat(dfd, name, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", name);
	while (zeros && (n = pread(fd, buf, sizeof(buf), (off_t)from)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			zeros = zeros && buf[i] == 0;
		from += (uint64_t)n;
	}
	close(fd);
	return zeros;
}

static bool seg_exists(uint64_t first)
{
	char name[32];

	seg_path(name, sizeof(name), first);
	return faccessat(dfd, name, F_OK, 0) == 0;
}

static int seg_fd(uint64_t first)
{
	char name[32];
	int fd;

	seg_path(name, sizeof(name), first);
	fd = openat(dfd, name, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s", name);
	return fd;
}

/* What a scan returned. */
struct seen {
	size_t n;
	uint64_t seq[4096];
	char *payload[4096];
	int stop_at; /* return 7 at this record (1-based), 0 = never */
};

static int collect(void *arg, uint64_t seq, const void *p, size_t len)
{
	struct seen *s = arg;
	char *copy = malloc(len + 1);

	cr_assert_not_null(copy);
	cr_assert_lt(s->n, 4096);
	memcpy(copy, p, len);
	copy[len] = '\0';
	s->seq[s->n] = seq;
	s->payload[s->n++] = copy;
	if (s->stop_at && (int)s->n == s->stop_at)
		return 7;
	return 0;
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->payload[i]);
	free(s);
}

static struct seen *scan(uint64_t after, int want_rc,
			 struct jnl_scan_report *rep)
{
	struct seen *s = calloc(1, sizeof(*s));
	struct jnl_scan_report r;

	cr_assert_not_null(s);
	cr_assert_eq(jnl_scan(io, dfd, after, collect, s, &r), want_rc,
		     "jnl_scan rc");
	if (want_rc == 0) {
		cr_assert_eq(r.records, s->n);
		for (size_t i = 1; i < s->n; i++)
			cr_assert_eq(s->seq[i], s->seq[i - 1] + 1);
	}
	if (rep)
		*rep = r;
	return s;
}

/* Records first..first+n-1 with payloads "<prefix><seq>". */
static void expect_records(struct seen *s, uint64_t first, size_t n,
			   const char *prefix)
{
	char want[64];

	cr_assert_eq(s->n, n, "records");
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "%s%" PRIu64, prefix, first + i);
		cr_expect_eq(s->seq[i], first + i);
		cr_expect_str_eq(s->payload[i], want);
	}
}

static void append_n(uint64_t first, size_t n, const char *prefix)
{
	char buf[64];

	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s%" PRIu64, prefix, first + i);
		append_ok(buf, first + i);
	}
}

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
