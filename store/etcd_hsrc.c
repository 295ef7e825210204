/*
 * etcd_hsrc.c - the history's change source (history.h, struct
 * hist_source) for a store on etcd: the changes of the store in etcd
 * revision order, read with a watch of P/ from the revision after the
 * history's last one (etcd_hist.c starts the writer only on the mount
 * that holds P/hist/leader).
 *
 * One etcd revision that touched P/e, P/v or P/n is one frame (a txn's
 * events come together in one watch response). Its changes are made
 * from the keys of that revision (recfs(5), A STORE ON ETCD):
 *  - a put of P/v/ID//N is version N of ID: its content is the value,
 *    its metadata the JSON of P/e/DD/ID put in the same revision (hash,
 *    size, mode, owner, "w" who and "ct" when; "rf"/"rv": a rename's
 *    source, which is then a delete of the source with Recfs-To);
 *  - a delete of P/e/DD/ID holding a record (its previous value, the
 *    watch's prev_kv) is the delete of its version; P/n/ID put in the
 *    same revision says who and when.
 * Puts come first, in the order of the txn, then deletes. A revision
 * that made no version (metadata, namespaces) is a frame without changes.
 *
 * Going back (seek) reopens the watch at that revision. A revision that
 * etcd compacted away cannot be read: next fails with -ERANGE or
 * -ECANCELED (the writer retries and logs it); compact etcd only below
 * P/hist/done (recfs(5)).
 */
#include "etcd_hist.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 500

struct hch {
	struct store_change ch;
	json_t *j; /* the entry's (or tombstone's) JSON: strings of ch */
	char *id, *other;
	bool used;
};

struct hcur {
	struct ehist *eh;
	struct etcd_watch *w;
	struct etcd_events evs; /* received, from `at` on */
	size_t at;
	uint64_t rev;	   /* the frame `next` went to (0: none) */
	uint64_t next_rev; /* every revision before it was returned */
	uint64_t seen;	   /* the last revision of an event received */
	size_t frame_end;  /* its events are evs.ev[at_frame..frame_end) */
	size_t at_frame;
	struct hch *ch;
	size_t n, cap;
};

/* What kind of key of P/: 'e', 'v', 'n', or 0; *id and *len: its ID,
 *version for 'v'. */
static int key_kind(const struct ehist *eh, const struct etcd_kv *kv,
		    const char **id, size_t *len, uint64_t *version)
{
	const char *k = kv->key, *end = kv->key + kv->key_len;
	size_t pl = eh->plen;

	if (kv->key_len < pl + 4 || memcmp(k, eh->prefix, pl) != 0 ||
	    k[pl] != '/' || k[pl + 2] != '/')
		return 0;
	k += pl + 3;
	switch (k[-2]) {
	case 'e':
		if (end - k < 4 || k[2] != '/')
			return 0;
		*id = k + 3;
		*len = (size_t)(end - *id);
		return 'e';
	case 'n':
		*id = k;
		*len = (size_t)(end - k);
		return 'n';
	case 'v':
		if (end - k < 23 || memcmp(end - 22, "//", 2) != 0)
			return 0;
		*id = k;
		*len = (size_t)(end - 22 - k);
		*version = strtoull(end - 20, NULL, 10);
		return 'v';
	}
	return 0;
}

static void frame_clear(struct hcur *c)
{
	for (size_t i = 0; i < c->n; i++) {
		json_decref(c->ch[i].j);
		free(c->ch[i].id);
		free(c->ch[i].other);
	}
	c->n = 0;
}

static struct hch *frame_add(struct hcur *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct hch *p = realloc(c->ch, cap * sizeof(*p));

		if (!p)
			return NULL;
		c->ch = p;
		c->cap = cap;
	}
	memset(&c->ch[c->n], 0, sizeof(c->ch[0]));
	return &c->ch[c->n++];
}

/* The event of this frame putting key kind `kind` of id[len], or NULL. */
static const struct etcd_kv *frame_find(struct hcur *c, int kind,
					const char *id, size_t len)
{
	const char *eid;
	size_t elen;
	uint64_t v;

	for (size_t i = c->at_frame; i < c->frame_end; i++) {
		const struct etcd_event *ev = &c->evs.ev[i];

		if (ev->type == ETCD_EVENT_PUT &&
		    key_kind(c->eh, &ev->kv, &eid, &elen, &v) == kind &&
		    elen == len && memcmp(eid, id, len) == 0)
			return &ev->kv;
	}
	return NULL;
}

/* Who and when, from "w" and "ct" of `j` (else `mt` of an entry). */
static void set_who(struct store_change *ch, json_t *j)
{
	json_int_t uid = 0, pid = 0, ct = 0, s = 0, ns = 0;
	const char *comm = "";

	json_unpack(json_object_get(j, "w"), "[I,I,s]", &uid, &pid, &comm);
	if (json_unpack(j, "{s:I}", "ct", &ct) != 0 &&
	    json_unpack(json_object_get(j, "mt"), "[I,I]", &s, &ns) == 0)
		ct = s * 1000000000 + ns;
	ch->uid = (uint32_t)uid;
	ch->pid = (uint32_t)pid;
	snprintf(ch->comm, sizeof(ch->comm), "%s", comm);
	ch->time.tv_sec = (time_t)(ct / 1000000000);
	ch->time.tv_nsec = (long)(ct % 1000000000);
}

