/*
 * history_bspool.c - what a batch holds per version, out of memory: a
 * spool of records (the versions in batch order, the tree's changes in
 * sorted runs) held in a buffer of about hist_spool_mem bytes and spilled
 * to an unlinked file in the repository when it grows past that, and the
 * sort of a batch's tree changes by path in runs of about hist_sort_run
 * bytes, merged as they are read back. A batch of a million versions so
 * holds a few megabytes, not some 300 bytes a version; one of a few
 * versions never touches the file.
 *
 * Records are raw structs of this process (the file is its own and
 * gone at close): a 4-byte length, then the bytes.
 */
#include "hist_i.h"
#include "io.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BSP_READ_CHUNK ((size_t)256 << 10)

size_t hist_spool_mem = (size_t)1 << 20;
size_t hist_sort_run = (size_t)4 << 20;

void bsp_init(struct bspool *s, struct hist *h)
{
	memset(s, 0, sizeof(*s));
	s->h = h;
	s->fd = -1;
}

void bsp_free(struct bspool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	buf_free(&s->mem);
	bsp_init(s, s->h);
}

uint64_t bsp_end(const struct bspool *s)
{
	return s->flen + s->mem.len;
}

/* The spill file: unlinked, in the repository (its disk). */
static int spill_open(struct bspool *s)
{
	char name[64];
	int fd;

	fd = openat(s->h->repo_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -errno;
	/* no O_TMPFILE there: a named file, removed at once */
	snprintf(name, sizeof(name), "recfs-spool.%ld", (long)getpid());
	fd = io_openat(s->h->o.io, "hist.spool", s->h->repo_fd, name,
		       O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		unlinkat(s->h->repo_fd, name, 0);
	return fd;
}

/* Write what the buffer holds to the file. */
static int spill(struct bspool *s)
{
	ssize_t n;

	if (s->fd < 0) {
		int fd = spill_open(s);

		if (fd < 0)
			return fd;
		s->fd = fd;
	}
	n = io_pwrite_all(s->h->o.io, "hist.spool", s->fd, s->mem.ptr,
			  s->mem.len, (off_t)s->flen);
	if (n < 0)
		return (int)n;
	s->flen += s->mem.len;
	buf_clear(&s->mem);
	return 0;
}

int bsp_put(struct bspool *s, const void *a, size_t alen, const void *b,
	    size_t blen)
{
	int rc;

	if (alen + blen > UINT32_MAX)
		return -EINVAL;
	/* spilled before it would grow past the limit: its buffer (which
	   doubles) stays within it */
	if (s->mem.len && s->mem.len + 4 + alen + blen >= hist_spool_mem &&
	    (rc = spill(s)) != 0)
		return rc;
	buf_put_le32(&s->mem, (uint32_t)(alen + blen));
	buf_put(&s->mem, a, alen);
	if (blen)
		buf_put(&s->mem, b, blen);
	if (s->mem.err)
		return s->mem.err;
	s->n++;
	return 0;
}

void bsp_reader_init(struct bsp_reader *r, const struct bspool *s,
		     uint64_t start, uint64_t end)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->off = start;
	r->end = end;
}

void bsp_reader_free(struct bsp_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Bytes [off, off + n) of the file, in r->buf; returns them or NULL
   (*rc). */
static const uint8_t *file_bytes(struct bsp_reader *r, uint64_t off, size_t n,
				 int *rc)
{
	size_t want = n > BSP_READ_CHUNK ? n : BSP_READ_CHUNK;
	ssize_t got;

	if (r->buf && off >= r->at && off + n <= r->at + r->len)
		return r->buf + (off - r->at);
	if (want > r->cap) {
		uint8_t *p = realloc(r->buf, want);

		if (!p) {
			*rc = -ENOMEM;
			return NULL;
		}
		r->buf = p;
		r->cap = want;
	}
	if (off + want > r->s->flen)
		want = (size_t)(r->s->flen - off);
	got = io_pread_all(r->s->h->o.io, "hist.spool", r->s->fd, r->buf, want,
			   (off_t)off);
	if (got < 0 || (size_t)got < n) {
		*rc = got < 0 ? (int)got : -EIO;
		return NULL;
	}
	r->at = off;
	r->len = (size_t)got;
	return r->buf;
}

/* The `n` bytes at `off`: in the buffer or read from the file. */
static const uint8_t *bytes_at(struct bsp_reader *r, uint64_t off, size_t n,
			       int *rc)
{
	if (off >= r->s->flen) {
		if (off - r->s->flen + n > r->s->mem.len) {
			*rc = -EIO;
			return NULL;
		}
		return (const uint8_t *)r->s->mem.ptr + (off - r->s->flen);
	}
	return file_bytes(r, off, n, rc);
}

int bsp_next(struct bsp_reader *r, const uint8_t **rec, size_t *len)
{
	const uint8_t *p;
	int rc = 0;

	if (r->off >= r->end)
		return 0;
	p = bytes_at(r, r->off, 4, &rc);
	if (!p)
		return rc;
	*len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 |
	       (size_t)p[3] << 24;
	p = bytes_at(r, r->off, 4 + *len, &rc);
	if (!p)
		return rc;
	*rec = p + 4;
	r->off += 4 + *len;
	return 1;
}

/* ---- the sort of a batch's tree changes ---------------------------------- */

void bsort_init(struct bsort *s, struct hist *h)
{
	memset(s, 0, sizeof(*s));
	bsp_init(&s->out, h);
}

void bsort_free(struct bsort *s)
{
	buf_free(&s->run);
	free(s->offs);
	free(s->runs);
	bsp_free(&s->out);
	memset(s, 0, sizeof(*s));
}

/* A record of the run: its struct bop (path not set), then the path
   and a NUL. */
static void rec_op(const uint8_t *p, struct bop *op)
{
	memcpy(op, p, sizeof(*op));
	op->path = (const char *)p + sizeof(*op);
}

static int cmp_rec(const uint8_t *a, const uint8_t *b)
{
	struct bop x, y;
	int c;

	rec_op(a, &x);
	rec_op(b, &y);
	c = strcmp(x.path, y.path);
	if (c)
		return c;
	return x.order < y.order ? -1 : x.order > y.order;
}

static int cmp_off(const void *a, const void *b, void *base)
{
	return cmp_rec((const uint8_t *)base + *(const size_t *)a,
		       (const uint8_t *)base + *(const size_t *)b);
}

static void run_sort(struct bsort *s)
{
	qsort_r(s->offs, s->n, sizeof(*s->offs), cmp_off, s->run.ptr);
}

/* The run in memory, sorted, appended to `out` as one more run. */
static int run_flush(struct bsort *s)
{
	uint64_t *p;
	int rc = 0;

	if (!s->n)
		return 0;
	p = util_grow(s->runs, &s->runs_cap, s->nruns, sizeof(*p), 8);
	if (!p)
		return -ENOMEM;
	s->runs = p;
	s->runs[s->nruns++] = bsp_end(&s->out);
	run_sort(s);
	for (size_t i = 0; rc == 0 && i < s->n; i++) {
		const uint8_t *r = (const uint8_t *)s->run.ptr + s->offs[i];
		struct bop op;

		rec_op(r, &op);
		rc = bsp_put(&s->out, r, sizeof(op) + strlen(op.path) + 1, NULL,
			     0);
	}
	buf_clear(&s->run);
	s->n = 0;
	return rc;
}

int bsort_add(struct bsort *s, const struct bop *op)
{
	size_t *p, at = s->run.len;
	struct bop raw = *op;

	/* flushed before it would grow past the limit (see bsp_put) */
	if (s->run.len &&
	    s->run.len + sizeof(raw) + strlen(op->path) + 1 >= hist_sort_run) {
		int rc = run_flush(s);

		if (rc)
			return rc;
		at = 0;
	}
	p = util_grow(s->offs, &s->cap, s->n, sizeof(*p), 1024);
	if (!p)
		return -ENOMEM;
	s->offs = p;
	raw.path = NULL;
	buf_put(&s->run, &raw, sizeof(raw));
	buf_put(&s->run, op->path, strlen(op->path) + 1);
	if (s->run.err)
		return s->run.err;
	s->offs[s->n++] = at;
	return 0;
}

/* Merge the runs: each step the least head of them all. */
static int merge(struct bsort *s, int (*fn)(void *arg, const struct bop *op),
		 void *arg)
{
	struct bsp_reader *rd = calloc(s->nruns, sizeof(*rd));
	const uint8_t **head = calloc(s->nruns, sizeof(*head));
	int rc = rd && head ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < s->nruns; i++) {
		size_t len;

		bsp_reader_init(&rd[i], &s->out, s->runs[i],
				i + 1 < s->nruns ? s->runs[i + 1]
						 : bsp_end(&s->out));
		rc = bsp_next(&rd[i], &head[i], &len);
		rc = rc < 0 ? rc : 0;
	}
	while (rc == 0) {
		size_t best = s->nruns, len;
		struct bop op;

		for (size_t i = 0; i < s->nruns; i++)
			if (head[i] && (best == s->nruns ||
					cmp_rec(head[i], head[best]) < 0))
				best = i;
		if (best == s->nruns)
			break;
		rec_op(head[best], &op);
		rc = fn(arg, &op);
		if (rc == 0) {
			/* the record stays valid until this reader reads
			   on: the callback is done with it */
			rc = bsp_next(&rd[best], &head[best], &len);
			if (rc == 0)
				head[best] = NULL;
			rc = rc < 0 ? rc : 0;
		}
	}
	for (size_t i = 0; rd && i < s->nruns; i++)
		bsp_reader_free(&rd[i]);
	free(rd);
	free(head);
	return rc;
}

int bsort_each(struct bsort *s, int (*fn)(void *arg, const struct bop *op),
	       void *arg)
{
	int rc = 0;

	if (s->nruns == 0) {
		/* all in memory: no file */
		run_sort(s);
		for (size_t i = 0; rc == 0 && i < s->n; i++) {
			struct bop op;

			rec_op((const uint8_t *)s->run.ptr + s->offs[i], &op);
			rc = fn(arg, &op);
		}
		return rc;
	}
	rc = run_flush(s);
	return rc ? rc : merge(s, fn, arg);
}

/* ---- a batch's versions -------------------------------------------------- */

/* A version as spooled: this, then the ID, the path (if it is not the
   ID), the other ID and the stage. */
struct bver_hdr {
	struct hent e;
	uint16_t id_len, path_len, other_len; /* path_len 0: the ID */
	uint8_t stage_len;
	uint8_t flags;
};

enum { BV_STAGE = 1, BV_FROM = 2, BV_TO = 4 };

int bver_put(struct bspool *s, struct buf *enc, const struct bver *v)
{
	struct bver_hdr hd = {.e = v->m.e};
	size_t plen = strlen(v->path),
	       slen = v->has_stage ? strlen(v->stage) : 0;
	const char *other = v->m.from ? v->m.from : v->m.to;
	size_t olen = v->m.from ? v->m.from_len : v->m.to_len;

	if (slen > HIST_STAGE_MAX)
		return -ENAMETOOLONG;
	hd.id_len = (uint16_t)v->m.id_len;
	hd.path_len = plen == v->m.id_len && !memcmp(v->path, v->id, plen)
			      ? 0
			      : (uint16_t)plen;
	hd.other_len = other ? (uint16_t)olen : 0;
	hd.stage_len = (uint8_t)slen;
	hd.flags = (v->has_stage ? BV_STAGE : 0) | (v->m.from ? BV_FROM : 0) |
		   (v->m.to ? BV_TO : 0);
	buf_clear(enc);
	buf_put(enc, &hd, sizeof(hd));
	buf_put(enc, v->id, v->m.id_len);
	buf_put(enc, v->path, hd.path_len);
	buf_put(enc, other, hd.other_len);
	buf_put(enc, v->stage, slen);
	return enc->err ? enc->err : bsp_put(s, enc->ptr, enc->len, NULL, 0);
}

int bver_get(const uint8_t *rec, size_t len, struct bver *v)
{
	struct bver_hdr hd;
	const char *p = (const char *)rec + sizeof(hd);

	if (len < sizeof(hd))
		return -EIO;
	memcpy(&hd, rec, sizeof(hd));
	if (len != sizeof(hd) + hd.id_len + hd.path_len + hd.other_len +
			    hd.stage_len ||
	    hd.id_len > ID_MAX_LEN || hd.other_len > ID_MAX_LEN ||
	    hd.path_len > HIST_PATH_MAX)
		return -EIO;
	memset(&v->m, 0, sizeof(v->m));
	v->m.e = hd.e;
	memcpy(v->id, p, hd.id_len);
	v->id[hd.id_len] = '\0';
	p += hd.id_len;
	if (hd.path_len)
		memcpy(v->path, p, hd.path_len);
	else
		memcpy(v->path, v->id, hd.id_len);
	v->path[hd.path_len ? hd.path_len : hd.id_len] = '\0';
	p += hd.path_len;
	memcpy(v->other, p, hd.other_len);
	v->other[hd.other_len] = '\0';
	p += hd.other_len;
	memcpy(v->stage, p, hd.stage_len);
	v->stage[hd.stage_len] = '\0';
	v->has_stage = hd.flags & BV_STAGE;
	v->m.id = v->id;
	v->m.id_len = hd.id_len;
	if (hd.flags & BV_FROM) {
		v->m.from = v->other;
		v->m.from_len = hd.other_len;
	} else if (hd.flags & BV_TO) {
		v->m.to = v->other;
		v->m.to_len = hd.other_len;
	}
	return 0;
}

bool bver_match(const uint8_t *rec, size_t len, const char *id, size_t id_len,
		uint64_t version, git_oid *blob)
{
	struct bver_hdr hd;

	if (len < sizeof(hd))
		return false;
	memcpy(&hd, rec, sizeof(hd));
	if (hd.id_len != id_len || hd.e.version != version ||
	    (hd.e.flags & (HENT_DELETED | HENT_MISSING)) ||
	    len < sizeof(hd) + id_len || memcmp(rec + sizeof(hd), id, id_len))
		return false;
	*blob = hd.e.blob;
	return true;
}
