/*
 * buf.c - the growable buffer (buf.h).
 *
 * Room doubles (starting at BUF_FIRST bytes), so appending n bytes one at
 * a time costs O(n) copies in all.
 */
#include "buf.h"
#include "bytes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_FIRST 64

/* Mark `b` failed with `err` (the first error wins); returns it. */
static int buf_fail(struct buf *b, int err)
{
	if (!b->err)
		b->err = err;
	return b->err;
}

int buf_grow(struct buf *b, size_t want)
{
	size_t cap;
	char *p;

	if (b->err)
		return b->err;
	if (want == SIZE_MAX)
		return buf_fail(b, -EOVERFLOW);
	if (b->ptr && want + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : BUF_FIRST;
	while (cap < want + 1)
		cap = cap > SIZE_MAX / 2 ? want + 1 : cap * 2;
	p = realloc(b->ptr, cap);
	if (!p)
		return buf_fail(b, -ENOMEM);
	if (!b->ptr)
		p[0] = '\0';
	b->ptr = p;
	b->cap = cap;
	return 0;
}

int buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->err)
		return b->err;
	if (n > SIZE_MAX - 1 - b->len)
		return buf_fail(b, -EOVERFLOW);
	if (buf_grow(b, b->len + n))
		return b->err;
	if (n)
		memcpy(b->ptr + b->len, p, n);
	b->len += n;
	b->ptr[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_put(b, s, strlen(s));
}

int buf_putc(struct buf *b, int c)
{
	char ch = (char)c;

	return buf_put(b, &ch, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return b->err;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return buf_fail(b, -EINVAL);
	if (buf_grow(b, b->len + (size_t)n))
		return b->err;
	va_start(ap, fmt);
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Append the `n` low bytes of `v`, least significant first. */
static int put_le(struct buf *b, uint64_t v, unsigned n)
{
	uint8_t x[8];

	for (unsigned i = 0; i < n; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	return buf_put(b, x, n);
}

int buf_put_le16(struct buf *b, uint16_t v)
{
	return put_le(b, v, 2);
}

int buf_put_le32(struct buf *b, uint32_t v)
{
	return put_le(b, v, 4);
}

int buf_put_le64(struct buf *b, uint64_t v)
{
	return put_le(b, v, 8);
}

int buf_put_be32(struct buf *b, uint32_t v)
{
	uint8_t x[4];

	wr_be32(x, v);
	return buf_put(b, x, sizeof(x));
}

#define BUF_READ_FIRST 65536

int buf_read_fd(struct buf *b, int fd, size_t max)
{
	if (max > SIZE_MAX / 2)
		max = SIZE_MAX / 2;
	for (;;) {
		size_t room;
		ssize_t n;

		if (b->err)
			return b->err;
		if (b->len > max)
			return -EFBIG;
		if (b->len + 1 >= b->cap) { /* no room for a byte and the NUL */
			size_t want = b->len < BUF_READ_FIRST / 2
					      ? BUF_READ_FIRST
					      : b->len * 2;

			if (want > max + 1)
				want = max + 1;
			if (buf_grow(b, want))
				return b->err;
		}
		/* one byte more than max may come: that is how -EFBIG is told
		 */
		room = b->cap - 1 - b->len;
		if (room > max + 1 - b->len)
			room = max + 1 - b->len;
		n = read(fd, b->ptr + b->len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return b->len > max ? -EFBIG : 0;
		b->len += (size_t)n;
		b->ptr[b->len] = '\0';
	}
}

void buf_clear(struct buf *b)
{
	b->len = 0;
	if (b->ptr)
		b->ptr[0] = '\0';
}

void *buf_detach(struct buf *b, size_t *len)
{
	char *p;

	if (!b->err)
		buf_grow(b, b->len);
	if (b->err) {
		buf_free(b);
		if (len)
			*len = 0;
		return NULL;
	}
	p = b->ptr;
	if (len)
		*len = b->len;
	*b = (struct buf)BUF_INIT;
	return p;
}

void buf_free(struct buf *b)
{
	free(b->ptr);
	*b = (struct buf)BUF_INIT;
}