/* A put of P/v/ID//N: version N, its metadata from P/e/DD/ID. */
static int add_put(struct hcur *c, const struct etcd_kv *kv, const char *id,
		   size_t len, uint64_t version)
{
	const struct etcd_kv *e = frame_find(c, 'e', id, len);
	struct hch *h = frame_add(c);
	json_int_t size = 0, mode = 0, uid = 0, gid = 0, rv = 0;
	const char *t = "r", *hash = NULL, *rf = NULL;

	if (!h)
		return -ENOMEM;
	h->id = strndup(id, len);
	h->j = e ? json_loadb(e->value, e->value_len, 0, NULL) : NULL;
	if (!h->id || !h->j ||
	    json_unpack(h->j, "{s:s,s:s,s:I,s:I,s:I,s:I,s?s,s?I}", "t", &t, "h",
			&hash, "s", &size, "m", &mode, "u", &uid, "g", &gid,
			"rf", &rf, "rv", &rv) != 0)
		return rerr_set(-EBADMSG,
				"record %.*s: version %llu at etcd revision "
				"%llu: no readable entry in the same revision",
				(int)len, id, (unsigned long long)version,
				(unsigned long long)kv->mod_revision);
	h->ch = (struct store_change){
		.revision = (uint64_t)kv->mod_revision,
		.op = STORE_CHANGE_PUT,
		.id = h->id,
		.id_len = len,
		.version = version,
		.hash_valid = util_hex_decode(hash, h->ch.hash, 16) == 0,
		.size = (uint64_t)size,
		.symlink = strcmp(t, "l") == 0,
		.meta_known = true,
		.mode = (uint32_t)mode,
		.owner_uid = (uint32_t)uid,
		.owner_gid = (uint32_t)gid,
		.has_data = true,
		.data = (const uint8_t *)kv->value,
		.data_len = kv->value_len,
	};
	util_hex_decode(hash, h->ch.hash, 16);
	if (rf && !(h->other = strdup(rf)))
		return -ENOMEM;
	h->ch.other = h->other;
	h->ch.other_len = rf ? strlen(rf) : 0;
	h->ch.other_version = (uint64_t)rv;
	set_who(&h->ch, h->j);
	return 0;
}

/* The rename (a put of this frame) whose source is id[len], or NULL. */
static const char *renamed_to(struct hcur *c, const char *id, size_t len)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct store_change *p = &c->ch[i].ch;

		if (p->op == STORE_CHANGE_PUT && p->other &&
		    p->other_len == len && memcmp(p->other, id, len) == 0)
			return p->id;
	}
	return NULL;
}

/* A delete of P/e/DD/ID: the delete of a record's last version. */
static int add_delete(struct hcur *c, const struct etcd_event *ev,
		      const char *id, size_t len)
{
	const struct etcd_kv *n = frame_find(c, 'n', id, len);
	json_t *prev = json_loadb(ev->prev_kv.value ? ev->prev_kv.value : "",
				  ev->prev_kv.value_len, 0, NULL);
	json_int_t version = 0;
	const char *t = "", *to;
	struct hch *h;

	if (!prev || json_unpack(prev, "{s:s}", "t", &t) || !strcmp(t, "d")) {
		json_decref(prev); /* a namespace, or not known: no version */
		return 0;
	}
	json_unpack(prev, "{s:I}", "v", &version);
	json_decref(prev);
	if (!(h = frame_add(c)) || !(h->id = strndup(id, len)))
		return -ENOMEM;
	h->j = n ? json_loadb(n->value, n->value_len, 0, NULL) : NULL;
	to = renamed_to(c, id, len);
	if (to && !(h->other = strdup(to)))
		return -ENOMEM;
	h->ch = (struct store_change){
		.revision = (uint64_t)ev->kv.mod_revision,
		.op = STORE_CHANGE_DELETE,
		.id = h->id,
		.id_len = len,
		.other = h->other,
		.other_len = h->other ? strlen(h->other) : 0,
		.version = (uint64_t)version,
	};
	if (h->j)
		set_who(&h->ch, h->j);
	return 0;
}

/* The changes of the frame evs.ev[at_frame..frame_end). */
static int frame_build(struct hcur *c)
{
	const char *id;
	size_t len;
	uint64_t v;
	int rc = 0;

	frame_clear(c);
	for (size_t i = c->at_frame; rc == 0 && i < c->frame_end; i++) {
		const struct etcd_event *ev = &c->evs.ev[i];

		if (ev->type == ETCD_EVENT_PUT &&
		    key_kind(c->eh, &ev->kv, &id, &len, &v) == 'v')
			rc = add_put(c, &ev->kv, id, len, v);
	}
	for (size_t i = c->at_frame; rc == 0 && i < c->frame_end; i++) {
		const struct etcd_event *ev = &c->evs.ev[i];

		if (ev->type == ETCD_EVENT_DELETE &&
		    key_kind(c->eh, &ev->kv, &id, &len, &v) == 'e')
			rc = add_delete(c, ev, id, len);
	}
	return rc;
}

