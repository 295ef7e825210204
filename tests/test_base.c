/*
 * test_base.c - base/: the growable buffer (buf.h), byte order (bytes.h),
 * the bounded reader (breader.h) and the per-thread last error (err.h).
 */
#include "breader.h"
#include "buf.h"
#include "bytes.h"
#include "err.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

TestSuite(base, .timeout = 30);

/* AddressSanitizer aborts on an allocation it cannot make unless told to
   return NULL like malloc does: buf_out_of_memory_is_enomem needs that.
   (ASan reads this hook at start; without ASan it is never called.) */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

/* ---- buf ---------------------------------------------------------------- */

Test(base, buf_appends_text_and_stays_nul_terminated)
{
	struct buf b = BUF_INIT;

	cr_assert_eq(buf_puts(&b, "record "), 0);
	cr_assert_eq(buf_printf(&b, "%s@%d", "a/b", 42), 0);
	cr_assert_eq(buf_putc(&b, '!'), 0);
	cr_assert_eq(b.len, strlen("record a/b@42!"));
	cr_assert_str_eq(b.ptr, "record a/b@42!");
	cr_assert_eq(b.ptr[b.len], '\0');
	cr_assert_geq(b.cap, b.len + 1);
	buf_free(&b);
	cr_assert_null(b.ptr);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
}

Test(base, buf_grows_over_many_appends_and_keeps_every_byte)
{
	struct buf b = BUF_INIT;
	size_t reallocs = 0, cap = 0;

	for (int i = 0; i < 100000; i++) {
		cr_assert_eq(buf_putc(&b, 'a' + i % 26), 0);
		if (b.cap != cap) {
			reallocs++;
			cap = b.cap;
		}
	}
	cr_assert_eq(b.len, 100000);
	for (size_t i = 0; i < b.len; i++)
		cr_assert_eq(b.ptr[i], 'a' + (int)(i % 26), "byte %zu", i);
	/* doubling: about log2(100000 / 64) + 1 reallocations, not 100000 */
	cr_assert_leq(reallocs, 20, "%zu reallocations", reallocs);
	buf_free(&b);
}

Test(base, buf_printf_longer_than_the_first_room)
{
	struct buf b = BUF_INIT;
	char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(buf_printf(&b, "<%s>", big), 0);
	cr_assert_eq(b.len, sizeof(big) + 1);
	cr_assert_eq(b.ptr[0], '<');
	cr_assert_eq(b.ptr[b.len - 1], '>');
	cr_assert_eq(b.ptr[b.len], '\0');
	buf_free(&b);
}

Test(base, buf_binary_content_and_integers)
{
	struct buf b = BUF_INIT;
	const uint8_t want[] = {0x00, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
				0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
				0x01, 0x12, 0x34, 0x56, 0x78};

	cr_assert_eq(buf_put(&b, "", 1), 0); /* a NUL of the content */
	cr_assert_eq(buf_put_le16(&b, 0x1234), 0);
	cr_assert_eq(buf_put_le32(&b, 0x12345678), 0);
	cr_assert_eq(buf_put_le64(&b, 0x0102030405060708ull), 0);
	cr_assert_eq(buf_put_be32(&b, 0x12345678), 0);
	cr_assert_eq(b.len, sizeof(want));
	cr_assert_arr_eq(b.ptr, want, sizeof(want));
	buf_free(&b);
}

Test(base, buf_detach_hands_over_and_leaves_it_empty)
{
	struct buf b = BUF_INIT;
	size_t len = 99;
	char *p;

	p = buf_detach(&b, &len);
	cr_assert_not_null(p, "an empty buffer detaches as \"\"");
	cr_assert_eq(len, 0);
	cr_assert_str_eq(p, "");
	free(p);

	buf_puts(&b, "abc");
	p = buf_detach(&b, &len);
	cr_assert_str_eq(p, "abc");
	cr_assert_eq(len, 3);
	cr_assert_null(b.ptr);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	free(p);
}

