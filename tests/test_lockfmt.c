/*
 * test_lockfmt.c - the store lock (store/lock.c) and the format file
 * (store/format.c). Each test runs in its own process (Criterion) in a
 * fresh temp directory that stands for the store.
 */
#include "format.h"
#include "io.h"
#include "lock.h"
#include "sandbox.h"
#include "store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOCK_BIG_TEST 5000 /* over the 4 KiB bound of lock records */

static char dir[PATH_MAX];
static int dirfd_ = -1;

static void setup(void)
{
	sandbox_new_in(dir, sizeof(dir), "/tmp", "lockfmt", false);
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dirfd_, 0);
}

static void teardown(void)
{
	if (dirfd_ >= 0)
		close(dirfd_);
	sandbox_rm(dir);
}

/* Replace `name` in the test dir with `len` bytes of `data`. */
static void put_file(const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0, "open %s: %s", name, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void put_str(const char *name, const char *s)
{
	put_file(name, s, strlen(s));
}

/* Read `name` into buf (NUL-terminated); returns its length. */
static size_t get_file(const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd_, name, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0, "open %s: %s", name, strerror(errno));
	n = read(fd, buf, len - 1);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	close(fd);
	return (size_t)n;
}

static mode_t mode_of(const char *name)
{
	struct stat st;

	cr_assert_eq(fstatat(dirfd_, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st.st_mode & 07777;
}

/* stderr capture, for the warnings the lock logs. */
static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_start(void)
{
	fflush(stderr);
	capture_fd = openat(dirfd_, "stderr.txt",
			    O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(capture_fd, 0);
	saved_stderr = dup(STDERR_FILENO);
	cr_assert_geq(saved_stderr, 0);
	cr_assert_geq(dup2(capture_fd, STDERR_FILENO), 0);
}

static void capture_end(char *buf, size_t len)
{
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	n = pread(capture_fd, buf, len - 1, 0);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	close(capture_fd);
}

static void our_hostname(char *buf, size_t len)
{
	cr_assert_eq(gethostname(buf, len), 0);
	buf[len - 1] = '\0';
}

/* --- lock ---------------------------------------------------------- */

TestSuite(lock, .init = setup, .fini = teardown, .timeout = 30);

Test(lock, acquire_writes_pid_host_and_start)
{
	struct store_lock *l = NULL;
	char buf[4096];
	char host[256];
	char want[64];

	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	cr_assert_not_null(l);
	get_file(LOCK_FILE, buf, sizeof(buf));
	our_hostname(host, sizeof(host));
	snprintf(want, sizeof(want), "\"pid\":%d", (int)getpid());
	cr_expect_not_null(strstr(buf, want), "record: %s", buf);
	cr_expect_not_null(strstr(buf, host), "record: %s", buf);
	cr_expect_not_null(strstr(buf, "\"start\":\"20"), "record: %s", buf);
	cr_expect_not_null(strstr(buf, "Z\""), "record: %s", buf);
	lock_release(l);
}

Test(lock, lock_file_is_0600_even_with_umask_0)
{
	struct store_lock *l = NULL;

	umask(0);
	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	cr_expect_eq(mode_of(LOCK_FILE), 0600, "mode %o",
		     (unsigned)mode_of(LOCK_FILE));
	lock_release(l);
}

Test(lock, second_acquire_on_another_fd_is_busy_and_names_our_pid)
{
	struct store_lock *l = NULL;
	struct store_lock *l2 = NULL;
	char msg[512];
	char want[64];

	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	cr_assert_eq(lock_acquire(&l2, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_null(l2);
	snprintf(want, sizeof(want), "locked by pid %d on host ",
		 (int)getpid());
	cr_expect_not_null(strstr(msg, want), "msg: %s", msg);
	cr_expect_not_null(strstr(msg, " since 20"), "msg: %s", msg);
	/* the refused attempt did not disturb the holder's record */
	cr_assert_eq(lock_holder(dirfd_, msg, sizeof(msg)), 0);
	cr_expect_not_null(strstr(msg, want), "holder: %s", msg);
	lock_release(l);
}

Test(lock, release_empties_the_record_and_frees_the_lock)
{
	struct store_lock *l = NULL;
	char msg[512];
	char buf[64];
	char log[4096];

	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	lock_release(l);
	lock_release(NULL);
	cr_expect_eq(get_file(LOCK_FILE, buf, sizeof(buf)), 0);
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), -ENOENT);
	cr_expect_not_null(strstr(msg, "not locked"), "msg: %s", msg);
	/* taking a cleanly released lock warns about nothing */
	capture_start();
	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	capture_end(log, sizeof(log));
	cr_expect_eq(log[0], '\0', "unexpected log: %s", log);
	lock_release(l);
}

Test(lock, holder_of_a_store_without_lock_file_is_nobody)
{
	char msg[512];

	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), -ENOENT);
	cr_expect_not_null(strstr(msg, "not locked"), "msg: %s", msg);
	cr_expect_eq(lock_force(dirfd_, msg, sizeof(msg)), 0);
	cr_expect_not_null(strstr(msg, "not locked"), "msg: %s", msg);
}

Test(lock, killed_holder_is_recovered_and_its_record_replaced)
{
	struct store_lock *l = NULL;
	char msg[512];
	char want[64];
	char buf[4096];
	char log[4096];
	int pfd[2];
	pid_t child;
	char c = 0;
	int status;

	cr_assert_eq(pipe(pfd), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct store_lock *cl = NULL;

		close(pfd[0]);
		if (lock_acquire(&cl, dirfd_, NULL, 0) != 0)
			_exit(1);
		if (write(pfd[1], "x", 1) != 1)
			_exit(1);
		alarm(30); /* never outlive a failed test for long */
		for (;;)
			pause();
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &c, 1), 1, "child could not lock");
	close(pfd[0]);

	snprintf(want, sizeof(want), "locked by pid %d on host", (int)child);
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_not_null(strstr(msg, want), "msg: %s", msg);
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), 0);
	cr_expect_not_null(strstr(msg, want), "holder: %s", msg);

	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFSIGNALED(status));

	/* the dead child's record is still there, but not its flock */
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), -ENOENT);
	cr_expect_not_null(strstr(msg, "stale"), "holder: %s", msg);

	capture_start();
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0, "msg: %s",
		     msg);
	capture_end(log, sizeof(log));
	snprintf(want, sizeof(want), "recovered stale lock of pid %d",
		 (int)child);
	cr_expect_not_null(strstr(log, want), "log: %s", log);

	get_file(LOCK_FILE, buf, sizeof(buf));
	snprintf(want, sizeof(want), "\"pid\":%d,", (int)getpid());
	cr_expect_not_null(strstr(buf, want), "record: %s", buf);
	lock_release(l);
}

