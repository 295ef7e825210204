/*
 * fuzz_id.c - libFuzzer target for store/id.c.
 *
 * Feeds arbitrary bytes to id_parse, id_split_cond and id_check and traps
 * on any broken invariant. id_parse is also compared with ref_valid(), an
 * independent byte-by-byte restatement of SPEC section 2, so that a
 * disagreement in either direction (a hostile name accepted, or an ordinary
 * one refused) is a crash.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			__builtin_trap();                                      \
	} while (0)

static bool ref_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* "." or "..", written without id.c's helpers (".git" is an ID). */
static bool ref_forbidden(const uint8_t *c, size_t n)
{
	if (n == 1)
		return c[0] == '.';
	if (n == 2)
		return c[0] == '.' && c[1] == '.';
	return false;
}

/* SPEC 2: which error an invalid ID gets. */
static bool ref_too_long(const uint8_t *d, size_t size)
{
	size_t start = 0, i;

	if (size > ID_MAX_LEN)
		return true;
	for (i = 0; i <= size; i++) {
		if (i < size && d[i] != '/')
			continue;
		if (i - start > ID_MAX_COMPONENT)
			return true;
		start = i + 1;
	}
	return false;
}

/* True if the component ends in '@' + one or more ASCII digits. */
static bool ref_cond_suffix(const uint8_t *c, size_t n)
{
	size_t i = n;

	while (i > 0 && ref_is_digit(c[i - 1]))
		i--;
	return i < n && i > 0 && c[i - 1] == '@';
}

/* SPEC section 2 restated: walk the bytes, one component at a time. */
static bool ref_valid(const uint8_t *d, size_t size)
{
	size_t start = 0, ncomp = 0, i;

	if (size == 0 || size > ID_MAX_LEN)
		return false;
	for (i = 0; i <= size; i++) {
		if (i < size && d[i] == '\0')
			return false;
		if (i < size && d[i] != '/')
			continue;
		if (i == start || i - start > ID_MAX_COMPONENT)
			return false;
		if (ref_forbidden(d + start, i - start))
			return false;
		if (++ncomp > ID_MAX_COMPONENTS)
			return false;
		if (ncomp == 1 && i - start == 6 && !memcmp(d, ".recfs", 6))
			return false;
		if (i == size && ref_cond_suffix(d + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

/* An accepted ID: the parts are in order, valid, and rebuild the input. */
static void check_parts(const uint8_t *data, size_t size,
			const struct id_parts *p)
{
	const char *id = (const char *)data;
	size_t pos = 0;
	unsigned i;

	CHECK(p->n >= 1 && p->n <= ID_MAX_COMPONENTS);
	for (i = 0; i < p->n; i++) {
		CHECK(p->comp[i] == id + pos);
		CHECK(p->len[i] >= 1 && p->len[i] <= ID_MAX_COMPONENT);
		CHECK(pos + p->len[i] <= size);
		CHECK(!memchr(p->comp[i], '/', p->len[i]));
		CHECK(!memchr(p->comp[i], '\0', p->len[i]));
		CHECK(!ref_forbidden(data + pos, p->len[i]));
		CHECK(!id_component_forbidden(p->comp[i], p->len[i]));
		pos += p->len[i];
		if (i + 1 < p->n) {
			CHECK(pos < size && data[pos] == '/');
			pos++;
		}
	}
	CHECK(pos == size);
}

/* id_split_cond: result in range, outputs exact, and never an ID. */
static void check_split(const uint8_t *data, size_t size, int parse_rc)
{
	const char *name = (const char *)data;
	size_t base = SIZE_MAX;
	uint64_t v = UINT64_MAX;
	char digits[32];
	int rc;

	rc = id_split_cond(name, size, &base, &v);
	CHECK(rc == 1 || rc == 0 || rc == -EINVAL);
	CHECK(id_split_cond(name, size, NULL, NULL) == rc);
	if (rc != 1) {
		CHECK(base == SIZE_MAX && v == UINT64_MAX);
		if (rc == -EINVAL)
			CHECK(ref_cond_suffix(data, size) && parse_rc != 0);
		return;
	}
	CHECK(parse_rc != 0);
	CHECK(base < size && data[base] == '@');
	CHECK(size - base - 1 >= 1 && size - base - 1 <= 19);
	/* The digits are exactly the canonical decimal form of v. */
	snprintf(digits, sizeof(digits), "%" PRIu64, v);
	CHECK(strlen(digits) == size - base - 1);
	CHECK(!memcmp(digits, data + base + 1, size - base - 1));
	/* Splitting the base again never sees this suffix twice. */
	if (id_parse(name, base, NULL) == 0)
		CHECK(id_split_cond(name, base, NULL, NULL) == 0);
}

/* id_check on a NUL-terminated copy agrees with id_parse up to the NUL. */
static void check_cstring(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	CHECK(id_check(s) == id_parse(s, strlen(s), NULL));
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/*
	 * libFuzzer passes an exact-size heap copy, so ASan catches any read
	 * past `size`; the input is not NUL-terminated.
	 */
	struct id_parts p;
	int rc;

	p.n = 12345;
	rc = id_parse((const char *)data, size, &p);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG);
	CHECK(id_parse((const char *)data, size, NULL) == rc);
	CHECK((rc == 0) == ref_valid(data, size));
	CHECK((rc == -ENAMETOOLONG) == ref_too_long(data, size));
	if (rc == 0) {
		CHECK(size >= 1 && size <= ID_MAX_LEN);
		CHECK(!memchr(data, '\0', size));
		check_parts(data, size, &p);
	} else {
		CHECK(p.n == 0);
	}
	check_split(data, size, rc);
	check_cstring(data, size);
	return 0;
}
