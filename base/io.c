/*
 * io.c - the wrapped calls of the I/O shim (io.h): each passes its
 * failpoint (io_i.h, io_fail.c) and then makes the syscall, looping on
 * EINTR and on short reads and writes. Injected EINTR is treated like a
 * real interrupted syscall: the wrapper passes the failpoint again (one
 * more hit) and retries. IO_SHORT with EINTR therefore simulates a
 * partial write that the loop must finish.
 */
#include "io.h"
#include "io_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h> /* renameat2 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define IO_IOV_WIN 64 /* iovecs rebuilt per call after a short write */
#define IO_COPY_BUF (256u << 10)
#define IO_COPY_CHUNK ((size_t)1 << 30)

int io_openat(struct io *io, const char *point, int dirfd, const char *name,
	      int flags, mode_t mode)
{
	int fd;
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	do
		fd = openat(dirfd, name, flags, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

ssize_t io_pread_all(struct io *io, const char *point, int fd, void *buf,
		     size_t len, off_t off)
{
	size_t done = 0;
	ssize_t n;
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	if (len > SSIZE_MAX)
		return -EINVAL;
	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done,
			  off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* A position in an iovec list being written. */
struct wcur {
	const struct iovec *iov;
	int cnt;
	int i;	     /* current iovec */
	size_t skip; /* bytes of iov[i] already written */
	off_t off;   /* file offset of the next byte */
};

static void wcur_advance(struct wcur *c, size_t n)
{
	while (n > 0) {
		size_t left = c->iov[c->i].iov_len - c->skip;

		if (n < left) {
			c->skip += n;
			return;
		}
		n -= left;
		c->i++;
		c->skip = 0;
	}
}

/*
 * Write `max` bytes from the cursor (which holds at least that many),
 * looping on EINTR and short writes. The caller's iovecs are passed to
 * the kernel as they are unless a short write left us inside one or
 * `max` ends inside one; then a small window is rebuilt on the stack.
 */
static int wcur_write(int fd, struct wcur *c, size_t max)
{
	struct iovec win[IO_IOV_WIN];
	const struct iovec *v;
	size_t want, len;
	ssize_t n;
	int cnt;

	while (max > 0) {
		while (c->i < c->cnt && c->iov[c->i].iov_len == c->skip) {
			c->i++;
			c->skip = 0;
		}
		if (c->i == c->cnt)
			return -EINVAL; /* fewer bytes than `max` */

		cnt = c->cnt - c->i < IOV_MAX ? c->cnt - c->i : IOV_MAX;
		want = 0;
		for (int k = 0; k < cnt && want <= max; k++)
			want += c->iov[c->i + k].iov_len;
		if (c->skip == 0 && want <= max) {
			v = &c->iov[c->i];
		} else {
			want = 0;
			cnt = 0;
			for (int k = c->i;
			     k < c->cnt && cnt < IO_IOV_WIN && want < max;
			     k++) {
				size_t s = k == c->i ? c->skip : 0;

				len = c->iov[k].iov_len - s;
				if (len > max - want)
					len = max - want;
				win[cnt].iov_base =
					(char *)c->iov[k].iov_base + s;
				win[cnt].iov_len = len;
				want += len;
				cnt++;
			}
			v = win;
		}
		n = pwritev(fd, v, cnt, c->off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* no progress: do not spin */
		wcur_advance(c, (size_t)n);
		c->off += n;
		max -= (size_t)n;
	}
	return 0;
}

static ssize_t pwritev_points(struct io *io, const char *point, int fd,
			      const struct iovec *iov, int iovcnt, off_t off)
{
	struct wcur c = {.iov = iov, .cnt = iovcnt, .off = off};
	size_t total = 0, left, half;
	bool is_short;
	int rc, wrc;

	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (int k = 0; k < iovcnt; k++) {
		if (iov[k].iov_len > SSIZE_MAX - total)
			return -EINVAL;
		total += iov[k].iov_len;
	}
	left = total;
	for (;;) {
		is_short = false;
		rc = io_fp_pass(io, point, &is_short);
		if (rc == 0)
			break;
		if (is_short) {
			/* Half of the bytes reach the file, then the error. */
			half = left / 2;
			if (half == 0 && left > 1)
				half = 1;
			wrc = wcur_write(fd, &c, half);
			if (wrc < 0)
				return wrc;
			left -= half;
		}
		if (rc != -EINTR)
			return rc;
	}
	rc = wcur_write(fd, &c, left);
	return rc < 0 ? rc : (ssize_t)total;
}

ssize_t io_pwrite_all(struct io *io, const char *point, int fd, const void *buf,
		      size_t len, off_t off)
{
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};

	return pwritev_points(io, point, fd, &v, 1, off);
}

ssize_t io_pwritev_all(struct io *io, const char *point, int fd,
		       const struct iovec *iov, int iovcnt, off_t off)
{
	return pwritev_points(io, point, fd, iov, iovcnt, off);
}

int io_fsync(struct io *io, const char *point, int fd)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_fdatasync(struct io *io, const char *point, int fd)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_ftruncate(struct io *io, const char *point, int fd, off_t len)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (ftruncate(fd, len) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_renameat(struct io *io, const char *point, int olddirfd,
		const char *oldname, int newdirfd, const char *newname,
		unsigned flags)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (renameat2(olddirfd, oldname, newdirfd, newname, flags) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_unlinkat(struct io *io, const char *point, int dirfd, const char *name,
		int flags)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (unlinkat(dirfd, name, flags) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_mkdirat(struct io *io, const char *point, int dirfd, const char *name,
	       mode_t mode)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (mkdirat(dirfd, name, mode) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_linkat(struct io *io, const char *point, int olddirfd,
	      const char *oldname, int newdirfd, const char *newname)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (linkat(olddirfd, oldname, newdirfd, newname, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_syncfs(struct io *io, const char *point, int fd)
{
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	while (syncfs(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* read/write fallback of io_copy_fd, from offset `off` on. */
static ssize_t copy_rw(int in, int out, off_t off)
{
	char *buf = NULL;
	ssize_t n, rc = 0;
	off_t pos = off;

	buf = malloc(IO_COPY_BUF);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		n = io_pread_all(NULL, NULL, in, buf, IO_COPY_BUF, pos);
		if (n < 0) {
			rc = n;
			goto out;
		}
		if (n == 0)
			break;
		rc = io_pwrite_all(NULL, NULL, out, buf, (size_t)n, pos);
		if (rc < 0)
			goto out;
		pos += n;
	}
	rc = pos - off;
out:
	free(buf);
	return rc;
}

ssize_t io_copy_fd(struct io *io, const char *point, int in, int out)
{
	loff_t off_in = 0, off_out = 0;
	ssize_t n, rest;
	int rc = io_fp_gate(io, point);

	if (rc < 0)
		return rc;
	for (;;) {
		n = copy_file_range(in, &off_in, out, &off_out, IO_COPY_CHUNK,
				    0);
		if (n > 0)
			continue;
		if (n == 0)
			return (ssize_t)off_in;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
		    errno != EOPNOTSUPP)
			return -errno;
		/* Not supported between these files: copy by hand. */
		rest = copy_rw(in, out, (off_t)off_in);
		return rest < 0 ? rest : (ssize_t)off_in + rest;
	}
}
