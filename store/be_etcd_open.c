/*
 * be_etcd_open.c - opening a store on etcd (be_etcd_open): the URI's
 * members, the store's descriptor P/format (written by a create on an
 * empty prefix, create-only), and loading what etcd holds
 * (be_etcd_load): every key of P/e/ and P/n/, page by page at one etcd
 * revision, so that the map and the core's index are one consistent
 * snapshot. Errors are reported naming the URI and etcd's cause.
 */
#include "be_etcd_i.h"
#include "err.h"
#include "id.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_JSON "{\"format\":1,\"backend\":\"etcd\"}"

/* What one key of a load is handed to. */
struct load {
	struct be_etcd *b;
	int (*fn)(void *arg, const struct rec *r);
	void *arg;
};

typedef int (*kv_fn)(struct load *l, const struct etcd_kv *kv);

/* fn for every key under P + mid ("/e/"), at revision *rev (0: the
   current one, which is set). */
static int range_each(struct load *l, const char *mid, int64_t *rev, kv_fn fn)
{
	struct be_etcd *b = l->b;
	size_t ml = strlen(mid), klen = b->plen + ml, elen;
	size_t cap = klen + ID_MAX_LEN + 32;
	char *key = malloc(cap), end[512];
	struct etcd_range q = {0};
	struct etcd_range_result r;
	int rc = key ? 0 : -ENOMEM;

	if (rc || b->plen + ml > sizeof(end)) {
		free(key);
		return rc ? rc : -ENAMETOOLONG;
	}
	memcpy(key, b->prefix, b->plen);
	memcpy(key + b->plen, mid, ml);
	elen = etcd_prefix_end(end, key, klen);
	for (bool more = true; rc == 0 && more;) {
		q = (struct etcd_range){.key = key,
					.key_len = klen,
					.range_end = end,
					.range_end_len = elen,
					.limit = BE_ETCD_PAGE,
					.revision = *rev};
		rc = etcd_range(b->e, &q, &r);
		if (rc)
			break;
		*rev = r.revision;
		for (size_t i = 0; rc == 0 && i < r.n; i++)
			rc = fn(l, &r.kvs[i]);
		more = r.more && r.n;
		if (more && r.kvs[r.n - 1].key_len + 1 > cap)
			rc = rerr_set(-EBADMSG,
				      "etcd key %s: too long for a "
				      "recfs key",
				      r.kvs[r.n - 1].key);
		if (more && rc == 0) { /* go on after the last key */
			klen = r.kvs[r.n - 1].key_len;
			memcpy(key, r.kvs[r.n - 1].key, klen);
			key[klen++] = '\0';
		}
		etcd_range_result_free(&r);
	}
	free(key);
	return rc;
}

/* One P/e/DD/ID key: a namespace into the map, a record into the map and
   the core's index. */
static int load_entry(struct load *l, const struct etcd_kv *kv)
{
	struct be_etcd *b = l->b;
	size_t skip = b->plen + 6; /* "/e/DD/" */
	struct rec r = {.type = REC_STATE};
	uint8_t *xa = NULL;
	struct bent *n, tmp = {0};
	bool ns = false;
	int rc;

	if (kv->key_len <= skip)
		return 0; /* not ours */
	rc = bjson_parse(kv->value, kv->value_len, kv->mod_revision, &ns,
			 &r.meta, &xa, &r.xa_len, &tmp);
	if (rc)
		return rerr_set(-EBADMSG, "etcd key %s: not a recfs entry",
				kv->key);
	pthread_mutex_lock(&b->mu);
	n = bmap_add(b, kv->key + skip, kv->key_len - skip);
	if (n) {
		n->mod_rev = kv->mod_revision;
		n->ns = ns;
		n->version = ns ? 0 : r.meta.version;
		n->mode = tmp.mode;
		n->uid = tmp.uid;
		n->gid = tmp.gid;
		n->mtime = tmp.mtime;
	}
	pthread_mutex_unlock(&b->mu);
	rc = n ? 0 : -ENOMEM;
	if (rc == 0 && !ns) {
		r.id = kv->key + skip;
		r.id_len = kv->key_len - skip;
		r.xa = xa;
		rc = l->fn(l->arg, &r);
	}
	free(xa);
	return rc;
}

