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
 * reads of recent versions (CAS, attributes) take a few small reads. A
 * lookup first goes by STORE/history.vdx (history_vdx.c), which finds any
 * version of a record in O(log n) reads; when that file is behind (its
 * writes failed) the walk goes on, past HIST_CHAIN_WALK entries through a
 * slot in memory that keeps what it read (history_read.c), so the old
 * versions of a record with many versions cost each entry one read, not
 * one read per newer version at every lookup.
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
#include "breader.h"
#include "bytes.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "err.h"
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

#define IDX_MAGIC HIDX_MAGIC
#define IDX_MAGIC_V1 "RECFSH01"
#define IDX_MAGIC_V2 "RECFSH02"
#define IDX_HDR HIDX_HDR
#define IDX_KIND_COMMIT 1
/* a frame of a commit whose versions take more than one frame: more
   frames of the same commit follow, the last one IDX_KIND_COMMIT */
#define IDX_KIND_PART 2
/* an entry: prev, back, version, flags, id_len, then the ID */
#define ENT_HEAD (8 + 4 + 8 + 1 + 2)
/* ... then revision, size, time, uid, pid, blob, hash, comm_len, comm,
   mode, owner uid, owner gid */
#define ENT_TAIL (8 + 8 + 8 + 4 + 4 + 20 + 16 + 1 + 16 + 4 + 4 + 4)
#define ENT_MAX (ENT_HEAD + ID_MAX_LEN + ENT_TAIL)
/* a frame's payload starts with the kind and the commit */
#define FRAME_COMMIT_AT (JNL_FRAME_HDR + 1)

static bool kind_ok(uint64_t kind)
{
	return kind == IDX_KIND_COMMIT || kind == IDX_KIND_PART;
}

/* ---- frames of history.idx --------------------------------------------- */

void hidx_frame_start(struct hist *h, struct hframe *f, const git_oid *commit,
		      uint64_t upto)
{
	static const uint8_t gap[JNL_FRAME_HDR];

	memset(f, 0, sizeof(*f));
	f->at = h->idx_end;
	f->commit = *commit;
	f->upto = upto;
	buf_put(&f->b, gap, sizeof(gap));
	buf_putc(&f->b, (int)(IDX_KIND_COMMIT));
	buf_put(&f->b, commit->id, GIT_OID_RAWSZ);
	f->count_at = f->b.len;
	buf_put_le32(&f->b, (uint32_t)(0));
}

void hidx_frame_free(struct hframe *f)
{
	buf_free(&f->b);
	free(f->pub);
	free(f->slots);
}

/* The slot of r in the frame's table: holding its last entry, or free. */
static uint32_t *frame_slot(const struct hframe *f, const struct hrec *r)
{
	size_t mask = f->nslots - 1, i = r->hv & mask;

	while (f->slots[i] && f->pub[f->slots[i] - 1].r != r)
		i = (i + 1) & mask;
	return &f->slots[i];
}

/* Room in the table for one more record (at most half full). */
static int frame_slots_grow(struct hframe *f)
{
	size_t n = f->nslots ? 2 * f->nslots : 256;
	struct hframe g = {.pub = f->pub, .nslots = n};

	if (f->npub + 1 <= f->nslots / 2)
		return 0;
	g.slots = calloc(n, sizeof(*g.slots));
	if (!g.slots)
		return -ENOMEM;
	for (size_t i = 0; i < f->nslots; i++)
		if (f->slots[i])
			*frame_slot(&g, f->pub[f->slots[i] - 1].r) =
				f->slots[i];
	free(f->slots);
	f->slots = g.slots;
	f->nslots = n;
	return 0;
}

/*
 * Add a version to the frame, chained to the record's entry before it
 * (in this frame or in the file). Only the writer builds frames (and,
 * before it starts, hist_open): the records' stage fields are its own.
 */
