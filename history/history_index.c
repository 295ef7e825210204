/*
 * history_index.c - the index of the history: (ID, version) -> commit,
 * blob and metadata, kept in STORE/history.idx and served from it.
 *
 * In memory, per record: the offset of its last entry in history.idx, so
 * the memory of the index grows with the number of records, not with the
 * history (the file does; a mounted store writes a version a millisecond
 * for days). Versions that could not be written to the file (read-only
 * opens, a full disk) are held in memory instead, as before: every
 * version in one array in revision order (in chunks, so that it never
 * moves), a commit table, and per record the positions of its versions.
 * Nothing is ever removed.
 *
 * On disk, history.idx: a 16-byte header ("RECFSH03", u64 0), then one
 * frame per git commit, framed and checksummed like journal records
 * (jnl_frame_encode, seq = the commit's Recfs-Upto). Payload (LE):
 *	u8 1, commit oid[20], u32 count, then per version (an entry):
 *	u64 prev, u32 back, u64 version, u8 flags, u16 id_len, id,
 *	u64 revision, u64 size, u64 time_ns, u32 uid, u32 pid, blob[20],
 *	hash[16], u8 comm_len, comm, u32 mode, u32 owner_uid, u32 owner_gid
 * (flags: HENT_*; mode and owner are the version's own, when HENT_META)
 * where `prev` is the offset in the file of the entry before it of the
 * same ID (0: none), so each record's entries form a chain from its last
 * one back, and `back` is the distance back to the start of its frame
 * (where the commit is). A lookup walks the chain from the newest entry:
 * reads of recent versions (CAS, attributes) take a few small reads; past
 * HIST_CHAIN_WALK entries the walk goes on through a slot in memory that
 * keeps what it read (history_read.c), so the old versions of a record
 * with many versions cost each entry one read, not one read per newer
 * version at every lookup.
 * The file is appended after each commit is durable and never fsynced: at
 * open it is read up to its last good frame (each entry's prev and back
 * checked against the chain built so far), and the commits after that one
 * are read back from git (their messages hold everything). A frame that
 * does not verify, a header of another format (RECFSH01, before the
 * chains; RECFSH02, before mode, owner and symlinks), or a last commit that is
 *not in the history of refs/heads/main makes us rebuild it from all commits; a
 *damaged file is reported by name, never trusted. Reading allocates one frame
 *at a time (at most JNL_MAX_RECORD).
 */
#include "hist_i.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define IDX_MAGIC "RECFSH03"
#define IDX_MAGIC_V1 "RECFSH01"
#define IDX_MAGIC_V2 "RECFSH02"
#define IDX_HDR 16
#define IDX_KIND_COMMIT 1
/* an entry: prev, back, version, flags, id_len, then the ID */
#define ENT_HEAD (8 + 4 + 8 + 1 + 2)
/* ... then revision, size, time, uid, pid, blob, hash, comm_len, comm,
   mode, owner uid, owner gid */
#define ENT_TAIL (8 + 8 + 8 + 4 + 4 + 20 + 16 + 1 + 16 + 4 + 4 + 4)
#define ENT_MAX (ENT_HEAD + ID_MAX_LEN + ENT_TAIL)
/* a frame's payload starts with the kind and the commit */
#define FRAME_COMMIT_AT (JNL_FRAME_HDR + 1)

/* ---- in memory --------------------------------------------------------- */

int hidx_init(struct hidx *x)
{
	memset(x, 0, sizeof(*x));
	x->nslots = 1024;
	x->slots = calloc(x->nslots, sizeof(*x->slots));
	return x->slots ? 0 : -ENOMEM;
}

void hidx_destroy(struct hidx *x)
{
	for (size_t i = 0; x->slots && i < x->nslots; i++) {
		struct hrec *r = x->slots[i];

		while (r) {
			struct hrec *next = r->next;

			free(r->pos);
			free(r);
			r = next;
		}
	}
	for (size_t i = 0; i < x->nchunks; i++)
		free(x->chunks[i]);
	free(x->chunks);
	free(x->slots);
	free(x->commits);
	memset(x, 0, sizeof(*x));
}

struct hent *hidx_at(const struct hidx *x, size_t i)
{
	return &x->chunks[i / HIDX_CHUNK][i % HIDX_CHUNK];
}

