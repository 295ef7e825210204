/*
 * test_id_parse.c - what id_parse fills in, id_component_forbidden, and
 * conditional names (SPEC section 4, id_split_cond): valid names next to
 * hostile ones. The ID rules themselves: test_id.c.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "id.h"
#include "id_helpers.h"

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
