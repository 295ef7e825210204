/*
 * path.c - names under the mount: scratch patterns, and the key of a name
 * in a namespace. Keys are checked by the store's ID rules (store/id.h)
 * before use; nothing here makes a backing path.
 */
#include "fs_i.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool fs_is_scratch_name(const struct fs_ctx *c, const char *name)
{
	for (char **p = c->scratch_pat; p && *p; p++)
		if (fnmatch(*p, name, FNM_PERIOD) == 0 ||
		    (name[0] == '.' && fnmatch(*p, name, 0) == 0))
			return true;
	return false;
}

int fs_join(const char *parent, const char *name, char *out)
{
	size_t p = strlen(parent), n = strlen(name);

	if (n > ID_MAX_COMPONENT || p + 1 + n > ID_MAX_LEN)
		return -ENAMETOOLONG;
	if (p) {
		memcpy(out, parent, p);
		out[p++] = '/';
	}
	memcpy(out + p, name, n + 1);
	return 0;
}

void fs_scratch_patterns_free(char **pat)
{
	for (char **p = pat; p && *p; p++)
		free(*p);
	free(pat);
}

int fs_scratch_patterns(const char *list, char ***out)
{
	size_t n = 1;
	char **pat;
	const char *p = list;

	for (const char *q = list; *q; q++)
		n += *q == ':';
	pat = calloc(n + 1, sizeof(*pat));
	if (!pat)
		return -ENOMEM;
	for (size_t i = 0; *p; i++) {
		const char *end = strchr(p, ':');
		size_t l = end ? (size_t)(end - p) : strlen(p);

		if (l && !(pat[i] = strndup(p, l))) {
			fs_scratch_patterns_free(pat);
			return -ENOMEM;
		}
		if (!l)
			i--;
		p += l + (end ? 1 : 0);
	}
	*out = pat;
	return 0;
}