static int hidx_add_commit(struct hidx *x, const git_oid *oid, uint32_t *no)
{
	git_oid *v;

	if (x->ncommits >= UINT32_MAX)
		return -EOVERFLOW; /* commits are numbered in 32 bits */
	v = util_grow(x->commits, &x->commits_cap, x->ncommits, sizeof(*v),
		      256);
	if (!v)
		return -ENOMEM;
	x->commits = v;
	x->commits[x->ncommits] = *oid;
	*no = (uint32_t)x->ncommits++;
	return 0;
}

static uint32_t hash_id(const char *id, size_t len)
{
	return (uint32_t)XXH3_64bits(id, len);
}

struct hrec *hidx_rec(const struct hidx *x, const char *id, size_t id_len)
{
	uint32_t hv = hash_id(id, id_len);
	struct hrec *r = x->slots[hv & (x->nslots - 1)];

	for (; r; r = r->next)
		if (r->hv == hv && r->id_len == id_len &&
		    memcmp(r->id, id, id_len) == 0)
			return r;
	return NULL;
}

/* Double the table; on failure keep the old one (only slower). */
static void grow(struct hidx *x)
{
	size_t n = x->nslots * 2;
	struct hrec **s = calloc(n, sizeof(*s));

	if (!s)
		return;
	for (size_t i = 0; i < x->nslots; i++) {
		struct hrec *r = x->slots[i];

		while (r) {
			struct hrec *next = r->next;

			r->next = s[r->hv & (n - 1)];
			s[r->hv & (n - 1)] = r;
			r = next;
		}
	}
	free(x->slots);
	x->slots = s;
	x->nslots = n;
}

static struct hrec *rec_add(struct hidx *x, const char *id, size_t id_len)
{
	struct hrec *r = hidx_rec(x, id, id_len);

	if (r)
		return r;
	if (id_len > ID_MAX_LEN)
		return NULL;
	r = calloc(1, sizeof(*r) + id_len + 1);
	if (!r)
		return NULL;
	r->hv = hash_id(id, id_len);
	r->id_len = (uint16_t)id_len;
	memcpy(r->id, id, id_len);
	if (x->nrecs >= x->nslots)
		grow(x);
	r->next = x->slots[r->hv & (x->nslots - 1)];
	x->slots[r->hv & (x->nslots - 1)] = r;
	x->nrecs++;
	return r;
}

/* Hold a version of `id` in memory (e->rec is set here). */
static int hidx_add(struct hidx *x, const char *id, size_t id_len,
		    const struct hent *e)
{
	struct hrec *r;
	struct hent *slot;

	if (x->n >= UINT32_MAX)
		return -EOVERFLOW;
	r = rec_add(x, id, id_len);
	if (!r)
		return -ENOMEM;
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? 2 * r->cap : 4;
		uint32_t *p = realloc(r->pos, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->pos = p;
		r->cap = cap;
	}
	if (x->n % HIDX_CHUNK == 0) {
		size_t k = x->n / HIDX_CHUNK;
		struct hent **c = realloc(x->chunks, (k + 1) * sizeof(*c));

		if (!c)
			return -ENOMEM;
		x->chunks = c;
		c[k] = malloc(HIDX_CHUNK * sizeof(**c));
		if (!c[k])
			return -ENOMEM;
		x->nchunks = k + 1;
	}
	slot = hidx_at(x, x->n);
	*slot = *e;
	slot->rec = r;
	r->pos[r->n++] = (uint32_t)x->n++;
	return 0;
}

const struct hent *hidx_find(const struct hidx *x, const char *id,
			     size_t id_len, uint64_t version)
{
	const struct hrec *r = hidx_rec(x, id, id_len);
	uint32_t lo = 0, hi;

	if (!r)
		return NULL;
	/* versions of a record are in revision order, so by version too
	   (a delete repeats the version it deleted) */
	hi = r->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (hidx_at(x, r->pos[mid])->version < version)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < r->n; lo++) {
		const struct hent *e = hidx_at(x, r->pos[lo]);

		if (e->version != version)
			break;
		if (!(e->flags & HENT_DELETED))
			return e;
	}
	return NULL;
}

