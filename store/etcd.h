/*
 * etcd.h - a small client for etcd v3 (3.4) over its JSON gateway: ranges,
 * puts, deletes, transactions with compares, compaction, leases and
 * watches, on libcurl and jansson. Keys and values are bytes (base64 on
 * the wire, done here). There is no maintained C client for etcd v3; the
 * gateway is what tools such as Patroni use over HTTP.
 *
 * Endpoints and failover: a client knows several members (HOST:PORT).
 * A request goes to the member that answered last; if it cannot be
 * reached (no connection, connect timeout), the request goes to the next
 * one, and so on once round all of them. A request that may already have
 * reached etcd (the connection broke after it was sent, the request timed
 * out) is retried on the next member only if it is a read; a write then
 * fails with -ETIMEDOUT or -EIO, its outcome unknown, for the caller to
 * find out (a compare on the record tells).
 *
 * Threads: a client is safe for use from many threads at once. It keeps a
 * pool of connections (one curl easy handle each, kept alive between
 * requests): a request takes one from the pool, or opens a new one if all
 * are busy, and puts it back when done; so N threads use N connections. A
 * watch has its own connection and is used by one thread at a time.
 *
 * Errors (err.h): every call returns 0 or a negative errno and sets the
 * thread's last error to "etcd OP KEY at HOST:PORT: cause" with the
 * HTTP status and etcd's own message where there is one:
 *	-ENOTCONN   no member could be reached (each one's cause is named)
 *	-ETIMEDOUT  the request timed out (for a write: outcome unknown)
 *	-EIO        the connection broke after a write was sent (unknown), or
 *		    etcd failed it (no leader, lost quorum, internal error)
 *	-ENOENT     etcd_get: no such key; leases: no such lease (expired)
 *	-EINVAL     etcd refused the request as malformed
 *	-EFBIG      the request is larger than etcd takes (1.5 MiB default)
 *	-ERANGE     a read or watch at a revision compacted away
 *	-ECANCELED  etcd_watch_next: etcd cancelled the watch (compaction:
 *		    etcd_watch_compact_revision() says up to where)
 *	-EPROTO     the answer was not the JSON etcd sends
 *
 * Key layout of a store under PREFIX P (etcd://H:P,H:P/P; not used by
 * this client, which knows no layout: the etcd backend, be_etcd*.c, and
 * recfs(5) follow it; P/hist and P/mounts are for later phases). DD is the number of components of the ID as two decimal
 * digits, so that one range lists exactly one namespace, never its
 * subtree, and no request of a mount scales with the store's size:
 *	P/format                 the store's descriptor (format, limits),
 *				 written once by init (create-only txn)
 *	P/e/DD/ID                a live entry: record, symlink or namespace;
 *				 value: small JSON metadata (type, version N,
 *				 size, mode, uid, gid, times, user xattrs).
 *				 readdir of namespace NS (d components) is one
 *				 range over the prefix "P/e/<d+1>/NS/" (limit
 *				 and continuation for big namespaces); stat is
 *				 one get
 *	P/v/ID//NNNNNNNNNNNNNNNNNNNN  version N's content (20 digits, so that
 *				 byte order is version order; "//" cannot occur
 *				 in an ID, so the prefix "P/v/ID//" holds the
 *				 versions of ID alone). Written once, never
 *				 changed: any host may cache it forever
 *	P/n/ID                   the last version of a deleted record, so that
 *				 a re-create continues from N+1 (versions are
 *				 never reused); deleted when it is re-created
 *	P/hist/leader            the history writer's election key (on its
 *				 lease); P/hist/done: the last revision in git
 *	P/mounts/HOST-PID        a mount's presence (on its lease), for status
 * A commit of ID at version N+1 is one txn: compare P/e/DD/ID's
 * mod_revision with what the writer read (0 for a create), P/n/ID's too,
 * and P/v/ID//N+1's with 0 (never written), then put P/e/DD/ID and
 * P/v/ID//N+1 (and delete P/n/ID). The store revision is etcd's revision of that txn; a
 * mount watches P/ from its last revision to learn what other hosts did.
 */
#ifndef RECFS_ETCD_H
#define RECFS_ETCD_H

#include <stddef.h>
#include <stdint.h>

struct etcd;
struct etcd_watch;

/* ---- URIs ------------------------------------------------------------- */

/* etcd://HOST:PORT[,HOST:PORT...]/PREFIX, parsed. */
struct etcd_uri {
	char **endpoints; /* "HOST:PORT" ("[v6]:PORT"), n_endpoints of them */
	size_t n_endpoints;
	char *prefix; /* PREFIX without the leading "/": not empty */
};

