/*
 * history_vdx.c - STORE/history.vdx: per record, its versions in
 * history.idx reachable in O(log n) reads, so that an old version of a
 * record with many versions is found without a walk over its newer ones
 * (history.idx chains each entry to the one before only).
 *
 * One fixed-size entry per history.idx entry, in the same (file) order:
 * entry i (its ordinal) describes entry i of history.idx. After a 16-byte
 * header ("RECFSV01", u64 0), entries of VDX_ENT bytes (LE):
 *	u64 off      the history.idx entry's offset
 *	u64 ver      its version << 1 | 1 for a delete
 *	u64 parent   ordinal + 1 of the record's entry before it (0: none)
 *	u64 jump     ordinal + 1 of an older entry of the record (0: none)
 *	u32 depth    1 for a record's first entry, parent's + 1
 *	u32 jdepth   the jump target's depth
 *	u32 idh      hrec.hv of the record (a check)
 *	u32 sum      XXH32 of the 44 bytes before, seeded with the ordinal
 * The jumps are Myers' (1983) skew-binary ones: an entry jumps to its
 * parent's jump's jump when the two jumps before span the same depth,
 * else to its parent. Versions only decrease down a record's entries, so
 * the newest entry at or below a version is found from the newest in
 * O(log n) steps (jump while the target is still newer than wanted, else
 * step to the parent).
 *
 * Like history.idx, the file is appended (after history.idx, with each
 * frame) and never fsynced. At open each entry is checked as history.idx
 * is read (sum, offset, version, parent, record): from the first that
 * does not check (a torn tail, a file written by an older build, or none
 * at all) the rest is computed again and written, and what lies past the
 * last entry of history.idx is cut. A lookup checks that a record's
 * newest entry here is its newest in history.idx; if it is not, or an
 * entry does not read back, it walks history.idx's chain as before.
 */
#include "hist_i.h"
#include "bytes.h"
#include "io.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define VDX_MAGIC "RECFSV01"
#define VDX_HDR 16
#define VDX_ENT 48
#define VDX_BUF 4096 /* entries read or written at a time */

/* One entry as decoded. */
struct vent {
	uint64_t off, ver, parent, jump;
	uint32_t depth, jdepth, idh;
};

static uint64_t ent_pos(uint64_t ord)
{
	return VDX_HDR + ord * VDX_ENT;
}

static void ent_encode(uint8_t *p, uint64_t ord, const struct vent *e)
{
	wr_le64(p, e->off);
	wr_le64(p + 8, e->ver);
	wr_le64(p + 16, e->parent);
	wr_le64(p + 24, e->jump);
	wr_le32(p + 32, e->depth);
	wr_le32(p + 36, e->jdepth);
	wr_le32(p + 40, e->idh);
	wr_le32(p + 44, XXH32(p, 44, (XXH32_hash_t)ord));
}

/* false: not the entry `ord` (torn, or of another file). */
static bool ent_decode(const uint8_t *p, uint64_t ord, struct vent *e)
{
	e->off = rd_le64(p);
	e->ver = rd_le64(p + 8);
	e->parent = rd_le64(p + 16);
	e->jump = rd_le64(p + 24);
	e->depth = rd_le32(p + 32);
	e->jdepth = rd_le32(p + 36);
	e->idh = rd_le32(p + 40);
	return rd_le32(p + 44) == XXH32(p, 44, (XXH32_hash_t)ord) &&
	       e->parent <= ord && e->jump <= ord && e->depth >= 1 &&
	       e->jdepth < e->depth && (e->jump == 0) == (e->jdepth == 0);
}

/* Entry `ord` (< h->vdx.n: published) from the file. 0 or -EIO (not
   logged: the callers fall back or log). Any thread. */
static int ent_read(struct hist *h, uint64_t ord, struct vent *e)
{
	uint8_t b[VDX_ENT];
	ssize_t n;

	n = io_pread_all(h->o.io, "hist.vdx.read", h->vdx.fd, b, VDX_ENT,
			 (off_t)ent_pos(ord));
	return n == VDX_ENT && ent_decode(b, ord, e) ? 0 : -EIO;
}

/* Entry `ord`, also one in wbuf not written yet. The writer only (or
   hist_open). */
