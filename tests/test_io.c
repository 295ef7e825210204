/*
 * test_io.c - the I/O shim: failpoint firing rules, spec parsing, short
 * writes, crashes, stalls, hit counting and the EINTR/short-write loops.
 */
#include "io.h"
#include "sandbox.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];
static int dfd = -1;
static struct io *io;

static void setup(void)
{
	sandbox_new_in(tmpdir, sizeof(tmpdir), "/tmp", "io", false);
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(io_new(&io), 0);
}

static void teardown(void)
{
	io_free(io);
	io = NULL;
	close(dfd);
	dfd = -1;
	sandbox_rm(tmpdir);
}

TestSuite(io, .init = setup, .fini = teardown, .timeout = 60);

static int new_file(const char *name)
{
	int fd =
		openat(dfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0);
	return fd;
}

static off_t file_size(int fd)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	return st.st_size;
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (i * 7 + seed) % 26);
}

Test(io, fail_fires_at_nth_hit_for_times_hits)
{
	static const int want[] = {0, 0, -EIO, -EIO, 0, 0};

	cr_assert_eq(io_arm(io, "p", IO_FAIL, EIO, 3, 2), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect_eq(io_point(io, "p"), want[i], "hit %zu", i + 1);
	cr_expect_eq(io_hits(io, "p"), 6);
}

Test(io, times_zero_fires_on_every_hit_from_nth)
{
	cr_assert_eq(io_arm(io, "p", IO_FAIL, ENOSPC, 2, 0), 0);
	cr_expect_eq(io_point(io, "p"), 0);
	for (int i = 0; i < 50; i++)
		cr_expect_eq(io_point(io, "p"), -ENOSPC);
	cr_expect_eq(io_point(io, "other"), 0);
}

Test(io, nth_counts_from_when_armed)
{
	cr_expect_eq(io_point(io, "p"), 0);
	cr_expect_eq(io_point(io, "p"), 0);
	cr_assert_eq(io_arm(io, "p", IO_FAIL, EROFS, 1, 1), 0);
	cr_expect_eq(io_point(io, "p"), -EROFS);
	cr_expect_eq(io_point(io, "p"), 0);
	cr_expect_eq(io_hits(io, "p"), 4);
}

Test(io, rearming_replaces_and_disarm_all_clears)
{
	cr_assert_eq(io_arm(io, "p", IO_FAIL, ENOSPC, 1, 0), 0);
	cr_assert_eq(io_arm(io, "p", IO_FAIL, EDQUOT, 2, 1), 0);
	cr_expect_eq(io_point(io, "p"), 0);
	cr_expect_eq(io_point(io, "p"), -EDQUOT);
	cr_expect_eq(io_point(io, "p"), 0);

	cr_assert_eq(io_arm(io, "q", IO_FAIL, EIO, 1, 0), 0);
	io_disarm_all(io);
	cr_expect_eq(io_point(io, "q"), 0);
}

Test(io, arm_rejects_bad_arguments)
{
	char longname[100];

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_expect_eq(io_arm(io, NULL, IO_FAIL, EIO, 1, 1), -EINVAL);
	cr_expect_eq(io_arm(io, "", IO_FAIL, EIO, 1, 1), -EINVAL);
	cr_expect_eq(io_arm(io, longname, IO_FAIL, EIO, 1, 1), -EINVAL);
	cr_expect_eq(io_arm(io, "p", (enum io_action)42, EIO, 1, 1), -EINVAL);
	cr_expect_eq(io_arm(io, "p", IO_FAIL, -5, 1, 1), -EINVAL);
	cr_expect_eq(io_arm(NULL, "p", IO_FAIL, EIO, 1, 1), -EINVAL);
}

Test(io, spec_arms_every_item)
{
	cr_assert_eq(io_arm_spec(io, "a=fail:ENOSPC@2*3,b=fail:28,"
				     "c=short:EDQUOT,d=fail*0,e=fail:EROFS@2"),
		     0);
	cr_expect_eq(io_point(io, "a"), 0);
	cr_expect_eq(io_point(io, "a"), -ENOSPC);
	cr_expect_eq(io_point(io, "a"), -ENOSPC);
	cr_expect_eq(io_point(io, "a"), -ENOSPC);
	cr_expect_eq(io_point(io, "a"), 0);
	cr_expect_eq(io_point(io, "b"), -28);
	cr_expect_eq(io_point(io, "b"), 0, "times defaults to 1");
	/* IO_SHORT acts like IO_FAIL where there is nothing to write. */
	cr_expect_eq(io_point(io, "c"), -EDQUOT);
	for (int i = 0; i < 5; i++)
		cr_expect_eq(io_point(io, "d"), -EIO, "default errno EIO");
	cr_expect_eq(io_point(io, "e"), 0);
	cr_expect_eq(io_point(io, "e"), -EROFS);
	cr_expect_eq(io_arm_spec(io, ""), 0);
}

Test(io, spec_crash_and_stall_parse)
{
	cr_expect_eq(io_arm_spec(io, "x.y=crash,z=stall@3*2"), 0);
	cr_expect_eq(io_arm_spec(io, "x.y=crash:EIO@1*1"), 0);
	io_disarm_all(io);
}

Test(io, bad_specs_are_einval_and_arm_nothing)
{
	static const char *const bad[] = {
		"x",
		"=fail",
		"a=",
		"a=boom",
		"a=fail:",
		"a=fail:EWHAT",
		"a=fail:0",
		"a=fail:99999",
		"a=fail@0",
		"a=fail@",
		"a=fail@x",
		"a=fail*",
		"a=fail*-1",
		"a=fail,",
		",a=fail",
		"a=fail,,b=fail",
		"a=fail:EIO:EIO",
		"a=fail*2@3",
		"a=fail@1*1x",
		"a=fail@99999999999",
		"a=failx",
		"a=fail,b=boom",
		("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "a"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=fail"),
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(io_arm_spec(io, bad[i]), -EINVAL, "spec \"%s\"",
			     bad[i]);
	/* "a=fail,b=boom" must not have armed a. */
	cr_expect_eq(io_point(io, "a"), 0);
	cr_expect_eq(io_arm_spec(NULL, "a=fail"), -EINVAL);
	cr_expect_eq(io_arm_spec(io, NULL), -EINVAL);
}

Test(io, short_write_writes_half_then_fails)
{
	char buf[100], got[100];
	int fd = new_file("f");

	fill(buf, sizeof(buf), 1);
	cr_assert_eq(io_arm(io, "w", IO_SHORT, ENOSPC, 1, 1), 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, buf, sizeof(buf), 0), -ENOSPC);
	cr_assert_eq(file_size(fd), 50);
	cr_assert_eq(pread(fd, got, 50, 0), 50);
	cr_expect_eq(memcmp(got, buf, 50), 0);

	/* Disarmed after one hit: the next write is whole. */
	cr_expect_eq(io_pwrite_all(io, "w", fd, buf, sizeof(buf), 0), 100);
	cr_assert_eq(pread(fd, got, 100, 0), 100);
	cr_expect_eq(memcmp(got, buf, 100), 0);
	close(fd);
}

Test(io, short_pwritev_writes_half_across_iovecs)
{
	char a[10], b[20], c[30], got[60];
	struct iovec iov[] = {{a, 10}, {b, 20}, {c, 30}};
	int fd = new_file("f");

	fill(a, 10, 1);
	fill(b, 20, 2);
	fill(c, 30, 3);
	cr_assert_eq(io_arm(io, "w", IO_SHORT, EIO, 1, 1), 0);
	cr_expect_eq(io_pwritev_all(io, "w", fd, iov, 3, 0), -EIO);
	cr_assert_eq(file_size(fd), 30);
	cr_assert_eq(pread(fd, got, 30, 0), 30);
	cr_expect_eq(memcmp(got, a, 10), 0);
	cr_expect_eq(memcmp(got + 10, b, 20), 0);
	close(fd);
}

Test(io, short_of_one_byte_writes_nothing_of_more_writes_one)
{
	int fd = new_file("f");

	cr_assert_eq(io_arm(io, "w", IO_SHORT, EIO, 1, 2), 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, "x", 1, 0), -EIO);
	cr_expect_eq(file_size(fd), 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, "xyz", 3, 0), -EIO);
	cr_expect_eq(file_size(fd), 1);
	close(fd);
}

