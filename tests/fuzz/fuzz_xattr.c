/*
 * fuzz_xattr.c - libFuzzer target for the user xattrs of records:
 * store_xattr_set/get/list/remove on a memory-backend store, against a
 * model of what SPEC section 3 and store.h promise.
 *
 * Each input is a program run on a fresh memory store holding record "r"
 * (and namespace "ns"); each step starts with an op byte:
 *
 *   0 set     flags byte, name, value   1 get     name, size byte
 *   2 list    size byte                 3 remove  name
 *   4 put     new content (xattrs stay) 5 rename  "r" <-> "r2" (they move)
 *   6 delete + re-create (xattrs go)    7 set/get/list on "missing", "ns"
 *
 * A name is [u8 len][bytes] (NULs cut it, as a C string); a value is
 * [u8 kind][u16 len][bytes]: kind & 1 makes it len * 64 bytes of a pattern
 * instead, so values up to and past STORE_XATTR_VALUE_MAX are reached.
 * The model keeps name -> value and computes which errors a change may
 * give (-ERANGE for a bad name length, -E2BIG for a value over
 * STORE_XATTR_VALUE_MAX, -EEXIST/-ENODATA for the flags, -ENOSPC over
 * STORE_XATTR_TOTAL_MAX or STORE_XATTR_COUNT_MAX); the store must give one
 * of them, or succeed when none applies, and then agree with the model on
 * every get and list. Nothing may crash or leak.
 */
#include "store.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

#define MAX_VALUE (STORE_XATTR_VALUE_MAX + 4096)

struct attr {
	char *name;
	uint8_t *value;
	size_t size;
};

struct model {
	struct attr a[STORE_XATTR_COUNT_MAX + 1];
	size_t n;
};

struct in {
	const uint8_t *p;
	size_t left;
};

static unsigned take8(struct in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static void take_name(struct in *in, char *name, size_t cap)
{
	size_t len = take8(in) + (take8(in) & 1 ? 256 : 0), i;

	for (i = 0; i < len && i + 1 < cap && in->left; i++)
		name[i] = (char)take8(in);
	name[i] = '\0';
}

static size_t take_value(struct in *in, uint8_t *buf)
{
	unsigned kind = take8(in);
	size_t len = take8(in) | (size_t)take8(in) << 8;

	if (kind & 1) {
		len *= 64;
		if (len > MAX_VALUE)
			len = MAX_VALUE;
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(i * 31 + kind);
		return len;
	}
	if (len > in->left)
		len = in->left;
	memcpy(buf, in->p, len);
	in->p += len;
	in->left -= len;
	return len;
}

static long model_find(const struct model *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->a[i].name, name) == 0)
			return (long)i;
	return -1;
}

static void model_clear(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->a[i].name);
		free(m->a[i].value);
	}
	m->n = 0;
}

static void model_remove(struct model *m, long i)
{
	free(m->a[i].name);
	free(m->a[i].value);
	m->a[i] = m->a[--m->n];
}

static void model_set(struct model *m, const char *name, const uint8_t *v,
		      size_t size)
{
	long i = model_find(m, name);

	if (i < 0) {
		check(m->n < STORE_XATTR_COUNT_MAX);
		i = (long)m->n++;
		m->a[i].name = strdup(name);
		check(m->a[i].name != NULL);
	} else {
		free(m->a[i].value);
	}
	m->a[i].value = malloc(size ? size : 1);
	check(m->a[i].value != NULL);
	if (size)
		memcpy(m->a[i].value, v, size);
	m->a[i].size = size;
}

/* Sum of name and value bytes, and count, if `name` had value size
   `size` (SIZE_MAX: removed). */
static void model_after(const struct model *m, const char *name, size_t size,
			size_t *payload, size_t *count)
{
	*payload = 0;
	*count = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->a[i].name, name) == 0)
			continue;
		*payload += strlen(m->a[i].name) + m->a[i].size;
		(*count)++;
	}
	if (size != SIZE_MAX) {
		*payload += strlen(name) + size;
		(*count)++;
	}
}

static void check_get_all(struct store *s, const char *id,
			  const struct model *m, uint8_t *buf)
{
	for (size_t i = 0; i < m->n; i++) {
		ssize_t n = store_xattr_get(s, id, m->a[i].name, NULL, 0);

		check(n == (ssize_t)m->a[i].size);
		n = store_xattr_get(s, id, m->a[i].name, buf, MAX_VALUE);
		check(n == (ssize_t)m->a[i].size);
		check(n == 0 || memcmp(buf, m->a[i].value, (size_t)n) == 0);
		/* (size 0 would ask for the length) */
		if (m->a[i].size > 1)
			check(store_xattr_get(s, id, m->a[i].name, buf,
					      m->a[i].size - 1) == -ERANGE);
	}
}

static void check_list(struct store *s, const char *id, const struct model *m,
		       unsigned short_by)
{
	size_t want = 0, seen = 0;
	ssize_t n;
	char *list;

	for (size_t i = 0; i < m->n; i++)
		want += strlen(m->a[i].name) + 1;
	n = store_xattr_list(s, id, NULL, 0);
	check(n == (ssize_t)want);
	list = malloc(want + 1);
	check(list != NULL);
	n = store_xattr_list(s, id, list, want);
	check(n == (ssize_t)want);
	for (size_t off = 0; off < want; off += strlen(list + off) + 1) {
		check(model_find(m, list + off) >= 0);
		seen++;
	}
	check(seen == m->n); /* names are unique, so all are there */
	if (want && short_by) {
		size_t sz = short_by >= want ? 1 : want - short_by;

		check(store_xattr_list(s, id, list, sz) == -ERANGE);
	}
	free(list);
}

