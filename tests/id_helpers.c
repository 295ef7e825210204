/*
 * id_helpers.c - what the test_id*.c executables share (id_helpers.h).
 */
#include "id_helpers.h"
#include "id.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

int parse(const char *id)
{
	return id_parse(id, strlen(id), NULL);
}

void assert_valid(const char *id)
{
	cr_assert_eq(parse(id), 0, "\"%s\" should be a valid ID", id);
	cr_assert_eq(id_check(id), 0, "id_check(\"%s\") should accept", id);
}

void assert_refused(const char *id)
{
	cr_assert_eq(parse(id), -EINVAL, "\"%s\" should be refused", id);
	cr_assert_eq(id_check(id), -EINVAL, "id_check(\"%s\") should refuse",
		     id);
}

/*
 * Build n components of `comp_len` bytes ('a', 'b', ... cycling), except
 * the last one, which has `last_len` bytes, joined by '/'. NUL-terminates
 * and returns the length.
 */
size_t build_id(char *buf, unsigned n, size_t comp_len, size_t last_len)
{
	size_t pos = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		size_t l = i + 1 == n ? last_len : comp_len;

		if (i > 0)
			buf[pos++] = '/';
		memset(buf + pos, 'a' + (int)(i % 26), l);
		pos += l;
	}
	buf[pos] = '\0';
	return pos;
}

/* Build "a/" + n bytes of 'x' + "/b", NUL-terminate, return the length. */
size_t middle_component_id(char *buf, size_t n)
{
	memcpy(buf, "a/", 2);
	memset(buf + 2, 'x', n);
	memcpy(buf + 2 + n, "/b", 3);
	return n + 4;
}

/* Fill `out` with the case variant of "name" selected by the bits of k. */
void case_variant(char *out, const char *name, unsigned k)
{
	size_t i;

	for (i = 0; name[i]; i++) {
		char c = name[i];

		if ((k >> i) & 1u && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		out[i] = c;
	}
	out[i] = '\0';
}
