/*
 * etcd_kv.c - the key-value requests of the etcd client (etcd.h): range,
 * get, put, delete, compaction.
 */
#include "etcd_i.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A new JSON object, or NULL after reporting -ENOMEM for `c`. */
static json_t *new_req(const struct etcd_call *c)
{
	json_t *o = json_object();

	if (!o)
		etcd_fail(-ENOMEM, c, NULL, "out of memory");
	return o;
}

/* Build-then-send: `rc` of building the request (-ENOMEM) or the
   request's. */
static int send_req(struct etcd *e, const struct etcd_call *c, int rc,
		    json_t *req, json_t **resp)
{
	if (rc) {
		json_decref(req);
		return etcd_fail(rc, c, NULL, "out of memory");
	}
	rc = etcd_request(e, c, req, resp);
	json_decref(req);
	return rc;
}

int etcd_range(struct etcd *e, const struct etcd_range *r,
	       struct etcd_range_result *out)
{
	struct etcd_call c = {"range", r->key, r->key_len, "/v3/kv/range", 1};
	json_t *req = new_req(&c), *resp = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!req)
		return -ENOMEM;
	rc = send_req(e, &c, etcd_range_to_json(req, r), req, &resp);
	if (rc)
		return rc;
	rc = etcd_range_from_json(resp, out);
	json_decref(resp);
	if (rc)
		return etcd_fail(rc, &c, etcd_current_endpoint(e),
				 "malformed answer");
	return 0;
}

int etcd_get(struct etcd *e, const void *key, size_t key_len,
	     struct etcd_kv *kv, int64_t *revision)
{
	struct etcd_range r = {.key = key, .key_len = key_len};
	struct etcd_range_result res;
	struct etcd_call c = {"get", key, key_len, "/v3/kv/range", 1};
	int rc;

	memset(kv, 0, sizeof(*kv));
	rc = etcd_range(e, &r, &res);
	if (rc)
		return rc;
	if (revision)
		*revision = res.revision;
	if (res.n == 0) {
		etcd_range_result_free(&res);
		return etcd_fail(-ENOENT, &c, NULL, "no such key");
	}
	*kv = res.kvs[0];
	memset(&res.kvs[0], 0, sizeof(res.kvs[0]));
	etcd_range_result_free(&res);
	return 0;
}

int etcd_put(struct etcd *e, const void *key, size_t key_len, const void *value,
	     size_t value_len, int64_t lease, int64_t *revision)
{
	struct etcd_call c = {"put", key, key_len, "/v3/kv/put", 0};
	json_t *req = new_req(&c), *resp = NULL;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = etcd_set_b64(req, "key", key, key_len);
	if (!rc)
		rc = etcd_set_b64(req, "value", value, value_len);
	if (!rc && lease)
		rc = etcd_set_i64(req, "lease", lease);
	rc = send_req(e, &c, rc, req, &resp);
	if (rc)
		return rc;
	if (revision)
		*revision =
			etcd_i64(json_object_get(resp, "header"), "revision");
	json_decref(resp);
	return 0;
}

int etcd_delete(struct etcd *e, const void *key, size_t key_len,
		const void *range_end, size_t range_end_len, int64_t *deleted,
		int64_t *revision)
{
	struct etcd_call c = {"delete", key, key_len, "/v3/kv/deleterange", 0};
	json_t *req = new_req(&c), *resp = NULL;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = etcd_set_b64(req, "key", key, key_len);
	if (!rc && range_end)
		rc = etcd_set_b64(req, "range_end", range_end, range_end_len);
	rc = send_req(e, &c, rc, req, &resp);
	if (rc)
		return rc;
	if (deleted)
		*deleted = etcd_i64(resp, "deleted");
	if (revision)
		*revision =
			etcd_i64(json_object_get(resp, "header"), "revision");
	json_decref(resp);
	return 0;
}

int etcd_compact(struct etcd *e, int64_t revision)
{
	struct etcd_call c = {"compact", NULL, 0, "/v3/kv/compaction", 1};
	json_t *req = new_req(&c), *resp = NULL;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = etcd_set_i64(req, "revision", revision);
	if (!rc && json_object_set_new(req, "physical", json_true()))
		rc = -ENOMEM;
	rc = send_req(e, &c, rc, req, &resp);
	json_decref(resp);
	return rc;
}