void hidx_export(const struct hidx *x, const struct hent *e, hist_version *out)
{
	memset(out, 0, sizeof(*out));
	out->version = e->version;
	out->revision = e->revision;
	git_oid_tostr(out->commit, sizeof(out->commit), &x->commits[e->commit]);
	if (!(e->flags & (HENT_DELETED | HENT_MISSING)))
		git_oid_tostr(out->blob, sizeof(out->blob), &e->blob);
	out->deleted = e->flags & HENT_DELETED;
	out->missing = e->flags & HENT_MISSING;
	out->pruned = e->flags & HENT_PRUNED;
	out->uid = e->uid;
	out->pid = e->pid;
	memcpy(out->comm, e->comm, sizeof(e->comm));
	out->time.tv_sec = (time_t)(e->time_ns / 1000000000);
	out->time.tv_nsec = (long)(e->time_ns % 1000000000);
	out->size = e->size;
	out->hash_valid = e->flags & HENT_HASH;
	memcpy(out->hash, e->hash, 16);
	out->symlink = e->flags & HENT_SYMLINK;
	out->meta_known = e->flags & HENT_META;
	if (out->meta_known) {
		out->mode = e->mode;
		out->owner_uid = e->ouid;
		out->owner_gid = e->ogid;
	}
}

/* ---- frames of history.idx --------------------------------------------- */

static void put_u(struct sbuf *b, uint64_t v, unsigned bytes)
{
	uint8_t p[8];

	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	sb_add(b, p, bytes);
}

/* A frame being built: payload after a JNL_FRAME_HDR gap, to be written
   at h->idx_end; per version, its record and where its entry goes. */
struct frame {
	struct sbuf b;
	size_t count_at;
	uint32_t count;
	uint64_t at;	 /* the file offset of b.p[0] */
	uint64_t serial; /* h->frame_serial */
	struct pub {
		struct hrec *r;
		uint64_t off;
	} * pub;
	size_t npub, cap;
};

static void frame_start(struct hist *h, struct frame *f, const git_oid *commit)
{
	static const uint8_t gap[JNL_FRAME_HDR];

	memset(f, 0, sizeof(*f));
	f->at = h->idx_end;
	f->serial = ++h->frame_serial;
	sb_add(&f->b, gap, sizeof(gap));
	put_u(&f->b, IDX_KIND_COMMIT, 1);
	sb_add(&f->b, commit->id, GIT_OID_RAWSZ);
	f->count_at = f->b.len;
	put_u(&f->b, 0, 4);
}

static void frame_free(struct frame *f)
{
	sb_free(&f->b);
	free(f->pub);
}

/*
 * Add a version to the frame, chained to the record's entry before it
 * (in this frame or in the file). Only the writer builds frames (and,
 * before it starts, hist_open): the records' stage fields are its own.
 */
static void frame_add(struct hist *h, struct frame *f, const struct hmsg_ver *v)
{
	const struct hent *e = &v->e;
	size_t comm = strnlen(e->comm, sizeof(e->comm));
	uint64_t off = f->at + f->b.len;
	struct hrec *r;
	struct pub *pub;

	pthread_rwlock_wrlock(&h->ix_lock);
	r = rec_add(&h->ix, v->id, v->id_len);
	pthread_rwlock_unlock(&h->ix_lock);
	if (!r || f->b.err) {
		f->b.err = f->b.err ? f->b.err : -ENOMEM;
		return;
	}
	pub = util_grow(f->pub, &f->cap, f->npub, sizeof(*pub), 64);
	if (!pub) {
		f->b.err = -ENOMEM;
		return;
	}
	f->pub = pub;
	put_u(&f->b, r->stage_serial == f->serial ? r->stage_last : r->last, 8);
	put_u(&f->b, off - f->at, 4);
	put_u(&f->b, e->version, 8);
	put_u(&f->b, e->flags, 1);
	put_u(&f->b, v->id_len, 2);
	sb_add(&f->b, v->id, v->id_len);
	put_u(&f->b, e->revision, 8);
	put_u(&f->b, e->size, 8);
	put_u(&f->b, (uint64_t)e->time_ns, 8);
	put_u(&f->b, e->uid, 4);
	put_u(&f->b, e->pid, 4);
	sb_add(&f->b, e->blob.id, GIT_OID_RAWSZ);
	sb_add(&f->b, e->hash, 16);
	put_u(&f->b, comm, 1);
	sb_add(&f->b, e->comm, comm);
	put_u(&f->b, e->mode, 4);
	put_u(&f->b, e->ouid, 4);
	put_u(&f->b, e->ogid, 4);
	r->stage_serial = f->serial;
	r->stage_last = off;
	f->pub[f->npub].r = r;
	f->pub[f->npub++].off = off;
	f->count++;
}

/* Append the frame to history.idx. Returns 0, or -errno: then the file
   is cut back to where it was and not written again (see the top). */