static void frame_add(struct hist *h, struct hframe *f,
		      const struct hmsg_ver *v)
{
	const struct hent *e = &v->e;
	size_t comm = strnlen(e->comm, sizeof(e->comm));
	uint64_t off = f->at + f->b.len;
	struct hrec *r;
	struct pub *pub;
	uint32_t *slot;

	pthread_rwlock_wrlock(&h->ix_lock);
	r = hidx_rec_add(&h->ix, v->id, v->id_len);
	pthread_rwlock_unlock(&h->ix_lock);
	if (!r || f->b.err) {
		f->b.err = f->b.err ? f->b.err : -ENOMEM;
		return;
	}
	pub = util_grow(f->pub, &f->cap, f->npub, sizeof(*pub), 64);
	if (pub)
		f->pub = pub;
	if (!pub || frame_slots_grow(f)) {
		f->b.err = -ENOMEM;
		return;
	}
	slot = frame_slot(f, r);
	buf_put_le64(&f->b, *slot ? f->pub[*slot - 1].off : r->last);
	buf_put_le32(&f->b, (uint32_t)(off - f->at));
	buf_put_le64(&f->b, e->version);
	buf_putc(&f->b, (int)(e->flags));
	buf_put_le16(&f->b, (uint16_t)(v->id_len));
	buf_put(&f->b, v->id, v->id_len);
	buf_put_le64(&f->b, e->revision);
	buf_put_le64(&f->b, e->size);
	buf_put_le64(&f->b, (uint64_t)e->time_ns);
	buf_put_le32(&f->b, (uint32_t)(e->uid));
	buf_put_le32(&f->b, (uint32_t)(e->pid));
	buf_put(&f->b, e->blob.id, GIT_OID_RAWSZ);
	buf_put(&f->b, e->hash, 16);
	buf_putc(&f->b, (int)(comm));
	buf_put(&f->b, e->comm, comm);
	buf_put_le32(&f->b, (uint32_t)(e->mode));
	buf_put_le32(&f->b, (uint32_t)(e->ouid));
	buf_put_le32(&f->b, (uint32_t)(e->ogid));
	*slot = (uint32_t)(f->npub + 1);
	f->pub[f->npub].r = r;
	f->pub[f->npub++].off = off;
	f->count++;
}

/* Append the frame to history.idx. Returns 0, or -errno: then the file
   is cut back to where it was and not written again (see the top). */
static int frame_write(struct hist *h, struct hframe *f, uint64_t upto)
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
		uint8_t *p = (uint8_t *)f->b.ptr;

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
	/* logged: the writer goes on (the versions are held in memory) */
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

/* One entry as decoded. */
struct ent {
	uint64_t prev;
	uint32_t back;
	const char *id;
	size_t id_len;
	struct hent e;
};

