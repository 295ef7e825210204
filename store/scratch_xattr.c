/*
 * scratch_xattr.c - the user xattrs that go with a scratch file when it
 * becomes a record and back (scratch.c): read from the file and packed as
 * the index holds them, or set on a file from the packed form. The
 * computed user.recfs.* attributes (SPEC 3) are never kept.
 */
#include "store_i.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define USER_PREFIX "user."
#define COMPUTED_PREFIX "user.recfs." /* SPEC 3: computed, never kept */

/* Is `name` a user xattr that a record keeps? */
static bool kept_xattr(const char *name)
{
	return strncmp(name, USER_PREFIX, strlen(USER_PREFIX)) == 0 &&
	       strncmp(name, COMPUTED_PREFIX, strlen(COMPUTED_PREFIX)) != 0;
}

/* Add xattr `name` of `fd` to the packed *xa (value buffer `value`). */
static int pack_one(int fd, const char *name, uint8_t *value, uint8_t **xa,
		    size_t *xa_len)
{
	uint8_t *next = NULL;
	size_t next_len = 0;
	ssize_t n = fgetxattr(fd, name, value, STORE_XATTR_VALUE_MAX);
	int rc;

	if (n < 0 && errno == ENODATA)
		return 0; /* removed meanwhile */
	if (n < 0 && errno == ERANGE)
		return -ENOSPC; /* too big for a record */
	if (n < 0)
		return -errno;
	rc = xa_update(*xa, *xa_len, name, value, (size_t)n, 0, &next,
		       &next_len);
	if (rc == -E2BIG || rc == -ERANGE)
		rc = -ENOSPC;
	if (rc)
		return rc;
	free(*xa);
	*xa = next;
	*xa_len = next_len;
	return 0;
}

struct xattr_pack {
	int fd;
	uint8_t *value; /* STORE_XATTR_VALUE_MAX bytes */
	uint8_t **xa;
	size_t *xa_len;
};

/* Pack xattr `name` if a record keeps it (util_xattr_each callback). */
static int pack_kept(void *arg, const char *name)
{
	struct xattr_pack *x = arg;

	if (!kept_xattr(name))
		return 0;
	return pack_one(x->fd, name, x->value, x->xa, x->xa_len);
}

int scratch_xattrs_read(int fd, uint8_t **xa, size_t *xa_len)
{
	struct xattr_pack x = {fd, NULL, xa, xa_len};
	int rc;

	*xa = NULL;
	*xa_len = 0;
	x.value = malloc(STORE_XATTR_VALUE_MAX);
	if (!x.value)
		return -ENOMEM;
	rc = util_xattr_each(fd, pack_kept, &x);
	if (rc == -ERANGE)
		rc = -EAGAIN; /* the list grew meanwhile */
	if (rc) {
		free(*xa);
		*xa = NULL;
		*xa_len = 0;
	}
	free(x.value);
	return rc;
}

int scratch_xattrs_write(int fd, const uint8_t *xa, size_t xa_len)
{
	char *names = NULL;
	ssize_t n = xa_list(xa, xa_len, NULL, 0);
	int rc = 0;

	if (n <= 0)
		return (int)n;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = xa_list(xa, xa_len, names, (size_t)n);
	for (char *p = names; n > 0 && rc == 0 && p < names + n;
	     p += strlen(p) + 1) {
		const uint8_t *v;
		size_t len;

		rc = xa_get(xa, xa_len, p, &v, &len);
		if (rc == 0 && fsetxattr(fd, p, v, len, 0) < 0)
			rc = -errno;
	}
	free(names);
	return n < 0 ? (int)n : rc;
}
