/*
 * etcd_lease.c - leases of the etcd client (etcd.h): grant, keep alive
 * once, revoke.
 */
#include "etcd_i.h"

#include "err.h"

#include <errno.h>
#include <string.h>

/* Send {"TTL": ttl} or {"ID": id} as call `c`: 0 and *resp, or the
   error. */
static int lease_req(struct etcd *e, const struct etcd_call *c,
		     const char *name, int64_t v, json_t **resp)
{
	json_t *req = json_object();
	int rc;

	if (!req || etcd_set_i64(req, name, v)) {
		json_decref(req);
		return etcd_fail(-ENOMEM, c, NULL, "out of memory");
	}
	rc = etcd_request(e, c, req, resp);
	json_decref(req);
	return rc;
}

int etcd_lease_grant(struct etcd *e, int64_t ttl, int64_t *id,
		     int64_t *granted_ttl)
{
	struct etcd_call c = {"lease grant", NULL, 0, "/v3/lease/grant", 0};
	json_t *resp = NULL;
	const char *err;
	int rc;

	rc = lease_req(e, &c, "TTL", ttl, &resp);
	if (rc)
		return rc;
	err = json_string_value(json_object_get(resp, "error"));
	if (err && *err) {
		rc = etcd_fail(-EIO, &c, etcd_current_endpoint(e), "etcd: %s",
			       err);
		json_decref(resp);
		return rc;
	}
	*id = etcd_i64(resp, "ID");
	if (granted_ttl)
		*granted_ttl = etcd_i64(resp, "TTL");
	json_decref(resp);
	if (*id == 0)
		return etcd_fail(-EPROTO, &c, etcd_current_endpoint(e),
				 "answer without a lease ID");
	return 0;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl)
{
	struct etcd_call c = {"lease keepalive", NULL, 0, "/v3/lease/keepalive",
			      1};
	json_t *resp = NULL, *res;
	int64_t t;
	int rc;

	rc = lease_req(e, &c, "ID", id, &resp);
	if (rc)
		return rc;
	/* a stream of one answer: {"result": {...}} or {"error": {...}} */
	res = json_object_get(resp, "result");
	if (!res) {
		const char *msg = json_string_value(json_object_get(
			json_object_get(resp, "error"), "message"));

		rc = etcd_fail(-EIO, &c, etcd_current_endpoint(e), "etcd: %s",
			       msg ? msg : "an answer without a result");
		json_decref(resp);
		return rc;
	}
	t = etcd_i64(res, "TTL");
	json_decref(resp);
	if (t <= 0)
		return etcd_fail(-ENOENT, &c, NULL,
				 "lease %lld expired or revoked",
				 (long long)id);
	if (ttl)
		*ttl = t;
	return 0;
}

int etcd_lease_revoke(struct etcd *e, int64_t id)
{
	struct etcd_call c = {"lease revoke", NULL, 0, "/v3/lease/revoke", 1};
	json_t *resp = NULL;
	int rc;

	rc = lease_req(e, &c, "ID", id, &resp);
	json_decref(resp);
	return rc;
}
