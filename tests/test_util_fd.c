/*
 * test_util_fd.c - the helpers base/util.c gained in the de-duplication
 * of issue 14: util_reserve, util_fdopendir, util_stat_opened,
 * util_xattr_each, util_locked_u64/int.
 */
#include "util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

TestSuite(util_fd, .timeout = 30);

static char dir[64];
static int dfd = -1;

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/recfs-utilfd.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
}

static void rm_tmp(void)
{
	unlinkat(dfd, "f", 0);
	unlinkat(dfd, "l", 0);
	close(dfd);
	rmdir(dir);
}

Test(util_fd, reserve_grows_once_to_a_doubling_and_keeps_room_it_has)
{
	size_t cap = 0;
	int *v = util_reserve(NULL, &cap, 0, sizeof(*v), 16);

	/* with no array yet it allocates `first` even for no element */
	cr_assert_not_null(v);
	cr_assert_eq(cap, 16);
	cr_assert_eq(util_reserve(v, &cap, 16, sizeof(*v), 16), v);
	v[15] = 42;
	v = util_reserve(v, &cap, 100, sizeof(*v), 16);
	cr_assert_not_null(v);
	cr_assert_eq(cap, 128);
	cr_assert_eq(v[15], 42);
	free(v);
}

Test(util_fd, reserve_refuses_an_overflow_and_keeps_the_array)
{
	size_t cap = 4;
	char *v = malloc(4);
	size_t want = SIZE_MAX / 2 + 2;

	cr_assert_null(util_reserve(v, &cap, want, 1, 4));
	cr_assert_eq(cap, 4);
	free(v);
}

Test(util_fd, fdopendir_passes_an_open_error_through_and_lists)
{
	DIR *d = (DIR *)1;
	int fd;

	cr_assert_eq(util_fdopendir(-ENOENT, &d), -ENOENT);
	cr_assert_null(d);
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_eq(util_fdopendir(fd, &d), 0);
	cr_assert_not_null(readdir(d));
	closedir(d);
	/* not a directory: the fd is closed, the error returned */
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_eq(util_fdopendir(fd, &d), -ENOTDIR);
	cr_assert_null(d);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "fd %d still open", fd);
}

Test(util_fd, stat_opened_says_eloop_for_a_link_and_enoent_for_enotdir)
{
	struct stat st;
	int fd;

	mkdir_tmp();
	fd = openat(dfd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(symlinkat("f", dfd, "l"), 0);
	fd = openat(dfd, "f", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	cr_assert_eq(util_stat_opened(fd, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	fd = openat(dfd, "l", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	cr_assert_eq(util_stat_opened(fd, &st), -ELOOP);
	cr_assert_eq(util_stat_opened(-ENOTDIR, &st), -ENOENT);
	cr_assert_eq(util_stat_opened(-EACCES, &st), -EACCES);
	rm_tmp();
}

struct seen {
	int n;
	int found;
};

static int count_name(void *arg, const char *name)
{
	struct seen *s = arg;

	s->n++;
	if (strcmp(name, "user.recfs-test") == 0)
		s->found++;
	return 0;
}

static int stop_at_first(void *arg, const char *name)
{
	(void)arg;
	(void)name;
	return 7;
}

Test(util_fd, xattr_each_calls_back_per_name_and_stops_on_non_zero)
{
	struct seen s = {0, 0};
	int fd;

	mkdir_tmp();
	fd = openat(dfd, "f", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(util_xattr_each(fd, count_name, &s), 0);
	if (fsetxattr(fd, "user.recfs-test", "v", 1, 0) < 0) {
		close(fd);
		rm_tmp();
		cr_skip_test("no user xattrs here: %s", strerror(errno));
	}
	cr_assert_eq(util_xattr_each(fd, count_name, &s), 0);
	cr_assert_geq(s.n, 1);
	cr_assert_eq(s.found, 1);
	cr_assert_eq(util_xattr_each(fd, stop_at_first, NULL), 7);
	close(fd);
	rm_tmp();
}

Test(util_fd, locked_reads_return_the_field)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	uint64_t big = UINT64_MAX - 3;
	int small = -5;

	cr_assert_eq(util_locked_u64(&mu, &big), UINT64_MAX - 3);
	cr_assert_eq(util_locked_int(&mu, &small), -5);
	/* and the mutex is free again */
	cr_assert_eq(pthread_mutex_trylock(&mu), 0);
	pthread_mutex_unlock(&mu);
}
