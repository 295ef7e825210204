/*
 * store_helpers.c - see store_helpers.h.
 */
#include "sandbox_store.h"
#include "store_helpers.h"

#include "helpers.h"
#include "sandbox.h"

#include <criterion/criterion.h>
#include <xxhash.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void store_setup(void)
{
	sandbox_store("store", false);
}

const enum store_backend backends[2] = {STORE_BACKEND_FILE,
					STORE_BACKEND_MEMORY};

const char *bname(enum store_backend b)
{
	return b == STORE_BACKEND_FILE ? "file" : "memory";
}

struct store *open_with(const struct store_opts *o)
{
	return open_ok(o);
}

struct store *open_io(enum store_backend b, struct io *io)
{
	struct store_opts o = {.backend = b, .create = true, .io = io};

	if (b == STORE_BACKEND_FILE)
		o.path = spath;
	return open_with(&o);
}

struct store *open_store(enum store_backend b)
{
	return open_io(b, NULL);
}

void close_store(struct store *s)
{
	int rc = store_close(s);

	cr_assert_eq(rc, 0, "store_close: %s", strerror(-rc));
}

int put_buf(struct store *s, const char *id, const void *buf, size_t len,
	    enum store_cond_kind kind, uint64_t version,
	    struct store_result *res)
{
	struct store_commit_args a = {.cond = {kind, version}, .mode = -1};

	return store_put(s, id, buf, len, &a, res);
}

int put(struct store *s, const char *id, const char *text,
	struct store_result *res)
{
	return put_buf(s, id, text, strlen(text), STORE_COND_ANY, 0, res);
}

int put_if(struct store *s, const char *id, const char *text,
	   enum store_cond_kind kind, uint64_t version,
	   struct store_result *res)
{
	return put_buf(s, id, text, strlen(text), kind, version, res);
}

/* Commit `text` unconditionally and insist that it works. */
uint64_t must_put(struct store *s, const char *id, const char *text)
{
	struct store_result r;
	int rc = put(s, id, text, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.version;
}

void expect(struct store *s, const char *id, const char *text, uint64_t version)
{
	expect_buf(s, id, text, strlen(text), version);
}

void expect_absent(struct store *s, const char *id)
{
	struct store_meta m;
	void *buf = NULL;
	size_t len;
	int rc;

	rc = store_get(s, id, &buf, &len, &m);
	cr_assert_eq(rc, -ENOENT, "%s: get gave %d, expected -ENOENT", id, rc);
	rc = store_stat(s, id, &m, false);
	cr_assert_eq(rc, -ENOENT, "%s: stat gave %d, expected -ENOENT", id, rc);
}

uint64_t version_of(struct store *s, const char *id)
{
	struct store_meta m;
	int rc = store_stat(s, id, &m, false);

	cr_assert_eq(rc, 0, "stat %s: %s", id, strerror(-rc));
	return m.version;
}

/*
 * A listing of everything under `root`: path, type, mode, size, mtime and
 * a hash of the content of each file, one line each in nftw order (which
 * is readdir order: stable for an unchanged directory). Skips `skip` (a
 * name relative to root, or NULL).
 */
static FILE *tree_out;
static size_t tree_root_len;
static const char *tree_skip;
static bool tree_dir_times; /* also list the mtimes of directories */

static int tree_one(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	const char *rel = path + tree_root_len;
	uint64_t h = 0;

	if (tree_skip && strcmp(rel, tree_skip) == 0)
		return 0;
	if (S_ISREG(sb->st_mode)) {
		size_t len;
		char *buf = read_file(path, &len);

		h = XXH64(buf, len, 0);
		free(buf);
	}
	if (S_ISDIR(sb->st_mode) && !tree_dir_times)
		fprintf(tree_out, "%s %o\n", rel, (unsigned)sb->st_mode);
	else
		fprintf(tree_out, "%s %o %lld %lld.%09ld %016llx\n", rel,
			(unsigned)sb->st_mode, (long long)sb->st_size,
			(long long)sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec,
			(unsigned long long)h);
	return 0;
}

char *tree(const char *root, const char *skip, bool dir_times)
{
	char *text = NULL;
	size_t len = 0;

	tree_out = open_memstream(&text, &len);
	cr_assert_not_null(tree_out);
	tree_root_len = strlen(root);
	tree_skip = skip;
	tree_dir_times = dir_times;
	cr_assert_eq(nftw(root, tree_one, 16, FTW_PHYS), 0, "walk %s", root);
	fclose(tree_out);
	return text;
}

int listed(void *arg, const char *name, bool is_ns)
{
	return 0;
}
