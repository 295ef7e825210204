/*
 * jnl_read.c - reading the journal: the verifying segment walk that
 * recovery's jnl_scan and jnl_open use, and cursors that follow the
 * journal while it is written (the history writer's queue).
 *
 * A cursor keeps one segment open and the file offset of the next record.
 * It is only ever told to read records that are durable (`upto`), so it
 * never looks at a batch that jnl_append is still writing and could cut
 * off again after a failed fdatasync; bytes it read ahead while they were
 * not durable yet are read again before they are trusted.
 *
 * Failpoints: "jnl.scan.open", "jnl.scan.read" (scans and segment walks),
 * "jnl.cursor.open", "jnl.cursor.read" (cursors).
 */
#include "jnl_i.h"

#include "io.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void jnl_seg_name(char name[JNL_SEG_NAME_LEN], uint64_t first)
{
	snprintf(name, JNL_SEG_NAME_LEN, "%0*" PRIu64 ".log", JNL_SEG_DIGITS,
		 first);
}

/* Parse a segment file name; false for anything else. */
bool jnl_seg_parse(const char *name, uint64_t *first)
{
	uint64_t v = 0;
	unsigned d;

	if (strlen(name) != JNL_SEG_DIGITS + 4 ||
	    strcmp(name + JNL_SEG_DIGITS, ".log") != 0)
		return false;
	for (int i = 0; i < JNL_SEG_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		d = (unsigned)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*first = v;
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The first seqs of the segments in `dirfd`, sorted; *out is malloc'ed. */
int jnl_seg_list(struct io *io, int dirfd, uint64_t **out, size_t *count)
{
	uint64_t *v = NULL, *nv, first;
	size_t n = 0, cap = 0;
	DIR *dir = NULL;
	struct dirent *de;
	int fd = -1, rc = 0;

	fd = io_openat(io, "jnl.scan.open", dirfd, ".",
		       O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		rc = fd;
		fd = -1;
		goto out;
	}
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		goto out;
	}
	fd = -1; /* owned by dir */
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = -errno;
			break;
		}
		if (!jnl_seg_parse(de->d_name, &first))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n++] = first;
	}
	if (rc < 0)
		goto out;
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	*count = n;
	v = NULL;
out:
	if (rc < 0)
		rlog_err("journal: listing segments: %s", strerror(-rc));
	if (dir)
		closedir(dir);
	if (fd >= 0)
		close(fd);
	free(v);
	return rc;
}

