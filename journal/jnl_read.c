/*
 * jnl_read.c - reading the journal: segment names and listing, and the
 * verifying segment walk that recovery's jnl_scan and jnl_open use.
 * Cursors, which follow the journal while it is written, are in
 * jnl_cursor.c.
 *
 * A multi-frame record (jnl.h) is passed on frame by frame, but only once
 * the walk has read ahead to its last frame (jnl_big_rest: verified, not
 * kept); without its last frame it is a torn tail in the last segment,
 * from its first frame on, and corruption anywhere else.
 *
 * Failpoints: "jnl.scan.open", "jnl.scan.read" (scans and segment walks).
 */
#include "jnl_i.h"

#include "io.h"
#include "err.h"
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
		rerr_set(rc, "journal: listing segments: %s", strerror(-rc));
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

/* The reading state of one segment walk (jnl_seg_walk). */
struct wstate {
	struct jnl_walk *w;
	struct jnl_rbuf *b;
	int fd;
	char name[JNL_SEG_NAME_LEN];
	uint64_t boff;	   /* file offset of b->p[0] */
	size_t start, len; /* parsing at b->p[start]; b->p[0..len) read */
	uint64_t pos;	   /* file offset of b->p[start] */
	uint64_t rec;	   /* offset of the first frame of the record */
	bool part;	   /* inside a multi-frame record (from rec) */
	bool checked;	   /* its last frame was found ahead: frames passed */
};