Test(base, buf_error_is_sticky_and_detach_fails)
{
	struct buf b = BUF_INIT;
	size_t len = 7;

	buf_puts(&b, "kept");
	/* a size that cannot fit: the first error, kept */
	cr_assert_eq(buf_put(&b, "x", SIZE_MAX - 2), -EOVERFLOW);
	cr_assert_eq(b.err, -EOVERFLOW);
	cr_assert_eq(buf_puts(&b, "more"), -EOVERFLOW);
	cr_assert_eq(buf_printf(&b, "%d", 1), -EOVERFLOW);
	cr_assert_eq(buf_putc(&b, 'c'), -EOVERFLOW);
	cr_assert_eq(buf_grow(&b, 10), -EOVERFLOW);
	cr_assert_eq(b.len, 4, "nothing appended after the error");
	cr_assert_null(buf_detach(&b, &len));
	cr_assert_eq(len, 0);
	cr_assert_null(b.ptr);
	cr_assert_eq(b.err, 0, "detach resets the buffer");
}

Test(base, buf_out_of_memory_is_enomem)
{
	struct buf b = BUF_INIT;

	/* more than any allocator gives, yet no size_t overflow */
	cr_assert_eq(buf_grow(&b, SIZE_MAX / 2), -ENOMEM);
	cr_assert_eq(b.err, -ENOMEM);
	cr_assert_eq(buf_puts(&b, "x"), -ENOMEM);
	buf_free(&b);
	cr_assert_eq(b.err, 0);
	cr_assert_eq(buf_puts(&b, "x"), 0, "a freed buffer is usable again");
	buf_free(&b);
}