static int frame_write(struct hist *h, struct frame *f, uint64_t upto)
{
	struct iovec iov;
	size_t plen = f->b.len - JNL_FRAME_HDR;
	ssize_t n;
	int rc, trc;

	if (h->idx_fd < 0)
		return -EBADF;
	rc = f->b.err;
	if (rc == 0 && plen > JNL_MAX_RECORD)
		rc = -EFBIG;
	if (rc == 0) {
		uint8_t *p = (uint8_t *)f->b.p;

		iov.iov_base = p + JNL_FRAME_HDR;
		iov.iov_len = plen;
		jnl_frame_encode(p, upto, &iov, 1);
		n = io_pwrite_all(h->o.io, "hist.idx.write", h->idx_fd, p,
				  f->b.len, (off_t)h->idx_end);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc == 0) {
		h->idx_end += f->b.len;
		return 0;
	}
	rlog_warn("%s: cannot append (%s); the versions from here on are "
		  "held in memory, and the file is caught up from the git "
		  "history at the next open",
		  h->idx_path, strerror(-rc));
	trc = io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd,
			   (off_t)h->idx_end);
	if (trc)
		rlog_warn("%s: truncate: %s", h->idx_path, strerror(-trc));
	close(h->idx_fd);
	h->idx_fd = -1;
	return rc;
}

/* ---- reading history.idx ------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t rd_u(struct rd *r, unsigned bytes)
{
	const uint8_t *p = rd_take(r, bytes);
	uint64_t v = 0;

	for (unsigned i = 0; p && i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* One entry as decoded. */
struct ent {
	uint64_t prev;
	uint32_t back;
	const char *id;
	size_t id_len;
	struct hent e;
};

/* Decode an entry; false if it is not one. `upto`: the frame's. */
static bool ent_decode(struct rd *r, uint64_t upto, struct ent *out)
{
	struct hent *e = &out->e;
	const uint8_t *p;
	size_t comm;

	memset(out, 0, sizeof(*out));
	out->prev = rd_u(r, 8);
	out->back = (uint32_t)rd_u(r, 4);
	e->version = rd_u(r, 8);
	e->flags = (uint8_t)rd_u(r, 1);
	out->id_len = rd_u(r, 2);
	out->id = (const char *)rd_take(r, out->id_len);
	e->revision = rd_u(r, 8);
	e->size = rd_u(r, 8);
	e->time_ns = (int64_t)rd_u(r, 8);
	e->uid = (uint32_t)rd_u(r, 4);
	e->pid = (uint32_t)rd_u(r, 4);
	if ((p = rd_take(r, 20)))
		memcpy(e->blob.id, p, 20);
	if ((p = rd_take(r, 16)))
		memcpy(e->hash, p, 16);
	comm = rd_u(r, 1);
	if (comm > sizeof(e->comm) || !(p = rd_take(r, comm)))
		return false;
	memcpy(e->comm, p, comm);
	e->mode = (uint32_t)rd_u(r, 4);
	e->ouid = (uint32_t)rd_u(r, 4);
	e->ogid = (uint32_t)rd_u(r, 4);
	return !r->bad && out->id &&
	       id_parse(out->id, out->id_len, NULL) == 0 && e->version != 0 &&
	       e->revision != 0 && e->revision <= upto &&
	       (e->flags & ~HENT_ALL) == 0 && e->mode <= 07777;
}

/*
 * Decode one frame's payload (the frame starts at file offset `at`, its
 * payload at `at + JNL_FRAME_HDR`). As read from history.idx (mem false),
 * each entry must continue its record's chain, which it then extends;
 * as a frame that could not be written (mem true), its versions are held
 * in memory. Returns 0, -EBADMSG or -ENOMEM. Caller holds ix_lock (write).
 */
