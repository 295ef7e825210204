/*
 * jnlbig_fixture.h - what the tests of multi-frame journal records
 * (test_jnl_big.c, test_jnl_big_crash.c) share: a journal in a fresh
 * temp dir, payloads recognisable byte by byte (frame k of record seq),
 * writers of ordinary and multi-frame records, and what readers saw.
 */
#ifndef RECFS_TESTS_JNLBIG_FIXTURE_H
#define RECFS_TESTS_JNLBIG_FIXTURE_H

#include "io.h"
#include "jnl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern int dfd;	      /* the journal directory */
extern struct io *io; /* its failpoints */
extern struct jnl *j; /* open for appending, or NULL */

/* Criterion .init/.fini: a fresh temp dir and io; all removed after. */
void setup(void);
void teardown(void);

/* Remove every file of the journal directory. */
void dir_clear(void);

/* (Re)open j for appending at `next`. */
void open_at(uint64_t next);

/* Size of segment `first`, a copy of it (malloc'ed), a new one. */
off_t seg_size(uint64_t first);
uint8_t *read_seg(uint64_t first, size_t *size);
void write_seg(uint64_t first, const uint8_t *buf, size_t size);

/* Frame k of record seq: len bytes of its pattern; does p hold it (the
   first 64 bytes only if quick)? */
void fill(uint8_t *p, size_t len, uint64_t seq, unsigned k);
bool check_fill(const uint8_t *p, size_t len, uint64_t seq, unsigned k,
		bool quick);

/* Append record `want` as one frame of `len` bytes (asserts its seq). */
void append_rec(uint64_t want, size_t len);

/* Write record `want` as frames of lens[0..n): n-1 with jnl_big_add, the
   last with jnl_big_commit (asserts the seq). Returns the first error
   (the record then aborted) or 0. */
int big_rec(uint64_t want, unsigned n, const size_t *lens);

/* What readers saw, frame by frame. */
#define MAXF 512

struct frames {
	size_t n;
	uint64_t seq[MAXF];
	size_t len[MAXF];
	unsigned k[MAXF]; /* frame index within its seq */
	bool ok[MAXF];	  /* the pattern of (seq, k) */
	char head[MAXF][24];
	bool quick; /* check only the first bytes */
};

/* A record expected: `n` frames of lens[]. */
struct want {
	uint64_t seq;
	unsigned n;
	const size_t *lens;
};

void frames_add(struct frames *f, uint64_t seq, const void *p, size_t len);

/* jnl_scan_cb into a struct frames. */
int collect(void *arg, uint64_t seq, const void *p, size_t len);

/* f holds exactly the records w[0..nw), frame by frame, intact. */
void expect_frames(const struct frames *f, const struct want *w, size_t nw);

/* jnl_scan after `after` (asserts its rc); malloc'ed. */
struct frames *scan_after(uint64_t after, int want_rc,
			  struct jnl_scan_report *rep);

/* The same scan without a callback (no look-ahead) agrees with r. */
void scan_nocb_agrees(uint64_t after, int want_rc,
		      const struct jnl_scan_report *r);

/* Every frame a cursor from `after` returns up to `upto`, until
   jnl_cursor_next returns want_rc; malloc'ed. */
struct frames *cursor_all(uint64_t after, uint64_t upto, int want_rc);

static const size_t len10[] = {10};
static const size_t len20[] = {20};

#endif
