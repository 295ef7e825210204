/*
 * test_backend.c - the backend interface (store/backend.h): the
 * capability flags of each backend agree with the ops it has (the memory
 * backend has no named stages and no scratch tree and says -ENOTSUP; the
 * file backend has both), a stage of the file backend can be found again
 * by its name, linked and cleaned away, mkparents makes the namespaces
 * above an ID, and a memory store refuses scratch files.
 *
 * Each test works in a fresh sandbox directory (sandbox.h).
 */
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "scratch.h"
#include "store_i.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX];

static void setup(void)
{
	sandbox_new(dir, sizeof(dir), "backend", true);
}

static void teardown(void)
{
	sandbox_rm(dir);
}

TestSuite(backend, .init = setup, .fini = teardown, .timeout = 60);

/* A new stage of `be` holding `text`. */
static void stage_with(struct backend *be, struct store_stage *st,
		       const char *text)
{
	memset(st, 0, sizeof(*st));
	st->fd = -1;
	cr_assert_eq(be->ops->stage_new(be, st), 0);
	cr_assert_eq(pwrite(st->fd, text, strlen(text), 0),
		     (ssize_t)strlen(text));
}

/* The content of record `id` of `be` equals `want`. */
static void expect_content(struct backend *be, const char *id, const char *want)
{
	char buf[64] = {0};
	int fd = -1;

	cr_assert_eq(be->ops->open(be, id, &fd), 0, "open %s", id);
	cr_expect_eq(pread(fd, buf, sizeof(buf) - 1, 0), (ssize_t)strlen(want));
	cr_expect_str_eq(buf, want);
	close(fd);
}

Test(backend, memory_says_what_it_lacks)
{
	struct backend *be = NULL;
	struct store_stage st;
	int fd = 7, pfd = 7;
	const char *leaf = NULL;

	cr_assert_eq(be_memory_open(&be, true), 0);
	cr_expect(be->cas);
	cr_expect(!be->durable && !be->journal && !be->tree);
	cr_expect_eq(be->ops->stage_open(be, "p", "x", O_RDONLY, &fd),
		     -ENOTSUP);
	cr_expect_eq(fd, -1);
	cr_expect_eq(be->ops->stage_link(be, "x", AT_FDCWD, "y"), -ENOTSUP);
	cr_expect_eq(be->ops->sync_stages(be), -ENOTSUP);
	cr_expect_eq(be->ops->mkparents(be, "a/b"), -ENOTSUP);
	cr_expect_eq(be->ops->clean_stages(be), 0);
	cr_expect_eq(be->ops->spool_new(be, &fd), -ENOTSUP);
	cr_expect_eq(be->ops->tree_open(be, AT_FDCWD, NULL, "x", O_RDONLY, 0),
		     -ENOTSUP);
	cr_expect_eq(be->ops->tree_parent(be, AT_FDCWD, "a/x", &pfd, &leaf),
		     -ENOTSUP);
	cr_expect_eq(pfd, -1);
	/* what every backend has still works */
	stage_with(be, &st, "hello");
	cr_expect_str_eq(st.name, "");
	cr_expect_eq(be->ops->stage_place(be, NULL, &st, AT_FDCWD, "x", 0),
		     -ENOTSUP);
	cr_assert_eq(be->ops->stage_sync(be, &st), 0);
	cr_assert_eq(be->ops->publish(be, &st, "r"), 0);
	cr_expect(st.published);
	be->ops->stage_drop(be, &st);
	expect_content(be, "r", "hello");
	be->ops->free(be);
}

/* A file backend on a new store layout under the sandbox. */
static struct backend *file_backend(struct io **io, int *dirfd)
{
	struct backend *be = NULL;

	cr_assert_eq(io_new(io), 0);
	*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(*dirfd, 0);
	cr_assert_eq(mkdirat(*dirfd, STORE_RECORDS_DIR, 0700), 0);
	cr_assert_eq(mkdirat(*dirfd, STORE_TMP_DIR, 0700), 0);
	cr_assert_eq(be_file_open(&be, *io, *dirfd), 0);
	return be;
}

Test(backend, file_named_stages)
{
	struct io *io;
	int dirfd, fd = -1, linkdir;
	struct backend *be = file_backend(&io, &dirfd);
	struct store_stage st, left;
	char buf[16] = {0}, p[PATH_MAX + 128];
	struct stat sb;

	cr_expect(be->cas && be->durable && be->journal && be->tree);
	stage_with(be, &st, "named");
	cr_assert_neq(st.name[0], '\0');
	cr_assert_eq(be->ops->stage_sync(be, &st), 0);
	cr_assert_eq(be->ops->sync_stages(be), 0);
	/* found again by its name, as replay does */
	cr_assert_eq(be->ops->stage_open(be, "t.open", st.name, O_RDONLY, &fd),
		     0);
	cr_expect_eq(pread(fd, buf, sizeof(buf) - 1, 0), 5);
	cr_expect_str_eq(buf, "named");
	close(fd);
	cr_expect_eq(be->ops->stage_open(be, "t.open", "nope", O_RDONLY, &fd),
		     -ENOENT);
	/* linked elsewhere (the history's blobs) */
	cr_assert_eq(mkdirat(dirfd, "blobs", 0700), 0);
	linkdir = openat(dirfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(linkdir, 0);
	cr_assert_eq(be->ops->stage_link(be, st.name, linkdir, "b1"), 0);
	cr_expect_eq(fstatat(linkdir, "b1", &sb, 0), 0);
	cr_expect_eq(sb.st_nlink, 2);
	/* published under namespaces mkparents made */
	cr_expect_eq(be->ops->publish(be, &st, "a/b/r"), -ENOENT);
	cr_assert_eq(be->ops->mkparents(be, "a/b/r"), 0);
	cr_assert_eq(be->ops->mkparents(be, "a/b/r"), 0); /* again: no-op */
	cr_assert_eq(be->ops->publish(be, &st, "a/b/r"), 0);
	be->ops->stage_drop(be, &st);
	expect_content(be, "a/b/r", "named");
	/* a stage left behind (a crash) goes with clean_stages */
	stage_with(be, &left, "stray");
	close(left.fd);
	snprintf(p, sizeof(p), "%s/%s/%s", dir, STORE_TMP_DIR, left.name);
	cr_assert_eq(access(p, F_OK), 0);
	cr_expect_eq(be->ops->clean_stages(be), 1);
	cr_expect_neq(access(p, F_OK), 0);
	cr_expect_eq(be->ops->clean_stages(be), 0);
	/* a spool file near the stages, unnamed */
	cr_assert_eq(be->ops->spool_new(be, &fd), 0);
	cr_expect_eq(write(fd, "x", 1), 1);
	close(fd);
	snprintf(p, sizeof(p), "%s/%s", dir, STORE_TMP_DIR);
	cr_expect_eq(count_names(p, "", ""), 2); /* . and .. */
	close(linkdir);
	be->ops->free(be);
	close(dirfd);
	io_free(io);
}

Test(backend, memory_store_has_no_scratch)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store *s = open_ok(&o);
	struct stat sb;
	int fd;

	cr_expect_eq(store_scratch_open(s, "x", O_RDWR | O_CREAT, 0600, &fd),
		     -ENOTSUP);
	cr_expect_eq(fd, -1);
	cr_expect_eq(store_scratch_stat(s, "x", &sb), -ENOTSUP);
	store_close(s);
}
