/*
 * test_id.c - record ID rules (SPEC section 2) and conditional names
 * (section 4): every rule with valid names next to hostile ones.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "id.h"

/* Large enough for any ID a test builds, including over-long ones. */
#define BUF_LEN (2 * ID_MAX_LEN)

static int parse(const char *id)
{
	return id_parse(id, strlen(id), NULL);
}

static void assert_valid(const char *id)
{
	cr_assert_eq(parse(id), 0, "\"%s\" should be a valid ID", id);
	cr_assert_eq(id_check(id), 0, "id_check(\"%s\") should accept", id);
}

static void assert_refused(const char *id)
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
static size_t build_id(char *buf, unsigned n, size_t comp_len, size_t last_len)
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
static size_t middle_component_id(char *buf, size_t n)
{
	memcpy(buf, "a/", 2);
	memset(buf + 2, 'x', n);
	memcpy(buf + 2 + n, "/b", 3);
	return n + 4;
}

/* Fill `out` with the case variant of "name" selected by the bits of k. */
static void case_variant(char *out, const char *name, unsigned k)
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

/* ---- ordinary IDs ---- */

Test(id, single_component_is_accepted)
{
	assert_valid("a");
	assert_valid("record.json");
}

Test(id, nested_components_are_accepted)
{
	assert_valid("a/b");
	assert_valid("users/alice/profile.json");
}

Test(id, spaces_are_ordinary_bytes)
{
	assert_valid("my file.json");
	assert_valid(" ");
	assert_valid("a /b ");
	assert_valid(" a/ b");
}

Test(id, utf8_is_ordinary)
{
	assert_valid("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac.json");
	assert_valid("\xf0\x9f\x98\x80");
}

Test(id, invalid_utf8_bytes_are_ordinary)
{
	assert_valid("\xff\xfe");
	assert_valid("a/\xc3/\x80");
}

Test(id, every_byte_but_nul_and_slash_is_allowed_inside_a_component)
{
	char id[4];
	int c;

	for (c = 1; c < 256; c++) {
		id[0] = 'a';
		id[1] = (char)c;
		id[2] = 'b';
		id[3] = '\0';
		if (c == '/') {
			/* "a/b": two components, still valid */
			cr_assert_eq(parse(id), 0);
			continue;
		}
		cr_assert_eq(parse(id), 0, "byte 0x%02x refused", c);
	}
}

Test(id, every_single_byte_name_but_nul_slash_and_dot_is_valid)
{
	char id[2] = {0, 0};
	int c;

	for (c = 1; c < 256; c++) {
		id[0] = (char)c;
		if (c == '/' || c == '.')
			cr_assert_eq(parse(id), -EINVAL, "byte 0x%02x", c);
		else
			cr_assert_eq(parse(id), 0, "byte 0x%02x", c);
	}
}

Test(id, control_bytes_are_allowed)
{
	assert_valid("a\tb");
	assert_valid("\n");
	assert_valid("line1\nline2/\r");
	assert_valid("\x01\x1f\x7f");
	assert_valid("\x1b[31mred");
}

Test(id, at_sign_not_followed_only_by_digits_is_ordinary)
{
	assert_valid("alice@example.com.json");
	assert_valid("alice@example.com");
	assert_valid("a@b");
	assert_valid("a@");
	assert_valid("@");
	assert_valid("@a");
	assert_valid("a@x1");
	assert_valid("a@1x");
	assert_valid("a@1.json");
	assert_valid("a@-1");
	assert_valid("a@+1");
	assert_valid("a@ 1");
	assert_valid("a@1 ");
}

Test(id, digits_without_at_sign_are_ordinary)
{
	assert_valid("5");
	assert_valid("a5");
	assert_valid("a/2024");
	assert_valid("a01");
}

Test(id, at_digits_in_a_non_final_component_is_ordinary)
{
	assert_valid("a@1/b");
	assert_valid("v@0/x/y");
	assert_valid("a@01/b");
}

Test(id, non_ascii_digits_after_at_are_ordinary)
{
	/* ARABIC-INDIC DIGIT ONE and FULLWIDTH DIGIT ONE are not digits. */
	assert_valid("a@\xd9\xa1");
	assert_valid("a@\xef\xbc\x91");
	/* Superscript one (Latin-1 0xb9) is not a digit either. */
	assert_valid("a@\xb9");
}