/* One P/n/ID key: a deleted record's last version. */
static int load_tomb(struct load *l, const struct etcd_kv *kv)
{
	struct be_etcd *b = l->b;
	size_t skip = b->plen + 3; /* "/n/" */
	struct rec r = {.type = REC_STATE};
	json_int_t v = 0;
	json_t *o;
	struct bent *n;
	bool live;

	if (kv->key_len <= skip)
		return 0;
	o = json_loadb(kv->value, kv->value_len, 0, NULL);
	if (json_unpack(o, "{s:I}", "v", &v) || v <= 0) {
		json_decref(o);
		return rerr_set(-EBADMSG, "etcd key %s: not a recfs tombstone",
				kv->key);
	}
	json_decref(o);
	pthread_mutex_lock(&b->mu);
	n = bmap_add(b, kv->key + skip, kv->key_len - skip);
	live = n && n->mod_rev;
	if (n)
		n->tomb_rev = kv->mod_revision;
	pthread_mutex_unlock(&b->mu);
	if (!n)
		return -ENOMEM;
	if (live)
		return 0; /* re-created: the entry says more */
	r.id = kv->key + skip;
	r.id_len = kv->key_len - skip;
	r.meta.version = (uint64_t)v;
	r.meta.revision = (uint64_t)kv->mod_revision;
	r.meta.deleted = true;
	return l->fn(l->arg, &r);
}

int be_etcd_load(struct backend *be, int (*fn)(void *arg, const struct rec *r),
		 void *arg, uint64_t *rev)
{
	struct load l = {.b = be_etcd_of(be), .fn = fn, .arg = arg};
	int64_t at = 0;
	int rc = range_each(&l, "/e/", &at, load_entry);

	if (rc == 0)
		rc = range_each(&l, "/n/", &at, load_tomb);
	if (rc)
		return rerr_prefix(rc == -EBADMSG || rc == -ENOMEM ? rc : -EIO,
				   "etcd prefix %s: loading", l.b->prefix);
	*rev = (uint64_t)at;
	return 0;
}

/* The key `key` into *kv, or kv->mod_revision 0 if there is none. */
static int get_or_none(struct be_etcd *b, char *key, size_t klen,
		       struct etcd_kv *kv)
{
	int rc = key ? etcd_get(b->e, key, klen, kv, NULL) : -ENOMEM;

	free(key);
	if (rc == -ENOENT)
		memset(kv, 0, sizeof(*kv));
	return rc == -ENOENT ? 0 : rc;
}

int be_etcd_reload(struct backend *be, const char *id, size_t len,
		   int (*fn)(void *arg, const struct rec *r), void *arg)
{
	struct load l = {.b = be_etcd_of(be), .fn = fn, .arg = arg};
	struct etcd_kv ek = {0}, nk = {0};
	struct rec r = {.type = REC_STATE, .id = id, .id_len = len};
	struct bent *n;
	size_t kl;
	char *k = bkey_entry(l.b, id, len, &kl);
	int rc = get_or_none(l.b, k, kl, &ek);

	if (rc == 0) {
		k = bkey_tomb(l.b, id, len, &kl);
		rc = get_or_none(l.b, k, kl, &nk);
	}
	pthread_mutex_lock(&l.b->mu);
	n = rc ? NULL : bmap_add(l.b, id, len);
	if (n) /* as if new: what etcd has now is set below */
		*n = (struct bent){.next = n->next};
	pthread_mutex_unlock(&l.b->mu);
	if (rc == 0 && !n)
		rc = -ENOMEM;
	if (rc == 0 && nk.mod_revision)
		rc = load_tomb(&l, &nk);
	if (rc == 0 && ek.mod_revision)
		rc = load_entry(&l, &ek);
	if (rc == 0 && !ek.mod_revision && !nk.mod_revision)
		rc = fn(arg, &r); /* never existed (any more) */
	etcd_kv_free(&ek);
	etcd_kv_free(&nk);
	return rc ? rerr_prefix(rc == -ENOMEM || rc == -EBADMSG ? rc : -EIO,
				"record %.*s: reading it again from etcd",
				(int)len, id)
		  : 0;
}

