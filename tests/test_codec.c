/*
 * test_codec.c - the journal/snapshot record codec (store/codec.c) as the
 * parser of untrusted files: regression tests for what fuzz_codec and
 * fuzz_replay found. A decoded record's IDs are valid IDs (a journal
 * naming "../x" is corrupt, not a path), its stage is a plain name in
 * tmp/, and its xattr blob is within the limits xa_update keeps (so
 * every attribute of a record loaded from disk can still be changed).
 * Each crash input stays in tests/fuzz/corpus/{codec,replay}.
 */
#include "jnl.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store_i.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* One packed xattr item appended to buf at *len. */
static void xa_item(uint8_t *buf, size_t *len, const char *name, size_t vlen,
		    uint8_t fill)
{
	size_t n = strlen(name);

	buf[(*len)++] = (uint8_t)n;
	buf[(*len)++] = (uint8_t)(n >> 8);
	memcpy(buf + *len, name, n);
	*len += n;
	for (int i = 0; i < 4; i++)
		buf[(*len)++] = (uint8_t)(vlen >> (8 * i));
	memset(buf + *len, fill, vlen);
	*len += vlen;
}

/* Encode r (and its inline data) and decode it back into *out. */
static int round_trip(const struct rec *r, struct rec *out, uint8_t **keep)
{
	uint8_t *enc = NULL, *all;
	size_t len = 0;
	int rc = codec_encode(r, &enc, &len);

	cr_assert_eq(rc, 0);
	all = malloc(len + r->data_len + 1);
	cr_assert_not_null(all);
	memcpy(all, enc, len);
	if (r->has_data && r->data_len)
		memcpy(all + len, r->data, r->data_len);
	free(enc);
	*keep = all;
	return codec_decode(all, len + (r->has_data ? r->data_len : 0), out);
}

static struct rec put_rec(const char *id, const char *data)
{
	struct rec r = {.type = REC_PUT};

	r.id = id;
	r.id_len = strlen(id);
	r.meta.version = 1;
	r.meta.mode = 0644;
	r.meta.size = strlen(data);
	r.has_data = true;
	r.data = (const uint8_t *)data;
	r.data_len = strlen(data);
	return r;
}

/* ---- the codec ---------------------------------------------------------- */

TestSuite(codec, .timeout = 30);

Test(codec, valid_records_round_trip)
{
	struct rec r = put_rec("ns/caf\xc3\xa9 x@y.json", "hello\n"), d;
	uint8_t *buf;

	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_eq(d.id_len, r.id_len);
	cr_assert_eq(memcmp(d.id, r.id, r.id_len), 0);
	cr_assert_eq(d.data_len, 6);
	free(buf);

	r.type = REC_RENAME;
	r.from = "old/name";
	r.from_len = strlen(r.from);
	r.from_version = 4;
	r.has_data = false;
	r.data_len = 0;
	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_eq(d.from_len, 8);
	free(buf);
}

Test(codec, record_ids_that_are_not_ids_are_corrupt)
{
	static const char *const bad[] = {
		"..",		".",	"../outside", "x/../../outside",
		"a//b",		"/abs", "trail/",     "a/./b",
		"ns/../config", "a@3",	".recfs",
	};
	struct rec d;
	uint8_t *buf;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rec r = put_rec(bad[i], "x");

		cr_expect_eq(round_trip(&r, &d, &buf), -EBADMSG,
			     "id \"%s\" accepted", bad[i]);
		free(buf);

		r = put_rec("fine", "x");
		r.type = REC_RENAME;
		r.from_version = 1;
		r.has_data = false;
		r.data_len = 0;
		r.from = bad[i];
		r.from_len = strlen(bad[i]);
		cr_expect_eq(round_trip(&r, &d, &buf), -EBADMSG,
			     "rename from \"%s\" accepted", bad[i]);
		free(buf);
	}
}

/* fuzz_replay corpus "crash-rename-of-version-0": a record of version 0
   left an index entry no snapshot keeps (the store's counts changed across
   a reopen); versions start at 1, so it is corrupt. */