Test(base, buf_clear_keeps_the_room)
{
	struct buf b = BUF_INIT;
	size_t cap;

	buf_puts(&b, "some text");
	cap = b.cap;
	buf_clear(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_str_eq(b.ptr, "");
	cr_assert_eq(b.cap, cap);
	buf_free(&b);
}

/* ---- bytes -------------------------------------------------------------- */

Test(base, bytes_round_trip_both_orders_at_odd_addresses)
{
	uint8_t m[17] = {0};

	wr_le16(m + 1, 0xa1b2);
	cr_assert_eq(m[1], 0xb2);
	cr_assert_eq(m[2], 0xa1);
	cr_assert_eq(rd_le16(m + 1), 0xa1b2);
	wr_le32(m + 1, 0xdeadbeef);
	cr_assert_eq(m[1], 0xef);
	cr_assert_eq(m[4], 0xde);
	cr_assert_eq(rd_le32(m + 1), 0xdeadbeef);
	wr_le64(m + 3, 0x8877665544332211ull);
	cr_assert_eq(m[3], 0x11);
	cr_assert_eq(m[10], 0x88);
	cr_assert_eq(rd_le64(m + 3), 0x8877665544332211ull);

	wr_be16(m + 1, 0xa1b2);
	cr_assert_eq(m[1], 0xa1);
	cr_assert_eq(rd_be16(m + 1), 0xa1b2);
	wr_be32(m + 5, 0x0000020a);
	cr_assert_eq(m[5], 0x00);
	cr_assert_eq(m[8], 0x0a);
	cr_assert_eq(rd_be32(m + 5), 0x20a);
	wr_be64(m + 9, 0x8877665544332211ull);
	cr_assert_eq(m[9], 0x88);
	cr_assert_eq(m[16], 0x11);
	cr_assert_eq(rd_be64(m + 9), 0x8877665544332211ull);
}

/* ---- breader ------------------------------------------------------------ */

Test(base, breader_reads_fields_in_order)
{
	const uint8_t in[] = {7, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 1,
			      2, 3,    4,    5,	   6,	 7,    8,    0,
			      0, 0,    9,    3,	   0,	 'a',  '/',  'b'};
	struct breader r;
	size_t n;
	const char *s;

	br_init(&r, in, sizeof(in));
	cr_assert_eq(br_u8(&r), 7);
	cr_assert_eq(br_le16(&r), 0x1234);
	cr_assert_eq(br_le32(&r), 0x12345678);
	cr_assert_eq(br_le64(&r), 0x0807060504030201ull);
	cr_assert_eq(br_be32(&r), 9);
	s = br_str16(&r, &n);
	cr_assert_eq(n, 3);
	cr_assert_arr_eq(s, "a/b", 3);
	cr_assert_eq(r.left, 0);
	cr_assert_eq(r.err, 0);
}

Test(base, breader_past_the_end_is_ebadmsg_and_sticky)
{
	const uint8_t in[] = {1, 2, 3, 4, 5};
	struct breader r;
	uint8_t out[4] = {9, 9, 9, 9};

	br_init(&r, in, sizeof(in));
	cr_assert_eq(br_le32(&r), 0x04030201);
	cr_assert_eq(br_le16(&r), 0, "1 byte left, 2 asked");
	cr_assert_eq(r.err, -EBADMSG);
	cr_assert_eq(r.left, 1, "a failed read takes nothing");
	cr_assert_eq(br_u8(&r), 0, "sticky: even a byte that is there");
	cr_assert_eq(br_copy(&r, out, 1), -EBADMSG);
	cr_assert_eq(out[0], 9);
}

Test(base, breader_huge_length_does_not_wrap)
{
	/* a u16 length of 0xffff over 3 bytes of content */
	const uint8_t in[] = {0xff, 0xff, 'a', 'b', 'c'};
	struct breader r;
	size_t n;

	br_init(&r, in, sizeof(in));
	cr_assert_null(br_str16(&r, &n));
	cr_assert_eq(r.err, -EBADMSG);
	br_init(&r, in, sizeof(in));
	cr_assert_null(br_take(&r, SIZE_MAX));
	cr_assert_eq(r.err, -EBADMSG);
}

/* Write `n` bytes of a pattern into a memfd, rewound. */
static int pattern_fd(size_t n)
{
	int fd = memfd_create("test_base", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	for (size_t i = 0; i < n; i++) {
		char c = (char)('a' + i % 23);

		cr_assert_eq(write(fd, &c, 1), 1);
	}
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

Test(base, buf_read_fd_reads_to_the_end_after_what_is_there)
{
	struct buf b = BUF_INIT;
	int fd = pattern_fd(200000);

	buf_puts(&b, "head:");
	cr_assert_eq(buf_read_fd(&b, fd, 200005), 0);
	cr_assert_eq(b.len, 200005);
	cr_assert_arr_eq(b.ptr, "head:", 5);
	for (size_t i = 0; i < 200000; i++)
		cr_assert_eq(b.ptr[5 + i], 'a' + (int)(i % 23), "byte %zu", i);
	cr_assert_eq(b.ptr[b.len], '\0');
	close(fd);
	buf_free(&b);
}

Test(base, buf_read_fd_past_max_is_efbig)
{
	struct buf b = BUF_INIT;
	int fd = pattern_fd(1001);

	cr_assert_eq(buf_read_fd(&b, fd, 1000), -EFBIG);
	cr_assert_eq(b.err, 0, "not a memory error: not sticky");
	close(fd);
	buf_free(&b);
	fd = pattern_fd(1000);
	cr_assert_eq(buf_read_fd(&b, fd, 1000), 0, "exactly max fits");
	cr_assert_eq(b.len, 1000);
	close(fd);
	buf_free(&b);
}

Test(base, buf_read_fd_read_error_is_errno)
{
	struct buf b = BUF_INIT;

	cr_assert_eq(buf_read_fd(&b, -1, 10), -EBADF);
	buf_free(&b);
}

/* ---- err ---------------------------------------------------------------- */

Test(base, err_set_last_clear)
{
	const struct rerr *e;

	rerr_clear();
	cr_assert_null(rerr_last());
	cr_assert_eq(rerr_set(-ENOENT, "record %s: no such record", "a/b"),
		     -ENOENT);
	e = rerr_last();
	cr_assert_not_null(e);
	cr_assert_eq(e->code, -ENOENT);
	cr_assert_str_eq(e->msg, "record a/b: no such record");
	cr_assert_str_eq(rerr_what(-ENOENT), "record a/b: no such record");
	/* another code than the one reported: the errno's own text */
	cr_assert_str_eq(rerr_what(-EIO), strerror(EIO));
	rerr_clear();
	cr_assert_null(rerr_last());
	cr_assert_str_eq(rerr_what(-ENOENT), strerror(ENOENT));
}

Test(base, err_take_hands_the_message_over_once)
{
	const char *m;

	rerr_set(-ENOSPC, "record %s: stage: no room", "r");
	cr_assert_null(rerr_take(-EIO), "not the failure reported");
	cr_assert_not_null(rerr_last());
	m = rerr_take(-ENOSPC);
	cr_assert_str_eq(m, "record r: stage: no room");
	cr_assert_null(rerr_last(), "taken: no last error any more");
	cr_assert_null(rerr_take(-ENOSPC), "and not twice");
	cr_assert_str_eq(rerr_what(-ENOSPC), strerror(ENOSPC));
}

Test(base, err_set_of_a_non_negative_code_is_eio)
{
	cr_assert_eq(rerr_set(0, "odd"), -EIO);
	cr_assert_eq(rerr_last()->code, -EIO);
	cr_assert_eq(rerr_set(5, "odd"), -EIO);
}

Test(base, err_prefix_adds_context_or_sets_the_cause)
{
	rerr_set(-EBADMSG, "format: bad magic");
	cr_assert_eq(rerr_prefix(-EBADMSG, "store %s", "/s"), -EBADMSG);
	cr_assert_str_eq(rerr_last()->msg, "store /s: format: bad magic");
	/* a callee that reported nothing (or something else) */
	rerr_set(-EBADMSG, "stale");
	cr_assert_eq(rerr_prefix(-ENOSPC, "record %s", "x"), -ENOSPC);
	cr_assert_str_eq(rerr_last()->msg, "record x: No space left on device");
	rerr_clear();
}

Test(base, err_long_messages_are_cut_and_marked)
{
	char big[2 * RERR_MSG_MAX];
	const struct rerr *e;
	size_t n;

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rerr_set(-EIO, "record %s", big);
	e = rerr_last();
	n = strlen(e->msg);
	cr_assert_eq(n, RERR_MSG_MAX - 1);
	cr_assert_eq(strncmp(e->msg, "record yyy", 10), 0);
	cr_assert_str_eq(e->msg + n - 3, "...");
	/* a prefix on a full message is cut the same way */
	rerr_prefix(-EIO, "store %s", "/s");
	e = rerr_last();
	cr_assert_eq(strlen(e->msg), RERR_MSG_MAX - 1);
	cr_assert_eq(strncmp(e->msg, "store /s: record yyy", 20), 0);
	cr_assert_str_eq(e->msg + RERR_MSG_MAX - 4, "...");
	/* one that just fits is not marked */
	big[RERR_MSG_MAX - 1] = '\0';
	rerr_set(-EIO, "%s", big);
	cr_assert_eq(strlen(rerr_last()->msg), RERR_MSG_MAX - 1);
	cr_assert_eq(rerr_last()->msg[RERR_MSG_MAX - 2], 'y');
	rerr_clear();
}

struct err_thread {
	int code;
	char want[64];
	pthread_barrier_t *bar;
	bool saw_none, same;
};

static void *err_thread_main(void *arg)
{
	struct err_thread *t = arg;

	t->saw_none = rerr_last() == NULL; /* not the main thread's error */
	for (int i = 0; i < 1000; i++) {
		rerr_set(t->code, "thread %d", -t->code);
		pthread_barrier_wait(
			t->bar); /* all set theirs, then all look */
		t->same = rerr_last() && rerr_last()->code == t->code &&
			  !strcmp(rerr_last()->msg, t->want);
		pthread_barrier_wait(t->bar);
		if (!t->same)
			break;
	}
	return NULL;
}

Test(base, err_is_per_thread)
{
	enum { N = 4 };
	const int codes[N] = {-ENOENT, -EIO, -ENOSPC, -EEXIST};
	struct err_thread t[N];
	pthread_barrier_t bar;
	pthread_t th[N];

	rerr_set(-EPERM, "main thread");
	cr_assert_eq(pthread_barrier_init(&bar, NULL, N), 0);
	for (int i = 0; i < N; i++) {
		t[i] = (struct err_thread){.code = codes[i], .bar = &bar};
		snprintf(t[i].want, sizeof(t[i].want), "thread %d", -codes[i]);
		cr_assert_eq(
			pthread_create(&th[i], NULL, err_thread_main, &t[i]),
			0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		cr_assert(t[i].saw_none, "thread %d saw another's error", i);
		cr_assert(t[i].same, "thread %d lost its own error", i);
	}
	pthread_barrier_destroy(&bar);
	cr_assert_eq(rerr_last()->code, -EPERM);
	cr_assert_str_eq(rerr_last()->msg, "main thread");
	rerr_clear();
}