Test(lock, record_of_a_running_pid_without_flock_is_recovered)
{
	struct store_lock *l = NULL;
	char host[256];
	char rec[512];
	char log[4096];

	/* pid 1 runs but does not hold our flock: a reused pid */
	our_hostname(host, sizeof(host));
	snprintf(rec, sizeof(rec),
		 "{\"pid\":1,\"host\":\"%s\",\"start\":\"2020-01-01T00:00:"
		 "00Z\"}",
		 host);
	put_str(LOCK_FILE, rec);
	capture_start();
	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	capture_end(log, sizeof(log));
	cr_expect_not_null(strstr(log, "recovered stale lock of pid 1"),
			   "log: %s", log);
	lock_release(l);
}

static const char other_host_rec[] =
	"{\"pid\":4242,\"host\":\"far-away.example\","
	"\"start\":\"2026-01-02T03:04:05Z\"}\n";

Test(lock, record_of_another_host_is_refused_naming_that_host)
{
	struct store_lock *l = NULL;
	char msg[512];
	char buf[4096];

	put_str(LOCK_FILE, other_host_rec);
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_null(l);
	cr_expect_not_null(strstr(msg, "far-away.example"), "msg: %s", msg);
	cr_expect_not_null(strstr(msg, "4242"), "msg: %s", msg);
	cr_expect_not_null(strstr(msg, "unlock --force"), "msg: %s", msg);
	/* refused means untouched */
	get_file(LOCK_FILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, other_host_rec);
	/* and lock_holder reports it as held */
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), 0);
	cr_expect_not_null(strstr(msg, "far-away.example"), "holder: %s", msg);
}