int jnl_rbuf_reserve(struct jnl_rbuf *b, size_t want)
{
	size_t cap = b->cap ? b->cap : JNL_READ_MIN;
	uint8_t *np;

	if (want <= b->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	if (cap > JNL_READ_MAX)
		cap = JNL_READ_MAX;
	if (cap < want)
		return -EFBIG;
	np = realloc(b->p, cap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Does fd hold only zeros in [from, to)? (Read errors: no.) */
static bool zero_tail(int fd, uint64_t from, uint64_t to)
{
	uint8_t buf[16384];

	while (from < to) {
		size_t want = to - from < sizeof(buf) ? (size_t)(to - from)
						      : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)from);

		if (n <= 0 || !all_zero(buf, (size_t)n))
			return false;
		from += (uint64_t)n;
	}
	return true;
}

/*
 * Read segment w->first and verify it: header, then frames of seqs
 * first, first+1, ... passing those above w->after to w->cb. Returns 0,
 * -EBADMSG (logged), -errno, or what the callback returned.
 */
int jnl_seg_walk(struct jnl_walk *w, struct jnl_rbuf *b)
{
	char name[JNL_SEG_NAME_LEN];
	uint8_t fh[JNL_FILE_HDR];
	const uint8_t *payload;
	struct stat st;
	uint64_t seq, boff, pos = 0;
	size_t start = 0, len = 0, plen, need, want;
	ssize_t n;
	bool torn_hdr;
	long fl;
	int fd = -1, rc = 0;

	jnl_seg_name(name, w->first);
	fd = io_openat(w->io, "jnl.scan.open", w->dirfd, name,
		       O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0) {
		rc = fd;
		fd = -1;
		rlog_err("journal %s: open: %s", name, strerror(-rc));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		rlog_err("journal %s: stat: %s", name, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EBADMSG;
		rlog_err("journal %s: not a regular file", name);
		goto out;
	}
	w->size = (uint64_t)st.st_size;

	n = 0;
	if (w->size >= JNL_FILE_HDR) {
		n = io_pread_all(w->io, "jnl.scan.read", fd, fh, JNL_FILE_HDR,
				 0);
		if (n < 0) {
			rc = (int)n;
			rlog_err("journal %s: read: %s", name, strerror(-rc));
			goto out;
		}
	}
	torn_hdr = n < JNL_FILE_HDR || all_zero(fh, JNL_FILE_HDR);
	if (torn_hdr && w->last)
		goto bad; /* a crash while the segment was being created */
	if (torn_hdr || memcmp(fh, JNL_SEGMENT_MAGIC, 8) != 0 ||
	    jnl_get_le64(fh + 8) != w->first) {
		rc = -EBADMSG;
		rlog_err("journal %s: bad segment header", name);
		goto out;
	}
	w->hdr_ok = true;
	pos = w->valid_end = JNL_FILE_HDR;

	rc = jnl_rbuf_reserve(b, JNL_READ_MIN);
	if (rc < 0)
		goto out;
	/* b->p[0..len) holds the file bytes at boff; parsing is at start. */
	boff = JNL_FILE_HDR;
	for (;;) {
		pos = boff + start;
		if (pos >= w->size)
			break;
		fl = jnl_frame_decode(b->p + start, len - start, &seq, &payload,
				      &plen, &need);
		if (fl < 0)
			goto bad;
		if (fl == 0) {
			/* need <= JNL_READ_MAX: decode checked the length. */
			if (need > w->size - pos)
				goto bad;
			memmove(b->p, b->p + start, len - start);
			len -= start;
			boff = pos;
			start = 0;
			rc = jnl_rbuf_reserve(b, need);
			if (rc < 0)
				goto out;
			want = b->cap - len;
			if (want > w->size - (boff + len))
				want = (size_t)(w->size - (boff + len));
			n = io_pread_all(w->io, "jnl.scan.read", fd, b->p + len,
					 want, (off_t)(boff + len));
			if (n < 0) {
				rc = (int)n;
				rlog_err("journal %s: read at %" PRIu64 ": %s",
					 name, boff + len, strerror(-rc));
				goto out;
			}
			len += (size_t)n;
			if (len < need) {
				w->size = boff + len; /* it shrank */
				goto bad;
			}
			continue;
		}
		if (seq != w->first + w->nrec) {
			rc = -EBADMSG;
			rlog_err("journal %s: record at offset %" PRIu64
				 " has seq %" PRIu64 ", expected %" PRIu64,
				 name, pos, seq, w->first + w->nrec);
			goto out;
		}
		w->nrec++;
		w->last_seq = seq;
		start += (size_t)fl;
		w->valid_end = pos + (uint64_t)fl;
		if (seq > w->after) {
			w->passed++;
			if (w->cb) {
				rc = w->cb(w->arg, seq, payload, plen);
				if (rc)
					goto out;
			}
		}
	}
	goto out;

bad:
	if (w->last) {
		/* zeros are what jnl.c writes ahead of the records */
		if (zero_tail(fd, pos, w->size)) {
			w->zeros = w->size - pos;
			rlog_debug("journal %s: %" PRIu64 " bytes of zeros "
				   "after the last record, at offset %" PRIu64,
				   name, w->zeros, pos);
		} else {
			w->torn = w->size - pos;
			rlog_warn("journal %s: torn tail at offset %" PRIu64
				  ", ignoring %" PRIu64 " bytes",
				  name, pos, w->torn);
		}
		rc = 0;
	} else {
		rc = -EBADMSG;
		rlog_err(
			"journal %s: bad or truncated record at offset %" PRIu64
			" (not the last segment)",
			name, pos);
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int jnl_scan(struct io *io, int dirfd, uint64_t after, jnl_scan_cb cb,
	     void *arg, struct jnl_scan_report *rep)
{
	struct jnl_scan_report r = {0};
	struct jnl_rbuf b = {0};
	uint64_t *segs = NULL, expect = 0;
	size_t n = 0;
	char name[JNL_SEG_NAME_LEN];
	int rc = 0;

	rc = jnl_seg_list(io, dirfd, &segs, &n);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct jnl_walk w = {
			.io = io,
			.dirfd = dirfd,
			.first = segs[i],
			.last = i + 1 == n,
			.after = after,
			.cb = cb,
			.arg = arg,
		};

		if (i > 0 && segs[i] != expect) {
			jnl_seg_name(name, segs[i]);
			rc = -EBADMSG;
			rlog_err("journal %s: starts at seq %" PRIu64
				 " but the previous segment ends at %" PRIu64,
				 name, segs[i], expect - 1);
			goto out;
		}
		rc = jnl_seg_walk(&w, &b);
		r.segments++;
		r.records += w.passed;
		if (w.nrec)
			r.last_seq = w.last_seq;
		r.torn_bytes += w.torn;
		r.zero_bytes += w.zeros;
		if (rc)
			goto out;
		expect = segs[i] + w.nrec;
	}
out:
	if (rep)
		*rep = r;
	free(b.p);
	free(segs);
	return rc;
}

/* ---- cursors ------------------------------------------------------------ */

struct jnl_cursor {
	struct io *io;
	int dirfd;	     /* borrowed */
	int fd;		     /* segment seg_first, or -1: not opened yet */
	uint64_t seg_first;  /* 0: no segment chosen yet */
	uint64_t next;	     /* seq of the next frame in the segment */
	uint64_t off;	     /* its file offset (when fd >= 0) */
	uint64_t skip_below; /* frames below this are read but not returned */

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
	    jnl_get_le64(fh + 8) != c->seg_first) {
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
			 const uint8_t **payload, size_t *plen)
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
		fl = jnl_frame_decode(c->b.p + (c->off - c->boff),
				      c->boff + c->len - c->off, seq, payload,
				      plen, &need);
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

int jnl_cursor_next(struct jnl_cursor *c, uint64_t upto, uint64_t *seq,
		    const void **payload, size_t *len)
{
	const uint8_t *p;
	uint64_t s, lim;
	size_t plen;
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
		fl = cursor_frame(c, lim, &s, &p, &plen);
		if (fl < 0)
			return (int)fl;
		if (fl == 0) {
			rc = cursor_next_segment(c);
			if (rc < 0)
				return rc;
			continue;
		}
		if (s != c->next) {
			char name[JNL_SEG_NAME_LEN];

			jnl_seg_name(name, c->seg_first);
			rlog_err("journal %s: record at offset %" PRIu64
				 " has seq %" PRIu64 ", expected %" PRIu64,
				 name, c->off, s, c->next);
			return -EBADMSG;
		}
		c->off += (uint64_t)fl;
		c->next++;
		if (s < c->skip_below)
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