static int ent_get(struct hist *h, uint64_t ord, struct vent *e)
{
	struct hvdx *v = &h->vdx;

	if (ord >= v->wbuf_at && ord < v->wbuf_at + v->wbuf_n)
		return ent_decode(v->wbuf + (ord - v->wbuf_at) * VDX_ENT, ord,
				  e)
			       ? 0
			       : -EIO;
	return ent_read(h, ord, e);
}

/* ---- writing ------------------------------------------------------------ */

/* Write what wbuf holds. 0, or -errno: then nothing more is appended
   (the records' newest entries here fall behind: lookups walk). */
static int vdx_flush(struct hist *h)
{
	struct hvdx *v = &h->vdx;
	ssize_t n;

	if (v->wbuf_n == 0)
		return 0;
	n = io_pwrite_all(h->o.io, "hist.vdx.write", v->fd, v->wbuf,
			  v->wbuf_n * VDX_ENT, (off_t)ent_pos(v->wbuf_at));
	if (n < 0) {
		/* logged: lookups of old versions walk history.idx again */
		rlog_warn("%s: cannot append to history.vdx (%s); old versions "
			  "are found by a walk until the next open",
			  h->idx_path, strerror((int)-n));
		v->writable = false;
		v->wbuf_n = 0;
		return (int)n;
	}
	v->wbuf_at += v->wbuf_n;
	v->wbuf_n = 0;
	return 0;
}

/* The entry after `parent` (ordinal + 1, 0: none) of a record, with
   version `ver` at history.idx offset `off`, into wbuf as entry
   wbuf_at + wbuf_n. Returns its ordinal + 1, or 0 (-errno in *err). */
static uint64_t vdx_put(struct hist *h, uint64_t parent, uint32_t idh,
			uint64_t off, uint64_t ver, int *err)
{
	struct hvdx *v = &h->vdx;
	struct vent e = {.off = off, .ver = ver, .parent = parent, .idh = idh};
	struct vent p, pj;
	uint64_t ord;

	if (v->wbuf_n == VDX_BUF && (*err = vdx_flush(h)) != 0)
		return 0;
	ord = v->wbuf_at + v->wbuf_n;
	e.depth = 1;
	if (parent) {
		if ((*err = ent_get(h, parent - 1, &p)) != 0)
			return 0;
		e.depth = p.depth + 1;
		e.jump = parent;
		e.jdepth = p.depth;
		if (p.jump && (*err = ent_get(h, p.jump - 1, &pj)) != 0)
			return 0;
		if (p.jump && pj.jump &&
		    p.depth - p.jdepth == pj.depth - pj.jdepth) {
			/* pj.jump's depth is pj.jdepth */
			e.jump = pj.jump;
			e.jdepth = pj.jdepth;
		}
	}
	ent_encode(v->wbuf + v->wbuf_n * VDX_ENT, ord, &e);
	v->wbuf_n++;
	return ord + 1;
}

/* The newest ordinal + 1 of each record of a frame so far (records of
   the frame as keys): an open-addressed table of 2^k slots. */
struct vmap {
	struct vslot {
		const struct hrec *r;
		uint64_t vlast;
	} * s;
	size_t mask;
};

static struct vslot *vmap_slot(struct vmap *m, const struct hrec *r)
{
	size_t i = (size_t)(XXH3_64bits(&r, sizeof(r)) & m->mask);

	while (m->s[i].r && m->s[i].r != r)
		i = (i + 1) & m->mask;
	return &m->s[i];
}

uint64_t *hvdx_frame(struct hist *h, const struct hframe *f)
{
	struct hvdx *v = &h->vdx;
	struct vmap m = {0};
	uint64_t *out = NULL;
	size_t cap = 16;
	int rc = 0;

	if (v->fd < 0 || !v->writable || f->npub == 0)
		return NULL;
	while (cap < 2 * f->npub)
		cap *= 2;
	m.s = calloc(cap, sizeof(*m.s));
	m.mask = cap - 1;
	out = malloc(f->npub * sizeof(*out));
	rc = m.s && out ? 0 : -ENOMEM;
	v->wbuf_at = v->n;
	for (size_t i = 0; rc == 0 && i < f->npub; i++) {
		const struct hrec *r = f->pub[i].r;
		const uint8_t *p =
			(const uint8_t *)f->b.ptr + (f->pub[i].off - f->at);
		struct vslot *sl = vmap_slot(&m, r);
		uint64_t ver = rd_le64(p + 12) << 1 | (p[20] & HENT_DELETED);

		if (!sl->r) {
			sl->r = r;
			sl->vlast = r->vlast; /* the writer's own: no lock */
		}
		sl->vlast =
			vdx_put(h, sl->vlast, r->hv, f->pub[i].off, ver, &rc);
		out[i] = sl->vlast;
	}
	if (rc == 0)
		rc = vdx_flush(h);
	free(m.s);
	if (rc) {
		v->writable = false;
		v->wbuf_n = 0;
		free(out);
		return NULL;
	}
	return out;
}