/* Decode an entry; false if it is not one. `upto`: the frame's. */
static bool ent_decode(struct breader *r, uint64_t upto, struct ent *out)
{
	struct hent *e = &out->e;
	const uint8_t *p;
	size_t comm;

	memset(out, 0, sizeof(*out));
	out->prev = br_le64(r);
	out->back = (uint32_t)br_le32(r);
	e->version = br_le64(r);
	e->flags = (uint8_t)br_u8(r);
	out->id_len = br_le16(r);
	out->id = (const char *)br_take(r, out->id_len);
	e->revision = br_le64(r);
	e->size = br_le64(r);
	e->time_ns = (int64_t)br_le64(r);
	e->uid = (uint32_t)br_le32(r);
	e->pid = (uint32_t)br_le32(r);
	if ((p = br_take(r, 20)))
		memcpy(e->blob.id, p, 20);
	if ((p = br_take(r, 16)))
		memcpy(e->hash, p, 16);
	comm = br_u8(r);
	if (comm > sizeof(e->comm) || !(p = br_take(r, comm)))
		return false;
	memcpy(e->comm, p, comm);
	e->mode = (uint32_t)br_le32(r);
	e->ouid = (uint32_t)br_le32(r);
	e->ogid = (uint32_t)br_le32(r);
	return !r->err && out->id &&
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
		      uint64_t at, uint64_t upto, bool mem, git_oid *commit,
		      bool *part)
{
	struct breader r = {payload, len, 0};
	uint64_t kind = br_u8(&r);
	const uint8_t *p;
	uint32_t count, no = 0;
	int rc = 0;

	if (!kind_ok(kind) || !(p = br_take(&r, 20)))
		return -EBADMSG;
	if (part)
		*part = kind == IDX_KIND_PART;
	memcpy(commit->id, p, GIT_OID_RAWSZ);
	count = (uint32_t)br_le32(&r);
	if (r.err)
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
		rec = hidx_rec_add(&h->ix, en.id, en.id_len);
		if (!rec)
			return -ENOMEM;
		if (en.prev != rec->last || en.back != off - at)
			return -EBADMSG;
		hvdx_load_ent(h, rec, off, en.e.version, en.e.flags);
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
static int frame_commit(struct hist *h, struct hframe *f, bool part)
{
	uint64_t *vlast; /* of history.vdx (history_vdx.c) */
	git_oid commit;
	int rc;

	if (f->b.err == 0) {
		wr_le32(f->b.ptr + f->count_at, f->count);
		f->b.ptr[JNL_FRAME_HDR] =
			(char)(part ? IDX_KIND_PART : IDX_KIND_COMMIT);
	}
	rc = frame_write(h, f, f->upto);
	vlast = rc == 0 ? hvdx_frame(h, f) : NULL;

	pthread_rwlock_wrlock(&h->ix_lock);
	if (rc == 0) {
		for (size_t i = 0; i < f->npub; i++)
			f->pub[i].r->last = f->pub[i].off;
		hvdx_publish(h, f, vlast);
		h->ix.disk_versions += f->npub;
		h->ix.disk_end = h->idx_end;
		if (!part)
			h->ix.upto = f->upto;
	} else if (f->b.err) {
		rc = f->b.err;
	} else {
		rc = frame_load(h, (const uint8_t *)f->b.ptr + JNL_FRAME_HDR,
				f->b.len - JNL_FRAME_HDR, f->at, f->upto, true,
				&commit, NULL);
	}
	pthread_rwlock_unlock(&h->ix_lock);
	free(vlast);
	return rc;
}

/*
 * Add a version to a commit's frame; a frame that could not take one
 * more entry under JNL_MAX_RECORD is written first as a part (the
 * versions of a commit of a million changes take many frames, and the
 * memory of one). An error sticks in f->err.
 */
void hidx_frame_put(struct hist *h, struct hframe *f, const struct hmsg_ver *v)
{
	git_oid commit = f->commit;
	uint64_t upto = f->upto;
	int rc;

	if (f->count && f->b.len - JNL_FRAME_HDR + ENT_MAX > JNL_MAX_RECORD) {
		rc = f->err ? f->err : frame_commit(h, f, true);
		hidx_frame_free(f);
		hidx_frame_start(h, f, &commit, upto);
		f->err = rc;
	}
	frame_add(h, f, v);
}

/* The last frame of a commit. */
int hidx_frame_end(struct hist *h, struct hframe *f)
{
	int rc = frame_commit(h, f, false);

	return f->err ? f->err : rc;
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
/* Check the header of history.idx. Returns 0 or -EBADMSG, -errno. */
static int idx_header(struct hist *h)
{
	uint8_t hdr[IDX_HDR];
	ssize_t n;

	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_fd, hdr, IDX_HDR, 0);
	if (n < 0)
		return (int)n;
	if (n == IDX_HDR && (memcmp(hdr, IDX_MAGIC_V1, 8) == 0 ||
			     memcmp(hdr, IDX_MAGIC_V2, 8) == 0)) {
		/* RECFSH02: before the versions' mode, owner and kind */
		return rerr_set(-EBADMSG, "%s: an index of an older format",
				h->idx_path);
	}
	if (n != IDX_HDR || memcmp(hdr, IDX_MAGIC, 8) != 0)
		return rerr_set(-EBADMSG,
				"%s: not a history index (bad header)",
				h->idx_path);
	return 0;
}

/*
 * Read history.idx (open as h->idx_fd) into the index. *last is the
 * commit of its last good frame (*has_last false if none), h->idx_end the
 * offset after it. Returns 0 (also for a damaged tail: then *damaged),
 * -EBADMSG for a bad header, a frame that does not fit the chains or a
 * file that ends within the frames of one commit, or -errno.
 */
int hidx_file_read(struct hist *h, git_oid *last, bool *has_last, bool *damaged)
{
	uint64_t off = IDX_HDR, prev = 0;
	bool part = false;
	uint8_t *buf = NULL;
	struct stat st;
	int rc;

	*has_last = *damaged = false;
	if (fstat(h->idx_fd, &st) < 0)
		return -errno;
	rc = idx_header(h);
	if (rc)
		return rc;
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
			/* logged: a note, the open goes on and succeeds */
			rlog_err("%s: damaged at byte %" PRIu64 " of %lld; the "
				 "rest is read back from the git history",
				 h->idx_path, off, (long long)st.st_size);
			*damaged = true;
			break;
		}
		if (upto >= prev) {
			pthread_rwlock_wrlock(&h->ix_lock);
			rc = frame_load(h, payload, len, off, upto, false,
					&commit, &part);
			pthread_rwlock_unlock(&h->ix_lock);
		}
		if (upto < prev || rc != 0) {
			if (rc == -ENOMEM)
				break;
			rc = rerr_set(-EBADMSG,
				      "%s: frame at byte %" PRIu64 " is not a "
				      "valid index frame",
				      h->idx_path, off);
			break;
		}
		prev = upto;
		if (!part) {
			*last = commit;
			*has_last = true;
		}
		off += (uint64_t)fl;
	}
	free(buf);
	if (rc == 0 && part) {
		/* a commit's versions cut short: read all back from git */
		rc = rerr_set(-EBADMSG,
			      "%s: ends within the versions of a commit",
			      h->idx_path);
	}
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
		return rerr_set(-EIO,
				"%s: an entry at byte %" PRIu64 " is outside "
				"the index",
				h->idx_path, off);
	}
	return 0;
}