Test(lock, force_then_acquire_takes_another_hosts_lock)
{
	struct store_lock *l = NULL;
	char msg[512];

	put_str(LOCK_FILE, other_host_rec);
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_assert_eq(lock_force(dirfd_, msg, sizeof(msg)), 0);
	/* removed, with a warning naming whose it was */
	cr_expect_not_null(strstr(msg, "far-away.example"), "msg: %s", msg);
	cr_expect_not_null(strstr(msg, "4242"), "msg: %s", msg);
	cr_expect_eq(faccessat(dirfd_, LOCK_FILE, F_OK, 0), -1);
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0, "msg: %s",
		     msg);
	cr_expect_eq(mode_of(LOCK_FILE), 0600);
	lock_release(l);
}

/*
 * What a daemon does: take the lock, fork, let the parent exit. The flock
 * belongs to the open file description the child shares, so the child
 * keeps the lock; lock_refresh makes the record name it.
 */
Test(lock, forked_child_keeps_the_lock_after_the_parent_exits)
{
	struct store_lock *l = NULL;
	char msg[512];
	char want[64];
	char buf[4096];
	int pfd[2];
	int status;
	pid_t parent;
	pid_t child = 0;

	/* the grandchild is reparented to us, so we can reap it */
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(pfd), 0);
	parent = fork();
	cr_assert_geq(parent, 0);
	if (parent == 0) {
		struct store_lock *pl = NULL;

		close(pfd[0]);
		if (lock_acquire(&pl, dirfd_, NULL, 0) != 0)
			_exit(1);
		if (fork() == 0) {
			pid_t me = getpid();

			if (lock_refresh(pl) != 0)
				_exit(1);
			if (write(pfd[1], &me, sizeof(me)) != sizeof(me))
				_exit(1);
			alarm(30);
			for (;;)
				pause();
		}
		/* the daemon's parent exits without releasing */
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &child, sizeof(child)), sizeof(child),
		     "the child could not refresh the lock");
	close(pfd[0]);
	cr_assert_eq(waitpid(parent, &status, 0), parent);

	get_file(LOCK_FILE, buf, sizeof(buf));
	snprintf(want, sizeof(want), "\"pid\":%d,", (int)child);
	cr_expect_not_null(strstr(buf, want), "record: %s", buf);
	snprintf(want, sizeof(want), "locked by pid %d on host", (int)child);
	cr_expect_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_not_null(strstr(msg, want), "msg: %s", msg);

	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0, "%s", msg);
	cr_expect_eq(lock_refresh(l), 0);
	get_file(LOCK_FILE, buf, sizeof(buf));
	snprintf(want, sizeof(want), "\"pid\":%d,", (int)getpid());
	cr_expect_not_null(strstr(buf, want), "record: %s", buf);
	lock_release(l);
}

/*
 * unlock --force while the holder is a live process on this host (here a
 * child that took the lock): refused, naming it, the file untouched; once
 * the holder is gone the same call removes the lock.
 */
