/*
 * fuzz_codec.c - libFuzzer target for store/codec.c: the journal and
 * snapshot record codec and the packed user xattrs records carry.
 *
 * The input is one encoded record. codec_decode must accept it or return
 * -EBADMSG, reading nothing past the input (libFuzzer's exact-size copy
 * and ASan see to that). A record it accepts is encoded again with
 * codec_encode (plus its inline data) and decoded again: every field must
 * come back (the revision only for REC_STATE, which is the only type that
 * carries one), and encoding that decodes to the same bytes (canonical).
 * Its xattr blob passed xa_validate, so on it xa_list must agree with
 * itself (length query, exact buffer, short buffer), xa_get must find
 * every listed name, and xa_update (set and remove) must give a blob that
 * validates, holds the change and keeps every other name.
 *
 * A REC_TXN, or a REC_TXN_PART frame of a change of many frames, is
 * checked part by part the same way (each part is a REC_PUT or REC_DEL
 * that keeps every promise above), and encoded again whole with
 * codec_encode_txn: the same bytes (canonical).
 */
#include "store_i.h"
#include "id.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Encode `r` with its inline data into one new buffer. */
static uint8_t *encode_whole(const struct rec *r, size_t *len)
{
	uint8_t *enc = NULL, *all;
	size_t n = 0;
	int rc = codec_encode(r, &enc, &n);

	check(rc == 0);
	all = malloc(n + (r->has_data ? r->data_len : 0) + 1);
	check(all != NULL);
	memcpy(all, enc, n);
	if (r->has_data && r->data_len)
		memcpy(all + n, r->data, r->data_len);
	free(enc);
	*len = n + (r->has_data ? r->data_len : 0);
	return all;
}

static void check_same_rec(const struct rec *a, const struct rec *b)
{
	check(a->type == b->type);
	check(same_bytes(a->id, a->id_len, b->id, b->id_len));
	check(same_bytes(a->from, a->from_len, b->from, b->from_len));
	check(a->from_version == b->from_version);
	check(a->meta.version == b->meta.version);
	check(b->meta.revision ==
	      (a->type == REC_STATE ? a->meta.revision : 0));
	check(memcmp(a->meta.hash, b->meta.hash, 16) == 0);
	check(a->meta.hash_valid == b->meta.hash_valid);
	check(a->meta.size == b->meta.size);
	check(a->meta.mtime.tv_sec == b->meta.mtime.tv_sec);
	check(a->meta.mtime.tv_nsec == b->meta.mtime.tv_nsec);
	check(a->meta.mode == b->meta.mode);
	check(a->meta.deleted == b->meta.deleted);
	check(a->ino == b->ino);
	check(same_bytes(a->xa, a->xa_len, b->xa, b->xa_len));
	check(a->who.uid == b->who.uid && a->who.pid == b->who.pid);
	/* comm is a C string: what follows a NUL in it is not kept */
	check(strncmp(a->who.comm, b->who.comm, sizeof(a->who.comm)) == 0);
	check(a->time_ns == b->time_ns);
	check(same_bytes(a->stage, a->stage_len, b->stage, b->stage_len));
	check(a->has_data == b->has_data);
	check(same_bytes(a->data, a->data_len, b->data, b->data_len));
}

/* The names of a packed blob, listed into a new NUL-separated buffer. */
static char *list_names(const uint8_t *xa, size_t xa_len, size_t *total)
{
	ssize_t n = xa_list(xa, xa_len, NULL, 0);
	char *buf;

	check(n >= 0);
	buf = malloc((size_t)n + 1);
	check(buf != NULL);
	check(xa_list(xa, xa_len, buf, (size_t)n + 1) == n);
	if (n > 0) {
		/* exact size is enough, one byte less is not */
		check(xa_list(xa, xa_len, buf, (size_t)n) == n);
		check(xa_list(xa, xa_len, buf, (size_t)n - 1) == -ERANGE);
		check(buf[n - 1] == '\0');
	}
	*total = (size_t)n;
	return buf;
}

/* Every listed name is found; returns how many names there are. */
static size_t check_listed_found(const uint8_t *xa, size_t xa_len,
				 const char *names, size_t total)
{
	size_t count = 0;

	for (size_t off = 0; off < total; off += strlen(names + off) + 1) {
		const uint8_t *v = NULL;
		size_t vs = SIZE_MAX;
		size_t nl = strlen(names + off);

		check(nl >= 1 && nl <= STORE_XATTR_NAME_MAX);
		check(xa_get(xa, xa_len, names + off, &v, &vs) == 0);
		check(vs <= xa_len && v >= xa && v + vs <= xa + xa_len);
		count++;
	}
	return count;
}

