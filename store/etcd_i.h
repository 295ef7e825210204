/*
 * etcd_i.h - what the etcd client's files share (etcd.c: the client, its
 * connections and requests; etcd_txn.c, etcd_watch.c, etcd_uri.c).
 */
#ifndef RECFS_ETCD_I_H
#define RECFS_ETCD_I_H

#include "buf.h"
#include "etcd.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

/* One kept-alive connection: a curl easy handle and its answer buffer. */
struct etcd_conn {
	struct etcd_conn *next; /* in the pool's free list */
	CURL *h;
	struct curl_slist *hdrs;
	struct buf body;
	char errbuf[CURL_ERROR_SIZE];
};

struct etcd {
	char **ep; /* "HOST:PORT", n of them */
	size_t n;
	atomic_size_t cur; /* the member that answered last */
	unsigned connect_ms;
	unsigned request_ms;
	pthread_mutex_t mu;	/* guards free */
	struct etcd_conn *free; /* idle connections */
};

/* What a request is, for its messages and its retries. */
struct etcd_call {
	const char *op;	 /* "put", "range", ... */
	const void *key; /* for the message; may be NULL */
	size_t key_len;
	const char *path; /* "/v3/kv/put" */
	int idempotent;	  /* may be sent again to another member */
};

/*
 * POST `req` (JSON) as call `c`, with failover (etcd.h): 0 and *resp
 * (the answer's JSON object, the caller's to json_decref) or the error,
 * reported.
 */
int etcd_request(struct etcd *e, const struct etcd_call *c, json_t *req,
		 json_t **resp);

/* Set up `h` for requests of `e` (timeouts, keep-alive, no signals), its
   body written to `body`; `hdrs` its headers. 0 or -ENOMEM. */
int etcd_easy_setup(struct etcd *e, CURL *h, struct curl_slist **hdrs,
		    struct buf *body, char *errbuf);

/* The curl write callback appending to a struct buf. */
size_t etcd_write_cb(char *p, size_t size, size_t nmemb, void *arg);

/* Report code `code` for call `c` at member `ep`: "etcd OP KEY at EP:
   cause". */
int etcd_fail(int code, const struct etcd_call *c, const char *ep,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The error of an answer with HTTP status `status` and JSON body
   `body` (etcd's {"error", "message", "code"}), reported. */
int etcd_http_error(const struct etcd_call *c, const char *ep, long status,
		    const char *body);

/* A JSON string of base64(p[n]); NULL if out of memory. */
json_t *etcd_b64(const void *p, size_t n);

/* Set `name` of `o` to base64(p[n]). 0 or -ENOMEM. */
int etcd_set_b64(json_t *o, const char *name, const void *p, size_t n);

/* Set `name` of `o` to the integer v. 0 or -ENOMEM. */
int etcd_set_i64(json_t *o, const char *name, int64_t v);

/* The int64 `name` of `o` (etcd sends them as strings; absent: 0). */
int64_t etcd_i64(const json_t *o, const char *name);

/* Decode base64 string `name` of `o` into a malloc'ed NUL-terminated
   copy (absent: empty). 0, -EPROTO or -ENOMEM. */
int etcd_unb64(const json_t *o, const char *name, char **out, size_t *len);

/* Decode one "kv" object. 0, -EPROTO or -ENOMEM. */
int etcd_kv_from_json(const json_t *o, struct etcd_kv *kv);

/* Decode a range answer (its "header", "kvs", "count", "more"). */
int etcd_range_from_json(const json_t *o, struct etcd_range_result *r);

/* Fill `o` with a range request's fields. 0 or -ENOMEM. */
int etcd_range_to_json(json_t *o, const struct etcd_range *req);

#endif
