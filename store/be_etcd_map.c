/*
 * be_etcd_map.c - the etcd backend's map of what etcd holds (be_etcd_i.h),
 * its keys, and the JSON of an entry (P/e/DD/ID):
 *	record:    {"t":"r"|"l", "v":N, "h":"32 hex", "s":SIZE, "m":MODE,
 *		    "u":UID, "g":GID, "mt":[SEC,NSEC], "vr":REV?, "xa":"b64"?}
 *		   "l": a symlink; "vr": the revision of version N, when it
 *		   is not the key's mod_revision (after a metadata change);
 *		   "xa": the packed user xattrs (store_i.h's xa_* format)
 *	namespace: {"t":"d", "m":MODE, "u":UID, "g":GID, "mt":[SEC,NSEC]}
 * P/n/ID holds {"v":N}, the last version of a deleted record.
 */
#include "be_etcd_i.h"
#include "base64.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- the map ------------------------------------------------------------ */

static size_t slot_of(const struct be_etcd *b, const char *id, size_t len)
{
	return (size_t)XXH3_64bits(id, len) & (b->nslots - 1);
}

int bmap_init(struct be_etcd *b)
{
	b->nslots = 1024;
	b->count = 0;
	b->slots = calloc(b->nslots, sizeof(*b->slots));
	return b->slots ? 0 : -ENOMEM;
}

void bmap_free(struct be_etcd *b)
{
	for (size_t i = 0; b->slots && i < b->nslots; i++) {
		struct bent *n = b->slots[i];

		while (n) {
			struct bent *next = n->next;

			free(n);
			n = next;
		}
	}
	free(b->slots);
	b->slots = NULL;
}

struct bent *bmap_find(struct be_etcd *b, const char *id, size_t len)
{
	struct bent *n = b->slots[slot_of(b, id, len)];

	for (; n; n = n->next)
		if (strncmp(n->id, id, len) == 0 && n->id[len] == '\0')
			return n;
	return NULL;
}

/* Double the table (load above 1); on ENOMEM it stays as it is. */
static void grow(struct be_etcd *b)
{
	size_t old = b->nslots;
	struct bent **was = b->slots;
	struct bent **slots = calloc(old * 2, sizeof(*slots));

	if (!slots)
		return;
	b->slots = slots;
	b->nslots = old * 2;
	for (size_t i = 0; i < old; i++) {
		struct bent *n = was[i];

		while (n) {
			struct bent *next = n->next;
			size_t k = slot_of(b, n->id, strlen(n->id));

			n->next = slots[k];
			slots[k] = n;
			n = next;
		}
	}
	free(was);
}

struct bent *bmap_add(struct be_etcd *b, const char *id, size_t len)
{
	struct bent *n = bmap_find(b, id, len);
	size_t k;

	if (n)
		return n;
	if (b->count >= b->nslots)
		grow(b);
	n = calloc(1, sizeof(*n) + len + 1);
	if (!n)
		return NULL;
	memcpy(n->id, id, len);
	k = slot_of(b, id, len);
	n->next = b->slots[k];
	b->slots[k] = n;
	b->count++;
	return n;
}

/* ---- keys --------------------------------------------------------------- */

/* P + the formatted middle + bytes id[len] (may be NULL) + tail. */
static char *key_of(const struct be_etcd *b, const char *mid, const char *id,
		    size_t len, const char *tail, size_t *klen)
{
	size_t ml = strlen(mid), tl = tail ? strlen(tail) : 0;
	size_t n = b->plen + ml + len + tl;
	char *k = malloc(n + 1);

	if (!k)
		return NULL;
	memcpy(k, b->prefix, b->plen);
	memcpy(k + b->plen, mid, ml);
	if (len)
		memcpy(k + b->plen + ml, id, len);
	if (tl)
		memcpy(k + b->plen + ml + len, tail, tl);
	k[n] = '\0';
	*klen = n;
	return k;
}

