/*
 * id.c - record IDs (SPEC section 2) and conditional names (section 4).
 *
 * Everything here is a pure function over (pointer, length): no I/O, no
 * allocation, no locale (digits and letters are ASCII only), and no byte
 * past `len` is ever read. This is the single gate between untrusted names
 * and the backing directory, so it refuses rather than normalises.
 *
 * Decision where the spec is silent: ".recfs" is reserved only as the
 * exact, case-sensitive first component ("at the root"), and the backing
 * store is case-sensitive, so ".RECFS" and "a/.recfs" are ordinary IDs.
 * ".git" is an ordinary component too (SPEC section 2: `git init` works in
 * a mount); the history stores it under an escaped tree-entry name
 * (hist_path_from_id, history.h).
 */
#include "id.h"

#include <errno.h>
#include <string.h>

/* Reserved first component (exact bytes, case-sensitive; see above). */
static const char reserved_root[] = ".recfs";

/*
 * A conditional version has at most 19 digits: the largest such number,
 * 10^19 - 1, fits in uint64_t, so parsing it can never overflow.
 */
#define COND_MAX_DIGITS 19

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* True if name[0..len) equals the lowercase literal `lit`, ignoring case. */
static bool equals_nocase(const char *name, size_t len, const char *lit)
{
	size_t i;

	if (len != strlen(lit))
		return false;
	for (i = 0; i < len; i++) {
		if (ascii_lower(name[i]) != lit[i])
			return false;
	}
	return true;
}

bool id_component_forbidden(const char *name, size_t len)
{
	return equals_nocase(name, len, ".") || equals_nocase(name, len, "..");
}

/*
 * Length of the NUL-terminated `s`, but stop counting at `max` (so that an
 * unterminated or huge string is not scanned to its end).
 */
static size_t bounded_strlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n] != '\0')
		n++;
	return n;
}

static bool is_reserved_root(const char *comp, size_t len)
{
	return len == sizeof(reserved_root) - 1 &&
	       memcmp(comp, reserved_root, len) == 0;
}

static int check_component(const char *comp, size_t len)
{
	if (len > ID_MAX_COMPONENT)
		return -ENAMETOOLONG;
	if (len == 0)
		return -EINVAL;
	if (id_component_forbidden(comp, len))
		return -EINVAL;
	return 0;
}

/* Is a component of id[0..len) longer than ID_MAX_COMPONENT? */
static bool has_long_component(const char *id, size_t len)
{
	size_t start = 0;
	const char *slash;

	for (;;) {
		slash = memchr(id + start, '/', len - start);
		if ((slash ? (size_t)(slash - id) : len) - start >
		    ID_MAX_COMPONENT)
			return true;
		if (!slash)
			return false;
		start = (size_t)(slash - id) + 1;
	}
}

/*
 * Split id[0..len) on '/' into `p`, checking each component. A leading,
 * trailing or doubled '/' yields an empty component and is refused.
 */
static int split_components(const char *id, size_t len, struct id_parts *p)
{
	size_t start = 0;
	const char *slash;
	size_t end;
	int rc;

	for (;;) {
		slash = memchr(id + start, '/', len - start);
		end = slash ? (size_t)(slash - id) : len;
		if (p->n == ID_MAX_COMPONENTS)
			return -EINVAL;
		rc = check_component(id + start, end - start);
		if (rc < 0)
			return rc;
		p->comp[p->n] = id + start;
		p->len[p->n] = end - start;
		p->n++;
		if (!slash)
			return 0;
		start = end + 1;
	}
}

int id_parse(const char *id, size_t len, struct id_parts *parts)
{
	struct id_parts scratch;
	struct id_parts *p = parts ? parts : &scratch;
	int rc = -EINVAL;

	p->n = 0;
	if (id && len > ID_MAX_LEN) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (!id || len == 0)
		goto out;
	/* SPEC 2: a name too long is ENAMETOOLONG whatever else is wrong
	   with it, as the kernel says of a path with such a component */
	if (has_long_component(id, len)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (memchr(id, '\0', len))
		goto out;
	/* "ID@N" (valid or malformed N) is a conditional name, never an ID. */
	if (id_split_cond(id, len, NULL, NULL) != 0)
		goto out;
	rc = split_components(id, len, p);
	if (rc < 0)
		goto out;
	if (is_reserved_root(p->comp[0], p->len[0]))
		rc = -EINVAL;
out:
	if (rc < 0)
		p->n = 0;
	return rc;
}

int id_check(const char *id)
{
	if (!id)
		return -EINVAL;
	/* Longer than ID_MAX_LEN is refused by id_parse on the length. */
	return id_parse(id, bounded_strlen(id, ID_MAX_LEN + 1), NULL);
}

int id_split_cond(const char *name, size_t len, size_t *base_len,
		  uint64_t *version)
{
	size_t digits = len; /* index of the first digit of the suffix */
	size_t ndigits;
	uint64_t v = 0;
	size_t i;

	while (digits > 0 && is_digit(name[digits - 1]))
		digits--;
	ndigits = len - digits;
	/*
	 * Neither digits nor '@' can be '/', so the suffix found here always
	 * lies inside the final component.
	 */
	if (ndigits == 0 || digits == 0 || name[digits - 1] != '@')
		return 0;
	if (ndigits > COND_MAX_DIGITS || (ndigits > 1 && name[digits] == '0'))
		return -EINVAL;
	for (i = digits; i < len; i++)
		v = v * 10 + (uint64_t)(name[i] - '0');
	if (base_len)
		*base_len = digits - 1;
	if (version)
		*version = v;
	return 1;
}