/* Is `name` among the NUL-separated `names`? */
static bool listed(const char *names, size_t total, const char *name)
{
	for (size_t off = 0; off < total; off += strlen(names + off) + 1)
		if (strcmp(names + off, name) == 0)
			return true;
	return false;
}

/* xa_update of `name` (value NULL: remove) and what must follow. */
static void check_update(const uint8_t *xa, size_t xa_len, const char *names,
			 size_t total, const char *name, const void *value,
			 size_t vsize, int flags)
{
	uint8_t *out = NULL;
	size_t out_len = 0, ntotal, nl = strlen(name);
	const uint8_t *v;
	size_t vs;
	char *nnames;
	bool had = listed(names, total, name);
	int rc = xa_update(xa, xa_len, name, value, vsize, flags, &out,
			   &out_len);

	if (nl == 0 || nl > STORE_XATTR_NAME_MAX) {
		check(rc == -ERANGE);
		return;
	}
	if (value && vsize > STORE_XATTR_VALUE_MAX) {
		check(rc == -E2BIG);
		return;
	}
	if (!value && !had) {
		check(rc == -ENODATA);
		return;
	}
	if (!value) {
		/* removing never needs more room than the blob had: a blob
		   that validated can always lose an attribute */
		check(rc == 0);
	}
	if (rc) {
		check(rc == -ENOSPC || rc == -EEXIST || rc == -ENODATA);
		if (rc == -EEXIST)
			check((flags & XATTR_CREATE) && had);
		if (rc == -ENODATA)
			check((flags & XATTR_REPLACE) && !had);
		return;
	}
	check(xa_validate(out, out_len) == 0);
	nnames = list_names(out, out_len, &ntotal);
	check_listed_found(out, out_len, nnames, ntotal);
	if (value) {
		check(xa_get(out, out_len, name, &v, &vs) == 0);
		check(same_bytes(v, vs, value, vsize));
	} else {
		check(xa_get(out, out_len, name, &v, &vs) == -ENODATA);
	}
	/* every other name is kept, with its first value */
	for (size_t off = 0; off < total; off += strlen(names + off) + 1) {
		const uint8_t *v0;
		size_t vs0;

		if (strcmp(names + off, name) == 0)
			continue;
		check(xa_get(xa, xa_len, names + off, &v0, &vs0) == 0);
		check(xa_get(out, out_len, names + off, &v, &vs) == 0);
		check(same_bytes(v0, vs0, v, vs));
	}
	free(nnames);
	free(out);
}

static void check_xattrs(const struct rec *r)
{
	char name[STORE_XATTR_NAME_MAX + 2];
	size_t total, n;
	char *names;

	check(xa_validate(r->xa, r->xa_len) == 0);
	names = list_names(r->xa, r->xa_len, &total);
	n = check_listed_found(r->xa, r->xa_len, names, total);
	check(n <= STORE_XATTR_COUNT_MAX);
	check(xa_get(r->xa, r->xa_len, "", &(const uint8_t *){0},
		     &(size_t){0}) == -ENODATA);

	if (total) {
		/* the first name: replace it with the stage bytes, remove it */
		check_update(r->xa, r->xa_len, names, total, names,
			     r->stage ? r->stage : "", r->stage_len,
			     XATTR_REPLACE);
		check_update(r->xa, r->xa_len, names, total, names, NULL, 0, 0);
		check_update(r->xa, r->xa_len, names, total, names, "x", 1,
			     XATTR_CREATE);
	}
	/* a name made of the ID (cut to the longest legal name + 1) */
	n = r->id_len < sizeof(name) - 1 ? r->id_len : sizeof(name) - 1;
	memcpy(name, r->id, n);
	name[n] = '\0';
	check_update(r->xa, r->xa_len, names, total, name,
		     r->data ? (const void *)r->data : "", r->data_len, 0);
	check_update(r->xa, r->xa_len, names, total, name, NULL, 0, 0);
	free(names);
}

/* What an accepted record promises its users (recover.c), and that it
   encodes back to the same record; `data`/`size` hold it. */