Test(lock, force_refuses_while_a_live_holder_on_this_host_has_it)
{
	struct stat before, after;
	char rec[4096], now[4096];
	char msg[512], want[64];
	int pfd[2];
	pid_t child;
	char c = 0;
	int status;

	cr_assert_eq(pipe(pfd), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct store_lock *cl = NULL;

		close(pfd[0]);
		if (lock_acquire(&cl, dirfd_, NULL, 0) != 0)
			_exit(1);
		if (write(pfd[1], "x", 1) != 1)
			_exit(1);
		alarm(30); /* never outlive a failed test for long */
		for (;;)
			pause();
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &c, 1), 1, "child could not lock");
	close(pfd[0]);
	get_file(LOCK_FILE, rec, sizeof(rec));
	cr_assert_eq(fstatat(dirfd_, LOCK_FILE, &before, 0), 0);

	cr_expect_eq(lock_force(dirfd_, msg, sizeof(msg)), -EBUSY);
	snprintf(want, sizeof(want), "pid %d on host ", (int)child);
	cr_expect_not_null(strstr(msg, want), "msg: %s", msg);
	cr_expect_not_null(strstr(msg, " since 20"), "msg: %s", msg);
	cr_assert_eq(fstatat(dirfd_, LOCK_FILE, &after, 0), 0);
	cr_expect_eq(after.st_ino, before.st_ino, "the lock file was replaced");
	get_file(LOCK_FILE, now, sizeof(now));
	cr_expect_str_eq(now, rec);
	/* and the holder still holds it */
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), 0);

	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_expect_eq(lock_force(dirfd_, msg, sizeof(msg)), 0, "msg: %s", msg);
	cr_expect_not_null(strstr(msg, "stale"), "msg: %s", msg);
	cr_expect_eq(faccessat(dirfd_, LOCK_FILE, F_OK, 0), -1);
}

/* The shared lock of an open that writes nothing (recfsctl verify). */
Test(lock, shared_lock_writes_nothing_and_keeps_writers_out)
{
	struct store_lock *l = NULL, *w = NULL;
	char host[256], rec[512], buf[4096], msg[512];

	/* no lock file: none is created */
	cr_assert_eq(lock_acquire_shared(&l, dirfd_, msg, sizeof(msg)), 0, "%s",
		     msg);
	cr_expect_eq(faccessat(dirfd_, LOCK_FILE, F_OK, 0), -1);
	lock_release(l);
	cr_expect_eq(faccessat(dirfd_, LOCK_FILE, F_OK, 0), -1);
	/* a stale record of this host stays as it is, held or released */
	our_hostname(host, sizeof(host));
	snprintf(rec, sizeof(rec),
		 "{\"pid\":1,\"host\":\"%s\",\"start\":\"2020-01-01T00:00:"
		 "00Z\"}",
		 host);
	put_str(LOCK_FILE, rec);
	cr_assert_eq(lock_acquire_shared(&l, dirfd_, msg, sizeof(msg)), 0, "%s",
		     msg);
	get_file(LOCK_FILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, rec);
	/* a writer is kept out meanwhile; another reader is not */
	cr_expect_eq(lock_acquire(&w, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_assert_eq(lock_acquire_shared(&w, dirfd_, msg, sizeof(msg)), 0, "%s",
		     msg);
	lock_release(w);
	lock_release(l);
	get_file(LOCK_FILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, rec);
	/* a live holder keeps a reader out, naming it */
	cr_assert_eq(lock_acquire(&w, dirfd_, NULL, 0), 0);
	cr_expect_eq(lock_acquire_shared(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_not_null(strstr(msg, "locked by pid"), "msg: %s", msg);
	lock_release(w);
	/* and another host's record too */
	put_str(LOCK_FILE, other_host_rec);
	cr_expect_eq(lock_acquire_shared(&l, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_not_null(strstr(msg, "far-away.example"), "msg: %s", msg);
	get_file(LOCK_FILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, other_host_rec);
}

Test(lock, garbage_records_are_replaced_without_crashing)
{
	static const char *const junk[] = {
		"not json at all",
		"{\"pid\":",
		"[1,2,3]",
		"{\"pid\":0,\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":-1,\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":99999999999,\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":\"12\",\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":12.5,\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":12,\"host\":\"\",\"start\":\"t\"}",
		"{\"pid\":12,\"host\":7,\"start\":\"t\"}",
		"{\"pid\":12,\"host\":\"h\"}",
		"{\"pid\":12,\"pid\":13,\"host\":\"h\",\"start\":\"t\"}",
		"{\"pid\":12,\"host\":\"h\\u0000x\",\"start\":\"t\"}",
		"\xff\xfe\x01\x02\x1b[2J",
	};
	struct store_lock *l = NULL;
	char big[LOCK_BIG_TEST];
	char zeros[512];
	char msg[512];
	char log[4096];
	char buf[4096];
	size_t i;

	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		put_str(LOCK_FILE, junk[i]);
		cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), -ENOENT,
			     "junk %zu: %s", i, msg);
		capture_start();
		cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0,
			     "junk %zu: %s", i, msg);
		capture_end(log, sizeof(log));
		cr_expect_not_null(strstr(log, "unreadable lock record"),
				   "junk %zu: log: %s", i, log);
		cr_expect_null(strchr(log, '\x1b'), "escape in log");
		get_file(LOCK_FILE, buf, sizeof(buf));
		cr_expect_not_null(strstr(buf, "\"pid\":"), "junk %zu", i);
		lock_release(l);
		l = NULL;
	}
	/* a long record and a zero-filled one (torn by a power cut) */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"pid\":5", 8);
	put_file(LOCK_FILE, big, sizeof(big));
	capture_start();
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0, "%s", msg);
	capture_end(log, sizeof(log));
	cr_expect_not_null(strstr(log, "larger than 4096 bytes"), "log: %s",
			   log);
	lock_release(l);
	memset(zeros, 0, sizeof(zeros));
	put_file(LOCK_FILE, zeros, sizeof(zeros));
	capture_start();
	cr_assert_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), 0, "%s", msg);
	capture_end(log, sizeof(log));
	cr_expect_not_null(strstr(log, "unreadable lock record"), "log: %s",
			   log);
	lock_release(l);
}

