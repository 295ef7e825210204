/*
 * etcd.c - the etcd client (etcd.h): members, the connection pool, one
 * request with failover, errors, and the key-value requests. Transactions
 * are in etcd_txn.c, leases and watches in etcd_watch.c, URIs in
 * etcd_uri.c.
 */
#include "etcd_i.h"

#include "base64.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- errors ----------------------------------------------------------------
 */

/* A printable, short copy of key[n] for a message. */
static void key_text(char *dst, size_t len, const void *key, size_t n)
{
	const unsigned char *k = key;
	size_t i, j = 0;

	for (i = 0; i < n && j + 4 < len; i++)
		dst[j++] = (k[i] >= 0x20 && k[i] < 0x7f) ? (char)k[i] : '?';
	if (i < n)
		dst[j++] = '.', dst[j++] = '.', dst[j++] = '.';
	dst[j] = '\0';
}

/* The cause of this thread's last etcd_fail, without its "etcd OP KEY at
   EP: " (request_on lists every member's). */
static _Thread_local char last_cause[RERR_MSG_MAX];

int etcd_fail(int code, const struct etcd_call *c, const char *ep,
	      const char *fmt, ...)
{
	char key[128] = "", *cause = last_cause;
	va_list ap;

	if (c->key)
		key_text(key, sizeof(key), c->key, c->key_len);
	va_start(ap, fmt);
	vsnprintf(cause, sizeof(last_cause), fmt, ap);
	va_end(ap);
	return rerr_set(code, "etcd %s%s%s%s%s: %s", c->op, c->key ? " " : "",
			key, ep ? " at " : "", ep ? ep : "", cause);
}

/* gRPC status codes etcd answers with, as errnos. */
static int grpc_errno(long code, const char *msg)
{
	if (msg && strstr(msg, "too large"))
		return -EFBIG;
	switch (code) {
	case 3: /* InvalidArgument */
	case 9: /* FailedPrecondition */
		return -EINVAL;
	case 4: /* DeadlineExceeded */
		return -ETIMEDOUT;
	case 8: /* ResourceExhausted: larger than the gateway takes */
		return -EFBIG;
	case 5: /* NotFound */
		return -ENOENT;
	case 11: /* OutOfRange: compacted, future revision */
		return -ERANGE;
	default:
		return -EIO;
	}
}

int etcd_http_error(const struct etcd_call *c, const char *ep, long status,
		    const char *body)
{
	json_t *j = json_loads(body ? body : "", 0, NULL);
	const char *msg = NULL;
	long code = -1;
	int rc;

	if (json_is_object(j)) {
		msg = json_string_value(json_object_get(j, "message"));
		if (!msg)
			msg = json_string_value(json_object_get(j, "error"));
		code = (long)json_integer_value(json_object_get(j, "code"));
	}
	if (msg)
		rc = etcd_fail(grpc_errno(code, msg), c, ep,
			       "HTTP %ld, etcd: %s (code %ld)", status, msg,
			       code);
	else
		rc = etcd_fail(status == 404 ? -EPROTO : -EIO, c, ep,
			       "HTTP %ld without etcd's error (%.80s)", status,
			       body ? body : "");
	json_decref(j);
	return rc;
}

/* ---- JSON ------------------------------------------------------------------
 */

json_t *etcd_b64(const void *p, size_t n)
{
	size_t len = base64_encoded_len(n);
	char *s;
	json_t *j;

	if (len == SIZE_MAX || !(s = malloc(len + 1)))
		return NULL;
	base64_encode(s, p, n);
	j = json_stringn_nocheck(s, len);
	free(s);
	return j;
}

int etcd_set_b64(json_t *o, const char *name, const void *p, size_t n)
{
	return json_object_set_new(o, name, etcd_b64(p, n)) ? -ENOMEM : 0;
}

int etcd_set_i64(json_t *o, const char *name, int64_t v)
{
	return json_object_set_new(o, name, json_integer(v)) ? -ENOMEM : 0;
}

int64_t etcd_i64(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	if (json_is_true(v))
		return 1;
	return 0;
}

int etcd_unb64(const json_t *o, const char *name, char **out, size_t *len)
{
	json_t *v = json_object_get(o, name);
	const char *s = "";
	size_t n = 0;
	long got;

	if (v) {
		if (!json_is_string(v))
			return -EPROTO;
		s = json_string_value(v);
		n = json_string_length(v);
	}
	*out = malloc(n / 4 * 3 + 1);
	if (!*out)
		return -ENOMEM;
	got = base64_decode(*out, s, n);
	if (got < 0) {
		free(*out);
		*out = NULL;
		return -EPROTO;
	}
	(*out)[got] = '\0';
	*len = (size_t)got;
	return 0;
}

void etcd_kv_free(struct etcd_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

int etcd_kv_from_json(const json_t *o, struct etcd_kv *kv)
{
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(o))
		return -EPROTO;
	rc = etcd_unb64(o, "key", &kv->key, &kv->key_len);
	if (!rc)
		rc = etcd_unb64(o, "value", &kv->value, &kv->value_len);
	if (rc) {
		etcd_kv_free(kv);
		return rc;
	}
	kv->create_revision = etcd_i64(o, "create_revision");
	kv->mod_revision = etcd_i64(o, "mod_revision");
	kv->version = etcd_i64(o, "version");
	kv->lease = etcd_i64(o, "lease");
	return 0;
}