/*
 * Parse `uri`. HOST is a name, an IPv4 address or a bracketed IPv6 one;
 * PORT is 1..65535; PREFIX is not empty and has no control character.
 * Returns 0, -EINVAL with a message naming what is wrong, or -ENOMEM.
 * On success free it with etcd_uri_free.
 */
int etcd_uri_parse(const char *uri, struct etcd_uri *out);
void etcd_uri_free(struct etcd_uri *u);

/* ---- the client -------------------------------------------------------- */

struct etcd_opts {
	unsigned connect_timeout_ms; /* per member; 0: 1000 */
	unsigned request_timeout_ms; /* a whole request; 0: 10000 */
};

/* A client of the members endpoints[n] ("HOST:PORT"). Connects lazily:
   an unreachable cluster shows at the first request. Returns 0, -EINVAL
   (no endpoint), -ENOMEM. */
int etcd_open(const char *const *endpoints, size_t n,
	      const struct etcd_opts *opts, struct etcd **out);

/* Close the pool's connections and free the client; no request or watch
   of it may be running. NULL is fine. */
void etcd_close(struct etcd *e);

/* "HOST:PORT" of the member that answered last. */
const char *etcd_current_endpoint(struct etcd *e);

/* ---- keys and values ----------------------------------------------------- */

/* One key-value, as etcd keeps it: key and value are malloc'ed and
   NUL-terminated (the NUL not counted). */
struct etcd_kv {
	char *key;
	size_t key_len;
	char *value;
	size_t value_len;
	int64_t create_revision; /* revision of the put that created it */
	int64_t mod_revision;	 /* revision of its last put */
	int64_t version;	 /* puts since it was created (1 first) */
	int64_t lease;		 /* 0: none */
};

void etcd_kv_free(struct etcd_kv *kv);

/*
 * The end of the range of every key starting with prefix[n]: the prefix
 * with its last byte below 0xff incremented, the rest dropped ("\0", n 1,
 * for an empty prefix or one of 0xff bytes: every key). Writes at most n
 * bytes to end; returns their count.
 */
size_t etcd_prefix_end(char *end, const void *prefix, size_t n);

struct etcd_range {
	const void *key;
	size_t key_len;
	const void *range_end; /* NULL: the key alone */
	size_t range_end_len;
	int64_t limit;	  /* 0: no limit */
	int64_t revision; /* 0: the current one */
	int keys_only;	  /* values not returned (value NULL) */
	int count_only;	  /* only count */
	int serializable; /* answered by the member alone, maybe stale */
};

struct etcd_range_result {
	struct etcd_kv *kvs; /* in key order */
	size_t n;
	int64_t count;	  /* keys in the range (more than n if limited) */
	int more;	  /* there are more than n */
	int64_t revision; /* the store's revision the answer is at */
};

void etcd_range_result_free(struct etcd_range_result *r);

int etcd_range(struct etcd *e, const struct etcd_range *req,
	       struct etcd_range_result *out);

/* Get one key: 0 and *kv (free it), or -ENOENT. `revision` (may be NULL)
   is the store's revision of the answer. */
int etcd_get(struct etcd *e, const void *key, size_t key_len,
	     struct etcd_kv *kv, int64_t *revision);

/* Put a key (on `lease`, 0: none). *revision (may be NULL): the put's. */
int etcd_put(struct etcd *e, const void *key, size_t key_len, const void *value,
	     size_t value_len, int64_t lease, int64_t *revision);

/* Delete the key, or the range [key, range_end) if range_end is not NULL.
 *deleted and *revision may be NULL. */
int etcd_delete(struct etcd *e, const void *key, size_t key_len,
		const void *range_end, size_t range_end_len, int64_t *deleted,
		int64_t *revision);

/* Forget the revisions before `revision` (physical: wait until done). */
int etcd_compact(struct etcd *e, int64_t revision);

/* ---- transactions -------------------------------------------------------- */

enum etcd_target {
	ETCD_VERSION,
	ETCD_CREATE,
	ETCD_MOD,
	ETCD_VALUE,
};

enum etcd_result {
	ETCD_EQUAL,
	ETCD_GREATER,
	ETCD_LESS,
	ETCD_NOT_EQUAL,
};

/* "target(key) result operand": operand is `n` for the revisions and the
   version (0 for a key that does not exist), value[value_len] for the
   value. */
struct etcd_cmp {
	const void *key;
	size_t key_len;
	enum etcd_target target;
	enum etcd_result result;
	int64_t n;
	const void *value;
	size_t value_len;
};

