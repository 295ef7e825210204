/*
 * be_etcd_commit.c - a change as ONE etcd transaction (backend_ops.commit,
 * called by change_journal in place of the journal): the commit point of
 * an etcd store. Its revision is etcd's revision of the txn.
 *
 * Per record of the change (the map, be_etcd_i.h, gives what etcd had
 * after this mount's last change of it):
 *   new version N (REC_PUT; REC_RENAME's target):
 *	compare mod_revision(P/e/DD/ID) == the map's (0: no such key),
 *		mod_revision(P/n/ID) == the map's, mod_revision(P/v/ID//N) == 0
 *		(a version number is never used twice, whatever the map says);
 *	put P/e/DD/ID (metadata), put P/v/ID//N (content), delete P/n/ID if
 *	it was there;
 *   delete (REC_DEL; REC_RENAME's source):
 *	compare mod_revision(P/e/DD/ID); delete it, put P/n/ID {"v":N};
 *   metadata (REC_META): compare mod_revision(P/e/DD/ID); put it.
 * A REC_TXN is all of its parts' compares and operations in one txn; a
 * change needing more than BE_ETCD_MAX_OPS (etcd's --max-txn-ops default,
 * 128) compares or operations is refused with E2BIG, naming the limit.
 *
 * A compare that fails means another writer changed etcd behind this
 * mount's back (one host per store in this phase): nothing is written and
 * the change fails with ESTALE; the map is not refreshed (nor the index),
 * so the record stays refused until the store is opened again. Errors of
 * the transport (no member reachable, a timeout: outcome unknown) become
 * EIO, reported with etcd's cause; a later change of the same record then
 * fails its compare if the unknown one did happen, so nothing is
 * overwritten blindly and no version repeats.
 */
#include "be_etcd_i.h"
#include "err.h"
#include "id.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A txn being built. Keys and values are owned (`own`). */
struct btx {
	struct be_etcd *b;
	struct etcd_cmp cmp[BE_ETCD_MAX_OPS];
	struct etcd_op ops[BE_ETCD_MAX_OPS];
	size_t ncmp, nops;
	char *own[4 * BE_ETCD_MAX_OPS];
	size_t nown;
	/* what the map becomes once the txn succeeded */
	struct upd {
		struct bent *n;
		int kind; /* 'p' new version, 'd' deleted, 'm' metadata */
		uint64_t version;
		const void *content; /* 'p': kept in the cache */
		size_t clen;
	} upd[BE_ETCD_MAX_OPS];
	size_t nupd;
	int err;	  /* the first failure while building */
	const char *what; /* the first record, for messages */
};

static char *keep(struct btx *t, char *p)
{
	if (!p && !t->err)
		t->err = -ENOMEM;
	if (p && t->nown < sizeof(t->own) / sizeof(t->own[0]))
		t->own[t->nown++] = p;
	else if (p) {
		free(p);
		p = NULL;
		t->err = t->err ? t->err : -E2BIG;
	}
	return p;
}

static void cmp_mod(struct btx *t, char *key, size_t klen, int64_t rev)
{
	if (!keep(t, key))
		return;
	if (t->ncmp == BE_ETCD_MAX_OPS) {
		t->err = t->err ? t->err : -E2BIG;
		return;
	}
	t->cmp[t->ncmp++] = (struct etcd_cmp){.key = key,
					      .key_len = klen,
					      .target = ETCD_MOD,
					      .result = ETCD_EQUAL,
					      .n = rev};
}

static void op(struct btx *t, enum etcd_op_type type, char *key, size_t klen,
	       const void *v, size_t vlen)
{
	if (!keep(t, key))
		return;
	if (t->nops == BE_ETCD_MAX_OPS) {
		t->err = t->err ? t->err : -E2BIG;
		return;
	}
	t->ops[t->nops++] = (struct etcd_op){.type = type,
					     .key = key,
					     .key_len = klen,
					     .value = v,
					     .value_len = vlen};
}