void hvdx_publish(struct hist *h, const struct hframe *f, const uint64_t *ords)
{
	if (!ords)
		return;
	for (size_t i = 0; i < f->npub; i++)
		f->pub[i].r->vlast = ords[i];
	h->vdx.n = h->vdx.wbuf_at;
}

/* ---- finding a version ------------------------------------------------- */

/*
 * The history.idx entry of version `version` (with content) of r, whose
 * newest entry is `last` there and `vlast` (ordinal + 1, < n: published)
 * here. Returns 0 (*at), -ENOENT, or 1: not known here (walk the chain).
 */
int hvdx_find(struct hist *h, const struct hrec *r, uint64_t last,
	      uint64_t vlast, uint64_t version, uint64_t *at)
{
	struct vent x, j;
	int rc;

	if (h->vdx.fd < 0 || vlast == 0)
		return 1;
	rc = ent_read(h, vlast - 1, &x);
	if (rc)
		goto walk;
	if (x.off != last || x.idh != r->hv)
		return 1; /* its newest entries were not written here */
	while (x.ver >> 1 > version) {
		if (x.jump) {
			rc = ent_read(h, x.jump - 1, &j);
			if (rc || j.idh != r->hv)
				goto walk;
			if (j.ver >> 1 > version) {
				x = j;
				continue;
			}
		}
		if (!x.parent)
			return -ENOENT;
		rc = ent_read(h, x.parent - 1, &x);
		if (rc || x.idh != r->hv)
			goto walk;
	}
	/* newest first: a delete repeats the version it deleted */
	while (x.ver >> 1 == version) {
		if (!(x.ver & 1)) {
			*at = x.off;
			return 0;
		}
		if (!x.parent)
			return -ENOENT;
		rc = ent_read(h, x.parent - 1, &x);
		if (rc || x.idh != r->hv)
			goto walk;
	}
	return -ENOENT;
walk:
	/* logged: a note, the lookup goes on (a walk) */
	rlog_warn("%s: history.vdx does not read back for record %s; "
		  "walking history.idx",
		  h->idx_path, r->id);
	return 1;
}

/* ---- opening: checked against history.idx, or built --------------------- */

/* Start the file afresh (header only). */
static int vdx_init_file(struct hist *h)
{
	uint8_t hdr[VDX_HDR] = VDX_MAGIC;
	int rc;
	ssize_t n;

	rc = io_ftruncate(h->o.io, "hist.vdx.write", h->vdx.fd, 0);
	if (rc == 0) {
		n = io_pwrite_all(h->o.io, "hist.vdx.write", h->vdx.fd, hdr,
				  sizeof(hdr), 0);
		rc = n < 0 ? (int)n : 0;
	}
	return rc;
}

void hvdx_close(struct hist *h)
{
	struct hvdx *v = &h->vdx;

	if (v->fd >= 0)
		close(v->fd);
	free(v->wbuf);
	free(v->rbuf);
	memset(v, 0, sizeof(*v));
	v->fd = -1;
}

void hvdx_reset(struct hist *h)
{
	struct hvdx *v = &h->vdx;
	int rc;

	v->n = v->file_n = v->wbuf_at = v->wbuf_n = v->rbuf_n = 0;
	v->checking = false;
	if (v->fd < 0 || !v->writable)
		return; /* nothing here is used: every vlast is 0 */
	rc = vdx_init_file(h);
	if (rc) { /* logged: lookups walk history.idx */
		rlog_warn("%s: cannot rewrite history.vdx: %s", h->idx_path,
			  strerror(-rc));
		v->writable = false;
	}
}