Test(codec, version_zero_is_corrupt)
{
	struct rec r = put_rec("a", "x"), d;
	uint8_t *buf;

	r.meta.version = 0;
	cr_expect_eq(round_trip(&r, &d, &buf), -EBADMSG);
	free(buf);
	r = put_rec("a", "x");
	r.type = REC_RENAME;
	r.has_data = false;
	r.data_len = 0;
	r.from = "b";
	r.from_len = 1;
	r.from_version = 0;
	cr_expect_eq(round_trip(&r, &d, &buf), -EBADMSG);
	free(buf);
	r.from_version = 1;
	cr_expect_eq(round_trip(&r, &d, &buf), 0);
	free(buf);
}

Test(codec, stage_named_dot_or_dotdot_is_corrupt)
{
	static const char *const bad[] = {".", ".."};
	struct rec d;
	uint8_t *buf;

	for (size_t i = 0; i < 2; i++) {
		struct rec r = put_rec("a", "");

		r.has_data = false;
		r.meta.size = 2 << 20;
		r.stage = bad[i];
		r.stage_len = strlen(bad[i]);
		cr_expect_eq(round_trip(&r, &d, &buf), -EBADMSG,
			     "stage \"%s\" accepted", bad[i]);
		free(buf);
	}
	{
		struct rec r = put_rec("a", "");

		r.has_data = false;
		r.meta.size = 2 << 20;
		r.stage = "st.1.deadbeef.7";
		r.stage_len = strlen(r.stage);
		cr_expect_eq(round_trip(&r, &d, &buf), 0);
		free(buf);
	}
}

Test(codec, xattr_blob_over_the_limits_is_corrupt)
{
	size_t big = 2 * (STORE_XATTR_TOTAL_MAX + 64);
	uint8_t *xa = malloc(big), *out = NULL;
	size_t len = 0, out_len = 0;

	cr_assert_not_null(xa);
	/* at the limit: one name + value of exactly STORE_XATTR_TOTAL_MAX */
	xa_item(xa, &len, "user.a", STORE_XATTR_TOTAL_MAX - 6, 'v');
	cr_expect_eq(xa_validate(xa, len), 0);
	/* one byte more, in a second attribute: over the total */
	xa_item(xa, &len, "user.b", 1, 'w');
	cr_expect_eq(xa_validate(xa, len), -EBADMSG);

	/* a value over STORE_XATTR_VALUE_MAX on its own */
	len = 0;
	xa_item(xa, &len, "user.big", STORE_XATTR_VALUE_MAX + 1, 'v');
	cr_expect_eq(xa_validate(xa, len), -EBADMSG);

	/* the fuzz_codec input: such a blob, once accepted, made every
	   remove fail with -ENOSPC; a blob that validates can always lose an
	   attribute */
	len = 0;
	xa_item(xa, &len, "user.a", 1, '1');
	xa_item(xa, &len, "user.big", STORE_XATTR_VALUE_MAX, 'v');
	cr_expect_eq(xa_validate(xa, len), -EBADMSG);
	len = 0;
	xa_item(xa, &len, "user.a", 1, '1');
	xa_item(xa, &len, "user.big", STORE_XATTR_TOTAL_MAX - 6 - 8 - 1, 'v');
	cr_assert_eq(xa_validate(xa, len), 0);
	cr_expect_eq(xa_update(xa, len, "user.a", NULL, 0, 0, &out, &out_len),
		     0);
	free(out);
	cr_expect_eq(xa_update(xa, len, "user.big", NULL, 0, 0, &out, &out_len),
		     0);
	free(out);
	free(xa);
}

/* ---- through recovery --------------------------------------------------- */

static void setup(void)
{
	sandbox_store("codec", false);
}

TestSuite(replay, .init = setup, .fini = sandbox_store_rm, .timeout = 60);

