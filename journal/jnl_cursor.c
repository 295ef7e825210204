/*
 * jnl_cursor.c - cursors that follow the journal while it is written (the
 * history writer's queue), without reading the segments again from the
 * start.
 *
 * A cursor keeps one segment open and the file offset of the next record.
 * It is only ever told to read records that are durable (`upto`), so it
 * never looks at a batch that jnl_append is still writing and could cut
 * off again after a failed fdatasync; bytes it read ahead while they were
 * not durable yet are read again before they are trusted. Before the
 * first frame of a multi-frame record it reads the rest ahead (verified,
 * not kept: jnl_big_rest), so that it never returns part of a record.
 *
 * Failpoints: "jnl.cursor.open", "jnl.cursor.read".
 */
#include "jnl_i.h"

#include "io.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct jnl_cursor {
	struct io *io;
	int dirfd;	     /* borrowed */
	int fd;		     /* segment seg_first, or -1: not opened yet */
	uint64_t seg_first;  /* 0: no segment chosen yet */
	uint64_t next;	     /* seq of the next frame in the segment */
	uint64_t off;	     /* its file offset (when fd >= 0) */
	uint64_t skip_below; /* frames below this are read but not returned */
	bool part;	     /* inside multi-frame record c->next: the frame
				at c->off continues it */

	/* b.p[0..len) holds the file bytes at boff, read while the records
	   up to buf_upto were durable: frames above that are read again. */
	struct jnl_rbuf b;
	uint64_t boff;
	size_t len;
	uint64_t buf_upto;
};

static void cursor_drop_segment(struct jnl_cursor *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
	c->boff = 0;
	c->part = false;
}

/*
 * Choose the segment that holds `want` (the newest one whose first seq is
 * not after it) or, if the journal starts after `want`, the oldest one.
 * It is opened lazily by cursor_open_segment, when a record in it is
 * known to be durable (a segment being created has no header yet).
 */
static int cursor_locate(struct jnl_cursor *c, uint64_t want)
{
	uint64_t *segs = NULL;
	size_t n = 0, i;
	int rc;

	cursor_drop_segment(c);
	c->skip_below = want;
	c->seg_first = 0;
	c->next = want;
	rc = jnl_seg_list(c->io, c->dirfd, &segs, &n);
	if (rc < 0)
		return rc;
	for (i = n; i > 0 && segs[i - 1] > want; i--)
		;
	if (n > 0) {
		c->seg_first = segs[i > 0 ? i - 1 : 0];
		c->next = c->seg_first;
	}
	free(segs);
	return 0;
}

static int cursor_open_segment(struct jnl_cursor *c)
{
	char name[JNL_SEG_NAME_LEN];
	uint8_t fh[JNL_FILE_HDR];
	ssize_t n;
	int fd;

	jnl_seg_name(name, c->seg_first);
	fd = io_openat(c->io, "jnl.cursor.open", c->dirfd, name,
		       O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0) {
		rlog_err("journal %s: open: %s", name, strerror(-fd));
		return fd;
	}
	n = io_pread_all(c->io, "jnl.cursor.read", fd, fh, sizeof(fh), 0);
	if (n != (ssize_t)sizeof(fh) || memcmp(fh, JNL_SEGMENT_MAGIC, 8) != 0 ||
	    rd_le64(fh + 8) != c->seg_first) {
		close(fd);
		if (n < 0) {
			rlog_err("journal %s: read: %s", name, strerror(-n));
			return (int)n;
		}
		rlog_err("journal %s: bad segment header", name);
		return -EBADMSG;
	}
	c->fd = fd;
	c->off = JNL_FILE_HDR;
	c->len = 0;
	c->boff = JNL_FILE_HDR;
	return 0;
}

/* Read at least `need` bytes (if the file has them) at c->off. */
static int cursor_fill(struct jnl_cursor *c, size_t need, uint64_t upto)
{
	ssize_t n;
	int rc;

	rc = jnl_rbuf_reserve(&c->b, need < JNL_READ_MIN ? JNL_READ_MIN : need);
	if (rc < 0)
		return rc;
	n = io_pread_all(c->io, "jnl.cursor.read", c->fd, c->b.p, c->b.cap,
			 (off_t)c->off);
	if (n < 0) {
		char name[JNL_SEG_NAME_LEN];

		jnl_seg_name(name, c->seg_first);
		rlog_err("journal %s: read at %" PRIu64 ": %s", name, c->off,
			 strerror((int)-n));
		return (int)n;
	}
	c->boff = c->off;
	c->len = (size_t)n;
	c->buf_upto = upto;
	return 0;
}

/*
 * Decode the frame at c->off. Returns its length (> 0), 0 if the segment
 * has no (valid) frame there, or -errno.
 */
static long cursor_frame(struct jnl_cursor *c, uint64_t upto, uint64_t *seq,
			 const uint8_t **payload, size_t *plen, bool *more)
{
	bool fresh = false;
	size_t need = JNL_FRAME_HDR;
	long fl;
	int rc;

	for (;;) {
		bool have = c->len && c->off >= c->boff &&
			    c->off + need <= c->boff + c->len &&
			    c->buf_upto >= c->next;

		if (!have) {
			if (fresh)
				return 0; /* the file ends before the frame */
			rc = cursor_fill(c, need, upto);
			if (rc < 0)
				return rc;
			fresh = true;
			continue;
		}
		fl = jnl_frame_decode_part(c->b.p + (c->off - c->boff),
					   c->boff + c->len - c->off, seq,
					   payload, plen, more, &need);
		if (fl != 0)
			return fl < 0 ? 0 : fl;
		if (fresh && need <= c->b.cap)
			return 0; /* the file ends inside the frame */
		fresh = false;
		c->len = 0; /* read again, with room for `need` */
	}
}