Test(id, dot_prefixed_and_multi_dot_names_are_ordinary)
{
	assert_valid("...");
	assert_valid("....");
	assert_valid("a/.../b");
	assert_valid(".a");
	assert_valid("a.");
	assert_valid("..a");
	assert_valid("a..");
	assert_valid(".hidden/.x");
	assert_valid(". ");
	assert_valid(".. ");
}

Test(id, git_lookalikes_are_ordinary)
{
	assert_valid(".gitignore");
	assert_valid(".gitmodules");
	assert_valid("git");
	assert_valid("GIT");
	assert_valid(".gi");
	assert_valid(".gitx");
	assert_valid("x.git");
	assert_valid("repo.git/HEAD");
	assert_valid("..git");
	assert_valid("git/.github");
}

Test(id, recfs_below_the_root_is_ordinary)
{
	assert_valid("a/.recfs");
	assert_valid("a/.recfs/b");
	assert_valid("a/b/.recfs");
}

Test(id, recfs_in_another_case_is_ordinary)
{
	/* Decision: only the exact ".recfs" first component is reserved. */
	assert_valid(".RECFS");
	assert_valid(".Recfs/x");
	assert_valid(".recfS");
}

Test(id, recfs_lookalikes_at_the_root_are_ordinary)
{
	assert_valid(".recfs2");
	assert_valid(".recf");
	assert_valid("recfs");
	assert_valid(".recfs.d/x");
	assert_valid("..recfs");
}

/* ---- refused IDs ---- */

Test(id, empty_id_is_refused)
{
	cr_assert_eq(id_parse("", 0, NULL), -EINVAL);
	cr_assert_eq(id_parse("a", 0, NULL), -EINVAL);
	cr_assert_eq(id_check(""), -EINVAL);
}

Test(id, null_id_is_refused)
{
	struct id_parts p;

	cr_assert_eq(id_parse(NULL, 0, NULL), -EINVAL);
	cr_assert_eq(id_parse(NULL, 3, &p), -EINVAL);
	cr_assert_eq(p.n, 0);
	cr_assert_eq(id_check(NULL), -EINVAL);
}

Test(id, leading_slash_is_refused)
{
	assert_refused("/");
	assert_refused("/a");
	assert_refused("/a/b");
	assert_refused("//a");
}

Test(id, trailing_slash_is_refused)
{
	assert_refused("a/");
	assert_refused("a/b/");
	assert_refused("a//");
}

Test(id, empty_component_is_refused)
{
	assert_refused("a//b");
	assert_refused("//");
	assert_refused("a/b//c");
	assert_refused("a///b");
}

Test(id, dot_component_is_refused)
{
	assert_refused(".");
	assert_refused("./a");
	assert_refused("a/.");
	assert_refused("a/./b");
	assert_refused("./.");
}

Test(id, dotdot_component_is_refused)
{
	assert_refused("..");
	assert_refused("../a");
	assert_refused("a/..");
	assert_refused("a/../b");
	assert_refused("../../etc/passwd");
	assert_refused("a/b/../../..");
	assert_refused("../");
}

/* SPEC 2: ".git" is an ordinary ID, so that `git init` works in a mount
   (the history escapes it: see test_history.c). */
Test(id, dot_git_component_is_ordinary_in_every_case)
{
	char git[8];
	char id[32];
	unsigned k;

	for (k = 0; k < 16; k++) {
		case_variant(git, ".git", k);
		assert_valid(git);
		snprintf(id, sizeof(id), "a/%s/b", git);
		assert_valid(id);
		snprintf(id, sizeof(id), "%s/config", git);
		assert_valid(id);
		snprintf(id, sizeof(id), "a/%s", git);
		assert_valid(id);
	}
}

Test(id, what_git_init_creates_is_valid)
{
	assert_valid(".git");
	assert_valid(".git/HEAD");
	assert_valid("a/.git/config");
	assert_valid(".git/hooks/pre-commit.sample");
	assert_valid(
		"proj/.git/objects/e6/9de29bb2d1d6434b8b29ae775ad8c2e48c5391");
	assert_valid(".gitmodules");
}

Test(id, recfs_as_first_component_is_reserved)
{
	assert_refused(".recfs");
	assert_refused(".recfs/x");
	assert_refused(".recfs/a/b");
}