Test(lock, garbage_record_of_a_live_holder_gives_a_clear_message)
{
	struct store_lock *l = NULL;
	struct store_lock *l2 = NULL;
	char msg[512];
	int fd;

	cr_assert_eq(lock_acquire(&l, dirfd_, NULL, 0), 0);
	fd = openat(dirfd_, LOCK_FILE, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "\x1b]0;pwned\a{", 11), 11);
	close(fd);
	cr_assert_eq(lock_acquire(&l2, dirfd_, msg, sizeof(msg)), -EBUSY);
	cr_expect_not_null(strstr(msg, "unreadable"), "msg: %s", msg);
	cr_expect_null(strchr(msg, '\x1b'), "escape in msg: %s", msg);
	cr_expect_eq(lock_holder(dirfd_, msg, sizeof(msg)), 0);
	lock_release(l);
}

Test(lock, symlinked_lock_file_is_refused)
{
	struct store_lock *l = NULL;
	char msg[512];

	cr_assert_eq(symlinkat("/etc/passwd", dirfd_, LOCK_FILE), 0);
	cr_expect_eq(lock_acquire(&l, dirfd_, msg, sizeof(msg)), -ELOOP,
		     "msg: %s", msg);
	cr_expect_null(l);
	cr_expect_neq(lock_holder(dirfd_, msg, sizeof(msg)), 0);
}

/* --- format -------------------------------------------------------- */

TestSuite(format, .init = setup, .fini = teardown, .timeout = 30);

/* No temp file is left in the store directory. */
static void expect_no_temp(void)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -q tmp", dir);
	cr_expect_neq(system(cmd), 0, "a temp file was left in %s", dir);
}

Test(format, write_then_check_round_trips)
{
	char why[512];
	char buf[512];

	cr_assert_eq(format_write(NULL, dirfd_), 0);
	cr_expect_eq(format_check(dirfd_, dir, why, sizeof(why)), 0, "why: %s",
		     why);
	get_file(FORMAT_FILE, buf, sizeof(buf));
	cr_expect_not_null(strstr(buf, "\"format\":\"recfs\""), "%s", buf);
	cr_expect_not_null(strstr(buf, "\"version\":1"), "%s", buf);
	cr_expect_not_null(strstr(buf, "\"created\":\"20"), "%s", buf);
	expect_no_temp();
	/* path and why are optional */
	cr_expect_eq(format_check(dirfd_, NULL, NULL, 0), 0);
}

