/*
 * codec.c - encoding of journal and snapshot records, and of the packed
 * user xattrs they carry. Little-endian, length-prefixed; the decoder
 * treats its input as untrusted (a journal or index file from disk) and
 * checks every length against what is left before using it.
 *
 * A record (not a txn) is
 *	u8 type, u8 flags, str16 id, u64 version, u64 revision, hash[16],
 *	u64 size, u64 mtime_sec, u32 mtime_nsec, u32 mode, u64 ino,
 *	u32 xa_len, xa, u32 who.uid, u32 who.pid, u8 comm_len, comm,
 *	u64 time_ns, str16 from, u64 from_version, str16 stage, u64 data_len,
 *	[F_OWNER: u32 uid, u32 gid, u8 kind]
 *	[F_ORIGIN: str16 scratch path, u64 ino, u64 ctime_ns]
 *	[F_DATA: the data_len bytes]
 * The owner block came later: records written before it (journals and
 * snapshots of stores made by older binaries) have no F_OWNER and decode
 * as owner 0:0, a regular file -- what every record was then. The
 * origin block (a PUT that committed a scratch file, see
 * store_scratch_commit) came later still; a binary older than it refuses
 * a journal that holds one.
 */
#include "store_i.h"
#include "breader.h"
#include "id.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

enum {
	F_DATA = 1,
	F_STAGE = 2,
	F_DELETED = 4,
	F_HASH_VALID = 8,
	F_OWNER = 16,  /* the owner block is there (always written now) */
	F_ORIGIN = 32, /* the origin block is there */
};

enum {
	K_SYMLINK = 1, /* kind byte of the owner block */
};

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void w_put(struct wbuf *w, const void *src, size_t n)
{
	if (w->err || n == 0)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		uint8_t *p;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->err = -ENOMEM;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void w_u64(struct wbuf *w, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	w_put(w, b, 8);
}

static void w_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	w_put(w, b, 4);
}

static void w_u16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	w_put(w, b, 2);
}

static void w_u8(struct wbuf *w, uint8_t v)
{
	w_put(w, &v, 1);
}

static void w_str16(struct wbuf *w, const char *s, size_t n)
{
	if (n > UINT16_MAX) {
		w->err = -EINVAL;
		return;
	}
	w_u16(w, (uint16_t)n);
	w_put(w, s, n);
}