Test(io, short_acts_like_fail_on_non_writes)
{
	int fd = new_file("f");

	cr_assert_eq(io_arm(io, "s", IO_SHORT, EIO, 1, 0), 0);
	cr_expect_eq(io_fsync(io, "s", fd), -EIO);
	cr_expect_eq(io_openat(io, "s", dfd, "g", O_CREAT | O_RDWR, 0600),
		     -EIO);
	cr_expect_eq(faccessat(dfd, "g", F_OK, 0), -1, "nothing created");
	close(fd);
}

Test(io, fail_does_not_touch_the_file_system)
{
	int fd = new_file("f");

	cr_assert_eq(io_arm_spec(io, "o=fail,w=fail:ENOSPC,u=fail:EROFS,"
				     "t=fail,r=fail,m=fail,l=fail"),
		     0);
	cr_expect_eq(io_openat(io, "o", dfd, "g", O_CREAT | O_RDWR, 0600),
		     -EIO);
	cr_expect_eq(io_pwrite_all(io, "w", fd, "abc", 3, 0), -ENOSPC);
	cr_expect_eq(file_size(fd), 0);
	cr_expect_eq(io_unlinkat(io, "u", dfd, "f", 0), -EROFS);
	cr_expect_eq(faccessat(dfd, "f", F_OK, 0), 0);
	cr_assert_eq(pwrite(fd, "abc", 3, 0), 3);
	cr_expect_eq(io_ftruncate(io, "t", fd, 0), -EIO);
	cr_expect_eq(file_size(fd), 3);
	cr_expect_eq(io_renameat(io, "r", dfd, "f", dfd, "h", 0), -EIO);
	cr_expect_eq(io_mkdirat(io, "m", dfd, "d", 0700), -EIO);
	cr_expect_eq(io_linkat(io, "l", dfd, "f", dfd, "h"), -EIO);
	cr_expect_eq(faccessat(dfd, "g", F_OK, 0), -1);
	cr_expect_eq(faccessat(dfd, "h", F_OK, 0), -1);
	cr_expect_eq(faccessat(dfd, "d", F_OK, 0), -1);
	close(fd);
}