/* Open history.vdx (never fails: without it lookups walk). */
void hvdx_open(struct hist *h)
{
	struct hvdx *v = &h->vdx;
	uint8_t hdr[VDX_HDR];
	int flags = O_CLOEXEC | O_NOFOLLOW;
	struct stat st;
	ssize_t n;

	hvdx_close(h);
	flags |= h->o.read_only ? O_RDONLY : O_RDWR | O_CREAT;
	v->fd = io_openat(h->o.io, "hist.vdx.open", h->o.store_dirfd,
			  HIST_VDX_FILE, flags, 0600);
	v->wbuf = malloc(VDX_BUF * VDX_ENT);
	v->rbuf = malloc(VDX_BUF * VDX_ENT);
	if (v->fd < 0 || !v->wbuf || !v->rbuf || fstat(v->fd, &st) < 0 ||
	    !S_ISREG(st.st_mode)) {
		hvdx_close(h);
		return;
	}
	v->writable = !h->o.read_only;
	v->checking = true;
	n = io_pread_all(h->o.io, "hist.vdx.read", v->fd, hdr, VDX_HDR, 0);
	if (n == VDX_HDR && memcmp(hdr, VDX_MAGIC, 8) == 0) {
		v->file_n = ((uint64_t)st.st_size - VDX_HDR) / VDX_ENT;
		return;
	}
	v->checking = false;
	if (!v->writable || vdx_init_file(h) != 0)
		hvdx_close(h);
}

/* Entry `ord` of the file as read in order at open, into *e. */
static bool load_get(struct hist *h, uint64_t ord, struct vent *e)
{
	struct hvdx *v = &h->vdx;
	ssize_t n;

	if (ord < v->rbuf_at || ord >= v->rbuf_at + v->rbuf_n) {
		uint64_t k =
			v->file_n - ord < VDX_BUF ? v->file_n - ord : VDX_BUF;

		v->rbuf_at = ord;
		v->rbuf_n = 0;
		n = io_pread_all(h->o.io, "hist.vdx.read", v->fd, v->rbuf,
				 k * VDX_ENT, (off_t)ent_pos(ord));
		if (n < 0)
			return false;
		v->rbuf_n = (uint64_t)n / VDX_ENT;
		if (v->rbuf_n == 0)
			return false;
	}
	return ent_decode(v->rbuf + (ord - v->rbuf_at) * VDX_ENT, ord, e);
}

void hvdx_load_ent(struct hist *h, struct hrec *r, uint64_t off,
		   uint64_t version, uint8_t flags)
{
	struct hvdx *v = &h->vdx;
	uint64_t ord = h->ix.disk_versions;
	uint64_t ver = version << 1 | (flags & HENT_DELETED);
	struct vent e;
	int rc = 0;

	if (v->fd < 0)
		return;
	if (v->checking && ord < v->file_n && load_get(h, ord, &e) &&
	    e.off == off && e.ver == ver && e.parent == r->vlast &&
	    e.idh == r->hv) {
		r->vlast = ord + 1;
		return;
	}
	if (v->checking) {	     /* the rest is built */
		if (ord < v->file_n) /* logged: a note, the open goes on */
			rlog_warn("%s: history.vdx does not match it from "
				  "entry %" PRIu64 " of %" PRIu64
				  "; rebuilding "
				  "the rest",
				  h->idx_path, ord, v->file_n);
		v->checking = false;
		v->file_n = ord;
		v->wbuf_at = ord;
		v->wbuf_n = 0;
	}
	r->vlast = v->writable ? vdx_put(h, r->vlast, r->hv, off, ver, &rc) : 0;
	if (rc) {
		v->writable = false;
		r->vlast = 0;
	}
}

void hvdx_load_end(struct hist *h)
{
	struct hvdx *v = &h->vdx;

	if (v->fd < 0)
		return;
	if (v->checking) {
		v->n = h->ix.disk_versions;
	} else {
		if (v->writable)
			(void)vdx_flush(h); /* a failure is logged */
		v->n = v->wbuf_at;	    /* checked, then written */
	}
	v->checking = false;
	v->rbuf_n = 0;
	if (v->writable && io_ftruncate(h->o.io, "hist.vdx.write", v->fd,
					(off_t)ent_pos(v->n)) != 0)
		v->writable = false;
}
