/*
 * path.c - what a path under the mount names. Paths are parsed into
 * components by the store's ID rules (store/id.h); nothing here joins
 * strings into backing paths.
 */
#include "fs_i.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_DIR ".recfs"

bool fs_is_scratch_name(const struct fs_ctx *c, const char *name)
{
	for (char **p = c->scratch_pat; p && *p; p++)
		if (fnmatch(*p, name, FNM_PERIOD) == 0 ||
		    (name[0] == '.' && fnmatch(*p, name, 0) == 0))
			return true;
	return false;
}

/* Classify what lies under /.recfs. */
static int parse_meta(const char *rel, struct fs_path *p)
{
	const char *rest = rel + strlen(META_DIR);

	if (*rest == '\0') {
		p->kind = FS_META_DIR;
	} else if (strcmp(rest, "/status") == 0) {
		p->kind = FS_META_STATUS;
	} else if (strncmp(rest, "/history", 8) == 0 &&
		   (rest[8] == '\0' || rest[8] == '/')) {
		p->kind = FS_META_HISTORY;
		snprintf(p->id, sizeof(p->id), "%s", rest[8] ? rest + 9 : "");
	} else {
		p->kind = FS_META_OTHER;
	}
	return 0;
}

int fs_path_parse(const struct fs_ctx *c, const char *path, struct fs_path *p)
{
	const char *rel, *leaf;
	size_t len, base;
	int rc;

	memset(p, 0, sizeof(*p));
	if (!path)
		return -ENOENT; /* an unlinked file or directory */
	rel = path[0] == '/' ? path + 1 : path;
	len = strlen(rel);
	if (len == 0) {
		p->kind = FS_ROOT;
		return 0;
	}
	if (len > ID_MAX_LEN)
		return -ENAMETOOLONG;
	if (strncmp(rel, META_DIR, strlen(META_DIR)) == 0 &&
	    (rel[strlen(META_DIR)] == '\0' || rel[strlen(META_DIR)] == '/'))
		return parse_meta(rel, p);
	memcpy(p->id, rel, len + 1);
	leaf = strrchr(rel, '/');
	leaf = leaf ? leaf + 1 : rel;
	rc = id_split_cond(rel, len, &base, &p->version);
	if (rc < 0)
		return -EINVAL;
	if (rc == 1) {
		p->id[base] = '\0';
		p->kind = FS_COND;
		return id_check(p->id);
	}
	rc = id_check(p->id);
	if (rc)
		return rc;
	p->kind = fs_is_scratch_name(c, leaf) ? FS_SCRATCH : FS_RECORD;
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