Test(id, embedded_nul_is_refused)
{
	cr_assert_eq(id_parse("a\0b", 3, NULL), -EINVAL);
	cr_assert_eq(id_parse("a\0", 2, NULL), -EINVAL);
	cr_assert_eq(id_parse("\0", 1, NULL), -EINVAL);
	cr_assert_eq(id_parse("\0a", 2, NULL), -EINVAL);
	cr_assert_eq(id_parse("a/\0/b", 5, NULL), -EINVAL);
	/* The same bytes without the NUL are fine: the NUL is the reason. */
	cr_assert_eq(id_parse("ab", 2, NULL), 0);
}

Test(id, check_stops_at_the_terminating_nul)
{
	/* id_check sees only "a"; the hostile bytes after the NUL are unread.
	 */
	cr_assert_eq(id_check("a\0/.."), 0);
	cr_assert_eq(id_check("..\0a"), -EINVAL);
}

Test(id, conditional_names_are_not_ids)
{
	assert_refused("a@5");
	assert_refused("a@0");
	assert_refused("a/b@12");
	assert_refused("alice@example.com@3");
	assert_refused("@5");
	assert_refused("a/@1");
	assert_refused("a@b@7");
}

Test(id, malformed_conditional_names_are_not_ids)
{
	assert_refused("a@01");
	assert_refused("a@00");
	assert_refused("a@99999999999999999999");
	assert_refused("a@18446744073709551615");
	assert_refused("x/a@007");
}

/* ---- length limits ---- */

Test(id, component_of_255_bytes_is_accepted)
{
	char buf[BUF_LEN];
	size_t len;

	len = build_id(buf, 1, 0, ID_MAX_COMPONENT);
	cr_assert_eq(id_parse(buf, len, NULL), 0);
	len = build_id(buf, 3, ID_MAX_COMPONENT, 1);
	cr_assert_eq(id_parse(buf, len, NULL), 0);
}

Test(id, component_of_256_bytes_is_refused)
{
	char buf[BUF_LEN];
	size_t len;

	len = build_id(buf, 1, 0, ID_MAX_COMPONENT + 1);
	cr_assert_eq(id_parse(buf, len, NULL), -ENAMETOOLONG);
	cr_assert_eq(id_check(buf), -ENAMETOOLONG);
	/* Also in the middle, where 255 bytes are fine. */
	len = middle_component_id(buf, ID_MAX_COMPONENT + 1);
	cr_assert_eq(id_parse(buf, len, NULL), -ENAMETOOLONG);
	cr_assert_eq(id_check(buf), -ENAMETOOLONG);
	len = middle_component_id(buf, ID_MAX_COMPONENT);
	cr_assert_eq(id_parse(buf, len, NULL), 0);
}

Test(id, thirty_two_components_are_accepted)
{
	char buf[BUF_LEN];
	struct id_parts p;
	size_t len;

	len = build_id(buf, ID_MAX_COMPONENTS, 1, 1);
	cr_assert_eq(id_parse(buf, len, &p), 0);
	cr_assert_eq(p.n, ID_MAX_COMPONENTS);
}

Test(id, thirty_three_components_are_refused)
{
	char buf[BUF_LEN];
	struct id_parts p;
	size_t len;

	len = build_id(buf, ID_MAX_COMPONENTS + 1, 1, 1);
	cr_assert_eq(id_parse(buf, len, &p), -EINVAL);
	cr_assert_eq(p.n, 0);
	cr_assert_eq(id_check(buf), -EINVAL);
}

Test(id, total_of_4096_bytes_is_accepted)
{
	char buf[BUF_LEN];
	size_t len;

	/* 17 components of 240 bytes + 16 slashes = 4096. */
	len = build_id(buf, 17, 240, 240);
	cr_assert_eq(len, ID_MAX_LEN);
	cr_assert_eq(id_parse(buf, len, NULL), 0);
	cr_assert_eq(id_check(buf), 0);
}

Test(id, total_of_4097_bytes_is_refused)
{
	char buf[BUF_LEN];
	size_t len;

	len = build_id(buf, 17, 240, 241);
	cr_assert_eq(len, ID_MAX_LEN + 1);
	cr_assert_eq(id_parse(buf, len, NULL), -ENAMETOOLONG);
	cr_assert_eq(id_check(buf), -ENAMETOOLONG);
}

Test(id, far_too_long_id_is_refused)
{
	char buf[BUF_LEN];
	size_t len;

	len = build_id(buf, 31, 255, 255);
	cr_assert_gt(len, ID_MAX_LEN);
	cr_assert_eq(id_parse(buf, len, NULL), -ENAMETOOLONG);
	cr_assert_eq(id_check(buf), -ENAMETOOLONG);
}