/* Components of id[len] (1 + its slashes; 0 for ""). */
static unsigned components(const char *id, size_t len)
{
	unsigned d = len ? 1 : 0;

	for (size_t i = 0; i < len; i++)
		d += id[i] == '/';
	return d;
}

char *bkey_entry(const struct be_etcd *b, const char *id, size_t len,
		 size_t *klen)
{
	char mid[16];

	snprintf(mid, sizeof(mid), "/e/%02u/", components(id, len));
	return key_of(b, mid, id, len, NULL, klen);
}

char *bkey_version(const struct be_etcd *b, const char *id, size_t len,
		   uint64_t version, size_t *klen)
{
	char tail[32];

	snprintf(tail, sizeof(tail), "//%020llu", (unsigned long long)version);
	return key_of(b, "/v/", id, len, tail, klen);
}

char *bkey_tomb(const struct be_etcd *b, const char *id, size_t len,
		size_t *klen)
{
	return key_of(b, "/n/", id, len, NULL, klen);
}

char *bkey_format(const struct be_etcd *b, size_t *klen)
{
	return key_of(b, "/format", NULL, 0, NULL, klen);
}

char *bkey_children(const struct be_etcd *b, const char *ns, size_t *klen)
{
	size_t len = strlen(ns);
	char mid[16];

	snprintf(mid, sizeof(mid), "/e/%02u/", components(ns, len) + 1);
	return key_of(b, mid, ns, len, len ? "/" : NULL, klen);
}

/* ---- entry JSON --------------------------------------------------------- */

/* The JSON text of `o` (taken), malloc'ed, or NULL. */
static char *dump(json_t *o, size_t *len)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (s)
		*len = strlen(s);
	return s;
}

static json_t *times(const struct timespec *t)
{
	return json_pack("[I,I]", (json_int_t)t->tv_sec,
			 (json_int_t)t->tv_nsec);
}

/* Set "xa" of `o` to base64 of the packed xattrs. 0 or -ENOMEM. */
static int set_xa(json_t *o, const uint8_t *xa, size_t len)
{
	char *t;
	int rc;

	if (!len)
		return 0;
	t = malloc(base64_encoded_len(len) + 1);
	if (!t)
		return -ENOMEM;
	base64_encode(t, xa, len);
	rc = json_object_set_new(o, "xa", json_string(t)) ? -ENOMEM : 0;
	free(t);
	return rc;
}

/* Who made the change and when, for the history (etcd_hist.c):
   "w":[UID,PID,"COMM"], "ct":NS. 0 or -ENOMEM. */
static int set_who(json_t *o, const struct rec *r)
{
	return json_object_set_new(o, "w",
				   json_pack("[I,I,s]", (json_int_t)r->who.uid,
					     (json_int_t)r->who.pid,
					     r->who.comm)) ||
			       json_object_set_new(
				       o, "ct",
				       json_integer((json_int_t)r->time_ns))
		       ? -ENOMEM
		       : 0;
}

char *bjson_record(const struct rec *r, bool with_rev, size_t *len)
{
	const struct store_meta *m = &r->meta;
	char hex[33];
	json_t *o;

	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", m->hash[i]);
	o = json_pack("{s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:o}", "t",
		      m->symlink ? "l" : "r", "v", (json_int_t)m->version, "h",
		      hex, "s", (json_int_t)m->size, "m", (json_int_t)m->mode,
		      "u", (json_int_t)m->uid, "g", (json_int_t)m->gid, "mt",
		      times(&m->mtime));
	if (o && with_rev &&
	    json_object_set_new(o, "vr", json_integer((json_int_t)m->revision)))
		goto fail;
	if (o && set_xa(o, r->xa, r->xa_len))
		goto fail;
	if (o && set_who(o, r))
		goto fail;
	if (o && r->type == REC_RENAME &&
	    (json_object_set_new(o, "rf", json_stringn(r->from, r->from_len)) ||
	     json_object_set_new(o, "rv",
				 json_integer((json_int_t)r->from_version))))
		goto fail;
	return dump(o, len);
fail:
	json_decref(o);
	return NULL;
}