void etcd_range_result_free(struct etcd_range_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		etcd_kv_free(&r->kvs[i]);
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

int etcd_range_from_json(const json_t *o, struct etcd_range_result *r)
{
	json_t *kvs = json_object_get(o, "kvs");
	size_t n = json_array_size(kvs);
	int rc;

	memset(r, 0, sizeof(*r));
	r->revision = etcd_i64(json_object_get(o, "header"), "revision");
	r->count = etcd_i64(o, "count");
	r->more = etcd_i64(o, "more") != 0;
	if (kvs && !json_is_array(kvs))
		return -EPROTO;
	if (n && !(r->kvs = calloc(n, sizeof(*r->kvs))))
		return -ENOMEM;
	for (; r->n < n; r->n++) {
		rc = etcd_kv_from_json(json_array_get(kvs, r->n),
				       &r->kvs[r->n]);
		if (rc) {
			etcd_range_result_free(r);
			return rc;
		}
	}
	return 0;
}

int etcd_range_to_json(json_t *o, const struct etcd_range *req)
{
	int rc = etcd_set_b64(o, "key", req->key, req->key_len);

	if (!rc && req->range_end)
		rc = etcd_set_b64(o, "range_end", req->range_end,
				  req->range_end_len);
	if (!rc && req->limit)
		rc = etcd_set_i64(o, "limit", req->limit);
	if (!rc && req->revision)
		rc = etcd_set_i64(o, "revision", req->revision);
	if (!rc && req->keys_only)
		rc = json_object_set_new(o, "keys_only", json_true());
	if (!rc && req->count_only)
		rc = json_object_set_new(o, "count_only", json_true());
	if (!rc && req->serializable)
		rc = json_object_set_new(o, "serializable", json_true());
	return rc ? -ENOMEM : 0;
}

size_t etcd_prefix_end(char *end, const void *prefix, size_t n)
{
	const unsigned char *p = prefix;

	while (n > 0 && p[n - 1] == 0xff)
		n--;
	if (n == 0) {
		end[0] = '\0';
		return 1;
	}
	memcpy(end, p, n);
	end[n - 1] = (char)(p[n - 1] + 1);
	return n;
}

/* ---- the client and its connections
 * ------------------------------------------ */

size_t etcd_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;

	if (buf_put(b, p, size * nmemb))
		return 0; /* out of memory: curl fails the transfer */
	return size * nmemb;
}

int etcd_easy_setup(struct etcd *e, CURL *h, struct curl_slist **hdrs,
		    struct buf *body, char *errbuf)
{
	/* no "Expect: 100-continue" round trip before a large body */
	*hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (!*hdrs || !curl_slist_append(*hdrs, "Expect:"))
		return -ENOMEM;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->connect_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, etcd_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	return 0;
}

static void conn_free(struct etcd_conn *c)
{
	if (!c)
		return;
	if (c->h)
		curl_easy_cleanup(c->h);
	curl_slist_free_all(c->hdrs);
	buf_free(&c->body);
	free(c);
}

/* An idle connection of the pool, or a new one. NULL: out of memory. */
static struct etcd_conn *conn_get(struct etcd *e)
{
	struct etcd_conn *c;

	pthread_mutex_lock(&e->mu);
	c = e->free;
	if (c)
		e->free = c->next;
	pthread_mutex_unlock(&e->mu);
	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->h = curl_easy_init();
	if (!c->h || etcd_easy_setup(e, c->h, &c->hdrs, &c->body, c->errbuf)) {
		conn_free(c);
		return NULL;
	}
	curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)e->request_ms);
	return c;
}

static void conn_put(struct etcd *e, struct etcd_conn *c)
{
	pthread_mutex_lock(&e->mu);
	c->next = e->free;
	e->free = c;
	pthread_mutex_unlock(&e->mu);
}

int etcd_open(const char *const *endpoints, size_t n,
	      const struct etcd_opts *opts, struct etcd **out)
{
	struct etcd *e;

	*out = NULL;
	if (n == 0)
		return rerr_set(-EINVAL, "etcd: no member to connect to");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return rerr_set(-ENOMEM, "etcd: curl_global_init: %s",
				curl_easy_strerror(curl_init_rc));
	e = calloc(1, sizeof(*e));
	if (!e || !(e->ep = calloc(n, sizeof(*e->ep))))
		goto nomem;
	for (; e->n < n; e->n++)
		if (!(e->ep[e->n] = strdup(endpoints[e->n])))
			goto nomem;
	e->connect_ms = opts && opts->connect_timeout_ms
				? opts->connect_timeout_ms
				: 1000;
	e->request_ms = opts && opts->request_timeout_ms
				? opts->request_timeout_ms
				: 10000;
	if (pthread_mutex_init(&e->mu, NULL))
		goto nomem;
	*out = e;
	return 0;
nomem:
	if (e) {
		for (size_t i = 0; i < e->n; i++)
			free(e->ep[i]);
		free(e->ep);
		free(e);
	}
	return rerr_set(-ENOMEM, "etcd: out of memory");
}