/* SPEC 2: only the lengths give ENAMETOOLONG; every other way an ID is
   wrong, also next to a long component, is EINVAL. */
Test(id, only_over_long_names_are_enametoolong)
{
	char buf[BUF_LEN];
	struct id_parts p;
	size_t len;

	/* 255 bytes and a bad component after it */
	len = middle_component_id(buf, ID_MAX_COMPONENT);
	memcpy(buf + len, "/..", 4);
	cr_assert_eq(id_check(buf), -EINVAL);
	/* 33 short components: too many, not too long */
	len = build_id(buf, ID_MAX_COMPONENTS + 1, 1, 1);
	cr_assert_eq(id_parse(buf, len, &p), -EINVAL);
	/* an empty component, a NUL, a reserved name: EINVAL */
	cr_assert_eq(id_check("a//b"), -EINVAL);
	cr_assert_eq(id_parse("a\0b", 3, NULL), -EINVAL);
	cr_assert_eq(id_check(".recfs/x"), -EINVAL);
	cr_assert_eq(id_check("x@3"), -EINVAL);
	/* over-long wins over the rest: nothing past 4096 bytes is read */
	len = build_id(buf, 17, 240, 241);
	buf[0] = '/';
	cr_assert_eq(id_parse(buf, len, NULL), -ENAMETOOLONG);
	/* a component of 256 bytes after a valid one, or after ".." */
	len = build_id(buf, 2, 10, ID_MAX_COMPONENT + 1);
	cr_assert_eq(id_parse(buf, len, &p), -ENAMETOOLONG);
	cr_assert_eq(p.n, 0);
	memcpy(buf, "../", 3);
	cr_assert_eq(id_check(buf + 0), -ENAMETOOLONG);
}

/* ---- id_parse output ---- */

Test(id, parse_fills_components_and_lengths)
{
	const char *id = "users/alice@example.com.json/x";
	struct id_parts p;

	cr_assert_eq(id_parse(id, strlen(id), &p), 0);
	cr_assert_eq(p.n, 3);
	cr_assert_eq(p.comp[0], id);
	cr_assert_eq(p.len[0], 5);
	cr_assert_eq(p.comp[1], id + 6);
	cr_assert_eq(p.len[1], 22);
	cr_assert_eq(p.comp[2], id + 29);
	cr_assert_eq(p.len[2], 1);
	cr_assert_eq(memcmp(p.comp[1], "alice@example.com.json", 22), 0);
}

Test(id, parse_of_single_component_points_at_the_input)
{
	const char *id = "a";
	struct id_parts p;

	cr_assert_eq(id_parse(id, 1, &p), 0);
	cr_assert_eq(p.n, 1);
	cr_assert_eq(p.comp[0], id);
	cr_assert_eq(p.len[0], 1);
}

Test(id, parse_components_reassemble_to_the_input)
{
	char buf[BUF_LEN];
	char joined[BUF_LEN];
	struct id_parts p;
	size_t len, pos = 0;
	unsigned i;

	len = build_id(buf, 20, 7, 3);
	cr_assert_eq(id_parse(buf, len, &p), 0);
	cr_assert_eq(p.n, 20);
	for (i = 0; i < p.n; i++) {
		if (i > 0)
			joined[pos++] = '/';
		memcpy(joined + pos, p.comp[i], p.len[i]);
		pos += p.len[i];
	}
	cr_assert_eq(pos, len);
	cr_assert_eq(memcmp(joined, buf, len), 0);
}

Test(id, parse_error_leaves_zero_components)
{
	struct id_parts p;

	p.n = 7;
	cr_assert_eq(id_parse("a/../b", 6, &p), -EINVAL);
	cr_assert_eq(p.n, 0);
	p.n = 7;
	cr_assert_eq(id_parse(".recfs/x", 8, &p), -EINVAL);
	cr_assert_eq(p.n, 0);
	p.n = 7;
	cr_assert_eq(id_parse("a/b@1", 5, &p), -EINVAL);
	cr_assert_eq(p.n, 0);
}