static int frame_load(struct hist *h, const uint8_t *payload, size_t len,
		      uint64_t at, uint64_t upto, bool mem, git_oid *commit)
{
	struct rd r = {payload, len, false};
	const uint8_t *p;
	uint32_t count, no = 0;
	int rc = 0;

	if (rd_u(&r, 1) != IDX_KIND_COMMIT || !(p = rd_take(&r, 20)))
		return -EBADMSG;
	memcpy(commit->id, p, GIT_OID_RAWSZ);
	count = (uint32_t)rd_u(&r, 4);
	if (r.bad)
		return -EBADMSG;
	if (mem)
		rc = hidx_add_commit(&h->ix, commit, &no);
	for (uint32_t i = 0; rc == 0 && i < count; i++) {
		uint64_t off = at + JNL_FRAME_HDR + (uint64_t)(r.p - payload);
		struct hrec *rec;
		struct ent en;

		if (!ent_decode(&r, upto, &en))
			return -EBADMSG;
		if (mem) {
			en.e.commit = no;
			rc = hidx_add(&h->ix, en.id, en.id_len, &en.e);
			continue;
		}
		rec = rec_add(&h->ix, en.id, en.id_len);
		if (!rec)
			return -ENOMEM;
		if (en.prev != rec->last || en.back != off - at)
			return -EBADMSG;
		rec->last = off;
		h->ix.disk_versions++;
	}
	if (rc == 0 && r.left != 0)
		rc = -EBADMSG;
	if (rc == 0)
		h->ix.upto = upto;
	return rc;
}

/*
 * Make a built frame's versions part of the index: written to
 * history.idx and found there, or held in memory if it cannot be
 * written. Returns 0 or -errno.
 */
static int frame_commit(struct hist *h, struct frame *f, uint64_t upto)
{
	git_oid commit;
	int rc;

	for (int i = 0; f->b.err == 0 && i < 4; i++)
		((uint8_t *)f->b.p)[f->count_at + (size_t)i] =
			(uint8_t)(f->count >> (8 * i));
	rc = frame_write(h, f, upto);

	pthread_rwlock_wrlock(&h->ix_lock);
	if (rc == 0) {
		for (size_t i = 0; i < f->npub; i++)
			f->pub[i].r->last = f->pub[i].off;
		h->ix.disk_versions += f->npub;
		h->ix.disk_end = h->idx_end;
		h->ix.upto = upto;
	} else if (f->b.err) {
		rc = f->b.err;
	} else {
		rc = frame_load(h, (const uint8_t *)f->b.p + JNL_FRAME_HDR,
				f->b.len - JNL_FRAME_HDR, f->at, upto, true,
				&commit);
	}
	pthread_rwlock_unlock(&h->ix_lock);
	return rc;
}

int hist_index_commit(struct hist *h, const git_oid *commit, uint64_t upto,
		      const struct hmsg_ver *v, size_t n)
{
	struct frame f;
	int rc;

	frame_start(h, &f, commit);
	for (size_t i = 0; i < n; i++)
		frame_add(h, &f, &v[i]);
	rc = frame_commit(h, &f, upto);
	frame_free(&f);
	return rc;
}

/*
 * Read the frame at `off` of `fd` into buf (JNL_FRAME_HDR +
 * JNL_MAX_RECORD bytes). Returns its length (> 0), 0 if it is not a
 * complete, valid frame, or -errno.
 */
static long frame_read(struct hist *h, int fd, uint64_t off, uint8_t *buf,
		       uint64_t *upto, const uint8_t **payload, size_t *len)
{
	size_t need = 0;
	ssize_t n;
	long fl;

	n = io_pread_all(h->o.io, "hist.idx.read", fd, buf, JNL_FRAME_HDR,
			 (off_t)off);
	if (n < 0)
		return (long)n;
	fl = n == JNL_FRAME_HDR ? jnl_frame_decode(buf, (size_t)n, upto,
						   payload, len, &need)
				: -EBADMSG;
	if (fl == 0 && need <= JNL_FRAME_HDR + JNL_MAX_RECORD) {
		n = io_pread_all(h->o.io, "hist.idx.read", fd, buf, need,
				 (off_t)off);
		if (n < 0)
			return (long)n;
		fl = n == (ssize_t)need ? jnl_frame_decode(buf, need, upto,
							   payload, len, NULL)
					: -EBADMSG;
	}
	return fl > 0 ? fl : 0;
}

/*
 * Read history.idx (open as h->idx_fd) into the index. *last is the
 * commit of its last good frame (*has_last false if none), h->idx_end the
 * offset after it. Returns 0 (also for a damaged tail: then *damaged),
 * -EBADMSG for a bad header or a frame that does not fit the chains, or
 * -errno.
 */
