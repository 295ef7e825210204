/*
 * be_etcd_i.h - what the files of the etcd backend share (be_etcd.c: open,
 * load, reads and namespaces; be_etcd_commit.c: changes as etcd txns;
 * be_etcd_map.c: its map of keys and the entry codec). Not for use
 * outside store/; the core reaches the backend only through backend.h.
 *
 * Key layout under PREFIX P (see etcd.h for the design): P/format (the
 * descriptor), P/e/DD/ID (a live record, symlink or namespace: JSON
 * metadata), P/v/ID//NNNNNNNNNNNNNNNNNNNN (version N's content, written
 * once), P/n/ID (the last version of a deleted record).
 *
 * The map: one host mounts a store (phase 2 of issue 16), so the backend
 * keeps, for every key of P/e and P/n, what etcd has: the entry key's
 * mod_revision (the compare of the next change), the tombstone key's,
 * the current version and, for a namespace, its metadata. It is loaded
 * at open and updated by this mount's own commits only; a compare that
 * fails means another writer changed etcd (see be_etcd_commit.c).
 */
#ifndef RECFS_BE_ETCD_I_H
#define RECFS_BE_ETCD_I_H

#include "backend.h"
#include "etcd.h"
#include "store_i.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* A record's content on etcd: at most this many bytes (SPEC section 9). */
#define BE_ETCD_MAX_RECORD (1ull << 20)
/* Operations (and compares) in one etcd txn: etcd's --max-txn-ops
   default. A change that needs more is refused (E2BIG). */
#define BE_ETCD_MAX_OPS 128
/* Bytes of version contents kept in memory (be_etcd_cache.c). */
#define BE_ETCD_CACHE_BYTES (64u << 20)
/* Keys per range request when loading or listing. */
#define BE_ETCD_PAGE 1000

/* One ID as etcd knows it (see the top). */
struct bent {
	struct bent *next;	 /* hash chain */
	int64_t mod_rev;	 /* P/e/DD/ID's mod_revision; 0: no such key */
	int64_t tomb_rev;	 /* P/n/ID's mod_revision; 0: no such key */
	uint64_t version;	 /* live record: its current version */
	bool ns;		 /* a namespace (mod_rev != 0) */
	uint32_t mode, uid, gid; /* namespace */
	struct timespec mtime;	 /* namespace */
	char id[];
};

struct be_etcd {
	struct backend be;
	struct etcd *e;
	char *prefix; /* P, without a trailing '/' */
	size_t plen;
	pthread_mutex_t mu; /* protects the map */
	struct bent **slots;
	size_t nslots, count;
	struct bcache *cache; /* be_etcd_cache.c (its own lock) */
};

static inline struct be_etcd *be_etcd_of(struct backend *be)
{
	return (struct be_etcd *)be;
}

/* ---- be_etcd_map.c ------------------------------------------------------ */

int bmap_init(struct be_etcd *b);
void bmap_free(struct be_etcd *b);
/* The entry of `id` or NULL; mu held. */
struct bent *bmap_find(struct be_etcd *b, const char *id, size_t len);
/* Find or add (zeroed); NULL on ENOMEM. mu held. */
struct bent *bmap_add(struct be_etcd *b, const char *id, size_t len);

/* Keys: P/e/DD/ID, P/v/ID//N (20 digits), P/n/ID, P/format. Each
   returns a malloc'ed NUL-terminated key (*len its length) or NULL. */
char *bkey_entry(const struct be_etcd *b, const char *id, size_t len,
		 size_t *klen);
char *bkey_version(const struct be_etcd *b, const char *id, size_t len,
		   uint64_t version, size_t *klen);
char *bkey_tomb(const struct be_etcd *b, const char *id, size_t len,
		size_t *klen);
char *bkey_format(const struct be_etcd *b, size_t *klen);
/* The range of namespace `ns`'s children: "P/e/<d+1>/NS/" ("P/e/01/"
   for the root). */
char *bkey_children(const struct be_etcd *b, const char *ns, size_t *klen);

/* The JSON value of P/e/DD/ID for the record state `r` (REC_PUT,
   REC_META, REC_RENAME: its meta and xattrs). `with_rev`: keep the
   version's revision (a metadata change: the key's mod_revision is no
   longer it). Malloc'ed, or NULL. */
char *bjson_record(const struct rec *r, bool with_rev, size_t *len);
/* The JSON value of P/n/ID: {"v":VERSION} and who deleted it, when. */
char *bjson_tomb(const struct rec *r, uint64_t version, size_t *len);
/* The JSON value of a namespace's entry. */
char *bjson_ns(const struct bent *n, size_t *len);
/*
 * Decode an entry value. A record: *is_ns false, `meta` (revision: "vr"
 * if present, else `mod_rev`) and *xa (malloc'ed, may be NULL). A
 * namespace: *is_ns true, n's mode, owner and mtime. 0 or -EBADMSG.
 */
int bjson_parse(const char *v, size_t len, int64_t mod_rev, bool *is_ns,
		struct store_meta *meta, uint8_t **xa, size_t *xa_len,
		struct bent *n);

/* ---- be_etcd.c, be_etcd_open.c ----------------------------------------- */

extern const struct backend_ops be_etcd_ops;
/* backend_ops.load: the map and each record's state from etcd. */
int be_etcd_load(struct backend *be, int (*fn)(void *arg, const struct rec *r),
		 void *arg, uint64_t *rev);

/* backend_ops.reload: the map entry and the state of one record again. */
int be_etcd_reload(struct backend *be, const char *id, size_t len,
		   int (*fn)(void *arg, const struct rec *r), void *arg);

/* ---- be_etcd_cache.c: version contents (immutable) ---------------------- */

struct bcache;
int bcache_init(struct be_etcd *b);
void bcache_free(struct be_etcd *b);
/* Keep a copy of version `version` of id[len] (written at `rev`); a
   failure only means it is not kept. */
void bcache_put(struct be_etcd *b, const char *id, size_t len,
		uint64_t version, uint64_t rev, const void *data, size_t dlen);
/* fn(data, dlen, arg) with the kept copy, under the cache's lock, and
   *rev (may be NULL); -ENOENT if it is not kept, else fn's return. */
int bcache_get(struct be_etcd *b, const char *id, size_t len, uint64_t version,
	       int (*fn)(const void *data, size_t dlen, void *arg), void *arg,
	       uint64_t *rev);

/* ---- be_etcd_commit.c --------------------------------------------------- */

/* backend_ops.commit: `r` as one etcd txn. */
int be_etcd_commit(struct backend *be, const struct rec *r, uint64_t *rev);

#endif