Test(format, written_file_is_0600_even_with_umask_0)
{
	umask(0);
	cr_assert_eq(format_write(NULL, dirfd_), 0);
	cr_expect_eq(mode_of(FORMAT_FILE), 0600, "mode %o",
		     (unsigned)mode_of(FORMAT_FILE));
}

Test(format, write_replaces_a_temp_file_left_by_a_crash)
{
	char tmp[64];

	snprintf(tmp, sizeof(tmp), FORMAT_FILE ".tmp.%ld", (long)getpid());
	put_str(tmp, "half");
	cr_assert_eq(format_write(NULL, dirfd_), 0);
	cr_expect_eq(format_check(dirfd_, dir, NULL, 0), 0);
	expect_no_temp();
}

Test(format, failed_write_leaves_no_file_behind)
{
	static const char *const points[] = {"format.write", "format.fsync",
					     "format.rename"};
	struct io *io = NULL;
	size_t i;

	cr_assert_eq(io_new(&io), 0);
	for (i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		cr_assert_eq(io_arm(io, points[i], IO_FAIL, ENOSPC, 1, 1), 0);
		cr_expect_eq(format_write(io, dirfd_), -ENOSPC, "%s",
			     points[i]);
		cr_expect_eq(format_check(dirfd_, dir, NULL, 0), -ENOENT, "%s",
			     points[i]);
		expect_no_temp();
		io_disarm_all(io);
	}
	io_free(io);
}

Test(format, newer_version_is_refused_and_left_untouched)
{
	static const char newer[] = "{\"format\":\"recfs\",\"version\":7,"
				    "\"created\":\"2030-01-01T00:00:00Z\","
				    "\"future\":{\"x\":[1,2]}}\n";
	char why[512];
	char buf[512];

	put_str(FORMAT_FILE, newer);
	cr_assert_eq(format_check(dirfd_, dir, why, sizeof(why)),
		     -EPROTONOSUPPORT);
	cr_expect_not_null(strstr(why, "format.json"), "why: %s", why);
	cr_expect_not_null(strstr(why, "format version 7 is newer"), "why: %s",
			   why);
	cr_expect_not_null(strstr(why, "upgrade recfs"), "why: %s", why);
	get_file(FORMAT_FILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, newer);
}

/* format_check of `content` gives -EBADMSG naming the file and `cause`. */
static void expect_corrupt(const char *content, size_t len, const char *cause)
{
	char why[512];

	put_file(FORMAT_FILE, content, len);
	cr_expect_eq(format_check(dirfd_, dir, why, sizeof(why)), -EBADMSG,
		     "content %.40s", content);
	cr_expect_not_null(strstr(why, "format.json"), "why: %s", why);
	cr_expect_not_null(strstr(why, dir), "why: %s", why);
	cr_expect_not_null(strstr(why, cause), "want '%s' in: %s", cause, why);
	cr_expect_null(strchr(why, '\x1b'), "escape in: %s", why);
}

#define CORRUPT(s, cause) expect_corrupt(s, sizeof(s) - 1, cause)

Test(format, corrupt_json_is_refused_with_line_and_column)
{
	CORRUPT("{\n \"format\": \"recfs\",\n    \"version\" 1\n}",
		"not valid JSON at line 3 column");
	CORRUPT("{\"format\":\"recfs\",\"version\":1,\"created\":\"x\"} junk",
		"not valid JSON");
	CORRUPT("\x1b[2J\xff\xfe", "not valid JSON");
	CORRUPT("{\"format\":\"recfs\",\"format\":\"recfs\",\"version\":1,"
		"\"created\":\"x\"}",
		"not valid JSON");
	expect_corrupt("{\"format\":\"re\0fs\"}", 17, "not valid JSON");
}