Test(id, parse_reads_only_len_bytes)
{
	struct id_parts p;

	/* The bytes after len are hostile; they must not be looked at. */
	cr_assert_eq(id_parse("a/..", 1, &p), 0);
	cr_assert_eq(p.n, 1);
	cr_assert_eq(p.len[0], 1);
	cr_assert_eq(id_parse("a@5", 2, NULL), 0);
	cr_assert_eq(id_parse(".git", 4, NULL), 0);
	cr_assert_eq(id_parse("...", 2, NULL), -EINVAL);
}

Test(id, check_agrees_with_parse)
{
	static const char *const ids[] = {
		"a",	  "a/b",      "",	".",   "..",	     ".git",
		"a//b",	  "/a",	      "a/",	"a@5", "a@01",	     "a@",
		".recfs", "x/.recfs", ".RECFS", "...", ".gitignore",
	};
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		cr_assert_eq(id_check(ids[i]), parse(ids[i]), "\"%s\"", ids[i]);
}

/* ---- id_component_forbidden ---- */

Test(id, component_dot_and_dotdot_are_forbidden)
{
	cr_assert(id_component_forbidden(".", 1));
	cr_assert(id_component_forbidden("..", 2));
}

Test(id, component_git_is_not_forbidden_in_any_case)
{
	char git[8];
	unsigned k;

	for (k = 0; k < 16; k++) {
		case_variant(git, ".git", k);
		cr_assert_not(id_component_forbidden(git, 4), "%s", git);
	}
}

Test(id, component_lookalikes_are_not_forbidden)
{
	cr_assert_not(id_component_forbidden("...", 3));
	cr_assert_not(id_component_forbidden("a", 1));
	cr_assert_not(id_component_forbidden("git", 3));
	cr_assert_not(id_component_forbidden(".gi", 3));
	cr_assert_not(id_component_forbidden(".gitignore", 10));
	cr_assert_not(id_component_forbidden(".g1t", 4));
	cr_assert_not(id_component_forbidden("_git", 4));
	cr_assert_not(id_component_forbidden(".recfs", 6));
}

Test(id, component_case_folding_is_ascii_letters_only)
{
	/* 0x0e | 0x20 == '.', 0x07 | 0x20 == 0x27: a sloppy fold would match */
	cr_assert_not(id_component_forbidden("\x0e", 1));
	cr_assert_not(id_component_forbidden("\x0e\x0e", 2));
	cr_assert_not(id_component_forbidden("\x0egit", 4));
	cr_assert_not(id_component_forbidden(".\x07it", 4));
	cr_assert_not(id_component_forbidden(".\xc7\xc9\xd4", 4));
	assert_valid("\x0e\x0e");
	assert_valid("\x0eGIT");
}

Test(id, component_check_uses_len_not_nul)
{
	cr_assert_not(id_component_forbidden(".gitignore", 4));
	cr_assert(id_component_forbidden("..x", 2));
	cr_assert(id_component_forbidden("./", 1));
	cr_assert_not(id_component_forbidden(".git", 3));
	cr_assert_not(id_component_forbidden("..", 0));
}

/* ---- id_split_cond ---- */

static int split(const char *name, size_t *base_len, uint64_t *version)
{
	return id_split_cond(name, strlen(name), base_len, version);
}

Test(id, cond_name_splits_base_and_version)
{
	size_t base = 99;
	uint64_t v = 99;

	cr_assert_eq(split("a@5", &base, &v), 1);
	cr_assert_eq(base, 1);
	cr_assert_eq(v, 5);
}

Test(id, cond_version_zero_is_valid)
{
	size_t base = 99;
	uint64_t v = 99;

	cr_assert_eq(split("a@0", &base, &v), 1);
	cr_assert_eq(base, 1);
	cr_assert_eq(v, 0);
}

Test(id, cond_base_keeps_its_namespaces)
{
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(split("a/b@12", &base, &v), 1);
	cr_assert_eq(base, 3);
	cr_assert_eq(v, 12);
}

Test(id, cond_base_may_contain_at_signs)
{
	const char *name = "users/alice@example.com@3";
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(split(name, &base, &v), 1);
	cr_assert_eq(base, strlen("users/alice@example.com"));
	cr_assert_eq(v, 3);
	cr_assert_eq(id_parse(name, base, NULL), 0);
}

Test(id, cond_uses_the_last_at_sign)
{
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(split("a@b@7", &base, &v), 1);
	cr_assert_eq(base, 3);
	cr_assert_eq(v, 7);
	cr_assert_eq(split("a@1@23", &base, &v), 1);
	cr_assert_eq(base, 3);
	cr_assert_eq(v, 23);
}