void etcd_close(struct etcd *e)
{
	struct etcd_conn *c;

	if (!e)
		return;
	while ((c = e->free)) {
		e->free = c->next;
		conn_free(c);
	}
	for (size_t i = 0; i < e->n; i++)
		free(e->ep[i]);
	free(e->ep);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

const char *etcd_current_endpoint(struct etcd *e)
{
	return e->ep[atomic_load(&e->cur) % e->n];
}

/* ---- one request, with failover ------------------------------------------ */

/* Was the request of the failed transfer on `h` certainly not sent? */
static int not_sent(CURL *h, CURLcode cc)
{
	long sent = 0;

	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
		return 1;
	curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
	return sent == 0;
}

/* A transfer of call `c` that curl failed with `cc` at member `ep`:
 *next if another member may be tried. */
static int transfer_error(struct etcd_conn *cn, const struct etcd_call *c,
			  const char *ep, CURLcode cc, int *next)
{
	const char *why = cn->errbuf[0] ? cn->errbuf : curl_easy_strerror(cc);
	int unsent = not_sent(cn->h, cc);

	*next = unsent || c->idempotent;
	if (unsent)
		return etcd_fail(-ENOTCONN, c, ep, "%s", why);
	return etcd_fail(cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO, c,
			 ep, "%s%s", why,
			 c->idempotent ? ""
				       : " (sent: its outcome is unknown)");
}

/* One attempt at member `ep`: 0 and *resp, or the error (reported) and
 *next if the next member may be tried. */
static int attempt(struct etcd_conn *cn, const struct etcd_call *c,
		   const char *ep, const char *body, size_t len, json_t **resp,
		   int *next)
{
	char url[512];
	long status = 0;
	CURLcode cc;
	int rc;

	*next = 0;
	snprintf(url, sizeof(url), "http://%s%s", ep, c->path);
	buf_clear(&cn->body);
	cn->body.err = 0;
	cn->errbuf[0] = '\0';
	curl_easy_setopt(cn->h, CURLOPT_URL, url);
	curl_easy_setopt(cn->h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(cn->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	cc = curl_easy_perform(cn->h);
	if (cc != CURLE_OK)
		return transfer_error(cn, c, ep, cc, next);
	if (cn->body.err)
		return etcd_fail(cn->body.err, c, ep, "answer: out of memory");
	curl_easy_getinfo(cn->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		rc = etcd_http_error(c, ep, status, cn->body.ptr);
		/* no leader, lost quorum, stopping: another may answer */
		*next = rc == -EIO && c->idempotent;
		return rc;
	}
	*resp = json_loadb(cn->body.ptr ? cn->body.ptr : "", cn->body.len, 0,
			   NULL);
	if (!json_is_object(*resp)) {
		json_decref(*resp);
		*resp = NULL;
		return etcd_fail(-EPROTO, c, ep, "answer is not JSON: %.80s",
				 cn->body.ptr ? cn->body.ptr : "");
	}
	return 0;
}

/* Report the failure of every member: their causes, one after another. */
static int all_failed(const struct etcd_call *c, int code, struct buf *why)
{
	if (why->err)
		return etcd_fail(code, c, NULL, "no member answered");
	return etcd_fail(code, c, NULL, "%s%s",
			 code == -ENOTCONN ? "no member reachable: " : "",
			 why->ptr);
}

static int request_on(struct etcd *e, struct etcd_conn *cn,
		      const struct etcd_call *c, const char *body, size_t len,
		      json_t **resp)
{
	size_t start = atomic_load(&e->cur), i;
	struct buf why = BUF_INIT;
	int rc = 0, next = 0, all_unreachable = 1;

	for (i = 0; i < e->n; i++) {
		size_t idx = (start + i) % e->n;

		rc = attempt(cn, c, e->ep[idx], body, len, resp, &next);
		if (rc == 0) {
			atomic_store(&e->cur, idx);
			break;
		}
		if (!next)
			break;
		all_unreachable &= rc == -ENOTCONN;
		buf_printf(&why, "%s%s: %s", i ? "; " : "", e->ep[idx],
			   last_cause);
	}
	if (rc && next && e->n > 1)
		rc = all_failed(c, all_unreachable ? -ENOTCONN : rc, &why);
	buf_free(&why);
	return rc;
}

int etcd_request(struct etcd *e, const struct etcd_call *c, json_t *req,
		 json_t **resp)
{
	struct etcd_conn *cn;
	char *body;
	int rc;

	*resp = NULL;
	body = json_dumps(req, JSON_COMPACT);
	if (!body)
		return etcd_fail(-ENOMEM, c, NULL, "out of memory");
	cn = conn_get(e);
	if (!cn) {
		free(body);
		return etcd_fail(-ENOMEM, c, NULL,
				 "no connection: out of "
				 "memory");
	}
	rc = request_on(e, cn, c, body, strlen(body), resp);
	conn_put(e, cn);
	free(body);
	return rc;
}