Test(format, missing_fields_are_refused)
{
	CORRUPT("{}", "not a recfs store");
	CORRUPT("{\"version\":1,\"created\":\"x\"}", "not a recfs store");
	CORRUPT("{\"format\":\"recfs\",\"created\":\"x\"}",
		"\"version\" is missing or not an integer");
	CORRUPT("{\"format\":\"recfs\",\"version\":1}", "\"created\"");
}

Test(format, wrong_types_are_refused)
{
	CORRUPT("[\"recfs\",1]", "not a JSON object");
	CORRUPT("\"recfs\"", "not valid JSON"); /* jansson: object or array */
	CORRUPT("{\"format\":\"git\",\"version\":1,\"created\":\"x\"}",
		"not a recfs store (\"format\" is not \"recfs\")");
	CORRUPT("{\"format\":5,\"version\":1,\"created\":\"x\"}",
		"not a recfs store");
	CORRUPT("{\"format\":\"recfs\",\"version\":\"1\",\"created\":\"x\"}",
		"not an integer");
	CORRUPT("{\"format\":\"recfs\",\"version\":1.0,\"created\":\"x\"}",
		"not an integer");
	CORRUPT("{\"format\":\"recfs\",\"version\":null,\"created\":\"x\"}",
		"not an integer");
	CORRUPT("{\"format\":\"recfs\",\"version\":0,\"created\":\"x\"}",
		"format version 0 is not valid");
	CORRUPT("{\"format\":\"recfs\",\"version\":-3,\"created\":\"x\"}",
		"not valid");
	CORRUPT("{\"format\":\"recfs\",\"version\":1,\"created\":[]}",
		"\"created\"");
	CORRUPT("{\"format\":\"recfs\",\"version\":"
		"99999999999999999999999,\"created\":\"x\"}",
		"not valid JSON");
}

Test(format, huge_and_empty_files_are_refused)
{
	static const char head[] =
		"{\"format\":\"recfs\",\"version\":1,\"created\":\"x\"}";
	char *big = malloc(FORMAT_MAX_BYTES + 1);
	char *deep = malloc(100001);

	cr_assert_not_null(big);
	cr_assert_not_null(deep);
	/* valid JSON, but one byte over the limit */
	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, ' ',
	       FORMAT_MAX_BYTES + 1 - (sizeof(head) - 1));
	expect_corrupt(big, FORMAT_MAX_BYTES + 1, "larger than 65536 bytes");
	/* exactly at the limit is still read */
	put_file(FORMAT_FILE, big, FORMAT_MAX_BYTES);
	cr_expect_eq(format_check(dirfd_, dir, NULL, 0), 0);
	/* deep nesting under the limit: the parser's depth bound holds */
	memset(deep, '[', 60000);
	expect_corrupt(deep, 60000, "not valid JSON");
	CORRUPT("", "empty");
	CORRUPT("   \n", "not valid JSON");
	free(big);
	free(deep);
}

Test(format, missing_file_is_enoent)
{
	char why[512];

	cr_expect_eq(format_check(dirfd_, dir, why, sizeof(why)), -ENOENT);
	cr_expect_not_null(strstr(why, "format.json"), "why: %s", why);
}

Test(format, symlink_or_directory_is_refused)
{
	char why[512];

	cr_assert_eq(symlinkat("/etc/hostname", dirfd_, FORMAT_FILE), 0);
	cr_expect_eq(format_check(dirfd_, dir, why, sizeof(why)), -EBADMSG);
	cr_expect_not_null(strstr(why, "format.json"), "why: %s", why);
	cr_assert_eq(unlinkat(dirfd_, FORMAT_FILE, 0), 0);
	cr_assert_eq(mkfifoat(dirfd_, FORMAT_FILE, 0600), 0);
	cr_expect_eq(format_check(dirfd_, dir, why, sizeof(why)), -EBADMSG);
	cr_expect_not_null(strstr(why, "not a regular file"), "why: %s", why);
}
