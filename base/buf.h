/*
 * buf.h - the one growable byte buffer, in the manner of libgit2's git_str.
 *
 * A `struct buf` owns `ptr`, `len` bytes of content in `cap` bytes of
 * room. While `ptr` is not NULL it is kept NUL-terminated (ptr[len] is
 * '\0', not counted in len), so a text buffer is a C string as it stands;
 * binary content may hold NULs of its own.
 *
 * Errors are sticky: the first failure (-ENOMEM, or -EOVERFLOW for a size
 * that does not fit size_t) is kept in `err`, every later call does
 * nothing and returns it, and the caller checks once at the end:
 *
 *	struct buf b = BUF_INIT;
 *	buf_puts(&b, "record ");
 *	buf_printf(&b, "%s@%llu", id, (unsigned long long)v);
 *	if (b.err) { rc = b.err; buf_free(&b); return rc; }
 *
 * A buffer is not thread-safe: one owner uses it at a time. All functions
 * return 0 or the (sticky) negative errno.
 */
#ifndef RECFS_BUF_H
#define RECFS_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *ptr;  /* NULL until the first byte is added; NUL-terminated */
	size_t len; /* bytes of content */
	size_t cap; /* bytes allocated (at least len + 1 once ptr is set) */
	int err;    /* 0, or the first error: every call then does nothing */
};

#define BUF_INIT                                                               \
	{                                                                      \
		NULL, 0, 0, 0                                                  \
	}

/* Make room for `want` bytes of content in all (not `want` more). */
int buf_grow(struct buf *b, size_t want);

/* Append `n` bytes from `p` (n 0: nothing, p may be NULL). */
int buf_put(struct buf *b, const void *p, size_t n);

/* Append the C string `s` (without its NUL). */
int buf_puts(struct buf *b, const char *s);

/* Append one byte. */
int buf_putc(struct buf *b, int c);

/* Append printf-style text. */
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append a little-endian (le) or big-endian (be) integer. */
int buf_put_le16(struct buf *b, uint16_t v);
int buf_put_le32(struct buf *b, uint32_t v);
int buf_put_le64(struct buf *b, uint64_t v);
int buf_put_be32(struct buf *b, uint32_t v);

/*
 * Append everything `fd` reads until its end (read(2), retried on EINTR):
 * -EFBIG if the content would grow past `max` bytes in all, -errno of a
 * failed read. Those two leave `err` alone (what was read stays); memory
 * errors are sticky as usual.
 */
int buf_read_fd(struct buf *b, int fd, size_t max);

/* Drop the content, keep the room (and clear nothing else: a sticky
   error stays). */
void buf_clear(struct buf *b);

/*
 * Hand the content over: returns `ptr` (the caller frees it; NUL-
 * terminated; an empty malloc'ed string if nothing was added) and its
 * length in *len (len may be NULL), and leaves `b` empty as BUF_INIT.
 * Returns NULL if the buffer has an error or memory runs out; `b` is
 * then freed and empty all the same.
 */
void *buf_detach(struct buf *b, size_t *len);

/* Free the content and reset `b` to BUF_INIT (the error too). */
void buf_free(struct buf *b);

#endif