Test(io, wrapped_calls_do_real_io_and_return_errno)
{
	char buf[16] = {0};
	int fd = io_openat(io, "o", dfd, "f", O_CREAT | O_RDWR | O_CLOEXEC,
			   0600);

	cr_assert_geq(fd, 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, "hello", 5, 0), 5);
	cr_expect_eq(io_fdatasync(io, "s", fd), 0);
	cr_expect_eq(io_fsync(io, "s", fd), 0);
	cr_expect_eq(io_syncfs(io, "s", fd), 0);
	cr_expect_eq(io_pread_all(io, "r", fd, buf, sizeof(buf), 0), 5,
		     "short only at EOF");
	cr_expect_str_eq(buf, "hello");
	cr_expect_eq(io_pread_all(io, "r", fd, buf, 3, 2), 3);
	cr_expect_eq(memcmp(buf, "llo", 3), 0);
	cr_expect_eq(io_ftruncate(io, "t", fd, 2), 0);
	cr_expect_eq(file_size(fd), 2);
	cr_expect_eq(io_mkdirat(io, "m", dfd, "d", 0700), 0);
	cr_expect_eq(io_mkdirat(io, "m", dfd, "d", 0700), -EEXIST);
	cr_expect_eq(io_unlinkat(io, "u", dfd, "d", AT_REMOVEDIR), 0);
	cr_expect_eq(io_linkat(io, "l", dfd, "f", dfd, "g"), 0);
	cr_expect_eq(io_renameat(io, "r", dfd, "g", dfd, "h", 0), 0);
	cr_expect_eq(io_renameat(io, "r", dfd, "f", dfd, "h", RENAME_NOREPLACE),
		     -EEXIST);
	cr_expect_eq(io_unlinkat(io, "u", dfd, "h", 0), 0);
	cr_expect_eq(io_unlinkat(io, "u", dfd, "h", 0), -ENOENT);
	cr_expect_eq(io_openat(io, "o", dfd, "nope", O_RDONLY, 0), -ENOENT);
	cr_expect_eq(io_fsync(io, "s", -1), -EBADF);
	close(fd);
}