/* The map entry of id[len] (made if new); mu held. */
static struct bent *ent(struct btx *t, const char *id, size_t len, int kind,
			uint64_t version)
{
	struct bent *n = bmap_add(t->b, id, len);

	if (!n) {
		t->err = t->err ? t->err : -ENOMEM;
		return NULL;
	}
	if (n->ns) {
		t->err = t->err ? t->err : -EISDIR;
		return NULL;
	}
	if (t->nupd == BE_ETCD_MAX_OPS) {
		t->err = t->err ? t->err : -E2BIG;
		return NULL;
	}
	t->upd[t->nupd++] =
		(struct upd){.n = n, .kind = kind, .version = version};
	return n;
}

/* A new version of r->id with `content`; mu held. */
static void add_version(struct btx *t, const struct rec *r, const void *content,
			size_t clen)
{
	struct bent *n = ent(t, r->id, r->id_len, 'p', r->meta.version);
	size_t kl, vl = 0;
	char *val, *k;

	if (!n)
		return;
	t->upd[t->nupd - 1].content = content;
	t->upd[t->nupd - 1].clen = clen;
	k = bkey_entry(t->b, r->id, r->id_len, &kl);
	cmp_mod(t, k, kl, n->mod_rev);
	k = bkey_tomb(t->b, r->id, r->id_len, &kl);
	cmp_mod(t, k, kl, n->tomb_rev);
	k = bkey_version(t->b, r->id, r->id_len, r->meta.version, &kl);
	cmp_mod(t, k, kl, 0);
	val = keep(t, bjson_record(r, false, &vl));
	k = bkey_entry(t->b, r->id, r->id_len, &kl);
	op(t, ETCD_OP_PUT, k, kl, val, vl);
	k = bkey_version(t->b, r->id, r->id_len, r->meta.version, &kl);
	op(t, ETCD_OP_PUT, k, kl, content, clen);
	if (n->tomb_rev) {
		k = bkey_tomb(t->b, r->id, r->id_len, &kl);
		op(t, ETCD_OP_DELETE, k, kl, NULL, 0);
	}
}

/* id[len] deleted at its last version `version`; mu held. */
static void add_delete(struct btx *t, const struct rec *r, const char *id,
		       size_t len, uint64_t version)
{
	struct bent *n = ent(t, id, len, 'd', version);
	char *val, *k;
	size_t kl, vl = 0;

	if (!n)
		return;
	val = keep(t, bjson_tomb(r, version, &vl));
	k = bkey_entry(t->b, id, len, &kl);
	cmp_mod(t, k, kl, n->mod_rev);
	k = bkey_entry(t->b, id, len, &kl);
	op(t, ETCD_OP_DELETE, k, kl, NULL, 0);
	k = bkey_tomb(t->b, id, len, &kl);
	op(t, ETCD_OP_PUT, k, kl, val, vl);
}

static void add_meta(struct btx *t, const struct rec *r)
{
	struct bent *n = ent(t, r->id, r->id_len, 'm', r->meta.version);
	size_t kl, vl = 0;
	char *val, *k;

	if (!n)
		return;
	val = keep(t, bjson_record(r, true, &vl));
	k = bkey_entry(t->b, r->id, r->id_len, &kl);
	cmp_mod(t, k, kl, n->mod_rev);
	k = bkey_entry(t->b, r->id, r->id_len, &kl);
	op(t, ETCD_OP_PUT, k, kl, val, vl);
}

/* The content of version `version` of id[len] (kept in t). */
static int read_content(struct btx *t, const char *id, size_t len,
			uint64_t version, const char **p, size_t *n)
{
	struct etcd_kv kv = {0};
	size_t kl;
	char *k = bkey_version(t->b, id, len, version, &kl);
	int rc;

	if (!k)
		return -ENOMEM;
	rc = etcd_get(t->b->e, k, kl, &kv, NULL);
	free(k);
	if (rc)
		return rc == -ENOENT ? -EIO : rc; /* the map says it is there */
	free(kv.key);
	*p = keep(t, kv.value);
	*n = kv.value_len;
	return *p ? 0 : -ENOMEM;
}