static int watch_open(struct hcur *c, uint64_t from)
{
	char end[512];
	size_t kl = c->eh->plen + 1;
	char *key = malloc(kl + 1);
	struct etcd_watch_req req = {.start_revision = (int64_t)from,
				     .prev_kv = 1};
	int rc;

	if (!key || kl > sizeof(end)) {
		free(key);
		return -ENOMEM;
	}
	memcpy(key, c->eh->prefix, kl - 1);
	key[kl - 1] = '/';
	req.key = key;
	req.key_len = kl;
	req.range_end = end;
	req.range_end_len = etcd_prefix_end(end, key, kl);
	rc = etcd_watch_open(c->eh->e, &req, &c->w);
	free(key);
	return rc;
}

static int hsrc_open(void *arg, uint64_t after, void **out)
{
	struct hcur *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->eh = arg;
	c->next_rev = after + 1;
	c->seen = after;
	rc = watch_open(c, after + 1);
	if (rc) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* Is this event one of the store's (P/e, P/v, P/n)? */
static bool ours(struct hcur *c, const struct etcd_event *ev)
{
	const char *id;
	size_t len;
	uint64_t v;

	return key_kind(c->eh, &ev->kv, &id, &len, &v) != 0;
}

static int more(struct hcur *c)
{
	struct etcd_events evs = {0};
	int rc;

	etcd_events_free(&c->evs);
	memset(&c->evs, 0, sizeof(c->evs));
	c->at = c->at_frame = c->frame_end = 0;
	rc = etcd_watch_next(c->w, WAIT_MS, &evs);
	if (rc == 0)
		c->evs = evs;
	if (rc == 0 && evs.n &&
	    (uint64_t)evs.ev[evs.n - 1].kv.mod_revision > c->seen)
		c->seen = (uint64_t)evs.ev[evs.n - 1].kv.mod_revision;
	return rc;
}

static int hsrc_next(void *cur, uint64_t target, struct hist_frame *f)
{
	struct hcur *c = cur;
	int rc;

	frame_clear(c);
	c->at = c->frame_end > c->at ? c->frame_end : c->at;
	for (;;) {
		while (c->at < c->evs.n && !ours(c, &c->evs.ev[c->at]))
			c->at++;
		if (c->at < c->evs.n) {
			const struct etcd_event *ev = &c->evs.ev[c->at];
			size_t e = c->at;

			if ((uint64_t)ev->kv.mod_revision > target)
				return 0;
			while (e < c->evs.n && c->evs.ev[e].kv.mod_revision ==
						       ev->kv.mod_revision)
				e++;
			c->at_frame = c->at;
			c->frame_end = e;
			c->rev = (uint64_t)ev->kv.mod_revision;
			c->next_rev = c->rev + 1;
			*f = (struct hist_frame){.revision = c->rev,
						 .len = 64 * (e - c->at),
						 .ends = true};
			rc = frame_build(c);
			for (size_t i = 0; rc == 0 && i < c->n; i++)
				f->len += c->ch[i].ch.data_len;
			return rc ? rc : 1;
		}
		/* a txn's events come in one response: all up to `seen`
		   are here */
		if (c->seen >= target)
			return 0;
		rc = more(c);
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc)
			return rc;
	}
}

static int hsrc_changes(void *cur,
			int (*fn)(void *arg, const struct store_change *ch),
			void *arg)
{
	struct hcur *c = cur;
	int rc = 0;

	if (!c->rev)
		return -EINVAL;
	for (size_t i = 0; rc == 0 && i < c->n; i++)
		rc = fn(arg, &c->ch[i].ch);
	return rc;
}

static uint64_t hsrc_pos(void *cur)
{
	struct hcur *c = cur;

	for (size_t i = c->frame_end > c->at ? c->frame_end : c->at;
	     i < c->evs.n; i++)
		if (ours(c, &c->evs.ev[i]))
			return (uint64_t)c->evs.ev[i].kv.mod_revision;
	return c->next_rev;
}

static int hsrc_seek(void *cur, uint64_t rev)
{
	struct hcur *c = cur;

	frame_clear(c);
	etcd_events_free(&c->evs);
	memset(&c->evs, 0, sizeof(c->evs));
	c->at = c->at_frame = c->frame_end = 0;
	c->rev = 0;
	c->next_rev = rev;
	c->seen = rev - 1;
	etcd_watch_close(c->w);
	c->w = NULL;
	return watch_open(c, rev);
}

static void hsrc_close(void *cur)
{
	struct hcur *c = cur;

	frame_clear(c);
	free(c->ch);
	etcd_events_free(&c->evs);
	if (c->w)
		etcd_watch_close(c->w);
	free(c);
}

struct hist_source ehist_source(struct ehist *eh)
{
	return (struct hist_source){hsrc_open, hsrc_next, hsrc_changes,
				    hsrc_pos,  hsrc_seek, hsrc_close,
				    eh};
}