Test(io, null_io_is_real_io_without_counting)
{
	char buf[4] = {0};
	int fd = io_openat(NULL, "o", dfd, "f", O_CREAT | O_RDWR, 0600);

	cr_assert_geq(fd, 0);
	cr_expect_eq(io_pwrite_all(NULL, "w", fd, "abc", 3, 0), 3);
	cr_expect_eq(io_pread_all(NULL, "r", fd, buf, 3, 0), 3);
	cr_expect_eq(memcmp(buf, "abc", 3), 0);
	cr_expect_eq(io_point(NULL, "p"), 0);
	cr_expect_eq(io_hits(NULL, "w"), 0);
	cr_expect_eq(io_stalled(NULL, "w"), 0);
	io_release(NULL);
	io_disarm_all(NULL);
	io_free(NULL);
	close(fd);
}

Test(io, hits_count_every_point_reached)
{
	int fd = new_file("f");

	cr_expect_eq(io_hits(io, "x"), 0);
	for (int i = 0; i < 3; i++)
		io_point(io, "x");
	io_fsync(io, "y", fd);
	io_pwrite_all(io, "y", fd, "a", 1, 0);
	cr_expect_eq(io_hits(io, "x"), 3);
	cr_expect_eq(io_hits(io, "y"), 2);
	cr_expect_eq(io_hits(io, "z"), 0);
	/* Failing hits count too. */
	cr_assert_eq(io_arm(io, "x", IO_FAIL, EIO, 1, 0), 0);
	io_point(io, "x");
	cr_expect_eq(io_hits(io, "x"), 4);
	close(fd);
}

#define HIT_THREADS 8
#define HIT_LOOPS 20000

static void *hit_thread(void *arg)
{
	static const char *const names[] = {"a", "b", "c", "d"};
	unsigned id = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < HIT_LOOPS; i++)
		io_point(io, names[(id + (unsigned)i) % 4]);
	return NULL;
}

Test(io, hits_are_exact_under_concurrency)
{
	pthread_t t[HIT_THREADS];
	unsigned sum = 0;

	for (uintptr_t i = 0; i < HIT_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hit_thread, (void *)i),
			     0);
	for (int i = 0; i < HIT_THREADS; i++)
		pthread_join(t[i], NULL);
	sum = io_hits(io, "a") + io_hits(io, "b") + io_hits(io, "c") +
	      io_hits(io, "d");
	cr_expect_eq(sum, HIT_THREADS * HIT_LOOPS);
	cr_expect_eq(io_hits(io, "a"), HIT_THREADS * HIT_LOOPS / 4);
}

Test(io, crash_exits_with_crash_status_at_nth_hit)
{
	int pfd[2], status = 0;
	char got[8];
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		FILE *f = fdopen(pfd[1], "w");

		close(pfd[0]);
		if (!f || io_arm(io, "c", IO_CRASH, 0, 2, 1) < 0)
			_exit(1);
		setvbuf(f, NULL, _IOFBF, 4096);
		io_point(io, "c");
		(void)!write(pfd[1], "A", 1);
		/* Buffered, never flushed: a crash is like kill -9. */
		fputs("unflushed", f);
		io_point(io, "c");
		(void)!write(pfd[1], "B", 1);
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_expect_eq(WEXITSTATUS(status), IO_CRASH_STATUS);
	n = read(pfd[0], got, sizeof(got));
	cr_expect_eq(n, 1);
	cr_expect_eq(got[0], 'A');
	close(pfd[0]);
}

