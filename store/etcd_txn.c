/*
 * etcd_txn.c - transactions of the etcd client (etcd.h): compares on a
 * key's version, create or mod revision or value, then the success or the
 * failure operations, as one request.
 */
#include "etcd_i.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const targets[] = {"VERSION", "CREATE", "MOD", "VALUE"};
static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
static const char *const operands[] = {"version", "create_revision",
				       "mod_revision"};

static json_t *cmp_json(const struct etcd_cmp *cmp)
{
	json_t *o = json_object();
	int rc;

	if (!o || (unsigned)cmp->target > ETCD_VALUE ||
	    (unsigned)cmp->result > ETCD_NOT_EQUAL)
		goto fail;
	rc = etcd_set_b64(o, "key", cmp->key, cmp->key_len);
	rc |= json_object_set_new(o, "target",
				  json_string(targets[cmp->target]));
	rc |= json_object_set_new(o, "result",
				  json_string(results[cmp->result]));
	if (cmp->target == ETCD_VALUE)
		rc |= etcd_set_b64(o, "value", cmp->value, cmp->value_len);
	else
		rc |= etcd_set_i64(o, operands[cmp->target], cmp->n);
	if (!rc)
		return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *op_json(const struct etcd_op *op)
{
	static const char *const names[] = {"request_range", "request_put",
					    "request_delete_range"};
	json_t *o = json_object(), *r = json_object();
	int rc;

	if (!o || !r || (unsigned)op->type > ETCD_OP_DELETE)
		goto fail;
	rc = etcd_set_b64(r, "key", op->key, op->key_len);
	if (op->type == ETCD_OP_PUT) {
		rc |= etcd_set_b64(r, "value", op->value, op->value_len);
		if (op->lease)
			rc |= etcd_set_i64(r, "lease", op->lease);
	} else if (op->range_end) {
		rc |= etcd_set_b64(r, "range_end", op->range_end,
				   op->range_end_len);
	}
	rc |= json_object_set(o, names[op->type], r);
	json_decref(r);
	if (!rc)
		return o;
	r = NULL;
fail:
	json_decref(r);
	json_decref(o);
	return NULL;
}

static json_t *cmp_item(const void *p)
{
	return cmp_json(p);
}

static json_t *op_item(const void *p)
{
	return op_json(p);
}

/* Add the array `name` to `o`: fn() of each of the `n` elements of
   `size` bytes at `v`. 0 or -ENOMEM. */
static int add_array(json_t *o, const char *name, const void *v, size_t n,
		     size_t size, json_t *(*fn)(const void *))
{
	json_t *a = json_array();

	if (!a || json_object_set_new(o, name, a))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, fn((const char *)v + i * size)))
			return -ENOMEM;
	return 0;
}

static json_t *txn_json(const struct etcd_txn *t)
{
	json_t *o = json_object();

	if (!o ||
	    add_array(o, "compare", t->cmp, t->n_cmp, sizeof(*t->cmp),
		      cmp_item) ||
	    add_array(o, "success", t->success, t->n_success,
		      sizeof(*t->success), op_item) ||
	    add_array(o, "failure", t->failure, t->n_failure,
		      sizeof(*t->failure), op_item)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void etcd_txn_result_free(struct etcd_txn_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_ops; i++)
		etcd_range_result_free(&r->ops[i].range);
	free(r->ops);
	memset(r, 0, sizeof(*r));
}

static int op_result(const json_t *o, struct etcd_op_result *r)
{
	json_t *v;

	memset(r, 0, sizeof(*r));
	if ((v = json_object_get(o, "response_range"))) {
		r->type = ETCD_OP_RANGE;
		return etcd_range_from_json(v, &r->range);
	}
	if ((v = json_object_get(o, "response_delete_range"))) {
		r->type = ETCD_OP_DELETE;
		r->deleted = etcd_i64(v, "deleted");
		return 0;
	}
	if (json_object_get(o, "response_put")) {
		r->type = ETCD_OP_PUT;
		return 0;
	}
	return -EPROTO;
}

static int txn_result(const json_t *resp, struct etcd_txn_result *r)
{
	json_t *ops = json_object_get(resp, "responses");
	size_t n = json_array_size(ops);
	int rc;

	r->succeeded = json_is_true(json_object_get(resp, "succeeded"));
	r->revision = etcd_i64(json_object_get(resp, "header"), "revision");
	if (n && !(r->ops = calloc(n, sizeof(*r->ops))))
		return -ENOMEM;
	for (; r->n_ops < n; r->n_ops++) {
		rc = op_result(json_array_get(ops, r->n_ops),
			       &r->ops[r->n_ops]);
		if (rc)
			return rc;
	}
	return 0;
}

int etcd_txn(struct etcd *e, const struct etcd_txn *t,
	     struct etcd_txn_result *out)
{
	struct etcd_call c = {"txn", NULL, 0, "/v3/kv/txn", 0};
	struct etcd_txn_result res = {0};
	json_t *req, *resp = NULL;
	int rc;

	if (t->n_cmp) {
		c.key = t->cmp[0].key;
		c.key_len = t->cmp[0].key_len;
	} else if (t->n_success) {
		c.key = t->success[0].key;
		c.key_len = t->success[0].key_len;
	}
	if (out)
		memset(out, 0, sizeof(*out));
	req = txn_json(t);
	if (!req)
		return etcd_fail(-ENOMEM, &c, NULL, "out of memory");
	rc = etcd_request(e, &c, req, &resp);
	json_decref(req);
	if (rc)
		return rc;
	rc = txn_result(resp, &res);
	json_decref(resp);
	if (rc) {
		etcd_txn_result_free(&res);
		return etcd_fail(rc, &c, etcd_current_endpoint(e),
				 "malformed answer");
	}
	if (!out) {
		rc = res.succeeded ? 0
				   : etcd_fail(-ECANCELED, &c, NULL,
					       "a compare failed");
		etcd_txn_result_free(&res);
		return rc;
	}
	*out = res;
	return 0;
}
