/*
 * id_helpers.h - what the test_id*.c executables (suite "id") share:
 * assertions on IDs and builders of long ones.
 */
#ifndef RECFS_TEST_ID_HELPERS_H
#define RECFS_TEST_ID_HELPERS_H

#include "id.h"

#include <stddef.h>

/* Large enough for any ID a test builds, including over-long ones. */
#define BUF_LEN (2 * ID_MAX_LEN)

/* id_parse of the whole string, without the components. */
int parse(const char *id);
/* Both id_parse and id_check accept `id`; refuse it with -EINVAL. */
void assert_valid(const char *id);
void assert_refused(const char *id);
/*
 * Build n components of `comp_len` bytes ('a', 'b', ... cycling), except
 * the last one, which has `last_len` bytes, joined by '/'. NUL-terminates
 * and returns the length.
 */
size_t build_id(char *buf, unsigned n, size_t comp_len, size_t last_len);
/* Build "a/" + n bytes of 'x' + "/b", NUL-terminate, return the length. */
size_t middle_component_id(char *buf, size_t n);
/* Fill `out` with the case variant of "name" selected by the bits of k. */
void case_variant(char *out, const char *name, unsigned k);

#endif