static int idx_read(struct hist *h, git_oid *last, bool *has_last,
		    bool *damaged)
{
	uint8_t hdr[IDX_HDR], *buf = NULL;
	uint64_t off = IDX_HDR, prev = 0;
	struct stat st;
	ssize_t n;
	int rc = 0;

	*has_last = *damaged = false;
	if (fstat(h->idx_fd, &st) < 0)
		return -errno;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_fd, hdr, IDX_HDR, 0);
	if (n < 0)
		return (int)n;
	if (n == IDX_HDR && (memcmp(hdr, IDX_MAGIC_V1, 8) == 0 ||
			     memcmp(hdr, IDX_MAGIC_V2, 8) == 0)) {
		/* RECFSH02: before the versions' mode, owner and kind */
		rlog_info("%s: an index of an older format", h->idx_path);
		return -EBADMSG;
	}
	if (n != IDX_HDR || memcmp(hdr, IDX_MAGIC, 8) != 0) {
		rlog_err("%s: not a history index (bad header)", h->idx_path);
		return -EBADMSG;
	}
	buf = malloc(JNL_FRAME_HDR + JNL_MAX_RECORD);
	if (!buf)
		return -ENOMEM;
	while (off < (uint64_t)st.st_size) {
		const uint8_t *payload;
		size_t len;
		uint64_t upto;
		git_oid commit;
		long fl;

		fl = frame_read(h, h->idx_fd, off, buf, &upto, &payload, &len);
		if (fl < 0) {
			rc = (int)fl;
			break;
		}
		if (fl == 0) {
			rlog_err("%s: damaged at byte %" PRIu64 " of %lld; the "
				 "rest is read back from the git history",
				 h->idx_path, off, (long long)st.st_size);
			*damaged = true;
			break;
		}
		if (upto >= prev) {
			pthread_rwlock_wrlock(&h->ix_lock);
			rc = frame_load(h, payload, len, off, upto, false,
					&commit);
			pthread_rwlock_unlock(&h->ix_lock);
		}
		if (upto < prev || rc != 0) {
			if (rc == -ENOMEM)
				break;
			rlog_err("%s: frame at byte %" PRIu64 " is not a valid "
				 "index frame",
				 h->idx_path, off);
			rc = -EBADMSG;
			break;
		}
		prev = upto;
		*last = commit;
		*has_last = true;
		off += (uint64_t)fl;
	}
	free(buf);
	h->idx_end = off;
	h->ix.disk_end = off;
	return rc;
}

/* ---- the readers' side: entries read back from history.idx -------------- */

/* Where the entry at `off` can be, given the published part of the file. */
static int ent_check_off(struct hist *h, uint64_t off)
{
	uint64_t end;

	pthread_rwlock_rdlock(&h->ix_lock);
	end = h->ix.disk_end;
	pthread_rwlock_unlock(&h->ix_lock);
	if (h->idx_rfd < 0 || off < IDX_HDR + FRAME_COMMIT_AT + 24 ||
	    off + ENT_HEAD > end) {
		rlog_err("%s: an entry at byte %" PRIu64 " is outside the "
			 "index",
			 h->idx_path, off);
		return -EIO;
	}
	return 0;
}

int hidx_ent_step(struct hist *h, uint64_t off, uint64_t *prev,
		  uint64_t *version, uint8_t *flags)
{
	uint8_t b[ENT_HEAD];
	struct rd r = {b, sizeof(b), false};
	ssize_t n;
	int rc = ent_check_off(h, off);

	if (rc)
		return rc;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_rfd, b, sizeof(b),
			 (off_t)off);
	if (n < 0)
		return (int)n;
	*prev = rd_u(&r, 8);
	(void)rd_u(&r, 4);
	*version = rd_u(&r, 8);
	*flags = (uint8_t)rd_u(&r, 1);
	if (n != (ssize_t)sizeof(b) || *prev >= off) {
		rlog_err("%s: the entry at byte %" PRIu64 " does not read "
			 "back",
			 h->idx_path, off);
		return -EIO;
	}
	return 0;
}

int hidx_ent_read(struct hist *h, const struct hrec *r, uint64_t off,
		  hist_version *out)
{
	uint8_t *b = NULL, c[21];
	struct rd rd;
	struct ent en;
	struct hent e;
	git_oid commit;
	ssize_t n;
	int rc = ent_check_off(h, off);

	if (rc)
		return rc;
	b = malloc(ENT_MAX);
	if (!b)
		return -ENOMEM;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_rfd, b, ENT_MAX,
			 (off_t)off);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	rd = (struct rd){b, (size_t)n, false};
	rc = -EIO;
	if (!ent_decode(&rd, UINT64_MAX, &en) || en.id_len != r->id_len ||
	    memcmp(en.id, r->id, r->id_len) != 0 || en.back > off ||
	    off - en.back < IDX_HDR)
		goto bad;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_rfd, c, sizeof(c),
			 (off_t)(off - en.back + JNL_FRAME_HDR));
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if (n != (ssize_t)sizeof(c) || c[0] != IDX_KIND_COMMIT)
		goto bad;
	memcpy(commit.id, c + 1, GIT_OID_RAWSZ);
	e = en.e;
	e.commit = 0;
	{
		struct hidx one = {.commits = &commit, .ncommits = 1};

		hidx_export(&one, &e, out);
	}
	rc = 0;
	goto out;
