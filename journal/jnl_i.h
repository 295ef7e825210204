/*
 * jnl_i.h - what jnl.c (appending), jnl_big.c (multi-frame records),
 * jnl_frame.c (framing), jnl_read.c (scanning) and jnl_cursor.c share: the
 * journal's state, segment names, listing and the verifying segment walk
 * (the format is described in jnl.h; byte order: bytes.h). Not for use
 * outside journal/.
 */
#ifndef RECFS_JNL_I_H
#define RECFS_JNL_I_H

#include "bytes.h"
#include "jnl.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JNL_FRAME_MAGIC 0x31464a52u
#define JNL_SEG_NAME_LEN 32 /* "%020llu.log" is 24 + NUL */
#define JNL_SEG_DIGITS 20
#define JNL_READ_MIN ((size_t)256 << 10) /* first read buffer */
#define JNL_READ_MAX ((size_t)JNL_MAX_RECORD + JNL_FRAME_HDR)

struct jnl_waiter;

/* The journal being appended to (jnl.c, jnl_big.c). */
struct jnl {
	struct io *io;
	int dirfd;	    /* borrowed */
	int fd;		    /* current segment; changed only by jnl_rotate */
	uint64_t seg_first; /* its first seq; protected by lock */
	char seg_name[JNL_SEG_NAME_LEN];

	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* a batch is done, a sync or a multi-frame
				     record is over */
	struct jnl_waiter *head;  /* queued appends; protected by lock */
	struct jnl_waiter **tail; /* protected by lock */
	bool flushing;		  /* a leader is writing; protected by lock */
	bool syncing;		  /* jnl_sync is in its fdatasync (batches
				     go on meanwhile); protected by lock */
	bool big;		  /* a multi-frame record holds the journal
				     (jnl_big.c); protected by lock */
	unsigned big_waiting;	  /* jnl_big_begin calls waiting for their
				     turn: no new batch starts meanwhile;
				     protected by lock */
	bool broken;		  /* protected by lock */
	uint64_t last_seq;	  /* last durable record; protected by lock */
	uint64_t written_seq;	  /* last record written (>= last_seq: the
				     ones after last_seq are written but not
				     fdatasync'ed yet, see jnl_append_nosync);
				     protected by lock */
	uint64_t end;		  /* bytes in the segment; protected by lock */
	uint64_t zero_end;	  /* [end, zero_end) of the segment holds
				     zeros written by an earlier batch (see
				     jnl.c); leader (or the holder of a
				     multi-frame record), or lock when none */

	/* Scratch of the current leader (whoever set `flushing`). */
	uint8_t (*hdrs)[JNL_FRAME_HDR];
	size_t hdrs_cap;
	struct iovec *iovs;
	size_t iovs_cap;
};

/*
 * After records that end at `end`: if fewer than JNL_PREALLOC zeros follow
 * them, write more, for the next fdatasync to make durable too (jnl.c).
 * Leader, or the holder of a multi-frame record, only.
 */
void jnl_zero_ahead(struct jnl *j, uint64_t end);

/*
 * Cut what was written from `base` on off the current segment again,
 * durably (ftruncate at `trunc_point`, fdatasync at `sync_point`), so that
 * nothing of a failed or dropped write comes back at recovery and its
 * seqs can be used again. Leader, or the holder of a multi-frame record,
 * only. Returns 0, or -errno (logged): then the journal is to be marked
 * broken by the caller.
 */
int jnl_seg_undo(struct jnl *j, uint64_t base, const char *trunc_point,
		 const char *sync_point);

/*
 * The look-ahead of readers: do the frames from `off` of fd on (up to
 * `limit`, the size known) continue multi-frame record `seq` up to its
 * last frame? Each is verified by reading it in pieces, payloads are not
 * kept. Returns 1 (*end: the offset after the last frame), 0 if they stop
 * before it (a frame that is torn, zeros or missing; *end: its offset),
 * -EBADMSG if a valid frame of another seq comes first (*end: its offset),
 * or -errno. Reads go through failpoint `point`.
 */
int jnl_big_rest(struct io *io, const char *point, int fd, uint64_t off,
		 uint64_t limit, uint64_t seq, uint64_t *end);

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