Test(io, crash_happens_before_the_call)
{
	int status = 0;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = openat(dfd, "f", O_CREAT | O_RDWR, 0600);

		if (fd < 0 || io_arm_spec(io, "w=crash") < 0)
			_exit(1);
		io_pwrite_all(io, "w", fd, "data", 4, 0);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_expect_eq(WEXITSTATUS(status), IO_CRASH_STATUS);
	{
		struct stat st;

		cr_assert_eq(fstatat(dfd, "f", &st, 0), 0);
		cr_expect_eq(st.st_size, 0);
	}
}

struct staller {
	int fd;
	int rc;
	atomic_bool done;
};

static void *stall_thread(void *arg)
{
	struct staller *s = arg;

	s->rc = io_fsync(io, "s", s->fd);
	atomic_store(&s->done, true);
	return NULL;
}

static bool wait_stalled(const char *point, unsigned n)
{
	for (int i = 0; i < 5000; i++) {
		if (io_stalled(io, point) == n)
			return true;
		usleep(1000);
	}
	return false;
}

Test(io, stall_blocks_until_release)
{
	struct staller s = {.fd = new_file("f"), .rc = -1};
	pthread_t t;

	cr_assert_eq(io_arm(io, "s", IO_STALL, 0, 1, 1), 0);
	cr_assert_eq(pthread_create(&t, NULL, stall_thread, &s), 0);
	cr_assert(wait_stalled("s", 1));
	usleep(20000);
	cr_expect_not(atomic_load(&s.done), "still stalled");
	cr_expect_eq(io_stalled(io, "other"), 0);
	io_release(io);
	pthread_join(t, NULL);
	cr_expect(atomic_load(&s.done));
	cr_expect_eq(s.rc, 0, "proceeds normally after release");
	cr_expect_eq(io_stalled(io, "s"), 0);
	close(s.fd);
}

Test(io, disarm_all_releases_stalled_threads)
{
	struct staller s = {.fd = new_file("f"), .rc = -1};
	pthread_t t;

	cr_assert_eq(io_arm_spec(io, "s=stall*0"), 0);
	cr_assert_eq(pthread_create(&t, NULL, stall_thread, &s), 0);
	cr_assert(wait_stalled("s", 1));
	io_disarm_all(io);
	pthread_join(t, NULL);
	cr_expect_eq(s.rc, 0);
	close(s.fd);
}

Test(io, free_releases_stalled_threads)
{
	struct staller s = {.fd = new_file("f"), .rc = -1};
	pthread_t t;

	cr_assert_eq(io_arm(io, "s", IO_STALL, 0, 1, 0), 0);
	cr_assert_eq(pthread_create(&t, NULL, stall_thread, &s), 0);
	cr_assert(wait_stalled("s", 1));
	io_free(io);
	io = NULL;
	pthread_join(t, NULL);
	cr_expect_eq(s.rc, 0);
	close(s.fd);
}

Test(io, injected_eintr_is_retried)
{
	int fd = new_file("f");

	cr_assert_eq(io_arm(io, "s", IO_FAIL, EINTR, 1, 3), 0);
	cr_expect_eq(io_fsync(io, "s", fd), 0);
	cr_expect_eq(io_hits(io, "s"), 4, "three interruptions, one pass");
	close(fd);
}

Test(io, short_write_with_eintr_is_finished_by_the_loop)
{
	char buf[1000], got[1000];
	int fd = new_file("f");

	fill(buf, sizeof(buf), 5);
	/* Three partial writes (500, 250, 125 bytes) then the rest. */
	cr_assert_eq(io_arm(io, "w", IO_SHORT, EINTR, 1, 3), 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, buf, sizeof(buf), 0), 1000);
	cr_expect_eq(io_hits(io, "w"), 4);
	cr_assert_eq(file_size(fd), 1000);
	cr_assert_eq(pread(fd, got, sizeof(got), 0), 1000);
	cr_expect_eq(memcmp(got, buf, sizeof(buf)), 0);
	close(fd);
}