int hidx_ent_step(struct hist *h, uint64_t off, uint64_t *prev,
		  uint64_t *version, uint8_t *flags)
{
	uint8_t b[ENT_HEAD];
	struct breader r = {b, sizeof(b), 0};
	ssize_t n;
	int rc = ent_check_off(h, off);

	if (rc)
		return rc;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_rfd, b, sizeof(b),
			 (off_t)off);
	if (n < 0)
		return (int)n;
	*prev = br_le64(&r);
	(void)br_le32(&r);
	*version = br_le64(&r);
	*flags = (uint8_t)br_u8(&r);
	if (n != (ssize_t)sizeof(b) || *prev >= off) {
		return rerr_set(-EIO,
				"%s: the entry at byte %" PRIu64 " does not "
				"read back",
				h->idx_path, off);
	}
	return 0;
}

int hidx_ent_read(struct hist *h, const struct hrec *r, uint64_t off,
		  hist_version *out)
{
	uint8_t *b = NULL, c[21];
	struct breader rd;
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
	rd = (struct breader){b, (size_t)n, 0};
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
	if (n != (ssize_t)sizeof(c) || !kind_ok(c[0]))
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
	rerr_set(rc,
		 "%s: the entry at byte %" PRIu64 " (record %s) does not "
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
		struct breader r;
		long fl;

		fl = frame_read(h, h->idx_rfd, off, buf, &upto, &payload, &len);
		if (fl <= 0) {
			rc = fl < 0 ? (int)fl : -EIO;
			break;
		}
		r = (struct breader){payload, len, 0};
		if (!kind_ok(br_u8(&r)) || !(p = br_take(&r, 20))) {
			rc = -EIO;
			break;
		}
		memcpy(commit.id, p, GIT_OID_RAWSZ);
		count = (uint32_t)br_le32(&r);
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
		rerr_set(rc,
			 "%s: the frame at byte %" PRIu64 " does not read back",
			 h->idx_path, off);
	free(buf);
	return rc;
}