Test(id, cond_multi_digit_version_is_parsed)
{
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(split("rec@1234567890", &base, &v), 1);
	cr_assert_eq(base, 3);
	cr_assert_eq(v, 1234567890u);
	cr_assert_eq(split("r@10", &base, &v), 1);
	cr_assert_eq(v, 10);
}

Test(id, cond_version_of_19_digits_is_accepted)
{
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(split("a@9999999999999999999", &base, &v), 1);
	cr_assert_eq(base, 1);
	cr_assert_eq(v, UINT64_C(9999999999999999999));
	cr_assert_eq(split("a@1000000000000000000", &base, &v), 1);
	cr_assert_eq(v, UINT64_C(1000000000000000000));
}

Test(id, cond_version_of_20_digits_is_invalid)
{
	cr_assert_eq(split("a@99999999999999999999", NULL, NULL), -EINVAL);
	/* Fits in uint64_t but has more than 19 digits: still refused. */
	cr_assert_eq(split("a@18446744073709551615", NULL, NULL), -EINVAL);
	cr_assert_eq(split("a@10000000000000000000", NULL, NULL), -EINVAL);
	cr_assert_eq(split("a@123456789012345678901234567890", NULL, NULL),
		     -EINVAL);
}

Test(id, cond_leading_zero_is_invalid)
{
	cr_assert_eq(split("a@01", NULL, NULL), -EINVAL);
	cr_assert_eq(split("a@00", NULL, NULL), -EINVAL);
	cr_assert_eq(split("a/b@007", NULL, NULL), -EINVAL);
	cr_assert_eq(split("a@0000000000000000000000", NULL, NULL), -EINVAL);
}

Test(id, name_without_cond_suffix_is_not_split)
{
	static const char *const names[] = {
		"a@",	 "a@x1",       "alice@example.com",
		"a",	 "a@1x",       "a@1/b",
		"a@1/",	 "5",	       "a5",
		"a@b@",	 "",	       "@",
		"a@-1",	 "a@ 1",       "a@1 ",
		"a@1.0", "a@\xd9\xa1", "a@\xef\xbc\x91",
		"a@:",	 "a@1:",       "a@/",
		"a@9:",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert_eq(split(names[i], NULL, NULL), 0, "\"%s\"",
			     names[i]);
}

Test(id, cond_only_the_final_component_counts)
{
	cr_assert_eq(split("a@1/b", NULL, NULL), 0);
	cr_assert_eq(split("a@01/b", NULL, NULL), 0);
	cr_assert_eq(split("a@1/b@2", NULL, NULL), 1);
}

Test(id, cond_with_empty_base_is_split)
{
	size_t base = 99;
	uint64_t v = 99;

	cr_assert_eq(split("@5", &base, &v), 1);
	cr_assert_eq(base, 0);
	cr_assert_eq(v, 5);
	/* The base is not validated by id_split_cond; id_parse refuses it. */
	cr_assert_eq(split("a/@5", &base, &v), 1);
	cr_assert_eq(base, 2);
	cr_assert_eq(id_parse("a/@5", base, NULL), -EINVAL);
}

Test(id, cond_outputs_are_untouched_unless_split)
{
	size_t base = 77;
	uint64_t v = 77;

	cr_assert_eq(split("alice@example.com", &base, &v), 0);
	cr_assert_eq(base, 77);
	cr_assert_eq(v, 77);
	cr_assert_eq(split("a@01", &base, &v), -EINVAL);
	cr_assert_eq(base, 77);
	cr_assert_eq(v, 77);
}

Test(id, cond_accepts_null_outputs)
{
	cr_assert_eq(split("a@5", NULL, NULL), 1);
}

Test(id, cond_reads_only_len_bytes)
{
	static const char at5[] = "@5";
	size_t base = 0;
	uint64_t v = 0;

	cr_assert_eq(id_split_cond("a@12x", 4, &base, &v), 1);
	cr_assert_eq(v, 12);
	cr_assert_eq(id_split_cond("a@5", 2, &base, &v), 0);
	cr_assert_eq(id_split_cond("a@5", 0, &base, &v), 0);
	/* "5" preceded in memory by '@' is still just "5". */
	cr_assert_eq(id_split_cond(&at5[1], 1, &base, &v), 0);
	cr_assert_eq(id_parse(&at5[1], 1, NULL), 0);
}