/* One record `r` (not a REC_TXN) into the txn; mu held. */
static void add_rec(struct btx *t, const struct rec *r)
{
	switch (r->type) {
	case REC_PUT:
		if (!r->has_data)
			t->err = t->err ? t->err : -EINVAL;
		else
			add_version(t, r, r->data, r->data_len);
		break;
	case REC_DEL:
		add_delete(t, r, r->id, r->id_len, r->meta.version);
		break;
	case REC_META:
		add_meta(t, r);
		break;
	default:
		t->err = t->err ? t->err : -EINVAL;
	}
}

/* The txn of `r`: a rename's source content is read first (mu not
   held), the rest under mu. */
static int build(struct btx *t, const struct rec *r)
{
	const char *content = NULL;
	size_t clen = 0;
	struct rec part;
	size_t off = 0;
	int rc = 0;

	if (r->type == REC_RENAME) {
		rc = read_content(t, r->from, r->from_len, r->from_version,
				  &content, &clen);
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&t->b->mu);
	if (r->type == REC_RENAME) {
		add_delete(t, r, r->from, r->from_len, r->from_version);
		add_version(t, r, content, clen);
	} else if (r->type == REC_TXN) {
		while (!t->err && (rc = codec_txn_next(r, &off, &part)) == 1)
			add_rec(t, &part);
		if (rc < 0)
			t->err = t->err ? t->err : rc;
	} else {
		add_rec(t, r);
	}
	pthread_mutex_unlock(&t->b->mu);
	return t->err;
}

/* The map after the txn succeeded at `rev`; mu held. */
static void settle(struct btx *t, int64_t rev)
{
	for (size_t i = 0; i < t->nupd; i++) {
		struct bent *n = t->upd[i].n;

		if (t->upd[i].kind == 'd') {
			n->mod_rev = 0;
			n->tomb_rev = rev;
			n->version = 0;
		} else {
			n->mod_rev = rev;
			if (t->upd[i].kind == 'p') {
				n->tomb_rev = 0;
				n->version = t->upd[i].version;
				bcache_put(t->b, n->id, strlen(n->id),
					   n->version, (uint64_t)rev,
					   t->upd[i].content, t->upd[i].clen);
			}
		}
	}
}

/* The error of a failed build or txn, reported naming the record. */
static int fail(struct btx *t, int rc)
{
	if (rc == -E2BIG)
		return rerr_set(rc,
				"record %s: the change needs more than %d "
				"operations of one etcd txn (etcd's "
				"--max-txn-ops); change fewer records at once",
				t->what, BE_ETCD_MAX_OPS);
	if (rc == -ESTALE)
		return rerr_set(rc,
				"record %s: changed in etcd by another writer "
				"since this mount read it (one mount per etcd "
				"store for now); nothing was written, and the "
				"record is read again: a new try starts from "
				"what is there",
				t->what);
	if (rc == -EFBIG || rc == -ENOMEM || rc == -EINVAL || rc == -EISDIR)
		return rerr_prefix(rc, "record %s: etcd txn", t->what);
	return rerr_prefix(-EIO, "record %s: etcd txn (%s)", t->what,
			   strerror(-rc));
}

int be_etcd_commit(struct backend *be, const struct rec *r, uint64_t *rev)
{
	struct btx *t = calloc(1, sizeof(*t));
	struct etcd_txn_result res = {0};
	struct etcd_txn txn;
	int rc;

	if (!t)
		return -ENOMEM;
	t->b = be_etcd_of(be);
	t->what = r->id ? r->id : "(a txn)";
	rc = build(t, r);
	if (rc == 0) {
		txn = (struct etcd_txn){.cmp = t->cmp,
					.n_cmp = t->ncmp,
					.success = t->ops,
					.n_success = t->nops};
		rc = etcd_txn(t->b->e, &txn, &res);
	}
	if (rc == 0 && !res.succeeded)
		rc = -ESTALE;
	if (rc == 0) {
		pthread_mutex_lock(&t->b->mu);
		settle(t, res.revision);
		pthread_mutex_unlock(&t->b->mu);
		*rev = (uint64_t)res.revision;
	} else {
		rc = fail(t, rc);
	}
	etcd_txn_result_free(&res);
	for (size_t i = 0; i < t->nown; i++)
		free(t->own[i]);
	free(t);
	return rc;
}
