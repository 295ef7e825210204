/*
 * jnl_i.h - what jnl.c (appending) and jnl_read.c (scanning, cursors)
 * share: segment names, listing, the verifying segment walk and the
 * little-endian helpers of the on-disk format described in jnl.c. Not for
 * use outside journal/.
 */
#ifndef RECFS_JNL_I_H
#define RECFS_JNL_I_H

#include "jnl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JNL_FRAME_MAGIC 0x31464a52u
#define JNL_SEG_NAME_LEN 32 /* "%020llu.log" is 24 + NUL */
#define JNL_SEG_DIGITS 20
#define JNL_READ_MIN ((size_t)256 << 10) /* first read buffer */
#define JNL_READ_MAX ((size_t)JNL_MAX_RECORD + JNL_FRAME_HDR)

static inline void jnl_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void jnl_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t jnl_get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t jnl_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The file name of the segment whose first record is `first`. */
void jnl_seg_name(char name[JNL_SEG_NAME_LEN], uint64_t first);

/* Parse a segment file name; false for anything else. */
bool jnl_seg_parse(const char *name, uint64_t *first);

/* The first seqs of the segments in `dirfd`, sorted; *out is malloc'ed
   (NULL if there are none). Returns 0 or -errno (logged). */
int jnl_seg_list(struct io *io, int dirfd, uint64_t **out, size_t *count);

/* A read buffer that grows up to JNL_READ_MAX. */
struct jnl_rbuf {
	uint8_t *p;
	size_t cap;
};

/* Make b->cap >= want (at most JNL_READ_MAX: -EFBIG beyond). */
int jnl_rbuf_reserve(struct jnl_rbuf *b, size_t want);

/* One segment walk: what it is told and what it found. */
struct jnl_walk {
	struct io *io;
	int dirfd;
	uint64_t first; /* from the file name */
	bool last;	/* a torn tail is tolerated (not corruption) */
	uint64_t after;
	jnl_scan_cb cb; /* may be NULL */
	void *arg;

	uint64_t size;	    /* file size */
	bool hdr_ok;	    /* the file header is complete and valid */
	uint64_t nrec;	    /* valid records */
	uint64_t last_seq;  /* of the last valid record */
	uint64_t valid_end; /* offset after the header and valid records */
	uint64_t torn;	    /* bytes ignored at the tail, unless ... */
	uint64_t zeros;	    /* ... they are all zeros: then here */
	uint64_t passed;    /* records given to cb */
};

/*
 * Read segment w->first and verify it: header, then frames of seqs
 * first, first+1, ... passing those above w->after to w->cb. Returns 0,
 * -EBADMSG (logged), -errno, or what the callback returned.
 */
int jnl_seg_walk(struct jnl_walk *w, struct jnl_rbuf *b);

#endif