enum etcd_op_type {
	ETCD_OP_RANGE,
	ETCD_OP_PUT,
	ETCD_OP_DELETE,
};

/* One operation of a txn: a range (key, range_end; limit 0), a put (key,
   value, lease) or a delete (key, range_end). */
struct etcd_op {
	enum etcd_op_type type;
	const void *key;
	size_t key_len;
	const void *value; /* put */
	size_t value_len;
	const void *range_end; /* range and delete; NULL: the key alone */
	size_t range_end_len;
	int64_t lease; /* put */
};

struct etcd_txn {
	const struct etcd_cmp *cmp;
	size_t n_cmp;
	const struct etcd_op *success; /* if every compare holds */
	size_t n_success;
	const struct etcd_op *failure; /* else */
	size_t n_failure;
};

struct etcd_op_result {
	enum etcd_op_type type;
	struct etcd_range_result range; /* ETCD_OP_RANGE */
	int64_t deleted;		/* ETCD_OP_DELETE */
};

struct etcd_txn_result {
	int succeeded;	  /* 1: the success ops ran, 0: the failure ops */
	int64_t revision; /* the store's revision after it */
	struct etcd_op_result *ops; /* one per op that ran, in order */
	size_t n_ops;
};

void etcd_txn_result_free(struct etcd_txn_result *r);

/*
 * Run the transaction atomically. A compare that does not hold is not an
 * error: 0 and succeeded 0. `out` may be NULL (then only the return
 * code tells, and -ECANCELED means the compares failed).
 */
int etcd_txn(struct etcd *e, const struct etcd_txn *t,
	     struct etcd_txn_result *out);

/* ---- leases -------------------------------------------------------------- */

/* A lease of `ttl` seconds: *id and the *granted_ttl (may be NULL; etcd
   raises a short TTL to its minimum). */
int etcd_lease_grant(struct etcd *e, int64_t ttl, int64_t *id,
		     int64_t *granted_ttl);

/* Renew lease `id` once: *ttl (may be NULL) its TTL again, or -ENOENT if
   it expired or was revoked. */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl);

/* Revoke lease `id`, deleting its keys; -ENOENT if it is gone already. */
int etcd_lease_revoke(struct etcd *e, int64_t id);

/* ---- watches ------------------------------------------------------------- */

struct etcd_watch_req {
	const void *key;
	size_t key_len;
	const void *range_end; /* NULL: the key alone */
	size_t range_end_len;
	int64_t start_revision; /* 0: from now on */
	int prev_kv;		/* events carry the value before */
};

enum etcd_event_type {
	ETCD_EVENT_PUT,
	ETCD_EVENT_DELETE,
};

struct etcd_event {
	enum etcd_event_type type;
	struct etcd_kv kv;	/* DELETE: key and mod_revision only */
	struct etcd_kv prev_kv; /* with prev_kv; else zeroed */
};

/* A batch of events in revision order. */
struct etcd_events {
	struct etcd_event *ev;
	size_t n;
	int64_t revision; /* the store's revision etcd was at */
};

void etcd_events_free(struct etcd_events *evs);

/*
 * Watch the key or range from `start_revision`: connects to a member and
 * waits until etcd has created the watch (within the request timeout).
 * Returns 0, or an error as a request's. The watch is used by one thread
 * at a time; close it before the client.
 */
int etcd_watch_open(struct etcd *e, const struct etcd_watch_req *req,
		    struct etcd_watch **out);

/*
 * Wait up to `timeout_ms` for events: 0 with at least one event in *out
 * (free it with etcd_events_free), -ETIMEDOUT with none. Events come in
 * revision order, each once. If the connection breaks, the watch resumes
 * on the same or the next member from the revision after the last event
 * it returned; if that fails within the timeout it returns -ENOTCONN and
 * tries again at the next call. -ECANCELED: etcd cancelled the watch
 * (its revision was compacted: etcd_watch_compact_revision); it returns
 * nothing more, close it and start over from a fresh read.
 */
int etcd_watch_next(struct etcd_watch *w, unsigned timeout_ms,
		    struct etcd_events *out);

/* The revision the watch would resume from (the last event's + 1). */
int64_t etcd_watch_revision(const struct etcd_watch *w);

/* After -ECANCELED: the oldest revision etcd still has (0 if the watch
   was cancelled for another reason). */
int64_t etcd_watch_compact_revision(const struct etcd_watch *w);

void etcd_watch_close(struct etcd_watch *w);

#endif