/* Open segment w->first, a regular file, and take its size. */
static int walk_open(struct wstate *ws)
{
	struct stat st;
	int rc;

	ws->fd = io_openat(ws->w->io, "jnl.scan.open", ws->w->dirfd, ws->name,
			   O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (ws->fd < 0) {
		rc = ws->fd;
		return rerr_set(rc, "journal %s: open: %s", ws->name,
				strerror(-rc));
	}
	if (fstat(ws->fd, &st) < 0) {
		rc = -errno;
		return rerr_set(rc, "journal %s: stat: %s", ws->name,
				strerror(-rc));
	}
	if (!S_ISREG(st.st_mode))
		return rerr_set(-EBADMSG, "journal %s: not a regular file",
				ws->name);
	ws->w->size = (uint64_t)st.st_size;
	return 0;
}

/* Read and check the segment header. Returns 0, 1 if it is torn (a crash
   while the last segment was being created), -EBADMSG or -errno. */
static int walk_header(struct wstate *ws)
{
	struct jnl_walk *w = ws->w;
	uint8_t fh[JNL_FILE_HDR];
	bool torn;
	ssize_t n = 0;

	if (w->size >= JNL_FILE_HDR) {
		n = io_pread_all(w->io, "jnl.scan.read", ws->fd, fh,
				 JNL_FILE_HDR, 0);
		if (n < 0)
			return rerr_set((int)n, "journal %s: read: %s",
					ws->name, strerror((int)-n));
	}
	torn = n < JNL_FILE_HDR || all_zero(fh, JNL_FILE_HDR);
	if (torn && w->last)
		return 1;
	if (torn || memcmp(fh, JNL_SEGMENT_MAGIC, 8) != 0 ||
	    rd_le64(fh + 8) != w->first)
		return rerr_set(-EBADMSG, "journal %s: bad segment header",
				ws->name);
	w->hdr_ok = true;
	w->valid_end = JNL_FILE_HDR;
	ws->boff = ws->pos = JNL_FILE_HDR;
	return 0;
}

/* Read at least `need` bytes at ws->pos. Returns 0, 1 if the file does
   not have them (the tail is bad), or -errno. */
static int walk_fill(struct wstate *ws, size_t need)
{
	struct jnl_walk *w = ws->w;
	struct jnl_rbuf *b = ws->b;
	size_t want;
	ssize_t n;
	int rc;

	/* need <= JNL_READ_MAX: decode checked the length. */
	if (need > w->size - ws->pos)
		return 1;
	memmove(b->p, b->p + ws->start, ws->len - ws->start);
	ws->len -= ws->start;
	ws->boff = ws->pos;
	ws->start = 0;
	rc = jnl_rbuf_reserve(b, need);
	if (rc < 0)
		return rc;
	want = b->cap - ws->len;
	if (want > w->size - (ws->boff + ws->len))
		want = (size_t)(w->size - (ws->boff + ws->len));
	n = io_pread_all(w->io, "jnl.scan.read", ws->fd, b->p + ws->len, want,
			 (off_t)(ws->boff + ws->len));
	if (n < 0)
		return rerr_set((int)n, "journal %s: read at %" PRIu64 ": %s",
				ws->name, ws->boff + ws->len,
				strerror((int)-n));
	ws->len += (size_t)n;
	if (ws->len < need) {
		w->size = ws->boff + ws->len; /* it shrank */
		return 1;
	}
	return 0;
}

/* Before the first frame of multi-frame record `seq` is passed on: is its
   last frame there? Sets *bad if not. Returns 0, -EBADMSG or -errno. */
static int walk_ahead(struct wstate *ws, uint64_t seq, long fl, bool *bad)
{
	uint64_t end;
	int rc;

	rc = jnl_big_rest(ws->w->io, "jnl.scan.read", ws->fd,
			  ws->pos + (uint64_t)fl, ws->w->size, seq, &end);
	if (rc == -EBADMSG)
		rerr_set(rc,
			 "journal %s: record %" PRIu64 " at offset %" PRIu64
			 " is cut short by another one at offset %" PRIu64,
			 ws->name, seq, ws->pos, end);
	*bad = rc == 0;
	ws->checked = rc == 1;
	return rc < 0 ? rc : 0;
}

/*
 * A valid frame of `fl` bytes at ws->pos: check its seq, account for it
 * and pass it on. Sets *bad if the tail is bad from the start of its
 * record. Returns 0, -EBADMSG, -errno, or what the callback returned.
 */
static int walk_frame(struct wstate *ws, long fl, uint64_t seq,
		      const uint8_t *payload, size_t plen, bool more, bool *bad)
{
	struct jnl_walk *w = ws->w;
	int rc;

	if (seq != w->first + w->nrec)
		return rerr_set(-EBADMSG,
				"journal %s: record at offset %" PRIu64
				" has seq %" PRIu64 ", expected %" PRIu64,
				ws->name, ws->pos, seq, w->first + w->nrec);
	if (!ws->part) {
		ws->rec = ws->pos;
		ws->checked = false;
		if (more && w->cb && seq > w->after) {
			ws->part = true;
			rc = walk_ahead(ws, seq, fl, bad);
			if (rc < 0 || *bad)
				return rc;
		}
	}
	ws->start += (size_t)fl;
	ws->part = more;
	if (more)
		return ws->checked ? w->cb(w->arg, seq, payload, plen) : 0;
	w->nrec++;
	w->last_seq = seq;
	w->valid_end = ws->pos + (uint64_t)fl;
	if (seq <= w->after)
		return 0;
	w->passed++;
	return w->cb ? w->cb(w->arg, seq, payload, plen) : 0;
}

/* The segment holds no (complete) records from `pos` on. */
static int walk_bad(struct wstate *ws, uint64_t pos)
{
	struct jnl_walk *w = ws->w;

	if (ws->part && ws->checked)
		return rerr_set(-EBADMSG,
				"journal %s: record %" PRIu64
				" at offset %" PRIu64
				" changed while it was read",
				ws->name, w->first + w->nrec, ws->rec);
	if (ws->part)
		pos = ws->rec; /* its last frame is missing: none of it */
	if (!w->last)
		return rerr_set(-EBADMSG,
				"journal %s: bad or truncated record at "
				"offset %" PRIu64 " (not the last segment)",
				ws->name, pos);
	/* zeros are what jnl.c writes ahead of the records */
	if (zero_tail(ws->fd, pos, w->size)) {
		w->zeros = w->size - pos;
		rlog_debug("journal %s: %" PRIu64 " bytes of zeros after the "
			   "last record, at offset %" PRIu64,
			   ws->name, w->zeros, pos);
	} else {
		w->torn = w->size - pos;
		/* logged: a note, the scan succeeds */
		rlog_warn("journal %s: torn tail at offset %" PRIu64
			  ", ignoring %" PRIu64 " bytes",
			  ws->name, pos, w->torn);
	}
	return 0;
}

/*
 * Read segment w->first and verify it: header, then frames of seqs
 * first, first+1, ... passing those above w->after to w->cb. Returns 0,
 * -EBADMSG (logged), -errno, or what the callback returned.
 */
int jnl_seg_walk(struct jnl_walk *w, struct jnl_rbuf *b)
{
	struct wstate ws = {.w = w, .b = b, .fd = -1};
	const uint8_t *payload;
	uint64_t seq;
	size_t plen, need;
	bool more, bad = false;
	long fl;
	int rc;

	jnl_seg_name(ws.name, w->first);
	rc = walk_open(&ws);
	if (rc == 0)
		rc = walk_header(&ws);
	if (rc == 0)
		rc = jnl_rbuf_reserve(b, JNL_READ_MIN);
	while (rc == 0 && !bad) {
		ws.pos = ws.boff + ws.start;
		if (ws.pos >= w->size) {
			bad = ws.part; /* it ends inside a record */
			break;
		}
		fl = jnl_frame_decode_part(b->p + ws.start, ws.len - ws.start,
					   &seq, &payload, &plen, &more, &need);
		if (fl < 0)
			bad = true;
		else if (fl == 0)
			rc = walk_fill(&ws, need);
		else
			rc = walk_frame(&ws, fl, seq, payload, plen, more,
					&bad);
		if (fl == 0 && rc == 1) {
			rc = 0;
			bad = true;
		}
	}
	if (rc == 1 && !w->hdr_ok) { /* a torn header */
		rc = 0;
		bad = true;
	}
	if (bad)
		rc = walk_bad(&ws, ws.pos);
	if (ws.fd >= 0)
		close(ws.fd);
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
			rc = rerr_set(-EBADMSG,
				      "journal %s: starts at seq %" PRIu64
				      " but the previous segment ends at "
				      "%" PRIu64,
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