char *bjson_tomb(const struct rec *r, uint64_t version, size_t *len)
{
	json_t *o = json_pack("{s:I}", "v", (json_int_t)version);

	if (o && set_who(o, r)) {
		json_decref(o);
		return NULL;
	}
	return dump(o, len);
}

char *bjson_ns(const struct bent *n, size_t *len)
{
	return dump(json_pack("{s:s,s:I,s:I,s:I,s:o}", "t", "d", "m",
			      (json_int_t)n->mode, "u", (json_int_t)n->uid, "g",
			      (json_int_t)n->gid, "mt", times(&n->mtime)),
		    len);
}

static int parse_xa(json_t *o, uint8_t **xa, size_t *xa_len)
{
	const char *t = json_string_value(json_object_get(o, "xa"));
	size_t n = t ? strlen(t) : 0;
	long got;

	*xa = NULL;
	*xa_len = 0;
	if (!n)
		return 0;
	*xa = malloc(n / 4 * 3 + 1);
	if (!*xa)
		return -ENOMEM;
	got = base64_decode(*xa, t, n);
	if (got < 0 || xa_validate(*xa, (size_t)got)) {
		free(*xa);
		*xa = NULL;
		return -EBADMSG;
	}
	*xa_len = (size_t)got;
	return 0;
}

static int parse_record(json_t *o, const char *t, int64_t mod_rev,
			struct store_meta *m, uint8_t **xa, size_t *xa_len)
{
	json_int_t v = 0, s = 0, mode = 0, u = 0, g = 0, sec = 0, ns = 0;
	json_int_t vr = 0;
	const char *h = NULL;

	if (json_unpack(o, "{s:I,s:s,s:I,s:I,s:I,s:I,s:[I,I],s?I}", "v", &v,
			"h", &h, "s", &s, "m", &mode, "u", &u, "g", &g, "mt",
			&sec, &ns, "vr", &vr) ||
	    v <= 0 || s < 0)
		return -EBADMSG;
	memset(m, 0, sizeof(*m));
	if (util_hex_decode(h, m->hash, 16))
		return -EBADMSG;
	m->version = (uint64_t)v;
	m->revision = vr ? (uint64_t)vr : (uint64_t)mod_rev;
	m->size = (uint64_t)s;
	m->mode = (uint32_t)mode & 07777;
	m->uid = (uint32_t)u;
	m->gid = (uint32_t)g;
	m->mtime.tv_sec = (time_t)sec;
	m->mtime.tv_nsec = (long)ns;
	m->hash_valid = true;
	m->symlink = t[0] == 'l';
	return parse_xa(o, xa, xa_len);
}

int bjson_parse(const char *v, size_t len, int64_t mod_rev, bool *is_ns,
		struct store_meta *meta, uint8_t **xa, size_t *xa_len,
		struct bent *n)
{
	json_t *o = json_loadb(v, len, 0, NULL);
	json_int_t m = 0, u = 0, g = 0, sec = 0, ns = 0;
	const char *t = json_string_value(json_object_get(o, "t"));
	int rc = -EBADMSG;

	*xa = NULL;
	*xa_len = 0;
	if (!t)
		goto out;
	*is_ns = strcmp(t, "d") == 0;
	if (!*is_ns) {
		if (!strcmp(t, "r") || !strcmp(t, "l"))
			rc = parse_record(o, t, mod_rev, meta, xa, xa_len);
		goto out;
	}
	if (json_unpack(o, "{s:I,s:I,s:I,s:[I,I]}", "m", &m, "u", &u, "g", &g,
			"mt", &sec, &ns))
		goto out;
	n->mode = (uint32_t)m & 07777;
	n->uid = (uint32_t)u;
	n->gid = (uint32_t)g;
	n->mtime.tv_sec = (time_t)sec;
	n->mtime.tv_nsec = (long)ns;
	rc = 0;
out:
	json_decref(o);
	return rc;
}