/* The frame at c->off is not there: go on in the segment that starts at
   c->next, or past a gap to the next one that exists. */
static int cursor_next_segment(struct jnl_cursor *c)
{
	uint64_t *segs = NULL, want = c->next;
	size_t n = 0, i;
	int rc;

	rc = jnl_seg_list(c->io, c->dirfd, &segs, &n);
	if (rc < 0)
		return rc;
	for (i = 0; i < n && segs[i] < want; i++)
		;
	if (i == n || segs[i] != want) {
		char name[JNL_SEG_NAME_LEN];

		jnl_seg_name(name, c->seg_first);
		rlog_err("journal %s: record %" PRIu64 " is durable but "
			 "neither at offset %" PRIu64
			 " nor in the next segment "
			 "(%s)",
			 name, want, c->off,
			 i == n ? "there is none" : "it starts later");
		free(segs);
		return -EBADMSG;
	}
	cursor_drop_segment(c);
	c->seg_first = want;
	c->next = want;
	free(segs);
	return 0;
}

int jnl_cursor_open(struct io *io, int dirfd, uint64_t after,
		    struct jnl_cursor **out)
{
	struct jnl_cursor *c;
	int rc;

	*out = NULL;
	if (after == UINT64_MAX)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->io = io;
	c->dirfd = dirfd;
	c->fd = -1;
	rc = cursor_locate(c, after + 1);
	if (rc < 0) {
		jnl_cursor_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/*
 * Take the valid frame of `fl` bytes at c->off, of seq `s`: it must be
 * record c->next (or continue it). Before the first frame of a
 * multi-frame record is returned, its last frame must be there: durable
 * records are whole. Returns 0 or -EBADMSG (logged) or -errno.
 */
static int cursor_take(struct jnl_cursor *c, long fl, uint64_t s, bool more)
{
	char name[JNL_SEG_NAME_LEN];
	uint64_t end;
	int rc = 0;

	jnl_seg_name(name, c->seg_first);
	if (s != c->next) {
		rlog_err("journal %s: record at offset %" PRIu64
			 " has seq %" PRIu64 ", expected %" PRIu64,
			 name, c->off, s, c->next);
		return -EBADMSG;
	}
	if (more && !c->part && s >= c->skip_below) {
		rc = jnl_big_rest(c->io, "jnl.cursor.read", c->fd,
				  c->off + (uint64_t)fl, UINT64_MAX, s, &end);
		if (rc == 0 || rc == -EBADMSG) {
			rlog_err("journal %s: record %" PRIu64
				 " at offset %" PRIu64 " is durable but its "
				 "frame at offset %" PRIu64 " is %s",
				 name, s, c->off, end,
				 rc ? "of another record" : "missing or bad");
			rc = -EBADMSG;
		}
		if (rc < 0)
			return rc;
	}
	c->part = more;
	c->off += (uint64_t)fl;
	if (!more)
		c->next++;
	return 0;
}

/* No frame at c->off: go on in the next segment, unless inside a
   multi-frame record (they never straddle segments). */
static int cursor_no_frame(struct jnl_cursor *c)
{
	char name[JNL_SEG_NAME_LEN];

	if (!c->part)
		return cursor_next_segment(c);
	jnl_seg_name(name, c->seg_first);
	rlog_err("journal %s: record %" PRIu64 " is durable but its frame at "
		 "offset %" PRIu64 " is missing or bad",
		 name, c->next, c->off);
	return -EBADMSG;
}

int jnl_cursor_next(struct jnl_cursor *c, uint64_t upto, uint64_t *seq,
		    const void **payload, size_t *len)
{
	const uint8_t *p;
	uint64_t s, lim;
	size_t plen;
	bool more;
	long fl;
	int rc;

	for (;;) {
		/* records the caller skips are older: durable too */
		lim = upto > c->skip_below - 1 ? upto : c->skip_below - 1;
		if (c->next > lim) {
			c->len = 0; /* what is past `upto` may still change */
			return 0;
		}
		if (c->seg_first == 0) {
			/* the journal had no segment: look again */
			rc = cursor_locate(c, c->next);
			if (rc < 0)
				return rc;
			if (c->seg_first == 0) {
				rlog_err("journal: record %" PRIu64
					 " is durable but no segment holds it",
					 c->next);
				return -EBADMSG;
			}
			continue;
		}
		if (c->fd < 0) {
			rc = cursor_open_segment(c);
			if (rc < 0)
				return rc;
		}
		fl = cursor_frame(c, lim, &s, &p, &plen, &more);
		if (fl < 0)
			return (int)fl;
		rc = fl == 0 ? cursor_no_frame(c) : cursor_take(c, fl, s, more);
		if (rc < 0)
			return rc;
		if (fl == 0 || s < c->skip_below)
			continue;
		*seq = s;
		*payload = p;
		*len = plen;
		return 1;
	}
}

uint64_t jnl_cursor_pos(const struct jnl_cursor *c)
{
	return c->next > c->skip_below ? c->next : c->skip_below;
}

int jnl_cursor_seek(struct jnl_cursor *c, uint64_t pos)
{
	if (pos == 0)
		return -EINVAL;
	return cursor_locate(c, pos);
}

void jnl_cursor_close(struct jnl_cursor *c)
{
	if (!c)
		return;
	cursor_drop_segment(c);
	free(c->b.p);
	free(c);
}
