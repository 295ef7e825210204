/*
 * test_change_decode.c - journal records decoded as store changes
 * (store/change_decode.c, the one decoder behind the history and
 * `recfsctl watch`): a put with inline content, a rename (a put then a
 * delete), a txn, a REC_TXN_PART frame (the parts of a change of many
 * frames, not its end), a metadata change (no change), and bytes that
 * are no record.
 */
#include "change_decode.h"
#include "store_i.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAXCH 8

struct seen {
	struct store_change ch[MAXCH];
	char id[MAXCH][64], other[MAXCH][64];
	size_t n;
};

static int keep(void *arg, const struct store_change *ch)
{
	struct seen *s = arg;

	cr_assert_lt(s->n, MAXCH);
	s->ch[s->n] = *ch;
	memcpy(s->id[s->n], ch->id, ch->id_len);
	s->id[s->n][ch->id_len] = '\0';
	if (ch->other) {
		memcpy(s->other[s->n], ch->other, ch->other_len);
		s->other[s->n][ch->other_len] = '\0';
	}
	s->n++;
	return 0;
}

static struct rec put_rec(const char *id, uint64_t version, const char *data)
{
	struct rec r = {.type = REC_PUT};

	r.id = id;
	r.id_len = strlen(id);
	r.meta.version = version;
	r.meta.mode = 0640;
	r.meta.uid = 7;
	r.meta.gid = 8;
	r.meta.size = strlen(data);
	r.has_data = true;
	r.data = (const uint8_t *)data;
	r.data_len = strlen(data);
	r.who.uid = 1000;
	r.who.pid = 42;
	strcpy(r.who.comm, "cp");
	r.time_ns = 1700000000123456789LL;
	return r;
}

/* A record with its inline bytes after it, as the journal holds it. */
static uint8_t *encode(const struct rec *r, size_t *len)
{
	uint8_t *enc = NULL, *all;
	size_t n = 0;

	cr_assert_eq(codec_encode(r, &enc, &n), 0);
	all = malloc(n + r->data_len + 1);
	cr_assert_not_null(all);
	memcpy(all, enc, n);
	if (r->has_data)
		memcpy(all + n, r->data, r->data_len);
	free(enc);
	*len = n + (r->has_data ? r->data_len : 0);
	return all;
}

TestSuite(change_decode, .timeout = 30);

Test(change_decode, a_put_with_inline_content)
{
	struct rec r = put_rec("ns/a", 3, "hello");
	struct seen s = {0};
	bool ends = false;
	size_t len;
	uint8_t *p = encode(&r, &len);

	cr_assert_eq(change_decode(p, len, 17, keep, &s, &ends), 0);
	cr_assert(ends);
	cr_assert(change_frame_ends(p, len));
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.id[0], "ns/a");
	cr_assert_eq(s.ch[0].op, STORE_CHANGE_PUT);
	cr_assert_eq(s.ch[0].revision, 17);
	cr_assert_eq(s.ch[0].version, 3);
	cr_assert(s.ch[0].has_data);
	cr_assert_eq(s.ch[0].data_len, 5);
	cr_assert(s.ch[0].meta_known);
	cr_assert_eq(s.ch[0].mode, 0640);
	cr_assert_eq(s.ch[0].owner_uid, 7);
	cr_assert_eq(s.ch[0].owner_gid, 8);
	cr_assert_eq(s.ch[0].uid, 1000);
	cr_assert_str_eq(s.ch[0].comm, "cp");
	cr_assert_eq(s.ch[0].time.tv_sec, 1700000000);
	cr_assert_eq(s.ch[0].time.tv_nsec, 123456789);
	free(p);
}

Test(change_decode, a_rename_is_a_put_then_a_delete)
{
	struct rec r = put_rec("ns/to", 1, "");
	struct seen s = {0};
	size_t len;
	uint8_t *p;

	r.type = REC_RENAME;
	r.has_data = false;
	r.data = NULL;
	r.data_len = 0;
	r.from = "ns/from";
	r.from_len = strlen(r.from);
	r.from_version = 4;
	p = encode(&r, &len);
	cr_assert_eq(change_decode(p, len, 9, keep, &s, NULL), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.ch[0].op, STORE_CHANGE_PUT);
	cr_assert_str_eq(s.id[0], "ns/to");
	cr_assert_str_eq(s.other[0], "ns/from");
	cr_assert_eq(s.ch[0].other_version, 4);
	cr_assert_eq(s.ch[1].op, STORE_CHANGE_DELETE);
	cr_assert_str_eq(s.id[1], "ns/from");
	cr_assert_str_eq(s.other[1], "ns/to");
	cr_assert_eq(s.ch[1].version, 4);
	free(p);
}

/* A txn of three parts, as REC_TXN (ends the change) and as one of the
   REC_TXN_PART frames before it (does not). */
static void txn_frame(int type, bool want_ends)
{
	struct rec parts[3] = {put_rec("t/a", 1, "one"), put_rec("t/b", 2, ""),
			       put_rec("t/c", 5, "three")};
	struct seen s = {0};
	bool ends = !want_ends;
	uint8_t *p = NULL;
	size_t len = 0;

	parts[1].type = REC_DEL;
	parts[1].has_data = false;
	parts[1].data_len = 0;
	cr_assert_eq(codec_encode_txn(parts, 3, &p, &len), 0);
	p[0] = (uint8_t)type;
	cr_assert_eq(change_decode(p, len, 30, keep, &s, &ends), 0);
	cr_assert_eq(ends, want_ends);
	cr_assert_eq(change_frame_ends(p, len), want_ends);
	cr_assert_eq(s.n, 3);
	cr_assert_str_eq(s.id[0], "t/a");
	cr_assert_eq(s.ch[1].op, STORE_CHANGE_DELETE);
	cr_assert_eq(s.ch[1].version, 2);
	cr_assert_str_eq(s.id[2], "t/c");
	cr_assert_eq(s.ch[2].data_len, 5);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(s.ch[i].revision, 30);
	free(p);
}

Test(change_decode, a_txn_frame_ends_its_change)
{
	txn_frame(REC_TXN, true);
}

Test(change_decode, a_txn_part_frame_does_not)
{
	txn_frame(REC_TXN_PART, false);
}

Test(change_decode, a_metadata_change_makes_none_and_garbage_is_refused)
{
	struct rec r = put_rec("ns/m", 2, "");
	uint8_t junk[8] = {REC_TXN_PART, 0, 0, 0, 0, 0, 1, 2};
	struct seen s = {0};
	size_t len;
	uint8_t *p;

	r.type = REC_META;
	r.has_data = false;
	r.data_len = 0;
	p = encode(&r, &len);
	cr_assert_eq(change_decode(p, len, 5, keep, &s, NULL), 0);
	cr_assert_eq(s.n, 0);
	free(p);
	cr_assert_eq(change_decode(junk, sizeof(junk), 6, keep, &s, NULL),
		     -EBADMSG);
	junk[2] = 1; /* one part that is not one */
	cr_assert_eq(change_decode(junk, sizeof(junk), 6, keep, &s, NULL),
		     -EBADMSG);
	cr_assert_eq(s.n, 0);
}