bad:
	rlog_err("%s: the entry at byte %" PRIu64 " (record %s) does not "
		 "read back",
		 h->idx_path, off, r->id);
out:
	free(b);
	return rc;
}

int hidx_file_each(struct hist *h, uint64_t end,
		   int (*fn)(void *arg, const char *id, const hist_version *v),
		   void *arg)
{
	char id[ID_MAX_LEN + 1];
	uint8_t *buf = NULL;
	uint64_t off = IDX_HDR;
	int rc = 0;

	if (h->idx_rfd < 0 || end <= IDX_HDR)
		return 0;
	buf = malloc(JNL_FRAME_HDR + JNL_MAX_RECORD);
	if (!buf)
		return -ENOMEM;
	while (rc == 0 && off < end) {
		const uint8_t *payload, *p;
		size_t len;
		uint64_t upto;
		uint32_t count;
		git_oid commit;
		struct rd r;
		long fl;

		fl = frame_read(h, h->idx_rfd, off, buf, &upto, &payload, &len);
		if (fl <= 0) {
			rc = fl < 0 ? (int)fl : -EIO;
			break;
		}
		r = (struct rd){payload, len, false};
		if (rd_u(&r, 1) != IDX_KIND_COMMIT || !(p = rd_take(&r, 20))) {
			rc = -EIO;
			break;
		}
		memcpy(commit.id, p, GIT_OID_RAWSZ);
		count = (uint32_t)rd_u(&r, 4);
		for (uint32_t i = 0; rc == 0 && i < count; i++) {
			struct hidx one = {.commits = &commit, .ncommits = 1};
			hist_version v;
			struct ent en;

			if (!ent_decode(&r, upto, &en)) {
				rc = -EIO;
				break;
			}
			en.e.commit = 0;
			hidx_export(&one, &en.e, &v);
			memcpy(id, en.id, en.id_len);
			id[en.id_len] = '\0';
			rc = fn(arg, id, &v);
		}
		off += (uint64_t)fl;
	}
	if (rc == -EIO)
		rlog_err("%s: the frame at byte %" PRIu64 " does not read back",
			 h->idx_path, off);
	free(buf);
	return rc;
}

/* ---- catching up from git ---------------------------------------------- */

struct catchup {
	struct hist *h;
	struct frame f;
};

static int catchup_ver(void *arg, const struct hmsg_ver *v)
{
	struct catchup *c = arg;

	frame_add(c->h, &c->f, v);
	return c->f.b.err;
}

/* Add the versions of commit `oid` to the index and to history.idx. */
static int catchup_commit(struct hist *h, const git_oid *oid)
{
	struct catchup c = {.h = h};
	git_commit *commit = NULL;
	char hexid[GIT_OID_HEXSZ + 1];
	const char *msg;
	unsigned bad = 0;
	uint64_t upto = 0;
	int rc;

	git_oid_tostr(hexid, sizeof(hexid), oid);
	rc = git_commit_lookup(&commit, h->repo, oid);
	if (rc < 0)
		return hist_git_error(rc, "reading a commit", NULL);
	msg = git_commit_message_raw(commit);
	frame_start(h, &c.f, oid);
	rc = hmsg_parse(msg, strlen(msg), catchup_ver, &c, &upto, &bad);
	if (rc == 0 && upto == 0) {
		rlog_err("%s: commit %s has no Recfs-Upto line", h->path,
			 hexid);
		rc = -EBADMSG;
	}
	if (bad)
		rlog_err("%s: commit %s: %u trailer blocks cannot be read; "
			 "those versions are not in the index",
			 h->path, hexid, bad);
	if (rc == 0)
		rc = frame_commit(h, &c.f, upto);
	frame_free(&c.f);
	git_commit_free(commit);
	return rc;
}

/* Read the commits after `from` (all if NULL) up to the head, oldest
   first, along first parents. */