Test(io, pwritev_handles_more_than_iov_max_and_partial_resume)
{
	enum { N = 3000, L = 3 };
	struct iovec *iov = calloc(N, sizeof(*iov));
	char *data = malloc(N * L), *got = malloc(N * L);
	int fd = new_file("f");

	cr_assert(iov && data && got);
	fill(data, N * L, 9);
	for (int i = 0; i < N; i++) {
		iov[i].iov_base = data + i * L;
		iov[i].iov_len = L;
	}
	cr_expect_eq(io_pwritev_all(io, "w", fd, iov, N, 0), N * L);
	cr_assert_eq(pread(fd, got, N * L, 0), N * L);
	cr_expect_eq(memcmp(got, data, N * L), 0);

	/* A partial write that ends inside an iovec, resumed by the loop. */
	cr_assert_eq(ftruncate(fd, 0), 0);
	cr_assert_eq(io_arm(io, "w", IO_SHORT, EINTR, 1, 5), 0);
	cr_expect_eq(io_pwritev_all(io, "w", fd, iov, N, 7), N * L);
	cr_assert_eq(file_size(fd), 7 + N * L);
	cr_assert_eq(pread(fd, got, N * L, 7), N * L);
	cr_expect_eq(memcmp(got, data, N * L), 0);
	free(iov);
	free(data);
	free(got);
	close(fd);
}

Test(io, pwritev_skips_empty_iovecs)
{
	char got[8], ab[] = "ab", cd[] = "cd";
	struct iovec iov[] = {{ab, 0}, {ab, 2}, {cd, 0}, {cd, 2}, {ab, 0}};
	int fd = new_file("f");

	cr_expect_eq(io_pwritev_all(io, "w", fd, iov, 5, 0), 4);
	cr_expect_eq(io_pwritev_all(io, "w", fd, iov, 0, 0), 0);
	cr_assert_eq(pread(fd, got, 8, 0), 4);
	cr_expect_eq(memcmp(got, "abcd", 4), 0);
	cr_expect_eq(io_pwritev_all(io, "w", fd, NULL, 1, 0), -EINVAL);
	close(fd);
}

Test(io, write_errors_pass_through)
{
	int fd = openat(dfd, "ro", O_CREAT | O_RDONLY, 0600);

	cr_assert_geq(fd, 0);
	cr_expect_eq(io_pwrite_all(io, "w", fd, "x", 1, 0), -EBADF);
	cr_expect_eq(io_pwrite_all(io, "w", -1, "x", 1, 0), -EBADF);
	close(fd);
}

static void check_copy(int in, size_t len)
{
	char *a = malloc(len ? len : 1), *b = malloc(len ? len : 1);
	int out = new_file("copy");

	cr_assert(a && b);
	cr_assert_eq(pwrite(out, "junk", 4, 0), 4);
	cr_expect_eq(io_copy_fd(io, "cp", in, out), (ssize_t)len);
	cr_assert_eq(pread(in, a, len, 0), (ssize_t)len);
	cr_assert_eq(pread(out, b, len, 0), (ssize_t)len);
	cr_expect_eq(memcmp(a, b, len), 0);
	free(a);
	free(b);
	close(out);
}

Test(io, copy_fd_copies_everything)
{
	size_t len = (3u << 20) + 123;
	char *data = malloc(len);
	int in = new_file("src");
	int mfd;

	cr_assert(data);
	fill(data, len, 3);
	cr_assert_eq(pwrite(in, data, len, 0), (ssize_t)len);
	check_copy(in, len);

	/* From another file system (tmpfs): may take the fallback. */
	mfd = memfd_create("src", MFD_CLOEXEC);
	cr_assert_geq(mfd, 0);
	cr_assert_eq(pwrite(mfd, data, 70000, 0), 70000);
	check_copy(mfd, 70000);
	close(mfd);

	cr_assert_eq(io_arm(io, "cp", IO_FAIL, ENOSPC, 1, 1), 0);
	{
		int out = new_file("copy2");

		cr_expect_eq(io_copy_fd(io, "cp", in, out), -ENOSPC);
		cr_expect_eq(file_size(out), 0);
		close(out);
	}
	free(data);
	close(in);
}

Test(io, copy_fd_of_empty_file_is_zero)
{
	int in = new_file("src");

	check_copy(in, 0);
	close(in);
}