int codec_encode(const struct rec *r, uint8_t **out, size_t *len)
{
	struct wbuf w = {0};
	uint8_t flags = 0;
	size_t comm_len = strnlen(r->who.comm, sizeof(r->who.comm) - 1);

	if (r->has_data)
		flags |= F_DATA;
	if (r->stage_len)
		flags |= F_STAGE;
	if (r->meta.deleted)
		flags |= F_DELETED;
	if (r->meta.hash_valid)
		flags |= F_HASH_VALID;
	flags |= F_OWNER;
	if (r->origin)
		flags |= F_ORIGIN;
	w_u8(&w, (uint8_t)r->type);
	w_u8(&w, flags);
	w_str16(&w, r->id, r->id_len);
	w_u64(&w, r->meta.version);
	w_u64(&w, r->type == REC_STATE ? r->meta.revision : 0);
	w_put(&w, r->meta.hash, 16);
	w_u64(&w, r->meta.size);
	w_u64(&w, (uint64_t)r->meta.mtime.tv_sec);
	w_u32(&w, (uint32_t)r->meta.mtime.tv_nsec);
	w_u32(&w, r->meta.mode);
	w_u64(&w, r->ino);
	w_u32(&w, (uint32_t)r->xa_len);
	w_put(&w, r->xa, r->xa_len);
	w_u32(&w, r->who.uid);
	w_u32(&w, r->who.pid);
	w_u8(&w, (uint8_t)comm_len);
	w_put(&w, r->who.comm, comm_len);
	w_u64(&w, (uint64_t)r->time_ns);
	w_str16(&w, r->from, r->from_len);
	w_u64(&w, r->from_version);
	w_str16(&w, r->stage, r->stage_len);
	w_u64(&w, r->has_data ? r->data_len : 0);
	w_u32(&w, r->meta.uid);
	w_u32(&w, r->meta.gid);
	w_u8(&w, r->meta.symlink ? K_SYMLINK : 0);
	if (r->origin) {
		w_str16(&w, r->origin, r->origin_len);
		w_u64(&w, r->origin_ino);
		w_u64(&w, (uint64_t)r->origin_ctime_ns);
	}
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

static int check_decoded(const struct rec *r)
{
	if (r->type < REC_PUT || r->type > REC_STATE)
		return -EBADMSG;
	/* every ID the store journals passed id_check: one that does not
	   (a "..", an empty component) is corruption, never a path */
	if (r->id_len == 0 || r->id_len > ID_MAX_LEN ||
	    id_parse(r->id, r->id_len, NULL) != 0)
		return -EBADMSG;
	if (r->type == REC_RENAME &&
	    (r->from_len == 0 || r->from_len > ID_MAX_LEN ||
	     id_parse(r->from, r->from_len, NULL) != 0))
		return -EBADMSG;
	if (r->stage_len >= sizeof(((struct store_stage *)0)->name) ||
	    (r->stage && memchr(r->stage, '/', r->stage_len)) ||
	    (r->stage && memchr(r->stage, 0, r->stage_len)))
		return -EBADMSG;
	/* a stage is a file in tmp/: not "", "." or ".." */
	if (r->stage &&
	    (r->stage_len == 0 ||
	     (r->stage_len <= 2 && !memcmp(r->stage, "..", r->stage_len))))
		return -EBADMSG;
	if (r->meta.mtime.tv_nsec >= 1000000000L || r->meta.mode > 07777)
		return -EBADMSG;
	/* versions start at 1: a record of version 0 was never written */
	if (r->meta.version == 0 ||
	    (r->type == REC_RENAME && r->from_version == 0))
		return -EBADMSG;
	if (r->has_data && r->data_len != r->meta.size)
		return -EBADMSG;
	/* the store never commits a longer target (store_commit) */
	if (r->meta.symlink && r->meta.size > STORE_SYMLINK_MAX)
		return -EBADMSG;
	return xa_validate(r->xa, r->xa_len);
}

/* Parts of a txn, at most: each takes more than 100 bytes of a record of
   at most JNL_MAX_RECORD (4 MiB), and the decoder never trusts more. */
#define TXN_PARTS_MAX (1u << 16)

int codec_encode_part(const struct rec *p, uint8_t **out, size_t *len)
{
	struct wbuf w = {0};
	uint8_t *enc = NULL;
	size_t elen = 0, dlen = p->has_data ? p->data_len : 0;
	int rc;

	if (p->type != REC_PUT && p->type != REC_DEL)
		return -EINVAL;
	rc = codec_encode(p, &enc, &elen);
	if (rc)
		return rc;
	if (elen + dlen > UINT32_MAX)
		w.err = -EINVAL;
	w_u32(&w, (uint32_t)(elen + dlen));
	w_put(&w, enc, elen);
	w_put(&w, p->data, dlen);
	free(enc);
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

void codec_txn_head(uint8_t head[CODEC_TXN_HEAD], enum rec_type type,
		    uint32_t n)
{
	head[0] = (uint8_t)type;
	head[1] = 0;
	for (int i = 0; i < 4; i++)
		head[2 + i] = (uint8_t)(n >> (8 * i));
}

int codec_encode_txn(const struct rec *parts, size_t n, uint8_t **out,
		     size_t *len)
{
	struct wbuf w = {0};
	uint8_t head[CODEC_TXN_HEAD];

	if (n == 0 || n > TXN_PARTS_MAX)
		return -EINVAL;
	codec_txn_head(head, REC_TXN, (uint32_t)n);
	w_put(&w, head, sizeof(head));
	for (size_t i = 0; i < n && !w.err; i++) {
		uint8_t *enc = NULL;
		size_t elen = 0;

		w.err = codec_encode_part(&parts[i], &enc, &elen);
		w_put(&w, enc, elen);
		free(enc);
	}
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

int codec_txn_next(const struct rec *txn, size_t *off, struct rec *part)
{
	struct breader b;
	const uint8_t *p;
	size_t n;

	if ((txn->type != REC_TXN && txn->type != REC_TXN_PART) ||
	    *off > txn->parts_len)
		return -EBADMSG;
	if (*off == txn->parts_len)
		return 0;
	br_init(&b, txn->parts + *off, txn->parts_len - *off);
	n = br_le32(&b);
	p = br_take(&b, n);
	/* a part is never a txn: no recursion on untrusted input */
	if (!p || n == 0 || p[0] == REC_TXN || p[0] == REC_TXN_PART ||
	    codec_decode(p, n, part) ||
	    (part->type != REC_PUT && part->type != REC_DEL))
		return -EBADMSG;
	*off = txn->parts_len - b.left;
	return 1;
}

static int decode_txn(struct breader *b, struct rec *r)
{
	struct rec part;
	size_t off = 0;
	uint32_t seen = 0;
	int rc;

	if (br_u8(b) != 0) /* flags: none defined */
		return -EBADMSG;
	r->nparts = (uint32_t)br_le32(b);
	if (b->err || r->nparts == 0 || r->nparts > TXN_PARTS_MAX)
		return -EBADMSG;
	r->parts = b->p;
	r->parts_len = b->left;
	while ((rc = codec_txn_next(r, &off, &part)) == 1)
		seen++;
	return rc == 0 && seen == r->nparts ? 0 : -EBADMSG;
}

int codec_decode(const uint8_t *buf, size_t len, struct rec *r)
{
	struct breader b;
	unsigned flags;
	size_t n;

	br_init(&b, buf, len);
	memset(r, 0, sizeof(*r));
	r->type = (enum rec_type)br_u8(&b);
	if (r->type == REC_TXN || r->type == REC_TXN_PART)
		return decode_txn(&b, r);
	flags = (unsigned)br_u8(&b);
	r->id = br_str16(&b, &r->id_len);
	r->meta.version = br_le64(&b);
	r->meta.revision = br_le64(&b);
	if (br_take(&b, 16))
		memcpy(r->meta.hash, b.p - 16, 16);
	r->meta.size = br_le64(&b);
	r->meta.mtime.tv_sec = (time_t)br_le64(&b);
	r->meta.mtime.tv_nsec = (long)br_le32(&b);
	r->meta.mode = (uint32_t)br_le32(&b);
	r->meta.deleted = flags & F_DELETED;
	r->meta.hash_valid = flags & F_HASH_VALID;
	r->ino = br_le64(&b);
	r->xa_len = br_le32(&b);
	r->xa = br_take(&b, r->xa_len);
	r->who.uid = (uint32_t)br_le32(&b);
	r->who.pid = (uint32_t)br_le32(&b);
	n = br_u8(&b);
	if (n >= sizeof(r->who.comm))
		return -EBADMSG;
	if (br_take(&b, n))
		memcpy(r->who.comm, b.p - n, n);
	r->time_ns = (int64_t)br_le64(&b);
	r->from = br_str16(&b, &r->from_len);
	r->from_version = br_le64(&b);
	r->stage = br_str16(&b, &r->stage_len);
	r->data_len = br_le64(&b);
	if (flags & F_OWNER) {
		unsigned kind;

		r->meta.uid = (uint32_t)br_le32(&b);
		r->meta.gid = (uint32_t)br_le32(&b);
		kind = (unsigned)br_u8(&b);
		if (kind & ~(unsigned)K_SYMLINK)
			return -EBADMSG;
		r->meta.symlink = kind & K_SYMLINK;
	}
	if (flags & F_ORIGIN) {
		r->origin = br_str16(&b, &r->origin_len);
		r->origin_ino = br_le64(&b);
		r->origin_ctime_ns = (int64_t)br_le64(&b);
	}
	if (b.err || (flags & ~(unsigned)(F_DATA | F_STAGE | F_DELETED |
					  F_HASH_VALID | F_OWNER | F_ORIGIN)))
		return -EBADMSG;
	if (flags & F_DATA) {
		r->has_data = true;
		if (b.left != r->data_len)
			return -EBADMSG;
		r->data = b.p;
	} else if (b.left != 0 || r->data_len != 0) {
		return -EBADMSG;
	}
	if (!(flags & F_STAGE)) {
		if (r->stage_len)
			return -EBADMSG;
		r->stage = NULL;
	}
	if (r->from_len == 0)
		r->from = NULL;
	/* a scratch path, checked again (traversal-safe) where it is used;
	   never empty, never holding a NUL */
	if ((flags & F_ORIGIN) &&
	    (r->type != REC_PUT || r->origin_len == 0 ||
	     r->origin_len > ID_MAX_LEN || memchr(r->origin, 0, r->origin_len)))
		return -EBADMSG;
	return check_decoded(r);
}

/* ---- packed xattrs ---------------------------------------------------- */

/* Walk one packed item at *off; returns 0 and advances, or -EBADMSG. */
static int xa_next(const uint8_t *xa, size_t len, size_t *off,
		   const char **name, size_t *nlen, const uint8_t **val,
		   size_t *vlen)
{
	struct breader b = {xa + *off, len - *off, 0};

	*name = br_str16(&b, nlen);
	*vlen = br_le32(&b);
	*val = br_take(&b, *vlen);
	if (b.err || *nlen == 0 || *nlen > STORE_XATTR_NAME_MAX ||
	    memchr(*name, 0, *nlen))
		return -EBADMSG;
	*off = len - b.left;
	return 0;
}

/* The limits are xa_update's: a blob over them could never be changed
   again, not even by a remove. */
int xa_validate(const uint8_t *xa, size_t xa_len)
{
	size_t off = 0, count = 0, payload = 0, nlen, vlen;
	const char *name;
	const uint8_t *val;

	if (xa_len > STORE_XATTR_TOTAL_MAX + 8 * STORE_XATTR_COUNT_MAX)
		return -EBADMSG;
	while (off < xa_len) {
		if (xa_next(xa, xa_len, &off, &name, &nlen, &val, &vlen) ||
		    ++count > STORE_XATTR_COUNT_MAX ||
		    vlen > STORE_XATTR_VALUE_MAX)
			return -EBADMSG;
		payload += nlen + vlen;
		if (payload > STORE_XATTR_TOTAL_MAX)
			return -EBADMSG;
	}
	return 0;
}

int xa_get(const uint8_t *xa, size_t xa_len, const char *name,
	   const uint8_t **value, size_t *size)
{
	size_t off = 0, nlen, vlen, want = strlen(name);
	const char *n;
	const uint8_t *v;

	while (off < xa_len) {
		if (xa_next(xa, xa_len, &off, &n, &nlen, &v, &vlen))
			return -EBADMSG;
		if (nlen == want && memcmp(n, name, nlen) == 0) {
			*value = v;
			*size = vlen;
			return 0;
		}
	}
	return -ENODATA;
}

int xa_merge(const uint8_t *cur, size_t cur_len, const uint8_t *add,
	     size_t add_len, uint8_t **out, size_t *len)
{
	uint8_t *acc = NULL, *next;
	size_t acc_len = 0, off = 0, nlen, vlen, next_len;
	char name[STORE_XATTR_NAME_MAX + 1];
	const char *n;
	const uint8_t *v;
	int rc = 0;

	if (cur_len && !(acc = malloc(cur_len)))
		return -ENOMEM;
	if (cur_len)
		memcpy(acc, cur, cur_len);
	acc_len = cur_len;
	while (rc == 0 && off < add_len) {
		rc = xa_next(add, add_len, &off, &n, &nlen, &v, &vlen);
		if (rc)
			break;
		memcpy(name, n, nlen);
		name[nlen] = '\0';
		next = NULL;
		rc = xa_update(acc, acc_len, name, v, vlen, 0, &next,
			       &next_len);
		if (rc == 0) {
			free(acc);
			acc = next;
			acc_len = next_len;
		}
	}
	if (rc || !acc_len) {
		free(acc);
		acc = NULL;
		acc_len = 0;
	}
	*out = acc;
	*len = acc_len;
	return rc;
}

ssize_t xa_list(const uint8_t *xa, size_t xa_len, char *list, size_t size)
{
	size_t off = 0, nlen, vlen, total = 0;
	const char *n;
	const uint8_t *v;

	while (off < xa_len) {
		if (xa_next(xa, xa_len, &off, &n, &nlen, &v, &vlen))
			return -EBADMSG;
		if (size) {
			if (total + nlen + 1 > size)
				return -ERANGE;
			memcpy(list + total, n, nlen);
			list[total + nlen] = '\0';
		}
		total += nlen + 1;
	}
	return (ssize_t)total;
}

int xa_update(const uint8_t *xa, size_t xa_len, const char *name,
	      const void *value, size_t size, int flags, uint8_t **out,
	      size_t *out_len)
{
	struct wbuf w = {0};
	size_t off = 0, nlen, vlen, want = strlen(name), count = 0;
	size_t payload = 0;
	const char *n;
	const uint8_t *v;
	bool found = false;

	if (want == 0 || want > STORE_XATTR_NAME_MAX)
		return -ERANGE;
	if (value && size > STORE_XATTR_VALUE_MAX)
		return -E2BIG;
	while (off < xa_len) {
		if (xa_next(xa, xa_len, &off, &n, &nlen, &v, &vlen)) {
			free(w.p);
			return -EBADMSG;
		}
		if (nlen == want && memcmp(n, name, nlen) == 0) {
			found = true;
			continue;
		}
		w_str16(&w, n, nlen);
		w_u32(&w, (uint32_t)vlen);
		w_put(&w, v, vlen);
		payload += nlen + vlen;
		count++;
	}
	if ((flags & XATTR_CREATE) && found)
		w.err = w.err ? w.err : -EEXIST;
	if (((flags & XATTR_REPLACE) || !value) && !found)
		w.err = w.err ? w.err : -ENODATA;
	if (value) {
		w_str16(&w, name, want);
		w_u32(&w, (uint32_t)size);
		w_put(&w, value, size);
		payload += want + size;
		count++;
	}
	if (!w.err &&
	    (payload > STORE_XATTR_TOTAL_MAX || count > STORE_XATTR_COUNT_MAX))
		w.err = -ENOSPC;
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*out_len = w.len;
	return 0;
}