/* STORE/journal/<first>.log holding one well-framed record per payload. */
static void write_journal(const struct rec *recs, int n)
{
	char path[PATH_MAX + 96];
	uint8_t hdr[JNL_FILE_HDR], fh[JNL_FRAME_HDR];
	int fd;

	snprintf(path, sizeof(path), "%s/journal/%020d.log", spath, 1);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	memcpy(hdr, JNL_SEGMENT_MAGIC, 8);
	memset(hdr + 8, 0, 8);
	hdr[8] = 1;
	cr_assert_eq(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	for (int i = 0; i < n; i++) {
		uint8_t *enc = NULL;
		size_t len = 0;
		struct iovec v[2];

		cr_assert_eq(codec_encode(&recs[i], &enc, &len), 0);
		v[0].iov_base = enc;
		v[0].iov_len = len;
		v[1].iov_base = (void *)recs[i].data;
		v[1].iov_len = recs[i].has_data ? recs[i].data_len : 0;
		jnl_frame_encode(fh, (uint64_t)i + 1, v, 2);
		cr_assert_eq(write(fd, fh, sizeof(fh)), (ssize_t)sizeof(fh));
		cr_assert_eq(writev(fd, v, 2),
			     (ssize_t)(v[0].iov_len + v[1].iov_len));
		free(enc);
	}
	close(fd);
}

static void expect_file(const char *path, const char *text)
{
	char buf[256] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	cr_expect_str_eq(buf, text, "%s changed", path);
}

/*
 * fuzz_replay corpus "dotdot-id", "format-id", "dotdot-from": a journal
 * naming "../outside" or ".." was replayed as a path (refused only by
 * openat2's RESOLVE_BENEATH, with a misleading EXDEV/EBUSY; the
 * component-by-component fallback of kernels before 5.6 follows "..").
 * Now it is a corrupt journal: -EBADMSG, and nothing outside is touched.
 */
Test(replay, journal_naming_a_path_outside_records_is_corrupt)
{
	struct store_opts o = {.path = spath};
	const char *ids[] = {"../outside", "..", "x/../../outside"};
	char outside[PATH_MAX + 32], fmt[PATH_MAX + 64];
	struct store *s = NULL;

	snprintf(outside, sizeof(outside), "%s/outside", base);
	snprintf(fmt, sizeof(fmt), "%s/format.json", spath);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct rec r[2] = {put_rec("ok", "fine\n"),
				   put_rec(ids[i], "overwritten\n")};
		int fd;

		cr_assert_eq(store_init(spath, false), 0);
		fd = open(outside, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		cr_assert_eq(write(fd, "outside\n", 8), 8);
		close(fd);
		write_journal(r, 2);
		cr_expect_eq(store_open(&s, &o), -EBADMSG, "id \"%s\"", ids[i]);
		cr_expect_null(s);
		store_close(s);
		s = NULL;
		expect_file(outside, "outside\n");
		/* left untouched: the journal is still there, no record */
		cr_expect_neq(access(fmt, F_OK), -1);
		snprintf(fmt, sizeof(fmt), "%s/records/ok", spath);
		cr_expect_eq(access(fmt, F_OK), -1, "replayed before refusing");
		snprintf(fmt, sizeof(fmt), "%s/format.json", spath);
		sandbox_rm(spath);
	}
}

/* ---- owner and kind, and records of older binaries ----------------------
 */

/* A record as binaries before the owner block wrote it (codec.c shows the
   layout): flags without F_OWNER (16), no owner block. */
struct oldw {
	uint8_t b[512];
	size_t n;
};

static void ow(struct oldw *w, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		w->b[w->n++] = (uint8_t)(v >> (8 * i));
}

static void ow_str(struct oldw *w, const char *s)
{
	ow(w, strlen(s), 2);
	memcpy(w->b + w->n, s, strlen(s));
	w->n += strlen(s);
}

static size_t old_record(uint8_t *out, enum rec_type type, const char *id,
			 uint64_t revision, const char *data)
{
	struct oldw w = {.n = 0};
	size_t dlen = data ? strlen(data) : 0;

	ow(&w, type, 1);
	ow(&w, (data ? 1 : 0) | 8, 1); /* F_DATA, F_HASH_VALID */
	ow_str(&w, id);
	ow(&w, 3, 8);		     /* version */
	ow(&w, revision, 8);	     /* revision (REC_STATE) */
	memset(w.b + w.n, 0xab, 16); /* hash */
	w.n += 16;
	ow(&w, dlen, 8);       /* size */
	ow(&w, 1700000000, 8); /* mtime */
	ow(&w, 5, 4);
	ow(&w, 0640, 4);		       /* mode */
	ow(&w, type == REC_STATE ? 77 : 0, 8); /* ino */
	ow(&w, 0, 4);			       /* no xattrs */
	ow(&w, 1000, 4);		       /* who.uid */
	ow(&w, 42, 4);			       /* who.pid */
	ow(&w, 2, 1);
	memcpy(w.b + w.n, "sh", 2);
	w.n += 2;
	ow(&w, 123456789, 8); /* time_ns */
	ow_str(&w, "");	      /* from */
	ow(&w, 0, 8);
	ow_str(&w, ""); /* stage */
	ow(&w, dlen, 8);
	memcpy(out, w.b, w.n);
	if (data)
		memcpy(out + w.n, data, dlen);
	return w.n + dlen;
}

Test(codec, records_of_older_binaries_decode_as_owner_0_0_and_a_file)
{
	static const enum rec_type types[] = {REC_PUT, REC_META, REC_STATE};
	uint8_t buf[1024];
	struct rec d;

	for (size_t i = 0; i < 3; i++) {
		size_t n = old_record(buf, types[i], "ns/old", 9,
				      types[i] == REC_PUT ? "content" : NULL);

		memset(&d, 0x5a, sizeof(d));
		cr_assert_eq(codec_decode(buf, n, &d), 0, "type %d", types[i]);
		cr_assert_eq(d.type, types[i]);
		cr_assert(d.id_len == 6 && !memcmp(d.id, "ns/old", 6));
		cr_assert_eq(d.meta.version, 3);
		cr_assert_eq(d.meta.mode, 0640);
		cr_assert_eq(d.who.uid, 1000);
		cr_assert_eq(d.meta.uid, 0);
		cr_assert_eq(d.meta.gid, 0);
		cr_assert_not(d.meta.symlink);
		if (types[i] == REC_PUT)
			cr_assert(d.has_data && d.data_len == 7 &&
				  !memcmp(d.data, "content", 7));
		if (types[i] == REC_STATE)
			cr_assert(d.ino == 77 && d.meta.revision == 9);
	}
}

Test(codec, owner_and_kind_round_trip)
{
	struct rec r = put_rec("l", "../t"), d;
	uint8_t *buf;

	r.meta.uid = 4000000000u;
	r.meta.gid = 7;
	r.meta.symlink = true;
	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_eq(d.meta.uid, 4000000000u);
	cr_assert_eq(d.meta.gid, 7);
	cr_assert(d.meta.symlink);
	free(buf);
	r.meta.symlink = false;
	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_not(d.meta.symlink);
	free(buf);
}

Test(codec, scratch_origin_round_trips_and_only_on_a_put)
{
	struct rec r = put_rec("f", "new"), d;
	uint8_t *buf;

	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_null(d.origin, "no origin unless one is set");
	free(buf);
	r.origin = "dir/.f.Ab12Cd";
	r.origin_len = strlen(r.origin);
	r.origin_ino = 1234567;
	r.origin_ctime_ns = 1700000000123456789;
	cr_assert_eq(round_trip(&r, &d, &buf), 0);
	cr_assert_eq(d.origin_len, r.origin_len);
	cr_assert_eq(memcmp(d.origin, r.origin, r.origin_len), 0);
	cr_assert_eq(d.origin_ino, 1234567);
	cr_assert_eq(d.origin_ctime_ns, 1700000000123456789);
	cr_assert(d.has_data && d.data_len == 3 && !memcmp(d.data, "new", 3));
	free(buf);
	r.type = REC_DEL;
	r.has_data = false;
	r.data_len = 0;
	r.meta.size = 0;
	cr_assert_eq(round_trip(&r, &d, &buf), -EBADMSG, "origin on a delete");
	free(buf);
}

Test(codec, bad_kinds_and_overlong_targets_are_corrupt)
{
	static char big[STORE_SYMLINK_MAX + 1];
	struct rec r = put_rec("l", "x"), d;
	uint8_t *enc = NULL;
	size_t len = 0;

	/* the kind byte is the last byte before the data */
	cr_assert_eq(codec_encode(&r, &enc, &len), 0);
	{
		uint8_t all[1024];

		memcpy(all, enc, len);
		all[len - 1] = 2; /* an unknown kind */
		all[len] = 'x';
		cr_assert_eq(codec_decode(all, len + 1, &d), -EBADMSG);
		all[1] |= 0x40; /* an unknown flag */
		all[len - 1] = 0;
		cr_assert_eq(codec_decode(all, len + 1, &d), -EBADMSG);
	}
	free(enc);
	memset(big, 'x', sizeof(big));
	r = put_rec("l", "");
	r.data = (const uint8_t *)big;
	r.data_len = r.meta.size = sizeof(big);
	r.meta.symlink = true;
	cr_assert_eq(round_trip(&r, &d, &enc), -EBADMSG);
	free(enc);
}
