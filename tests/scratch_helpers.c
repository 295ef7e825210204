/*
 * scratch_helpers.c - the fixture of the test_scratch*.c executables
 * (suite "scratch") and their helpers on scratch files and records
 * (scratch_helpers.h).
 */
#include "scratch_helpers.h"

#include "scratch.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

char dpath[PATH_MAX + 32]; /* base/copy */

void scratch_setup(void)
{
	sandbox_store("scratch", true);
	snprintf(dpath, sizeof(dpath), "%s/copy", base);
}

struct store *open_opts(const char *path, struct io *io, bool ro)
{
	struct store_opts o = {
		.path = path, .create = !ro, .read_only = ro, .io = io};
	return open_ok(&o);
}

struct store *open_store(struct io *io)
{
	return open_opts(spath, io, false);
}

uint64_t put_str(struct store *s, const char *id, const char *text)
{
	struct store_result r;
	int rc = store_put(s, id, text, strlen(text), NULL, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r.version;
}

/* Make scratch file `path` holding `len` bytes of `buf`, mode `mode`. */
void mk_scratch_buf(struct store *s, const char *path, const void *buf,
		    size_t len, mode_t mode)
{
	int fd = -1, rc;

	rc = store_scratch_open(s, path, O_RDWR | O_CREAT | O_TRUNC, mode, &fd);
	cr_assert_eq(rc, 0, "scratch open %s: %s", path, strerror(-rc));
	cr_assert_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

void mk_scratch(struct store *s, const char *path, const char *text)
{
	mk_scratch_buf(s, path, text, strlen(text), 0600);
}

/* The content of scratch file `path` as a string (caller frees). */
char *read_scratch(struct store *s, const char *path)
{
	struct stat st;
	char *buf;
	int fd = -1, rc = store_scratch_open(s, path, O_RDONLY, 0, &fd);

	cr_assert_eq(rc, 0, "scratch open %s: %s", path, strerror(-rc));
	cr_assert_eq(fstat(fd, &st), 0);
	buf = calloc(1, (size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	return buf;
}

void expect_scratch(struct store *s, const char *path, const char *text)
{
	char *got = read_scratch(s, path);

	cr_assert_str_eq(got, text, "scratch %s", path);
	free(got);
}

bool scratch_there(struct store *s, const char *path)
{
	struct stat st;

	return store_scratch_stat(s, path, &st) == 0;
}

void expect_record(struct store *s, const char *id, const void *want,
		   size_t len, uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t n = 0;
	int rc = store_get(s, id, &buf, &n, &m);

	cr_assert_eq(rc, 0, "get %s: %s", id, strerror(-rc));
	cr_assert_eq(m.version, version, "%s: version %llu, want %llu", id,
		     (unsigned long long)m.version,
		     (unsigned long long)version);
	cr_assert_eq(n, len, "%s: %zu bytes, want %zu", id, n, len);
	cr_assert(memcmp(buf, want, len) == 0, "%s: content differs", id);
	free(buf);
}

void set_xattr(struct store *s, const char *path, const char *name,
	       const char *value)
{
	int fd = -1;

	cr_assert_eq(store_scratch_open(s, path, O_RDWR, 0, &fd), 0);
	cr_assert_eq(fsetxattr(fd, name, value, strlen(value), 0), 0,
		     "fsetxattr %s: %s", name, strerror(errno));
	close(fd);
}

void set_mtime(struct store *s, const char *path, const struct timespec *t)
{
	struct timespec ts[2] = {*t, *t};
	int fd = -1;

	cr_assert_eq(store_scratch_open(s, path, O_RDWR, 0, &fd), 0);
	cr_assert_eq(futimens(fd, ts), 0);
	close(fd);
}

int collect(void *arg, const char *name, bool is_ns)
{
	struct names *nm = arg;

	nm->len +=
		(size_t)snprintf(nm->buf + nm->len, sizeof(nm->buf) - nm->len,
				 "%s%s;", name, is_ns ? "/" : "");
	nm->n++;
	return 0;
}