/* Write P/format if nothing is under P/ yet (create-only). */
static int make_store(struct be_etcd *b, const char *fkey, size_t fklen)
{
	struct etcd_range q = {.limit = 1, .count_only = 1};
	struct etcd_range_result r;
	char *key = malloc(b->plen + 2), end[512];
	struct etcd_cmp c = {.key = fkey,
			     .key_len = fklen,
			     .target = ETCD_CREATE,
			     .result = ETCD_EQUAL};
	struct etcd_op op = {.type = ETCD_OP_PUT,
			     .key = fkey,
			     .key_len = fklen,
			     .value = FORMAT_JSON,
			     .value_len = strlen(FORMAT_JSON)};
	struct etcd_txn t = {
		.cmp = &c, .n_cmp = 1, .success = &op, .n_success = 1};
	struct etcd_txn_result res = {0};
	int rc;

	if (!key || b->plen + 1 > sizeof(end)) {
		free(key);
		return -ENOMEM;
	}
	memcpy(key, b->prefix, b->plen);
	key[b->plen] = '/';
	q.key = key;
	q.key_len = b->plen + 1;
	q.range_end = end;
	q.range_end_len = etcd_prefix_end(end, key, b->plen + 1);
	rc = etcd_range(b->e, &q, &r);
	free(key);
	if (rc)
		return rc;
	if (r.count > 0)
		rc = rerr_set(-ENOTEMPTY,
			      "etcd prefix %s/ holds %lld keys but no "
			      "%s/format: not a recfs store, and not empty",
			      b->prefix, (long long)r.count, b->prefix);
	etcd_range_result_free(&r);
	if (rc == 0)
		rc = etcd_txn(b->e, &t, &res);
	/* lost a race with another create: the store is there now */
	etcd_txn_result_free(&res);
	return rc;
}

/* P/format: there (format 1), or made by `create`. */
static int check_format(struct be_etcd *b, bool create)
{
	struct etcd_kv kv = {0};
	size_t kl;
	char *k = bkey_format(b, &kl);
	json_int_t f = 0;
	json_t *o;
	int rc;

	if (!k)
		return -ENOMEM;
	rc = etcd_get(b->e, k, kl, &kv, NULL);
	if (rc == -ENOENT && create && (rc = make_store(b, k, kl)) == 0)
		rc = etcd_get(b->e, k, kl, &kv, NULL);
	free(k);
	if (rc == -ENOENT)
		return rerr_set(-ENOENT,
				"etcd prefix %s: no recfs store there (-o "
				"create makes one)",
				b->prefix);
	if (rc)
		return rc;
	o = json_loadb(kv.value, kv.value_len, 0, NULL);
	if (json_unpack(o, "{s:I}", "format", &f) || f != 1)
		rc = rerr_set(-EPROTO,
			      "etcd prefix %s: format %lld of the store is "
			      "not the one this recfs writes (1)",
			      b->prefix, (long long)f);
	json_decref(o);
	etcd_kv_free(&kv);
	return rc;
}

static int connect_uri(struct be_etcd *b, const char *uri)
{
	struct etcd_uri u = {0};
	int rc = etcd_uri_parse(uri, &u);

	if (rc)
		return rc;
	b->prefix = strdup(u.prefix);
	if (b->prefix) {
		b->plen = strlen(b->prefix);
		while (b->plen > 1 && b->prefix[b->plen - 1] == '/')
			b->prefix[--b->plen] = '\0';
		rc = etcd_open((const char *const *)u.endpoints, u.n_endpoints,
			       NULL, &b->e);
	} else {
		rc = -ENOMEM;
	}
	etcd_uri_free(&u);
	return rc;
}

int be_etcd_open(struct backend **out, const char *uri, bool create,
		 uint64_t *max_record_size)
{
	struct be_etcd *b = calloc(1, sizeof(*b));
	int rc;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->be.ops = &be_etcd_ops;
	b->be.cas = true;
	b->be.durable = true;
	b->be.own_commit = true;
	pthread_mutex_init(&b->mu, NULL);
	rc = bmap_init(b);
	if (rc == 0)
		rc = bcache_init(b);
	if (rc == 0)
		rc = connect_uri(b, uri);
	if (rc == 0)
		rc = check_format(b, create);
	if (rc) {
		rerr_prefix(rc, "%s", uri);
		be_etcd_ops.free(&b->be);
		return rc;
	}
	if (!*max_record_size || *max_record_size > BE_ETCD_MAX_RECORD)
		*max_record_size = BE_ETCD_MAX_RECORD;
	*out = &b->be;
	return 0;
}