static void do_set(struct store *s, const char *id, struct model *m,
		   const char *name, const uint8_t *v, size_t size, int flags)
{
	size_t nl = strlen(name), payload, count;
	long i = model_find(m, name);
	bool erange, e2big, eexist, enodata, enospc;
	int rc;

	erange = nl == 0 || nl > STORE_XATTR_NAME_MAX;
	e2big = size > STORE_XATTR_VALUE_MAX;
	eexist = (flags & XATTR_CREATE) && i >= 0;
	enodata = (flags & XATTR_REPLACE) && i < 0;
	model_after(m, name, size, &payload, &count);
	enospc = payload > STORE_XATTR_TOTAL_MAX ||
		 count > STORE_XATTR_COUNT_MAX;
	rc = store_xattr_set(s, id, name, v, size, flags);
	if (!(erange || e2big || eexist || enodata || enospc)) {
		if (rc != 0)
			fprintf(stderr, "set %s (%zu bytes): %d\n", name, size,
				rc);
		check(rc == 0);
		model_set(m, name, v, size);
		return;
	}
	check((rc == -ERANGE && erange) || (rc == -E2BIG && e2big) ||
	      (rc == -EEXIST && eexist) || (rc == -ENODATA && enodata) ||
	      (rc == -ENOSPC && enospc));
}

static void do_remove(struct store *s, const char *id, struct model *m,
		      const char *name)
{
	long i = model_find(m, name);
	size_t nl = strlen(name);
	int rc = store_xattr_remove(s, id, name);

	if (nl == 0 || nl > STORE_XATTR_NAME_MAX) {
		check(rc == -ERANGE || rc == -ENODATA);
		return;
	}
	if (i < 0) {
		check(rc == -ENODATA);
		return;
	}
	check(rc == 0);
	model_remove(m, i);
}

static void put_content(struct store *s, const char *id, const void *p,
			size_t len)
{
	check(store_put(s, id, p, len, NULL, NULL) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *val, *buf;
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct in in = {data, size};
	struct model m = {.n = 0};
	const char *id = "r";
	char name[STORE_XATTR_NAME_MAX + 64];
	struct store *s = NULL;
	int steps = 0;

	if (!val) {
		rlog_set_level(RLOG_ERR);
		val = malloc(MAX_VALUE);
		buf = malloc(MAX_VALUE);
		check(val && buf);
	}
	check(store_open(&s, &o) == 0);
	put_content(s, id, "hello\n", 6);
	check(store_mkdir(s, "ns", 0755) == 0);

	while (in.left && steps++ < 64) {
		unsigned op = take8(&in) % 8, flags, sz;
		size_t vlen;
		ssize_t n;

		switch (op) {
		case 0:
			flags = take8(&in);
			take_name(&in, name, sizeof(name));
			vlen = take_value(&in, val);
			do_set(s, id, &m, name, val, vlen,
			       (int)(flags & (XATTR_CREATE | XATTR_REPLACE)));
			break;
		case 1:
			take_name(&in, name, sizeof(name));
			sz = take8(&in);
			n = store_xattr_get(s, id, name, buf, sz ? sz : 0);
			if (model_find(&m, name) < 0) {
				check(n == -ENODATA);
			} else {
				size_t want = m.a[model_find(&m, name)].size;

				check(sz && sz < want ? n == -ERANGE
						      : n == (ssize_t)want);
			}
			break;
		case 2:
			check_list(s, id, &m, take8(&in));
			break;
		case 3:
			take_name(&in, name, sizeof(name));
			do_remove(s, id, &m, name);
			break;
		case 4:
			vlen = take_value(&in, val);
			if (vlen > 4096)
				vlen = 4096;
			put_content(s, id, val, vlen);
			break;
		case 5: {
			const char *to = strcmp(id, "r") ? "r" : "r2";

			check(store_rename(s, id, to, NULL, NULL, NULL) == 0);
			check(store_xattr_list(s, id, NULL, 0) == -ENOENT);
			id = to;
			break;
		}
		case 6:
			check(store_delete(s, id, NULL, NULL, NULL) == 0);
			check(store_xattr_get(s, id, "user.a", buf, 1) ==
			      -ENOENT);
			put_content(s, id, "again\n", 6);
			model_clear(&m);
			break;
		case 7: {
			const char *other = take8(&in) & 1 ? "ns" : "missing";
			int rc = store_xattr_set(s, other, "user.a", "b", 1, 0);

			check(rc == -ENOENT || rc == -EISDIR);
			n = store_xattr_get(s, other, "user.a", buf, 1);
			check(n == -ENOENT || n == -EISDIR || n == -ENODATA);
			n = store_xattr_list(s, other, NULL, 0);
			check(n == -ENOENT || n == -EISDIR || n == 0);
			break;
		}
		}
		check_get_all(s, id, &m, buf);
	}
	check_list(s, id, &m, 1);
	check(store_close(s) == 0);
	model_clear(&m);
	return 0;
}