static int catchup(struct hist *h, const git_oid *from)
{
	git_revwalk *walk = NULL;
	git_oid oid;
	uint64_t count = 0;
	int rc;

	rc = git_revwalk_new(&walk, h->repo);
	if (rc == 0)
		rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
						       GIT_SORT_REVERSE);
	if (rc == 0)
		rc = git_revwalk_push(walk, &h->head);
	if (rc == 0 && from)
		rc = git_revwalk_hide(walk, from);
	if (rc == 0)
		rc = git_revwalk_simplify_first_parent(walk);
	if (rc < 0) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0) {
		rc = catchup_commit(h, &oid);
		if (rc < 0)
			goto out;
		count++;
	}
	if (rc != GIT_ITEROVER) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	rc = 0;
	if (count)
		rlog_info("%s: %" PRIu64 " commits read back from %s",
			  h->idx_path, count, h->path);
out:
	git_revwalk_free(walk);
	return rc;
}

/* Start history.idx afresh (header only) and the index empty (no
   reader runs yet: hist_open). */
static int idx_reset(struct hist *h)
{
	uint8_t hdr[IDX_HDR] = IDX_MAGIC;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&h->chain_mu); /* slots name records of ix */
	hist_chains_free(h);
	pthread_mutex_unlock(&h->chain_mu);
	hidx_destroy(&h->ix);
	rc = hidx_init(&h->ix);
	if (rc || h->idx_fd < 0)
		return rc;
	rc = io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd, 0);
	if (rc == 0) {
		n = io_pwrite_all(h->o.io, "hist.idx.write", h->idx_fd, hdr,
				  sizeof(hdr), 0);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc) {
		rlog_warn("%s: cannot rewrite: %s", h->idx_path, strerror(-rc));
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	h->idx_end = IDX_HDR;
	h->ix.disk_end = IDX_HDR;
	return 0;
}

int hist_index_rebuild(struct hist *h)
{
	int rc = idx_reset(h);

	if (rc == 0 && h->has_head)
		rc = catchup(h, NULL);
	return rc;
}

static int idx_open(struct hist *h, bool *fresh)
{
	int flags = O_CLOEXEC | O_NOFOLLOW;
	struct stat st;

	*fresh = false;
	flags |= h->o.read_only ? O_RDONLY : O_RDWR | O_CREAT;
	h->idx_fd = io_openat(h->o.io, "hist.idx.open", h->o.store_dirfd,
			      HIST_INDEX_FILE, flags, 0600);
	if (h->idx_fd == -ENOENT) {
		*fresh = true;
		return 0;
	}
	if (h->idx_fd < 0) {
		int rc = h->idx_fd;

		rlog_err("%s: cannot open: %s", h->idx_path, strerror(-rc));
		return rc;
	}
	if (fstat(h->idx_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rlog_err("%s: not a regular file", h->idx_path);
		return -EBADMSG;
	}
	*fresh = st.st_size == 0;
	return 0;
}

int hist_index_load(struct hist *h)
{
	bool fresh = false, has_last = false, damaged = false;
	git_oid last;
	int rc;

	rc = idx_open(h, &fresh);
	if (rc == 0 && h->idx_fd >= 0) {
		/* the readers' own: idx_fd is closed if a write fails */
		h->idx_rfd = fcntl(h->idx_fd, F_DUPFD_CLOEXEC, 3);
		if (h->idx_rfd < 0)
			rc = -errno;
	}
	if (rc == 0 && !fresh)
		rc = idx_read(h, &last, &has_last, &damaged);
	if (h->o.read_only && h->idx_fd >= 0) {
		/* read from, but caught up in memory only */
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (rc == -EBADMSG || fresh) {
		if (rc)
			rlog_err("%s: rebuilding it from %s", h->idx_path,
				 h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc)
		return rc;
	if (damaged && h->idx_fd >= 0 &&
	    io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd,
			 (off_t)h->idx_end) < 0) {
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (has_last && h->has_head && !git_oid_equal(&last, &h->head) &&
	    git_graph_descendant_of(h->repo, &h->head, &last) != 1) {
		rlog_err("%s: ends with a commit that is not in the history "
			 "of %s; rebuilding it",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	} else if (has_last && !h->has_head) {
		rlog_err("%s: %s has no commit yet; starting it afresh",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc == 0 && h->has_head &&
	    !(has_last && git_oid_equal(&last, &h->head)))
		rc = catchup(h, has_last ? &last : NULL);
	return rc;
}
