/*
 * helpers.c - see helpers.h.
 */
#include "helpers.h"

#include "admin.h"
#include "err.h"

#include <criterion/criterion.h>
#include <xxhash.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- files and bytes ---------------------------------------------------- */

void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7) >> 3);
}

char *read_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	buf[st.st_size] = '\0';
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return buf;
}

void write_file(const char *path, const void *buf, size_t len)
{
	write_file_mode(path, buf, len, 0600);
}

void write_file_mode(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

void write_text(const char *path, const char *text)
{
	write_file(path, text, strlen(text));
}

void hash_of(const void *buf, size_t len, uint8_t out[16])
{
	XXH128_canonicalFromHash((XXH128_canonical_t *)out,
				 XXH3_128bits(buf, len));
}

unsigned count_str(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

unsigned count_names(const char *dir, const char *prefix, const char *part)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
		     strstr(de->d_name, part) != NULL;
	closedir(d);
	return n;
}

/* ---- time and waiting --------------------------------------------------- */

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool wait_for(bool (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
	const struct timespec ms = {0, 1000000};
	uint64_t end = now_ms() + timeout_ms;

	while (!cond(arg)) {
		if (now_ms() >= end)
			return cond(arg);
		nanosleep(&ms, NULL);
	}
	return true;
}

int thread_id(void)
{
	return (int)syscall(SYS_gettid);
}

bool thread_asleep(int tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the name may hold anything */
	return p && p[1] == ' ' && (p[2] == 'S' || p[2] == 'D');
}

struct asleep {
	atomic_int *tid;
};

static bool is_asleep(void *arg)
{
	const struct asleep *a = arg;
	int tid = atomic_load(a->tid);

	return tid != 0 && thread_asleep(tid);
}

bool wait_asleep(atomic_int *tid, unsigned timeout_ms)
{
	struct asleep a = {tid};

	return wait_for(is_asleep, &a, timeout_ms);
}

/* ---- processes ---------------------------------------------------------- */

char *run(const char *fmt, ...)
{
	char cmd[8192];
	size_t len = 0, cap = 65536;
	char *out = malloc(cap);
	va_list ap;
	FILE *p;
	size_t n;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_not_null(out);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "%s", cmd);
	while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 4096) {
			cap *= 2;
			out = realloc(out, cap);
			cr_assert_not_null(out);
		}
	}
	out[len] = '\0';
	st = pclose(p);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit %d\n%s", cmd,
		  st, out);
	return out;
}

int run_child(void (*fn)(void *arg), void *arg)
{
	pid_t pid = fork();
	int status = 0;

	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

int child_status(pid_t pid)
{
	int st = 0;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "child killed by signal %d", WTERMSIG(st));
	return WEXITSTATUS(st);
}

bool exited_with(int status, int code)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

void capture_start(struct captured *c, const char *dir)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/stderr.txt", dir);
	fflush(stderr);
	fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	c->saved = dup(2);
	dup2(fd, 2);
	close(fd);
}

char *capture_end(struct captured *c)
{
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	return read_file(c->path, NULL);
}

/* ---- a small file system ------------------------------------------------ */

void small_fs(const char *dir, const char *size)
{
	char opts[64];

	if (unshare(CLONE_NEWNS) < 0 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		cr_skip_test("cannot make a mount namespace (%s): needs root",
			     strerror(errno));
	snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
	cr_assert_eq(mount("tmpfs", dir, "tmpfs", 0, opts), 0,
		     "mount tmpfs on %s: %s", dir, strerror(errno));
}

void fill_fs(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	memset(buf, 'z', sizeof(buf));
	while (write(fd, buf, sizeof(buf)) > 0)
		;
	cr_assert_eq(errno, ENOSPC);
	while (write(fd, buf, 1) > 0) /* tmpfs gives the last partial pages */
		;
	cr_assert_eq(errno, ENOSPC);
	close(fd);
}

/* ---- a store's records -------------------------------------------------- */

void expect_buf(struct store *s, const char *id, const void *want, size_t len,
		uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t got = 0;
	int rc = store_get(s, id, &buf, &got, &m);

	cr_assert_eq(rc, 0, "get %s: %s", id, strerror(-rc));
	cr_assert_eq(got, len, "%s: %zu bytes, expected %zu", id, got, len);
	cr_assert(memcmp(buf, want, len) == 0, "%s: wrong content", id);
	if (version)
		cr_assert_eq(m.version, version,
			     "%s: version %llu, expected %llu", id,
			     (unsigned long long)m.version,
			     (unsigned long long)version);
	free(buf);
}

struct store *open_ok(const struct store_opts *o)
{
	struct store *s = NULL;
	int rc = store_open(&s, o);

	cr_assert_eq(rc, 0, "store_open %s: %s", o->path ? o->path : "(memory)",
		     strerror(-rc));
	return s;
}

void put_text(struct store *s, const char *id, const char *text)
{
	int rc = store_put(s, id, text, strlen(text), NULL, NULL);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
}

struct store *child_open(struct store_opts *o, struct io **io)
{
	struct store *s = NULL;

	*io = NULL;
	if (io_new(io))
		_exit(2);
	o->io = *io;
	if (store_open(&s, o))
		_exit(3);
	return s;
}

bool holds(struct store *s, const char *id, const void *want, size_t len,
	   uint64_t version)
{
	struct store_meta m;
	void *buf = NULL;
	size_t got = 0;
	bool ok;

	if (store_get(s, id, &buf, &got, &m) != 0)
		return false;
	ok = got == len && memcmp(buf, want, len) == 0 && m.version == version;
	free(buf);
	return ok;
}

bool holds_text(struct store *s, const char *id, const char *text,
		uint64_t version)
{
	return holds(s, id, text, strlen(text), version);
}

bool gone(struct store *s, const char *id, uint64_t last)
{
	struct store_meta m;
	uint64_t v = 0;

	return store_stat(s, id, &m, false) == -ENOENT &&
	       store_last_version(s, id, &v) == 0 && v == last;
}

void check_verify(struct store *s, const char *what,
		  struct store_verify_report *out)
{
	struct store_verify_report rep;
	int rc = store_verify(s, &rep);

	cr_assert_eq(rc, 0,
		     "%s: verify: %s (%llu bad, %llu strays, %llu unindexed, "
		     "%llu hist_bad)",
		     what, strerror(-rc), (unsigned long long)rep.bad,
		     (unsigned long long)rep.strays,
		     (unsigned long long)rep.unindexed,
		     (unsigned long long)rep.hist_bad);
	if (out)
		*out = rep;
}

void expect_report(int code, const char *const *want, size_t n)
{
	const struct rerr *e = rerr_last();

	cr_assert_not_null(e, "nothing reported for %d (%s)", code,
			   strerror(-code));
	cr_assert_eq(e->code, code, "reported %d (%s), not %d", e->code, e->msg,
		     code);
	for (size_t i = 0; i < n; i++)
		cr_assert_not_null(strstr(e->msg, want[i]),
				   "\"%s\" is not in the report: %s", want[i],
				   e->msg);
}
