/*
 * test_util.c - the small helpers of base/util.c.
 */
#include "util.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

TestSuite(util, .timeout = 30);

Test(util, grow_starts_at_first_then_doubles_and_keeps_the_elements)
{
	size_t n, cap = 0, seen[8] = {0}, steps = 0;
	int *v = NULL;

	for (n = 0; n < 100; n++) {
		size_t before = cap;
		int *p = util_grow(v, &cap, n, sizeof(*v), 4);

		cr_assert_not_null(p, "grow at %zu", n);
		v = p;
		v[n] = (int)n * 7;
		if (cap != before && steps < 8)
			seen[steps++] = cap;
	}
	cr_assert_eq(seen[0], 4);
	cr_assert_eq(seen[1], 8);
	cr_assert_eq(seen[2], 16);
	cr_assert_eq(cap, 128);
	for (n = 0; n < 100; n++)
		cr_assert_eq(v[n], (int)n * 7, "element %zu", n);
	free(v);
}

Test(util, grow_with_room_returns_the_array_itself)
{
	size_t cap = 0;
	char *v = util_grow(NULL, &cap, 0, 1, 16);

	cr_assert_not_null(v);
	cr_assert_eq(util_grow(v, &cap, 15, 1, 16), v);
	cr_assert_eq(cap, 16);
	free(v);
}

Test(util, grow_past_size_max_fails_and_leaves_the_array_alone)
{
	size_t cap = 4;
	uint64_t *v = calloc(4, sizeof(*v));

	cr_assert_not_null(v);
	v[3] = 42;
	/* 8 elements of SIZE_MAX / 4 bytes do not fit in size_t */
	cr_assert_null(util_grow(v, &cap, 4, SIZE_MAX / 4, 1));
	cr_assert_eq(cap, 4);
	cr_assert_eq(v[3], 42);
	cap = SIZE_MAX / 2 + 1; /* doubling it overflows */
	cr_assert_null(util_grow(v, &cap, cap, 1, 1));
	cr_assert_eq(cap, SIZE_MAX / 2 + 1);
	free(v);
}
