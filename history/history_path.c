/*
 * history_path.c - record IDs as paths in the trees of the history.
 *
 * A git tree cannot hold every ID: libgit2 refuses to write an entry
 * named ".git" in any case (and git itself, fsck and checkout, never
 * accept one), yet ".git" is an ordinary component of an ID (SPEC 2, so
 * that `git init` works in a mount). Such a component is stored under an
 * escaped name, and that is reversible, one ID for each tree path:
 *
 *   a component that is ".git" or ".gitmodules" (any ASCII case), or
 *   that already ends in "~recfs", gets one more "~recfs" in the tree;
 *   a tree entry ending in "~recfs" loses one, and must then be such a
 *   component (otherwise it is no record's path).
 *
 * ".gitmodules" is escaped too, though libgit2 writes it: git fsck reads
 * every blob of that name as submodule configuration (a record with
 * arbitrary content there fails fsck, and so a push to a remote that
 * checks, with gitmodulesName/Url/... errors) and refuses it as a
 * symlink (gitmodulesSymlink). Names that only Windows or macOS take for
 * ".git" (".git.", "git~1", ".g\u200cit") are written as they are:
 * libgit2 accepts them (core.protectNTFS/HFS are off in history.git), and
 * they are ordinary files on the file systems recfs runs on; git fsck
 * --strict warns about them (hasDotgit). recfs(5) documents the rule.
 *
 * Every place that maps IDs to tree paths and back (the writer's tree
 * updates and side branch, the tree walk of verify) goes through here.
 */
#include "history.h"
#include "id.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define SUFFIX HIST_PATH_SUFFIX
#define SUFFIX_LEN (sizeof(SUFFIX) - 1)

static bool same_nocase(const char *s, size_t n, const char *lit)
{
	if (n != strlen(lit))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lit[i])
			return false;
	}
	return true;
}

static bool ends_in_suffix(const char *c, size_t n)
{
	return n >= SUFFIX_LEN &&
	       memcmp(c + n - SUFFIX_LEN, SUFFIX, SUFFIX_LEN) == 0;
}

bool hist_path_escaped(const char *comp, size_t len)
{
	return same_nocase(comp, len, ".git") ||
	       same_nocase(comp, len, ".gitmodules") ||
	       ends_in_suffix(comp, len);
}

int hist_path_from_id(char out[HIST_PATH_MAX + 1], const char *id, size_t len)
{
	size_t o = 0, start = 0;

	if (len == 0 || len > ID_MAX_LEN)
		return -EINVAL;
	for (;;) {
		const char *slash = memchr(id + start, '/', len - start);
		size_t end = slash ? (size_t)(slash - id) : len;
		size_t n = end - start;

		/* at most ID_MAX_COMPONENTS suffixes: fits HIST_PATH_MAX */
		if (o + n + SUFFIX_LEN + 1 > HIST_PATH_MAX + 1)
			return -ENAMETOOLONG;
		memcpy(out + o, id + start, n);
		o += n;
		if (hist_path_escaped(id + start, n)) {
			memcpy(out + o, SUFFIX, SUFFIX_LEN);
			o += SUFFIX_LEN;
		}
		if (!slash)
			break;
		out[o++] = '/';
		start = end + 1;
	}
	out[o] = '\0';
	return (int)o;
}

int hist_id_from_path(char out[ID_MAX_LEN + 1], const char *path, size_t len)
{
	size_t o = 0, start = 0;

	if (len == 0)
		return -EINVAL;
	for (;;) {
		const char *slash = memchr(path + start, '/', len - start);
		size_t end = slash ? (size_t)(slash - path) : len;
		size_t n = end - start;

		/* an escaped name loses its suffix, and only those do */
		if (ends_in_suffix(path + start, n)) {
			n -= SUFFIX_LEN;
			if (!hist_path_escaped(path + start, n))
				return -EINVAL;
		} else if (hist_path_escaped(path + start, n)) {
			return -EINVAL;
		}
		if (o + n + 1 > ID_MAX_LEN + 1)
			return -EINVAL;
		memcpy(out + o, path + start, n);
		o += n;
		if (!slash)
			break;
		out[o++] = '/';
		start = end + 1;
	}
	out[o] = '\0';
	return id_parse(out, o, NULL) == 0 ? (int)o : -EINVAL;
}
