/*
 * test_id.c - record ID rules (SPEC section 2): every rule with valid
 * names next to hostile ones, and the length limits. id_parse's output,
 * id_component_forbidden and conditional names (section 4):
 * test_id_parse.c.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "id.h"
#include "id_helpers.h"

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
