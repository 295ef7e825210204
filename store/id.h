/*
 * id.h - record IDs (SPEC section 2). Pure functions: no I/O, no
 * allocation beyond what the caller passes in.
 *
 * An ID is a relative path of 1..ID_MAX_COMPONENTS components joined by
 * '/', at most ID_MAX_LEN bytes. A component is 1..255 bytes, any bytes but
 * NUL and '/', and is not "." or ".." (".git" is an ordinary component:
 * the history escapes it, see history.h). Reserved: a
 * final component ending in '@' followed by one or more digits (a
 * conditional name, even a malformed one such as "a@01") and ".recfs" as
 * the first component (exactly: ".RECFS" and "a/.recfs" are ordinary IDs).
 */
#ifndef RECFS_ID_H
#define RECFS_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ID_MAX_LEN 4096
#define ID_MAX_COMPONENTS 32
#define ID_MAX_COMPONENT 255

/* A parsed ID: components point into the caller's string (borrowed). */
struct id_parts {
	unsigned n;			     /* number of components */
	const char *comp[ID_MAX_COMPONENTS]; /* component starts */
	size_t len[ID_MAX_COMPONENTS];	     /* component lengths */
};

/*
 * Check that the `len` bytes at `id` are a valid record or namespace ID and
 * split them into `parts`. Exactly `len` bytes are read and `id` need not
 * be NUL-terminated; a NUL among them (len != strlen) is refused. `parts`
 * may be NULL; on error parts->n is 0. Returns 0, -ENAMETOOLONG (a
 * component over ID_MAX_COMPONENT bytes, or more than ID_MAX_LEN bytes
 * in all) or -EINVAL (anything else that is not an ID).
 * A leading '/' is not accepted here (callers strip the mount's own '/').
 */
int id_parse(const char *id, size_t len, struct id_parts *parts);

/* Same as id_parse, for a NUL-terminated string (NULL gives -EINVAL; one
   longer than ID_MAX_LEN is not scanned to its end). */
int id_check(const char *id);

/*
 * Split a conditional name "ID@N" (SPEC section 4): if the final component
 * of `name` ends in '@' + 1..19 digits (value fits in uint64_t, no leading
 * zeros except "0" itself), writes the length of the base ID to *base_len
 * and N to *version and returns 1. Returns 0 if `name` has no such suffix
 * ("a@", "a@b", "alice@example.com"). Returns -EINVAL if the final
 * component ends in '@' + digits that are not a valid N ("a@01",
 * "a@99999999999999999999"): such a name is reserved and never an ID.
 * Digits are ASCII only and the last '@' counts ("a@b@7" has base "a@b").
 * `base_len` and `version` may be NULL and are written only when 1 is
 * returned. Reads exactly `len` bytes. The base is not validated (it may be
 * empty, as in "@5"): call id_parse on it.
 */
int id_split_cond(const char *name, size_t len, size_t *base_len,
		  uint64_t *version);

/*
 * True if the `len` bytes at `name` (one component) are "." or "..".
 * Empty and over-long names are not "forbidden" here; id_parse refuses
 * them.
 */
bool id_component_forbidden(const char *name, size_t len);

#endif