static void check_one(const struct rec *rp, const uint8_t *data, size_t size)
{
	struct rec r = *rp, r2, r3;
	uint8_t *enc, *enc2;
	size_t len, len2;
	int rc;

	check(r.type >= REC_PUT && r.type <= REC_STATE);
	check(r.id && r.id_len >= 1 && r.id_len <= ID_MAX_LEN);
	check((const uint8_t *)r.id >= data &&
	      (const uint8_t *)r.id + r.id_len <= data + size);
	check(r.type != REC_RENAME ||
	      (r.from && r.from_len >= 1 && r.from_len <= ID_MAX_LEN));
	/* IDs are IDs (no "..", no empty component): never a path that
	   leaves records/; a stage is a plain name in tmp/ */
	check(id_parse(r.id, r.id_len, NULL) == 0);
	check(r.type != REC_RENAME || id_parse(r.from, r.from_len, NULL) == 0);
	check(r.stage_len < sizeof(((struct store_stage *)0)->name));
	check(!r.stage ||
	      (r.stage_len > 0 && !memchr(r.stage, '/', r.stage_len) &&
	       !(r.stage_len <= 2 && !memcmp(r.stage, "..", r.stage_len))));
	check(!r.has_data || r.data_len == r.meta.size);
	check(!r.has_data || r.data + r.data_len == data + size);
	check(r.meta.mode <= 07777 && r.meta.mtime.tv_nsec < 1000000000L);
	/* versions start at 1 */
	check(r.meta.version >= 1);
	check(r.type != REC_RENAME || r.from_version >= 1);
	check(strnlen(r.who.comm, sizeof(r.who.comm)) < sizeof(r.who.comm));

	enc = encode_whole(&r, &len);
	/* a record written before the owner block (u32 uid, u32 gid, u8
	   kind: store/codec.c) decodes without it and encodes with it */
	check(len <= size + 9 * (1 + (size_t)r.nparts));
	rc = codec_decode(enc, len, &r2);
	check(rc == 0);
	check_same_rec(&r, &r2);
	enc2 = encode_whole(&r2, &len2);
	check(same_bytes(enc, len, enc2, len2));
	check(codec_decode(enc2, len2, &r3) == 0);

	check_xattrs(&r);
	free(enc);
	free(enc2);
}

/* The parts of `r` into a new array (*n of them). */
static struct rec *txn_parts(const struct rec *r, const uint8_t *data,
			     size_t size, size_t *n)
{
	struct rec *parts = calloc(r->nparts ? r->nparts : 1, sizeof(*parts));
	size_t off = 0, prev = 0;
	int rc;

	check(parts != NULL);
	*n = 0;
	while ((rc = codec_txn_next(r, &off, &parts[*n])) == 1) {
		const uint8_t *at = r->parts + prev + 4;

		check(*n < r->nparts);
		check(parts[*n].type == REC_PUT || parts[*n].type == REC_DEL);
		check(at >= data && r->parts + off <= data + size);
		/* each part is a whole record of its own bytes */
		check_one(&parts[*n], at, off - prev - 4);
		prev = off;
		(*n)++;
	}
	check(rc == 0 && *n == r->nparts && off == r->parts_len);
	return parts;
}

/* Every part of a txn, and the whole encoded again: the same parts, and
   canonical from then on. */
static void check_txn(const struct rec *r, const uint8_t *data, size_t size)
{
	struct rec *parts, *parts2, again;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t n = 0, n2 = 0, len = 0, len2 = 0;

	check(r->id == NULL && r->nparts >= 1);
	check(r->parts >= data && r->parts + r->parts_len == data + size);
	parts = txn_parts(r, data, size, &n);
	check(codec_encode_txn(parts, n, &enc, &len) == 0);
	/* parts from before the owner block grow by it (see check_one) */
	check(len <= size + 9 * n);
	check(codec_decode(enc, len, &again) == 0);
	check(again.type == REC_TXN && again.nparts == r->nparts);
	parts2 = txn_parts(&again, enc, len, &n2);
	check(n2 == n);
	for (size_t i = 0; i < n; i++)
		check_same_rec(&parts[i], &parts2[i]);
	check(codec_encode_txn(parts2, n2, &enc2, &len2) == 0);
	check(same_bytes(enc, len, enc2, len2));
	free(enc);
	free(enc2);
	free(parts);
	free(parts2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rec r;
	int rc;

	rc = codec_decode(data, size, &r);
	check(rc == 0 || rc == -EBADMSG);
	if (rc)
		return 0;
	/* a frame of a change of many frames holds parts as a txn does */
	if (r.type == REC_TXN || r.type == REC_TXN_PART)
		check_txn(&r, data, size);
	else
		check_one(&r, data, size);
	return 0;
}
