/*
 * change_decode.c - journal records to store changes (change_decode.h):
 * the one reader of the journal's record format outside the store's
 * commit and recovery paths.
 */
#include "change_decode.h"
#include "store_i.h"
#include "bytes.h"

#include <errno.h>
#include <string.h>

static void set_who(struct store_change *ch, uint64_t rev, const struct rec *r)
{
	ch->revision = rev;
	ch->time.tv_sec = (time_t)(r->time_ns / 1000000000);
	ch->time.tv_nsec = (long)(r->time_ns % 1000000000);
	ch->uid = r->who.uid;
	ch->pid = r->who.pid;
	memcpy(ch->comm, r->who.comm, sizeof(ch->comm));
	ch->comm[sizeof(ch->comm) - 1] = '\0';
}

static void set_id(struct store_change *ch, const char *id, size_t id_len,
		   const char *other, size_t other_len)
{
	ch->id = id;
	ch->id_len = id_len;
	ch->other = other;
	ch->other_len = other ? other_len : 0;
}

/* The new version of a PUT, or of a rename's target. */
static void set_content(struct store_change *ch, const struct rec *r)
{
	ch->op = STORE_CHANGE_PUT;
	ch->version = r->meta.version;
	ch->size = r->meta.size;
	ch->hash_valid = r->meta.hash_valid;
	memcpy(ch->hash, r->meta.hash, 16);
	ch->symlink = r->meta.symlink;
	/* the version's own mode and owner (a journal record of an older
	   binary says 0:0, which they were then) */
	ch->meta_known = true;
	ch->mode = r->meta.mode;
	ch->owner_uid = r->meta.uid;
	ch->owner_gid = r->meta.gid;
	ch->has_data = r->has_data;
	ch->data = r->data;
	ch->data_len = r->has_data ? r->data_len : 0;
	ch->stage = r->stage;
	ch->stage_len = r->stage ? r->stage_len : 0;
}

/* A PUT or DEL, alone or a txn's part. */
static int one_change(uint64_t rev, const struct rec *r,
		      int (*fn)(void *, const struct store_change *), void *arg)
{
	struct store_change ch;

	memset(&ch, 0, sizeof(ch));
	set_who(&ch, rev, r);
	set_id(&ch, r->id, r->id_len, NULL, 0);
	if (r->type == REC_DEL) {
		ch.op = STORE_CHANGE_DELETE;
		ch.version = r->meta.version;
	} else {
		set_content(&ch, r);
	}
	return fn(arg, &ch);
}

/* A rename: the put of its target, then the delete of its source. */
static int rename_changes(uint64_t rev, const struct rec *r,
			  int (*fn)(void *, const struct store_change *),
			  void *arg)
{
	struct store_change ch;
	int rc;

	memset(&ch, 0, sizeof(ch));
	set_who(&ch, rev, r);
	set_id(&ch, r->id, r->id_len, r->from, r->from_len);
	set_content(&ch, r);
	ch.other_version = r->from_version;
	rc = fn(arg, &ch);
	if (rc)
		return rc;
	memset(&ch, 0, sizeof(ch));
	set_who(&ch, rev, r);
	set_id(&ch, r->from, r->from_len, r->id, r->id_len);
	ch.op = STORE_CHANGE_DELETE;
	ch.version = r->from_version;
	return fn(arg, &ch);
}

/*
 * Decode a frame. A REC_TXN_PART frame has REC_TXN's layout ([u8 type]
 * [u8 flags 0][u32 n] parts): while the codec does not know the type, it
 * is read here as a REC_TXN, its parts checked by codec_txn_next.
 */
static int decode(const uint8_t *p, size_t len, struct rec *r, bool *part)
{
	int rc = codec_decode(p, len, r);

	*part = len > 0 && p[0] == REC_TXN_PART;
	if (rc == 0 || !*part)
		return rc;
	memset(r, 0, sizeof(*r));
	if (len < 6 || p[1] != 0)
		return -EBADMSG;
	r->type = REC_TXN;
	r->nparts = rd_le32(p + 2);
	r->parts = p + 6;
	r->parts_len = len - 6;
	return r->nparts ? 0 : -EBADMSG;
}

int change_decode(const void *payload, size_t len, uint64_t rev,
		  int (*fn)(void *arg, const struct store_change *ch),
		  void *arg, bool *ends)
{
	struct rec r, part;
	size_t off = 0;
	bool is_part;
	int rc = decode(payload, len, &r, &is_part);

	if (ends)
		*ends = !is_part;
	if (rc)
		return -EBADMSG;
	if (is_part)
		r.type = REC_TXN; /* what codec_txn_next reads */
	switch ((int)r.type) {
	case REC_META:
		return 0; /* no new version */
	case REC_PUT:
	case REC_DEL:
		return one_change(rev, &r, fn, arg);
	case REC_RENAME:
		return rename_changes(rev, &r, fn, arg);
	case REC_TXN:
		while ((rc = codec_txn_next(&r, &off, &part)) == 1)
			if ((rc = one_change(rev, &part, fn, arg)) != 0)
				return rc;
		return rc;
	default:
		return -EBADMSG;
	}
}

bool change_frame_ends(const void *payload, size_t len)
{
	return len == 0 || ((const uint8_t *)payload)[0] != REC_TXN_PART;
}
