/*
 * breader.h - a bounded reader: a cursor over untrusted bytes (a journal
 * record, an index file) that checks every length against what is left
 * before it reads.
 *
 * Errors are sticky, like buf.h's: reading past the end sets `err` to
 * -EBADMSG and returns 0 (or NULL), and so does every read after it, so a
 * decoder reads all its fields and checks once:
 *
 *	struct breader r;
 *	br_init(&r, p, len);
 *	version = br_le64(&r);
 *	id = br_str16(&r, &id_len);
 *	if (r.err) return r.err;   // -EBADMSG
 *
 * Integers are little-endian (br_le*) or big-endian (br_be*). A reader
 * never copies or owns the bytes; one owner uses it at a time.
 */
#ifndef RECFS_BREADER_H
#define RECFS_BREADER_H

#include "bytes.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct breader {
	const uint8_t *p; /* the next byte */
	size_t left;	  /* bytes from p to the end */
	int err;	  /* 0, or -EBADMSG once a read went past the end */
};

static inline void br_init(struct breader *r, const void *p, size_t len)
{
	r->p = p;
	r->left = len;
	r->err = 0;
}

/* The next `n` bytes (advancing past them), or NULL past the end. */
static inline const uint8_t *br_take(struct breader *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->err || n > r->left) {
		r->err = -EBADMSG;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

/* Copy the next `n` bytes to `dst`; returns 0 or -EBADMSG (dst untouched). */
static inline int br_copy(struct breader *r, void *dst, size_t n)
{
	const uint8_t *p = br_take(r, n);

	if (!p)
		return r->err;
	if (n)
		memcpy(dst, p, n);
	return 0;
}

static inline uint8_t br_u8(struct breader *r)
{
	const uint8_t *p = br_take(r, 1);

	return p ? p[0] : 0;
}

/* The integers: the next sizeof(type) bytes read with `rd` (bytes.h), or 0
   past the end. */
#define BR_INT(name, type, rd)                                                 \
	static inline type name(struct breader *r)                             \
	{                                                                      \
		const uint8_t *p = br_take(r, sizeof(type));                   \
                                                                               \
		return p ? rd(p) : 0;                                          \
	}

BR_INT(br_le16, uint16_t, rd_le16)
BR_INT(br_le32, uint32_t, rd_le32)
BR_INT(br_le64, uint64_t, rd_le64)
BR_INT(br_be32, uint32_t, rd_be32)
#undef BR_INT

/* A u16 little-endian length, then that many bytes: returns them (not
   NUL-terminated) and their length in *len, or NULL past the end. */
static inline const char *br_str16(struct breader *r, size_t *len)
{
	*len = br_le16(r);
	return (const char *)br_take(r, *len);
}

#endif
