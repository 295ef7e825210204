/*
 * util.c - see util.h.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

void util_say(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!msg || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

void util_clean_copy(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < len && src[i]; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

int util_now_iso(char *buf, size_t len)
{
	struct tm tm;
	time_t t = time(NULL);

	if (!gmtime_r(&t, &tm))
		return -EOVERFLOW;
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -ERANGE;
	return 0;
}

void *util_grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
	return util_reserve(v, cap, n + 1, size, first);
}

void *util_reserve(void *v, size_t *cap, size_t want, size_t size, size_t first)
{
	size_t c = *cap ? *cap : first;
	void *p;

	if (*cap && want <= *cap)
		return v;
	if (!c || size == 0)
		return NULL;
	while (c < want) {
		if (c > SIZE_MAX / 2)
			return NULL;
		c *= 2;
	}
	if (c > SIZE_MAX / size)
		return NULL;
	p = realloc(v, c * size);
	if (p)
		*cap = c;
	return p;
}

int util_opendir_fd(int dirfd, DIR **out)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0)
		return -errno;
	return util_fdopendir(fd, out);
}

int util_fdopendir(int fd, DIR **out)
{
	int err;

	*out = NULL;
	if (fd < 0)
		return fd;
	*out = fdopendir(fd);
	if (*out)
		return 0;
	err = errno;
	close(fd);
	return -err;
}

static void locked_copy(pthread_mutex_t *mu, void *dst, const void *src,
			size_t n)
{
	pthread_mutex_lock(mu);
	memcpy(dst, src, n);
	pthread_mutex_unlock(mu);
}

uint64_t util_locked_u64(pthread_mutex_t *mu, const uint64_t *v)
{
	uint64_t r;

	locked_copy(mu, &r, v, sizeof(r));
	return r;
}

int util_locked_int(pthread_mutex_t *mu, const int *v)
{
	int r;

	locked_copy(mu, &r, v, sizeof(r));
	return r;
}

int util_xattr_each(int fd, int (*fn)(void *arg, const char *name), void *arg)
{
	ssize_t n = flistxattr(fd, NULL, 0);
	char *names;
	int rc = 0;

	if (n <= 0)
		return n == 0 || errno == ENOTSUP ? 0 : -errno;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = flistxattr(fd, names, (size_t)n);
	if (n < 0)
		rc = -errno;
	for (char *p = names; rc == 0 && p < names + n; p += strlen(p) + 1)
		rc = fn(arg, p);
	free(names);
	return rc;
}

int util_stat_opened(int fd, struct stat *st)
{
	int rc = 0;

	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd;
	if (fstat(fd, st) < 0)
		rc = -errno;
	else if (S_ISLNK(st->st_mode))
		rc = -ELOOP; /* O_PATH|O_NOFOLLOW opened the link itself */
	close(fd);
	return rc;
}

int util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int util_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc;

	if (fd < 0)
		return -errno;
	rc = util_write_all(fd, buf, len);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int util_cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int rc = -pthread_condattr_init(&a);

	if (rc)
		return rc;
	rc = -pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = -pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return rc;
}

void util_deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int util_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv)
{
	int rc = -pthread_mutex_init(mu, NULL);

	if (rc < 0)
		return rc;
	rc = -pthread_cond_init(cv, NULL);
	if (rc < 0)
		pthread_mutex_destroy(mu);
	return rc;
}

int util_hex_decode(const char *hex, uint8_t *out, size_t n)
{
	if (!hex || strlen(hex) != 2 * n)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EBADMSG;
		out[i] = (uint8_t)v;
	}
	return 0;
}
